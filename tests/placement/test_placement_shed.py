"""Placement algorithm 3 (shed.py): what it keeps from the plain ring walk, its caps, its movement.

Residency, distinct sites, handoffs, spread, determinism and order independence are checked for
every algorithm by test_placement_table.py (its `layouts()` draw each); here what is particular to
algorithm 3: step 2 only ever takes from nodes above their cap, and only what is above it.
"""

from __future__ import annotations

import random
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from placement_strategies import make_layout, site_specs

from maillage.placement import NodeState, Policy, moved_partitions, shed
from maillage.placement.accept import LOAD_EPSILON, caps_for
from maillage.placement.table import build_table
from maillage.testing.examples import examples

SETTINGS = settings(max_examples=examples(0.3), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _holdings(layout, table):
    held = {n.id: set() for n in layout.eligible_nodes(table.policy.name)}
    for p in range(len(table)):
        for r in table.replicas(p):
            held[r].add(p)
    return held


def _no_site_above(specs, replicas):
    total = sum(sum(s[2]) for s in specs)
    return max(sum(s[2]) for s in specs) <= total / (replicas + 1)


@SETTINGS
# Not 2^6 partitions: there a node holds two or three slots, integer caps leave no room to speak of,
# and a shed replica may overflow a node past what the relief can move (hypothesis found both).
@given(site_specs(min_sites=10, max_sites=25), st.integers(2, 3), st.sampled_from([8, 10]))
@example(  # a CI run found it: one displacement and three overflows, two exceptions
    specs=[("s0", ("eu", "fr", "north"), [7], None), ("s1", ("eu", "fr", "north"), [3, 4], None),
           ("s2", ("eu", "fr", "north"), [5], None), ("s3", ("eu", "fr", "north"), [1], None),
           ("s4", ("eu", "fr", "north"), [2], None), ("s5", ("eu", "fr", "north"), [1], None),
           ("s6", ("eu", "fr", "north"), [1], None), ("s7", ("eu", "fr", "north"), [5, 7], None),
           ("s8", ("eu", "fr", "north"), [1, 1, 1], None), ("s9", ("eu", "fr", "north"), [5], None),
           ("s10", ("eu", "fr", "north"), [5], None), ("s11", ("eu", "fr", "north"), [4, 7], None)],
    replicas=3, bits=8)
def test_only_nodes_above_their_cap_lose_what_the_walk_gave_them(specs, replicas, bits):
    """The uncapped walk (step 1) is the table with caps out of reach; against it, a node whose walk
    fits its cap keeps all of it (and may take shed replicas), a node above keeps exactly its cap
    of it and takes nothing else. Each exception comes from one shed replica that found no room it
    may take (room only on sites the partition already uses, as hypothesis found in layouts of one
    region where one big node per site holds the room; ``shed._displace`` is called): it evicts a
    farther kept one from a node, which takes it instead, or, finding none, overflows a node whose
    excess the table's overflow relief then moves (``table._relieve_overflow``). Either way one
    node differs from its walk by one partition."""
    assume(_no_site_above(specs, replicas + 1))
    layout = make_layout(specs, [Policy("all", (("eu",),), replicas)], bits=bits, placement=3)
    nodes = layout.eligible_nodes("all")
    total = sum(n.capacity for n in nodes)
    slots = (1 << bits) * replicas
    shares = [slots * n.capacity / total for n in nodes]
    caps = caps_for(shares, slots, LOAD_EPSILON)
    assume(sum(caps) >= 1.03 * slots)  # some room: with less, algorithm 2 too can overflow a node
    walk = _holdings(layout, build_table(layout, "all", epsilon=1e9))
    no_room = []
    real_displace = shed._displace

    def counting(*args):
        no_room.append(args[4])   # the partition whose shed replica found no room
        return real_displace(*args)
    with mock.patch.object(shed, "_displace", counting):
        final = _holdings(layout, build_table(layout, "all"))
    exceptions = 0
    for n, cap in zip(nodes, caps):
        mine, got = walk[n.id], final[n.id]
        assert len(got) <= cap, (n.id, len(got), cap)
        if len(mine) <= cap:
            exceptions += len(mine - got)
        else:
            assert len(got) == cap, (n.id, len(mine), len(got), cap)
            exceptions += len(got - mine)
    assert exceptions <= len(no_room), (exceptions, len(no_room))
    assert len(no_room) <= slots // 100  # rare: 1 % of the slots at most


@SETTINGS
@given(site_specs(min_sites=6, max_sites=25), st.integers(2, 3), st.sampled_from([6, 8, 10]))
def test_caps_are_algorithm_2s(specs, replicas, bits):
    """The same bound as algorithm 2: no node above floor(1.05 t) (one more only where the floors
    fall short of the slots), so max/mean <= 1.05 whenever they do not."""
    assume(_no_site_above(specs, replicas))
    layout = make_layout(specs, [Policy("all", (("eu",),), replicas)], bits=bits, placement=3)
    table = build_table(layout, "all")
    nodes = layout.eligible_nodes("all")
    total = sum(n.capacity for n in nodes)
    slots = len(table) * replicas
    shares = [slots * n.capacity / total for n in nodes]
    caps = caps_for(shares, slots, LOAD_EPSILON)
    assume(sum(caps) >= 1.03 * slots)  # with less room, algorithm 2 too can leave a node above
    held = _holdings(layout, table)
    assert all(len(held[n.id]) <= cap for n, cap in zip(nodes, caps))
    if sum(caps) == sum(int((1 + LOAD_EPSILON) * t + 1e-9) for t in shares):  # no cap raised
        assert max(len(held[n.id]) / t for n, t in zip(nodes, shares)) <= 1 + LOAD_EPSILON + 1e-9


def _moved(old, new):
    return sum(len(set(b) - set(a)) for a, b in moved_partitions(old, new).values()) / (len(old) * old.policy.replicas)


def _mesh(seed, sites):
    rng = random.Random(seed)
    return rng, [(f"s{i}", ("eu", rng.choice(("fr", "de", "it")), rng.choice(("a", "b"))),
                  [rng.randint(1, 8) for _ in range(rng.randint(1, 3))]) for i in range(sites + 1)]


def _fixed_meshes(count, sites, bits, first_seed):
    """The first ``count`` seeds whose mesh has no site above 1/(R+1) of the capacity, before and after."""
    out, seed = [], first_seed
    while len(out) < count:
        n, replicas = sites[0] + seed % (sites[1] - sites[0] + 1), 2 + seed % 2 if bits == 10 else 2
        specs = _mesh(seed, n)[1]
        if _no_site_above(specs, replicas) and _no_site_above(specs[:n], replicas):
            out.append((seed, n, bits, replicas))
        seed += 1
    return out


# Fixed meshes (a bound on a distribution: no random seed in CI). Measured locally (R=2: 150 seeds of
# 12-30 sites at 2^10, 120 of 40-80 sites at 2^12; R=3: 100 seeds of 12-30 sites): mean 1.2-1.4x
# ideal, worst 2.5x, never more than 0.1 % of the slots above 2x ideal; algorithm 2 the same within
# noise at this size (the gain of algorithm 3 is at 1,000 sites, benchmarks/RESULTS.md).
@pytest.mark.parametrize("seed,sites,bits,replicas",
                         _fixed_meshes(8, (12, 30), 10, 0) + _fixed_meshes(4, (40, 80), 12, 100))
def test_adding_or_draining_one_site_moves_at_most_twice_its_share(seed, sites, bits, replicas):
    rng, specs = _mesh(seed, sites)
    pol = [Policy("all", (("eu",),), replicas)]
    old = build_table(make_layout(specs[:sites], pol, bits=bits, placement=3), "all")
    new = build_table(make_layout(specs, pol, bits=bits, placement=3, version=2), "all")
    ideal = sum(specs[-1][2]) / sum(sum(s[2]) for s in specs)
    moved = _moved(old, new)
    received = sum(len(new.partitions_of(f"s{sites}-n{k}")) for k in range(len(specs[-1][2]))) / (
        len(new) * replicas)
    assert 0 < received <= moved <= 2 * ideal + 0.02, (moved, ideal)
    gone = rng.randrange(sites)
    drained_specs = [s if i != gone else (s[0], s[1], s[2], [NodeState.DRAINING] * len(s[2]))
                     for i, s in enumerate(specs[:sites])]
    drained = build_table(make_layout(drained_specs, pol, bits=bits, placement=3, version=3), "all")
    share = sum(specs[gone][2]) / sum(sum(s[2]) for s in specs[:sites])
    held = sum(len(old.partitions_of(f"s{gone}-n{k}")) for k in range(len(specs[gone][2]))) / (len(old) * replicas)
    moved = _moved(old, drained)
    assert all(not drained.partitions_of(f"s{gone}-n{k}") for k in range(len(specs[gone][2])))
    assert 0 < held <= moved + 1e-12 and moved <= 2 * share + 0.02, (moved, share)


def test_a_short_spread_domain_overflows_onto_the_least_loaded_and_keeps_every_rule():
    """Austria-like: one small domain must hold a replica of every partition (spread by country), so
    most of its walk is shed and finds no room it may take: the overflow still lands on distinct
    sites inside the policy, spread kept, nothing left short."""
    specs = [(f"f{i}", ("eu", "fr", "x"), [8, 8]) for i in range(6)] + [("a0", ("eu", "at", "x"), [1]),
                                                                        ("a1", ("eu", "at", "y"), [1])]
    layout = make_layout(specs, [Policy("p", (("eu",),), 2, spread=2)], bits=8, placement=3)
    table = build_table(layout, "p")
    for p in range(len(table)):
        reps = table.replicas(p)
        assert len(reps) == 2 and len({layout.location_of(r)[:2] for r in reps}) == 2
    held = _holdings(layout, table)
    assert len(held["a0-n0"]) + len(held["a1-n0"]) == len(table)  # Austria holds every partition
    assert abs(len(held["a0-n0"]) - len(held["a1-n0"])) <= 1  # and splits the overflow evenly
