"""Partition tables: the replica walk with distinct sites, spread preference and bounded loads.

Three placement algorithms share everything here but the assignment, chosen by ``Layout.placement``:
1 is the in-order walk described below (kept so that layouts made with it never reshuffle), 2 is
deferred acceptance on the same ring (``accept.py``: moves less on a change, balance within 5 %),
3 the uncapped walk with what is above each cap shed (``shed.py``: same caps, moves less again).

Why algorithm 1 is built this way. Partition ``p`` starts at ``p * 2^(64-P)`` on the policy ring; its
replicas are found by walking clockwise. Two rules are never relaxed: every node is inside
the policy (the ring holds nothing else) and the R replicas sit on R distinct sites. Two are
preferences, relaxed in this order only when they cannot be met:

1. a distinct ``spread`` domain (the first ``spread`` labels of the site location) per replica,
2. the load bound: a node already holding ``cap = max(ceil(t), floor((1+e) t))`` replicas,
   where ``t`` is its capacity share of the ``R * 2^P`` replica slots, is skipped. Late in
   the fill the only nodes below their cap may all sit on sites already taken; the slot
   then goes to the acceptable node least loaded relative to its cap (not the next on the
   ring, which piles all the overflow onto one node).

Random tokens alone leave ~1/sqrt(k) imbalance for k slots per node (about 15-20 % at 1,000
sites and 2^16 partitions, whatever the token count), so the bound (consistent hashing with
bounded loads) is what makes the capacity-weighted load flat. Partitions are filled in
index order, which makes the table a pure function of (layout, policy): no seed, no previous
table, no dependence on the order nodes are listed in. The price of the bound is extra
movement on a layout change (a freed or taken slot cascades along nodes at their cap); the
placement benchmark measures both sides. Whether a preference is achievable is decided from
running counters before the walk, so the walk always stops at the first acceptable token.

Lookups are tuple indexing; handoff lists (the rest of the eligible nodes in walk order,
other sites first) are computed on demand and memoised.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Sequence

from maillage.placement import accept, shed
from maillage.placement.errors import PlacementError, PolicyUnsatisfiable
from maillage.placement.layout import Layout, Policy
from maillage.placement.ring import PolicyRing, node_ring, policy_ring
from maillage.placement.tiers import tier_groups, unmet

__all__ = ["PartitionTable", "partition_table", "build_table", "moved_partitions", "LOAD_EPSILON"]

LOAD_EPSILON = 0.08


class PartitionTable:
    """Immutable partition -> ordered replica node ids for one (layout, policy)."""

    __slots__ = ("bits", "policy", "layout_version", "_replicas", "_ring", "_sites", "_handoffs", "_by_node", "_lock")

    def __init__(self, bits: int, policy: Policy, layout_version: int, replicas: tuple[tuple[str, ...], ...],
                 ring: PolicyRing, sites: tuple[str, ...]) -> None:
        self.bits = bits
        self.policy = policy
        self.layout_version = layout_version
        self._replicas = replicas
        self._ring = ring
        self._sites = sites  # site name per ring node index
        self._handoffs: dict[int, tuple[str, ...]] = {}
        self._by_node: dict[str, frozenset[int]] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PartitionTable(policy={self.policy.name!r}, bits={self.bits}, layout_version={self.layout_version})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartitionTable):
            return NotImplemented
        return (self.bits, self.policy, self.layout_version, self._replicas) == (
            other.bits, other.policy, other.layout_version, other._replicas)

    def __hash__(self) -> int:
        return hash((self.bits, self.policy, self.layout_version))

    def __len__(self) -> int:
        return len(self._replicas)

    def _check(self, partition: int) -> None:
        if not 0 <= partition < len(self._replicas):
            raise ValueError(f"partition: must be in 0..{len(self._replicas) - 1}, got {partition!r}")

    def replicas(self, partition: int) -> tuple[str, ...]:
        """R node ids on R distinct sites; the first is the preferred coordinator."""
        if partition < 0:
            raise ValueError(f"partition: must be in 0..{len(self._replicas) - 1}, got {partition!r}")
        try:
            return self._replicas[partition]
        except IndexError:
            raise ValueError(f"partition: must be in 0..{len(self._replicas) - 1}, got {partition!r}") from None

    def handoffs(self, partition: int) -> tuple[str, ...]:
        """Every other eligible node in walk order from the partition start: nodes on
        sites not holding a replica first, then the rest. Never outside the policy."""
        self._check(partition)
        cached = self._handoffs.get(partition)
        if cached is not None:
            return cached
        ring, replicas = self._ring, self._replicas[partition]
        taken_nodes = set(replicas)
        by_id = {n.id: i for i, n in enumerate(ring.nodes)}
        taken_sites = {self._sites[by_id[r]] for r in replicas}
        seen: set[int] = set()
        order: list[int] = []
        positions, owners, size = ring.positions, ring.owners, len(ring.positions)
        start = bisect_left(positions, partition << (64 - self.bits))
        for k in range(size):
            owner = owners[(start + k) % size]
            if owner not in seen:
                seen.add(owner)
                order.append(owner)
                if len(seen) == len(ring.nodes):
                    break
        ids = [ring.nodes[i].id for i in order]
        first = [i for o, i in zip(order, ids) if i not in taken_nodes and self._sites[o] not in taken_sites]
        rest = [i for o, i in zip(order, ids) if i not in taken_nodes and self._sites[o] in taken_sites]
        result = tuple(first + rest)
        with self._lock:
            self._handoffs[partition] = result
        return result

    def partitions_of(self, node_id: str) -> frozenset[int]:
        """Partitions where ``node_id`` is a replica (empty if it holds none)."""
        by_node = self._by_node
        if by_node is None:
            acc: dict[str, list[int]] = {}
            for p, reps in enumerate(self._replicas):
                for r in reps:
                    acc.setdefault(r, []).append(p)
            by_node = {k: frozenset(v) for k, v in acc.items()}
            self._by_node = by_node
        return by_node.get(node_id, frozenset())


def build_table(layout: Layout, policy_name: str, epsilon: float | None = None) -> PartitionTable:
    """Build (uncached) the table of one policy with the layout's placement algorithm (1: the walk
    below, 2: ``accept.py``, 3: ``shed.py``); ``epsilon`` overrides the algorithm's load bound. A
    policy with backbone copies is one table per tier joined row by row (``tiers.py``). See the
    module docstring."""
    policy = layout.policy(policy_name)
    ring = policy_ring(layout, policy_name)
    why = unmet(layout, policy)
    if why:
        raise PolicyUnsatisfiable(why)
    parts = [_assign(layout, policy, ring if g.tier is None else node_ring(g.nodes), g.replicas, epsilon)
             for g in tier_groups(layout, policy, ring.nodes)]
    table = parts[0] if len(parts) == 1 else [sum(rows, ()) for rows in zip(*parts)]
    return PartitionTable(layout.partition_bits, policy, layout.version, tuple(table), ring,
                          tuple(n.site for n in ring.nodes))


def _assign(layout: Layout, policy: Policy, ring: PolicyRing, R: int, epsilon: float | None) -> list[tuple[str, ...]]:
    """R replicas per partition among the nodes of ``ring``, on R distinct sites (enough of them:
    checked by ``unmet``), by the layout's algorithm."""
    nodes = ring.nodes
    site_names = sorted({n.site for n in nodes})
    site_index = {s: i for i, s in enumerate(site_names)}
    node_site = [site_index[n.site] for n in nodes]
    spread = policy.spread is not None
    if spread:
        def domain(site: str) -> tuple[str, ...]:
            d = policy.domain(layout.site(site).location)
            assert d is not None  # the policy has a spread
            return d
        doms = sorted({domain(s) for s in site_names})
        dom_index = {d: i for i, d in enumerate(doms)}
        node_dom = [dom_index[domain(n.site)] for n in nodes]
        ndoms = len(doms)
    else:
        node_dom = [0] * len(nodes)
        ndoms = 0

    bits = layout.partition_bits
    total_cap = sum(n.capacity for n in nodes)
    slots = R << bits
    shares = [slots * n.capacity / total_cap for n in nodes]
    if layout.placement == 1:
        eps = LOAD_EPSILON if epsilon is None else epsilon
        caps = [max(math.ceil(t - 1e-9), math.floor((1 + eps) * t + 1e-9)) for t in shares]
        rows, load = _bounded_walk(ring, bits, R, caps, node_site, node_dom, ndoms, spread, len(site_names))
    else:
        eps = accept.LOAD_EPSILON if epsilon is None else epsilon
        caps = accept.caps_for(shares, slots, eps)
        assign = accept.assign if layout.placement == 2 else shed.assign
        rows, load = assign(ring.positions, ring.owners, bits, R, caps, node_site, node_dom, ndoms)
    _relieve_overflow(rows, load, caps, node_site, node_dom)
    ids = [n.id for n in nodes]
    return [tuple(ids[o] for o in row) for row in rows]


