"""Partition tables: residency, distinct sites, determinism, handoff, movement, balance, spread."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from placement_strategies import COUNTRIES, REGIONS, layouts, make_layout, site_specs

from maillage.placement import (
    Layout,
    NodeState,
    PlacementError,
    Policy,
    PolicyUnsatisfiable,
    moved_partitions,
    partition_table,
)
from maillage.placement.table import LOAD_EPSILON, build_table
from maillage.testing.examples import examples

SETTINGS = settings(max_examples=examples(0.4), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sites_of(layout, policy):
    return {n.site for n in layout.eligible_nodes(policy.name)}


def _satisfiable(layout, policy):
    return len(_sites_of(layout, policy)) >= policy.replicas


@SETTINGS
@given(layouts(states=True))
def test_replicas_distinct_sites_inside_allow(layout):
    for policy in layout.policies:
        if not _satisfiable(layout, policy):
            with pytest.raises(PolicyUnsatisfiable):
                partition_table(layout, policy.name)
            continue
        table = partition_table(layout, policy.name)
        assert len(table) == 2**layout.partition_bits
        assert table.bits == layout.partition_bits and table.layout_version == layout.version
        for p in range(len(table)):
            reps = table.replicas(p)
            assert len(reps) == policy.replicas
            sites = [layout.node(r).site for r in reps]
            assert len(set(sites)) == policy.replicas
            for r in reps:
                node = layout.node(r)
                assert node.state is NodeState.ACTIVE
                assert policy.allows(layout.location_of(r))


@SETTINGS
@given(layouts(states=True), st.integers(0, 2**32))
def test_deterministic_and_order_independent(layout, seed):
    rng = random.Random(seed)
    nodes, sites = list(layout.nodes), list(layout.sites)
    rng.shuffle(nodes), rng.shuffle(sites)
    shuffled = Layout(layout.version, layout.partition_bits, tuple(sites), tuple(nodes), layout.policies[::-1],
                      placement=layout.placement)
    for policy in layout.policies:
        if not _satisfiable(layout, policy):
            continue
        a = build_table(layout, policy.name)
        b = build_table(layout, policy.name)
        c = build_table(shuffled, policy.name)
        assert a == b == c
        assert [a.replicas(p) for p in range(len(a))] == [c.replicas(p) for p in range(len(c))]


@SETTINGS
@given(layouts(states=True))
def test_handoffs_stay_in_policy_and_exclude_replicas(layout):
    for policy in layout.policies:
        if not _satisfiable(layout, policy):
            continue
        table = partition_table(layout, policy.name)
        eligible = {n.id for n in layout.eligible_nodes(policy.name)}
        for p in range(0, len(table), max(1, len(table) // 16)):
            reps = table.replicas(p)
            hand = table.handoffs(p)
            assert len(hand) == len(set(hand))
            assert set(hand) == eligible - set(reps)
            assert table.handoffs(p) == hand  # deterministic
            rep_sites = {layout.node(r).site for r in reps}
            seen_same_site = False
            for h in hand:  # nodes on other sites come first
                same = layout.node(h).site in rep_sites
                assert not (seen_same_site and not same)
                seen_same_site |= same


@SETTINGS
@given(layouts())
def test_partitions_of_matches_replicas(layout):
    policy = layout.policies[0]
    assume(_satisfiable(layout, policy))
    table = partition_table(layout, policy.name)
    for node in layout.nodes:
        expected = {p for p in range(len(table)) if node.id in table.replicas(p)}
        assert table.partitions_of(node.id) == frozenset(expected)
    assert table.partitions_of("not-a-node") == frozenset()


@SETTINGS
@given(site_specs(min_sites=3, max_sites=10), site_specs(min_sites=1, max_sites=3, prefix="x"),
       st.integers(2, 3), st.one_of(st.none(), st.integers(1, 3)))
def test_changes_outside_policy_move_nothing(inside, outside, replicas, spread):
    country = inside[0][1][1]
    inside = [(n, ("eu", country) + loc[2:], caps, s) for n, loc, caps, s in inside]
    other = [c for c in COUNTRIES if c != country][0]
    outside = [(n, ("eu", other) + loc[2:], caps, s) for n, loc, caps, s in outside]
    assume(len(inside) >= replicas)
    pol = [Policy("local", (("eu", country),), replicas, spread), Policy("all", (("eu",),), 2)]
    before = make_layout(inside, pol, bits=8, version=1)
    after = make_layout(inside + outside, pol, bits=8, version=2)
    assert moved_partitions(partition_table(before, "local"), partition_table(after, "local")) == {}
    # and removing them again moves nothing either
    assert moved_partitions(partition_table(after, "local"), partition_table(before, "local")) == {}
    # draining an outside node moves nothing of the policy
    drained = make_layout(inside + [(n, loc, caps, [NodeState.DRAINING] * len(caps)) for n, loc, caps, _ in outside],
                          pol, bits=8, version=3)
    assert moved_partitions(partition_table(after, "local"), partition_table(drained, "local")) == {}


def _moved_fraction(old, new):
    moved = moved_partitions(old, new)
    for p, (a, b) in moved.items():
        assert (a, b) == (old.replicas(p), new.replicas(p)) and set(a) != set(b)
    return sum(len(set(b) - set(a)) for a, b in moved.values()) / (len(old) * old.policy.replicas)


@settings(max_examples=examples(0.15), deadline=None, derandomize=True)  # a bound on a distribution: fixed seeds
@given(st.integers(0, 2**32))
def test_adding_a_site_inside_moves_close_to_ideal(seed):
    rng = random.Random(seed)
    n = rng.randint(15, 30)
    specs = [(f"s{i}", ("eu", rng.choice(COUNTRIES), rng.choice(REGIONS)),
              [rng.randint(1, 8) for _ in range(rng.randint(1, 3))]) for i in range(n + 1)]
    pol = [Policy("all", (("eu",),), replicas=2)]
    # Algorithm 1's stated bound (table.py); algorithm 2's (2x ideal + 2 % of the slots, which a
    # tiny new site can exceed 3x of) is test_placement_algorithms.py's
    old = build_table(make_layout(specs[:n], pol, bits=10, placement=1), "all")
    new = build_table(make_layout(specs, pol, bits=10, placement=1), "all")
    ideal = sum(specs[-1][2]) / sum(sum(s[2]) for s in specs)
    frac = _moved_fraction(old, new)
    # Stated bound (bounded loads cascade a little, see table.py): <= 3x ideal at this size.
    assert ideal * 0.5 <= frac <= 3.0 * ideal, (frac, ideal)
    # the new site's nodes receive about their share
    new_ids = {f"s{n}-n{k}" for k in range(len(specs[-1][2]))}
    got = sum(len(new.partitions_of(i)) for i in new_ids) / (len(new) * 2)
    # never above its bound; below it by the random-token deficit only (the bound caps, it does not fill)
    assert 0.5 * ideal <= got <= (1 + LOAD_EPSILON) * ideal + 2 / len(new), (got, ideal)


@settings(max_examples=examples(0.25), deadline=None)
@given(site_specs(min_sites=8, max_sites=25), st.integers(2, 3))
def test_capacity_weighted_balance(specs, replicas):
    layout = make_layout(specs, [Policy("all", (("eu",),), replicas)], bits=10)
    nodes = layout.eligible_nodes("all")
    total = sum(n.capacity for n in nodes)
    site_cap = {}
    for n in nodes:
        site_cap[n.site] = site_cap.get(n.site, 0) + n.capacity
    assume(max(site_cap.values()) <= total / (replicas + 1))
    table = partition_table(layout, "all")
    slots = len(table) * replicas
    ratios = [len(table.partitions_of(n.id)) / (slots * n.capacity / total) for n in nodes]
    # Stated bound: every node within (1+e) of its share up to one-slot rounding, at 2^10.
    for n, r in zip(nodes, ratios):
        t = slots * n.capacity / total
        assert r * t <= max((1 + LOAD_EPSILON) * t, t + 1) + 1, (n, r, t)
    assert max(ratios) <= 1.15
    assert sum(r * n.capacity for r, n in zip(ratios, nodes)) / total == pytest.approx(1.0)


@SETTINGS
@given(site_specs(min_sites=3, max_sites=12), st.integers(2, 3), st.integers(1, 3))
def test_spread_honoured_when_enough_domains(specs, replicas, spread):
    layout = make_layout(specs, [Policy("p", (("eu",),), replicas, spread)], bits=6)
    domains = {layout.site(s).location[:spread] for s in _sites_of(layout, layout.policy("p"))}
    assume(len(specs) >= replicas)
    table = partition_table(layout, "p")
    for p in range(len(table)):
        doms = {layout.location_of(r)[:spread] for r in table.replicas(p)}
        assert len(doms) == min(replicas, len(domains))


def test_policy_unsatisfiable_when_too_few_sites():
    specs = [("a", ("eu", "fr", "idf"), [4, 4, 4]), ("b", ("eu", "fr", "idf"), [1]),
             ("c", ("eu", "de", "be"), [8]), ("d", ("eu", "fr", "occ"), [2], [NodeState.OUT])]
    layout = make_layout(specs, [Policy("fr3", (("eu", "fr"),), replicas=3), Policy("fr2", (("eu", "fr"),), 2)])
    with pytest.raises(PolicyUnsatisfiable) as info:
        partition_table(layout, "fr3")
    msg = str(info.value)
    assert "fr3" in msg and "3 replicas" in msg and "only 2 eligible" in msg
    assert isinstance(info.value, PlacementError)
    assert len(partition_table(layout, "fr2")) == 2**8
    empty = make_layout(specs, [Policy("us", (("us",),), 2)])
    with pytest.raises(PolicyUnsatisfiable, match="only 0 eligible"):
        partition_table(empty, "us")


def test_draining_and_out_nodes_get_nothing():
    specs = [("a", ("eu", "fr", "x"), [2, 2], [NodeState.ACTIVE, NodeState.DRAINING]),
             ("b", ("eu", "fr", "y"), [2, 2], [NodeState.OUT, NodeState.ACTIVE]),
             ("c", ("eu", "fr", "z"), [2])]
    layout = make_layout(specs, [Policy("p", (("eu",),), 2)])
    table = partition_table(layout, "p")
    assert table.partitions_of("a-n1") == frozenset() and table.partitions_of("b-n0") == frozenset()
    assert "a-n1" not in table.handoffs(0) and "b-n0" not in table.handoffs(0)


def test_table_is_cached_by_fingerprint():
    specs = [(f"s{i}", ("eu", "fr", f"r{i}"), [2]) for i in range(4)]
    a = make_layout(specs, [Policy("p", (("eu",),), 2)])
    b = Layout(a.version, a.partition_bits, a.sites[::-1], a.nodes[::-1], a.policies)
    assert partition_table(a, "p") is partition_table(b, "p")


def test_lookup_errors_and_moved_partitions_mismatch():
    specs = [(f"s{i}", ("eu", "fr", f"r{i}"), [2]) for i in range(4)]
    t8 = partition_table(make_layout(specs, [Policy("p", (("eu",),), 2)], bits=8), "p")
    t9 = partition_table(make_layout(specs, [Policy("p", (("eu",),), 2)], bits=9), "p")
    with pytest.raises(ValueError):
        t8.replicas(256)
    with pytest.raises(ValueError):
        t8.replicas(-1)
    with pytest.raises(ValueError):
        t8.handoffs(256)
    with pytest.raises(PlacementError):
        moved_partitions(t8, t9)


def test_a_node_whose_share_rounds_to_zero_does_not_hang_the_build():
    # 1 byte next to terabytes: its cap is 0 slots; the walk must not wait for it to become free
    from maillage.placement import Layout, Node, Site, parse_location
    layout = Layout(version=1, partition_bits=8,
                    sites=tuple(Site(f"s{i}", parse_location("eu/fr/x")) for i in range(3)),
                    nodes=(Node("tiny", "127.0.0.1:1", "s0", 1), Node("big", "127.0.0.1:2", "s1", 2 * 10**12),
                           Node("mid", "127.0.0.1:3", "s2", 10**12)),
                    policies=(Policy("p", (("eu",),), 2),))
    table = partition_table(layout, "p")
    for p in range(len(table)):
        assert len({layout.node(n).site for n in table.replicas(p)}) == 2
