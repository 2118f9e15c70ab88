"""Placement algorithm 3: walk the ring without caps, then shed each node's farthest partitions.

Why it is built this way. A pure function of the layout that holds every node to ``floor(1.05 t)``
must, when a node above its cap loses a partition to an added site, fill the slot again: its load is
``min(cap, demand)`` and the demand (what the plain ring walk gives it) fell by one. So movement beyond
the ideal is at least the share of the slots held by nodes whose demand is above their cap (about a
third at 1,000 sites, where a node holds 13-100 slots and the walk leaves each off by 1/sqrt(slots)),
plus, when a change moves integer caps, one slot per full node whose cap moved. Algorithm 2
(deferred acceptance with caps on every node, ``accept.py``) fills more nodes to their cap than that
(~60 %): the overflow of full nodes fills their neighbours on the ring, and a slot freed anywhere on
a chain of full nodes pulls a partition back. Here only nodes whose demand exceeds their cap are full
of their own partitions:

1. every partition walks the policy ring from its start and takes the first R nodes on distinct
   sites (a distinct ``spread`` domain each while one is left), no caps: consistent hashing, which
   moves only what an added or drained node takes or gives;
2. a node holding more than its cap keeps the partitions closest to it on the ring (distance from
   the partition's start to the node's token) and sheds the rest; a shed replica resumes its walk
   after that node and is placed by deferred acceptance among the room the others have left (a
   node below its cap takes it; a node with no room left takes it only in place of a farther shed
   replica, which walks on). What a node kept in step 1 is evicted in step 2 only when a shed
   replica finds no node with room it may take (``_displace``: a tight mesh, or room only on sites
   the partition already uses, as where one big node per site holds the room); each such replica
   (displacing one, or overflowing a node whose excess `table._relieve_overflow` then moves) makes
   one node differ from its walk by one partition, and
   `test_only_nodes_above_their_cap_lose_what_the_walk_gave_them` counts them against that.

A change then moves what the added or drained site takes or gives, one slot for each partition a
full node takes back, and the short chains of the shed replicas (benchmarks/RESULTS.md). When no node
that a shed replica may take has room, the slot goes to the acceptable node least over its cap
(``table._relieve_overflow`` then moves such overflow onto nodes below their cap), as in algorithm 2.
Caps are algorithm 2's (``accept.caps_for``). The order of step 2 is fixed (index order, evicted
replicas first), so the table is a pure function of (layout, policy).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Sequence

from maillage.placement.layout import MAX_PARTITION_BITS

__all__ = ["assign"]

_RING = 1 << 64
_PBITS = MAX_PARTITION_BITS  # a partition index fits below this bit
_PART = (1 << _PBITS) - 1
_NODE = (1 << 32) - 1
_EVICT_WALK = 64  # tokens a shed replica walks looking for a node to evict from when none has room


def assign(positions: Sequence[int], owners: Sequence[int], bits: int, replicas: int, caps: list[int],
           node_site: Sequence[int], node_dom: Sequence[int], ndoms: int) -> tuple[list[list[int]], list[int]]:
    """Rows of R node indices (walk order) per partition, and the load of each node.

    Entries are plain ints (``distance << 32 | node`` in a row, ``distance << 20 | partition`` held
    by a node), not tuples, so the garbage collector has few long-lived objects to walk."""
    nparts = 1 << bits
    shift = 64 - bits
    starts = _starts(positions, nparts, shift)
    rows, held = _walk(positions, owners, starts, shift, replicas, len(caps), node_site, node_dom, ndoms)
    walked = [0] * nparts  # where a partition with a shed replica resumes its walk
    for o, h in enumerate(held):
        cap = caps[o]
        if len(h) <= cap:
            continue
        h.sort()
        shed_here = h[cap:]
        del h[cap:]
        for e in shed_here:
            p, d = e & _PART, e >> _PBITS
            row = rows[p]
            for i, x in enumerate(row):
                if x & _NODE == o:
                    del row[i]
                    break
            k = _resume(positions, owners, shift, p, d, o, starts)
            walked[p] = k if walked[p] == 0 else min(walked[p], k)
    pending = [p for p in range(nparts - 1, -1, -1) if len(rows[p]) < replicas]
    for h in held:  # what each node kept, as a heap of its farthest first
        for i, e in enumerate(h):
            h[i] = -e
        heapq.heapify(h)
    load = _place_shed(positions, owners, shift, replicas, caps, node_site, node_dom, ndoms, rows, held,
                       walked, starts, pending)
    return [[e & _NODE for e in sorted(row)] for row in rows], load


def _starts(positions: Sequence[int], nparts: int, shift: int) -> list[int]:
    """Per partition, the index of the first token at or after its start (starts are increasing)."""
    size = len(positions)
    starts = [0] * nparts
    j = 0
    for p in range(nparts):
        base = p << shift
        while j < size and positions[j] < base:
            j += 1
        starts[p] = j if j < size else 0
    return starts


def _walk(positions: Sequence[int], owners: Sequence[int], starts: list[int], shift: int, replicas: int, nodes: int,
          node_site: Sequence[int], node_dom: Sequence[int], ndoms: int) -> tuple[list[list[int]], list[list[int]]]:
    """Step 1: the first R nodes of each walk on distinct sites (and domains while one is left).
    A domain left untaken has a node on the ring and the layout has R sites, so a lap finds them."""
    size = len(positions)
    held: list[list[int]] = [[] for _ in range(nodes)]
    rows: list[list[int]] = []
    for p, start in enumerate(starts):
        base = p << shift
        row: list[int] = []
        sites: list[int] = []
        doms: list[int] = []
        j = start
        while len(row) < replicas:
            o = owners[j]
            if node_site[o] not in sites and not (len(doms) < ndoms and node_dom[o] in doms):
                d = (positions[j] - base) % _RING
                row.append(d << 32 | o)
                sites.append(node_site[o])
                doms.append(node_dom[o])
                held[o].append(d << _PBITS | p)
            j += 1
            if j == size:
                j = 0
        rows.append(row)
    return rows, held


def _place_shed(positions: Sequence[int], owners: Sequence[int], shift: int, replicas: int, caps: list[int],
                node_site: Sequence[int], node_dom: Sequence[int], ndoms: int, rows: list[list[int]],
                kept: list[list[int]], walked: list[int], starts: list[int], pending: list[int]) -> list[int]:
    """Step 2: deferred acceptance of the shed replicas over the room below the caps.

    ``kept`` is, per node, what it kept of step 1 (a heap of -(distance << _PBITS | partition)). Only
    a replica that finds no room it may take on its walk displaces a kept one (``_displace``)."""
    size = len(positions)
    nodes = len(caps)
    spread = ndoms > 0
    shed: list[list[int]] = [[] for _ in range(nodes)]  # heap of -(distance << _PBITS | partition)
    forced = [0] * nodes  # slots taken past the cap (never evicted)
    used = [len(h) for h in kept]  # kept + shed + forced, per node
    # Nodes with room, in all, per site and per domain: these only fall, so once none is acceptable
    # to a replica it tries evicting over a short stretch of its walk only (see accept.py).
    free_total = 0
    free_site = [0] * (max(node_site, default=0) + 1)
    free_dom = [0] * (max(node_dom, default=0) + 1)
    for i in range(nodes):
        if used[i] < caps[i]:
            free_total += 1
            free_site[node_site[i]] += 1
            free_dom[node_dom[i]] += 1
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
                moved = _displace(positions, owners, shift, replicas, p, start, node_site, sites, node_dom,
                                  doms if use_dom else set(), kept, shed, rows, walked, starts)
                if moved is not None:
                    q, o, d = moved
                    pending.append(q)
                    heapq.heappush(shed[o], -(d << _PBITS | p))
                    row.append(d << 32 | o)
                    break
                o = _least_over(owners, start, used, caps, node_site, sites, node_dom, doms if use_dom else set())
                forced[o] += 1
                used[o] += 1
                if used[o] == caps[o]:
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
            h = shed[o]
            if used[o] < caps[o]:
                heapq.heappush(h, -mine)
                used[o] += 1
                if used[o] == caps[o]:
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
    return used


def _displace(positions: Sequence[int], owners: Sequence[int], shift: int, replicas: int, p: int, start: int,
              node_site: Sequence[int], sites: set[int], node_dom: Sequence[int], doms: set[int],
              kept: list[list[int]], shed: list[list[int]], rows: list[list[int]], walked: list[int],
              starts: list[int]) -> tuple[int, int, int] | None:
    """No node on the walk has room for a replica of ``p`` or a farther shed replica to give up: the
    first acceptable node within ``_EVICT_WALK`` tokens of the start that kept a farther step-1
    replica gives that one up instead (it walks on after the node, as a shed replica), so a tight
    mesh still meets its caps. Returns (the partition that gave up, the node, the distance) or None."""
    size = len(positions)
    base = p << shift
    for k in range(min(size, _EVICT_WALK)):
        j = start + k
        if j >= size:
            j -= size
        o = owners[j]
        h = kept[o]
        if node_site[o] in sites or node_dom[o] in doms or not h:
            continue
        d = (positions[j] - base) % _RING
        if d << _PBITS | p < -h[0]:
            e = -heapq.heappop(h)
            q, dq = e & _PART, e >> _PBITS
            row = rows[q]
            complete = len(row) == replicas  # else its walk is pending already: resume the earlier
            for i, x in enumerate(row):
                if x & _NODE == o:
                    del row[i]
                    break
            after = _resume(positions, owners, shift, q, dq, o, starts)
            walked[q] = after if complete else min(walked[q], after)
            return q, o, d
    return None


def _resume(positions: Sequence[int], owners: Sequence[int], shift: int, p: int, d: int, o: int,
            starts: list[int]) -> int:
    """The step of ``p``'s walk just after node ``o``'s token at distance ``d`` from its start."""
    size = len(positions)
    pos = ((p << shift) + d) % _RING
    j = bisect_left(positions, pos)
    while owners[j] != o:  # tokens at the same position are ordered by node
        j += 1
    return (j - starts[p]) % size + 1


def _least_over(owners: Sequence[int], start: int, used: list[int], caps: list[int], node_site: Sequence[int],
                sites: set[int], node_dom: Sequence[int], doms: set[int]) -> int:
    """No acceptable node has room: the first in walk order of those least over their cap."""
    def acceptable(o: int) -> bool:
        return node_site[o] not in sites and node_dom[o] not in doms
    least = min(used[o] - caps[o] for o in range(len(caps)) if acceptable(o))
    size = len(owners)
    for k in range(size):
        o = owners[(start + k) % size]
        if acceptable(o) and used[o] - caps[o] == least:
            return o
    raise AssertionError("unreachable: the minimum is attained by some ring node")