def _bounded_walk(ring: PolicyRing, bits: int, R: int, caps: list[int], node_site: list[int],
                  node_dom: list[int], ndoms: int, spread: bool, nsites: int) -> tuple[list[list[int]], list[int]]:
    """Placement algorithm 1: partitions in index order, each replica the first node of the walk
    below its cap (see the module docstring)."""
    nparts = 1 << bits
    load = [0] * len(caps)
    free_total = 0  # nodes below their cap (a node whose share rounds to 0 never is)
    free_site = [0] * nsites
    free_dom = [0] * max(ndoms, 1)
    for i in range(len(caps)):
        if caps[i] > 0:
            free_total += 1
            free_site[node_site[i]] += 1
            free_dom[node_dom[i]] += 1

    positions, owners = ring.positions, ring.owners
    size = len(positions)
    shift = 64 - bits
    rows: list[list[int]] = []
    for p in range(nparts):
        start = bisect_left(positions, p << shift)
        if start == size:
            start = 0
        chosen: list[int] = []
        sites_taken: list[int] = []
        doms_taken: list[int] = []
        for _ in range(R):
            use_dom = spread and len(doms_taken) < ndoms
            if use_dom:
                bounded = free_total - sum(free_dom[d] for d in doms_taken) > 0
            else:
                bounded = free_total - sum(free_site[s] for s in sites_taken) > 0
            if bounded:
                j = start
                while True:
                    o = owners[j]
                    if (node_site[o] not in sites_taken
                            and (not use_dom or node_dom[o] not in doms_taken)
                            and load[o] < caps[o]):
                        break
                    j += 1
                    if j == size:
                        j = 0
            else:
                o = _least_overloaded(owners, start, load, caps, node_site, node_dom, sites_taken,
                                      doms_taken if use_dom else ())
            chosen.append(o)
            sites_taken.append(node_site[o])
            doms_taken.append(node_dom[o])
            load[o] += 1
            if load[o] == caps[o]:
                free_total -= 1
                free_site[node_site[o]] -= 1
                free_dom[node_dom[o]] -= 1
        rows.append(chosen)
    return rows, load


