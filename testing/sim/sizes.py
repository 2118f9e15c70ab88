"""How many bytes a call between nodes would put on the wire.

Heartbeats, the bulk of the control traffic, are sized exactly as protobuf encodes the gRPC
transport's `HeartbeatRequest`/`HeartbeatReply` (`node/rpc/convert.py`; a test checks the two agree),
without building the message. Every other call is estimated by walking its arguments or answer:
bytes and strings by their length plus a two-byte tag and length, numbers as varints or doubles,
dataclasses, tuples, lists and dicts by their parts (the field overhead of the real message is
within a few bytes per field). gRPC's own framing (5 bytes a message, HTTP/2 headers) is not counted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from maillage.node.replicas.transport import Heartbeat

__all__ = ["varint_size", "heartbeat_size", "estimate"]


def varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _string_field(text: str) -> int:
    n = len(text.encode())
    return 0 if n == 0 else 1 + varint_size(n) + n


def heartbeat_size(beat: Heartbeat) -> int:
    """The encoded size of `beat` as a HeartbeatRequest (a reply has the same fields)."""
    size = _string_field(beat.node_id)
    if beat.layout_version:
        size += 1 + varint_size(beat.layout_version)
    if beat.access_version:
        size += 1 + varint_size(beat.access_version)
    for view in beat.peers:   # hot: a view per node in every heartbeat
        node_id, state = view.node_id, view.state
        n = len(node_id) if node_id.isascii() else len(node_id.encode())
        inner = (0 if n == 0 else n + 1 + (1 if n < 0x80 else varint_size(n))) + (2 + len(state) if state else 0)
        if view.silent_seconds:
            inner += 9
        size += inner + 1 + (1 if inner < 0x80 else varint_size(inner))
    return size


def estimate(value: Any, depth: int = 0) -> int:
    """The approximate encoded size of a call's argument or answer."""
    if depth > 8 or value is None:
        return 0
    if isinstance(value, Heartbeat):
        return heartbeat_size(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 2 + len(value)
    if isinstance(value, str):
        return 2 + len(value.encode())
    if isinstance(value, bool):
        return 2
    if isinstance(value, int):
        return 1 + varint_size(abs(value))
    if isinstance(value, float):
        return 9
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return 2 + sum(estimate(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(estimate(k, depth + 1) + estimate(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(estimate(v, depth + 1) for v in value)
    return 8
