"""Capacity-weighted virtual tokens and the per-policy sub-ring.

Why it is built this way: a node's tokens depend on nothing but its own id and capacity,
so adding, removing or resizing one node never moves another node's tokens, and a policy's
ring (the tokens of the ACTIVE nodes its ``allow`` prefixes admit) is untouched by any change
outside the policy. Token ``i`` of a node is the 8-byte big-endian word ``i`` of the BLAKE3
extendable output of ``b"maillage-token:" + node_id``: one hash call yields all of a node's
tokens, and growing a node keeps its existing tokens (the output is a stream), so a capacity
increase only adds tokens. The count is ``capacity / TOKEN_BYTES`` rounded, clamped to
``1..MAX_TOKENS``: proportional to capacity, independent of every other node. Exact capacity
shares are enforced later by the bounded-load walk (``table.py``); tokens only need to be
roughly proportional and well spread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import blake3

from maillage.placement.layout import Layout, Node

__all__ = ["TOKEN_BYTES", "MAX_TOKENS", "token_count", "node_tokens", "PolicyRing", "policy_ring", "node_ring"]

TOKEN_BYTES = 64 * 2**30  # one token per 64 GiB of capacity: 16 per TiB
MAX_TOKENS = 1024
RING_BITS = 64


def token_count(capacity: int) -> int:
    return max(1, min(MAX_TOKENS, (capacity + TOKEN_BYTES // 2) // TOKEN_BYTES))


def node_tokens(node_id: str, count: int) -> tuple[int, ...]:
    """The first ``count`` token positions of a node on the 64-bit ring."""
    stream = blake3.blake3(b"maillage-token:" + node_id.encode("utf-8")).digest(length=8 * count)
    return struct.unpack(f">{count}Q", stream)


@dataclass(frozen=True)
class PolicyRing:
    """Sorted token positions and, in parallel, the index (into ``nodes``) of their owner."""

    nodes: tuple[Node, ...]
    positions: list[int]
    owners: list[int]


def policy_ring(layout: Layout, policy_name: str) -> PolicyRing:
    """The ring of the policy's eligible nodes (ACTIVE, inside ``allow``), nodes sorted by id."""
    return node_ring(layout.eligible_nodes(policy_name))


def node_ring(nodes: tuple[Node, ...]) -> PolicyRing:
    """The ring of ``nodes`` (sorted by id): each node's tokens, whatever else is on the ring."""
    n = len(nodes)
    keys: list[int] = []
    for index, node in enumerate(nodes):
        keys.extend(pos * n + index for pos in node_tokens(node.id, token_count(node.capacity)))
    keys.sort()  # position first, ties broken by node index (i.e. by id)
    positions = [k // n for k in keys]
    owners = [k % n for k in keys]
    return PolicyRing(nodes=nodes, positions=positions, owners=owners)