def _least_overloaded(owners: Sequence[int], start: int, load: list[int], caps: list[int],
                      node_site: list[int], node_dom: list[int], sites_taken: list[int],
                      doms_taken: Sequence[int]) -> int:
    """Every acceptable node is at its cap: overflow onto the first node in walk order among
    those least over their cap, so overflow spreads one slot at a time instead of piling onto
    whichever node follows a busy stretch of the ring, and stays local to the partition."""
    def acceptable(o: int) -> bool:
        return node_site[o] not in sites_taken and node_dom[o] not in doms_taken
    least = min(load[o] - caps[o] for o in range(len(load)) if acceptable(o))
    size = len(owners)
    for k in range(size):
        o = owners[(start + k) % size]
        if load[o] - caps[o] == least and acceptable(o):
            return o
    raise AssertionError("unreachable: the minimum is attained by some ring node")


def _relieve_overflow(rows: list[list[int]], load: list[int], caps: list[int],
                      node_site: list[int], node_dom: list[int]) -> None:
    """Move replicas off nodes left above their cap onto nodes still below it.

    The in-order fill can end with the only free slots on large sites that every remaining
    partition already uses; the overflow then lands on small nodes. One pass over the
    over-cap nodes' partitions hands each surplus slot to an under-cap node whose site (and
    spread domain) the partition does not use yet, so no rule and no preference is lost."""
    over = [o for o in range(len(load)) if load[o] > caps[o]]
    if not over:
        return
    under = [o for o in range(len(load)) if load[o] < caps[o]]
    for o in over:
        for row in rows:
            if load[o] <= caps[o] or not under:
                break
            if o not in row:
                continue
            others = [r for r in row if r != o]
            sites = {node_site[r] for r in others}
            doms = {node_dom[r] for r in others}
            keeps_spread = node_dom[o] not in doms
            for u in under:
                if node_site[u] in sites or (keeps_spread and node_dom[u] in doms):
                    continue
                row[row.index(o)] = u
                load[o] -= 1
                load[u] += 1
                if load[u] == caps[u]:
                    under.remove(u)
                break


_CACHE: OrderedDict[tuple[bytes, str], PartitionTable] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()


def partition_table(layout: Layout, policy_name: str) -> PartitionTable:
    """The table of ``policy_name`` under ``layout``, cached by (fingerprint, policy)."""
    key = (layout.fingerprint(), policy_name)
    with _CACHE_LOCK:
        table = _CACHE.get(key)
        if table is not None:
            _CACHE.move_to_end(key)
            return table
    table = build_table(layout, policy_name)
    with _CACHE_LOCK:
        _CACHE[key] = table
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return table


def moved_partitions(old: PartitionTable, new: PartitionTable) -> dict[int, tuple[tuple[str, ...], tuple[str, ...]]]:
    """partition -> (old replicas, new replicas) for every partition whose replica SET changed."""
    if old.bits != new.bits:
        raise PlacementError(f"cannot compare tables with partition_bits {old.bits} and {new.bits}")
    out = {}
    for p, (a, b) in enumerate(zip(old._replicas, new._replicas)):
        if a != b and set(a) != set(b):
            out[p] = (a, b)
    return out
