"""Placement algorithm 2: deferred acceptance on the policy ring.

Why it is built this way. Algorithm 1 (``table.py``) fills partitions in index order and skips
nodes at their cap, so whether partition p finds node n free depends on every partition before
p: one slot taken early by an added node shifts when each node fills, and the change cascades
through the whole index range (2.4x the ideal movement at 1,000 sites). Here a node at its cap
does not refuse whoever comes next: it keeps the partitions that are closest to it on the ring
(ring distance from the partition's start to the node's token) and evicts the farthest, which
walks on to its next node (deferred acceptance, as in stable matching). Who keeps what then
depends on ring distances and caps, hardly on the order partitions are processed in (only through
the distinct-site rule and the rare overflow below; the order is fixed anyway: index order, evicted
ones first, so the table stays a pure function of the layout). An added node moves what it takes
plus chains: a node at its cap that loses a slot takes back the closest partition it had turned
away, that partition's holder may do the same, and a node whose cap drops evicts one
(benchmarks/RESULTS.md measures both and why they stay above the 1.25x target).

What is never relaxed: every node is on the policy ring (inside ``allow``, ACTIVE) and a
partition's R replicas sit on R distinct sites. Then, as in algorithm 1, a distinct ``spread``
domain per replica while the partition's domains so far leave one to take, and only after that
the cap: when the walk finds no acceptable node that takes the partition (within a lap, or within
64 tokens once no acceptable node is below its cap), the slot goes to the acceptable node least
over its cap (``table._relieve_overflow`` then moves such overflow onto nodes below their cap).
Each partition's walk only moves forward (an evicted replica resumes where its walk stopped), so
a partition walks at most one lap in all.

Caps are ``floor((1 + e) t)`` for a node whose capacity share of the R * 2^P slots is ``t`` (so
no node holds more than 1+e of its share), raised by one for the nodes furthest below ``(1+e) t``
when their sum falls short of the slots (tiny layouts).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from maillage.placement.layout import MAX_PARTITION_BITS

__all__ = ["LOAD_EPSILON", "caps_for", "assign"]

LOAD_EPSILON = 0.05
_RING = 1 << 64
_PBITS = MAX_PARTITION_BITS  # a partition index fits below this bit
_PART = (1 << _PBITS) - 1
_NODE = (1 << 32) - 1
_EVICT_WALK = 64  # tokens a partition walks looking for a node to evict from when none is free


def caps_for(shares: Sequence[float], slots: int, epsilon: float) -> list[int]:
    """Per node ``floor((1+e) t)``; short of ``slots`` in total, +1 where the floor lost most."""
    caps = [math.floor((1 + epsilon) * t + 1e-9) for t in shares]
    short = slots - sum(caps)
    if short > 0:
        by_loss = sorted(range(len(caps)), key=lambda i: (caps[i] - (1 + epsilon) * shares[i], i))
        for i in by_loss[:short]:
            caps[i] += 1
    return caps


def assign(positions: Sequence[int], owners: Sequence[int], bits: int, replicas: int, caps: list[int],
           node_site: Sequence[int], node_dom: Sequence[int], ndoms: int) -> tuple[list[list[int]], list[int]]:
    """Rows of R node indices (walk order) per partition, and the load of each node.

    Held partitions and row entries are plain ints (``distance << 20 | partition`` negated in a
    node's heap, ``distance << 32 | node`` in a row), not tuples: a quarter of a million long-lived
    tuples would have the garbage collector walk them over and over during the build."""
    size = len(positions)
    nodes = len(caps)
    nparts = 1 << bits
    shift = 64 - bits
    spread = ndoms > 0
    held: list[list[int]] = [[] for _ in range(nodes)]  # heap of -(distance << _PBITS | partition)
    forced = [0] * nodes  # slots taken past the cap (never evicted)
    rows: list[list[int]] = [[] for _ in range(nparts)]  # distance << 32 | node
    walked = [0] * nparts  # steps of the ring walked by each partition
    starts = [0] * nparts
    j = 0
    for p in range(nparts):  # first token at or after each partition start (starts are increasing)
        base = p << shift
        while j < size and positions[j] < base:
            j += 1
        starts[p] = j if j < size else 0
    # Nodes below their cap, in all, per site and per domain. Loads never go down (an eviction
    # swaps one partition for another), so these only fall, and when none is acceptable to a
    # partition it can only get in by evicting: it tries for a short stretch of the walk only,
    # instead of a lap per partition on a policy whose spread asks more of a domain than it holds.
    free_total = 0
    free_site = [0] * (max(node_site, default=0) + 1)
    free_dom = [0] * (max(node_dom, default=0) + 1)
    for i in range(nodes):
        if caps[i] > 0:
            free_total += 1
            free_site[node_site[i]] += 1
            free_dom[node_dom[i]] += 1
    pending = list(range(nparts - 1, -1, -1))  # a stack; popped in index order
    while pending:
        p = pending.pop()
        row = rows[p]
        if len(row) >= replicas:
            continue
        sites = {node_site[e & _NODE] for e in row}
        doms = {node_dom[e & _NODE] for e in row}
        use_dom = spread and len(doms) < ndoms
        if use_dom:  # a taken site's nodes all sit in a taken domain
            free = free_total - sum(free_dom[d] for d in doms)
        else:
            free = free_total - sum(free_site[x] for x in sites)
        base = p << shift
        k = walked[p]
        start = starts[p]
        limit = size if free > 0 else min(size, k + _EVICT_WALK)
        while True:
            if k >= limit:
                o = _least_over(owners, start, held, forced, caps, node_site, sites, node_dom,
                                doms if use_dom else set())
                forced[o] += 1
                if len(held[o]) + forced[o] == caps[o]:
                    free_total -= 1
                    free_site[node_site[o]] -= 1
                    free_dom[node_dom[o]] -= 1
                row.append(_RING << 32 | o)  # after every replica found on the walk
                break
            j = start + k
            if j >= size:
                j -= size
            o = owners[j]
            k += 1
            if node_site[o] in sites or (use_dom and node_dom[o] in doms):
                continue
            d = (positions[j] - base) % _RING
            mine = d << _PBITS | p
            h = held[o]
            if len(h) + forced[o] < caps[o]:
                heapq.heappush(h, -mine)
                if len(h) + forced[o] == caps[o]:
                    free_total -= 1
                    free_site[node_site[o]] -= 1
                    free_dom[node_dom[o]] -= 1
                row.append(d << 32 | o)
                break
            if h and mine < -h[0]:
                q = -heapq.heapreplace(h, -mine) & _PART
                evicted = rows[q]
                for i, e in enumerate(evicted):
                    if e & _NODE == o:
                        del evicted[i]
                        break
                pending.append(q)
                row.append(d << 32 | o)
                break
        walked[p] = k
        if len(row) < replicas:
            pending.append(p)
    load = [len(h) + f for h, f in zip(held, forced)]
    return [[e & _NODE for e in sorted(row)] for row in rows], load


def _least_over(owners: Sequence[int], start: int, held: list[list[int]], forced: list[int],
                caps: list[int], node_site: Sequence[int], sites: set[int], node_dom: Sequence[int],
                doms: set[int]) -> int:
    """A lap found no acceptable node to take the partition: the first in walk order of those least
    over their cap (so overflow spreads one slot at a time and stays near the partition)."""
    def acceptable(o: int) -> bool:
        return node_site[o] not in sites and node_dom[o] not in doms
    least = min(len(held[o]) + forced[o] - caps[o] for o in range(len(caps)) if acceptable(o))
    size = len(owners)
    for k in range(size):
        o = owners[(start + k) % size]
        if acceptable(o) and len(held[o]) + forced[o] - caps[o] == least:
            return o
    raise AssertionError("unreachable: the minimum is attained by some ring node")
