"""Placement algorithms as a layout property: algorithm 1 unchanged, algorithm 2's bounds.

Residency, distinct sites, handoffs, determinism and order independence are checked for both
algorithms by test_placement_table.py (its `layouts()` draw either); here: what an upgrade must
not change, the layout field and its text, and algorithm 2's balance and movement bounds.
"""

from __future__ import annotations

import dataclasses
import math
import random

import blake3
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from placement_strategies import make_layout, site_specs

from maillage.placement import LayoutError, NodeState, Policy, changes, format_layout, moved_partitions, parse_layout
from maillage.placement.accept import LOAD_EPSILON, caps_for
from maillage.placement.table import build_table
from maillage.testing.examples import examples

SETTINGS = settings(max_examples=examples(0.3), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _golden_layout(placement):
    specs = [(f"s{i}", ("eu", ("fr", "de", "it", "es")[i % 4], ("north", "south", "east")[i % 3]),
              [1 + (i * 5) % 8] * (1 + i % 3)) for i in range(12)]
    pols = [Policy("eu", (("eu",),), 2, 2), Policy("fr3", (("eu", "fr"),), 2), Policy("all3", (("eu",),), 3)]
    return make_layout(specs, pols, bits=10, placement=placement)


def _digest(table):
    text = "\n".join(",".join(table.replicas(p)) for p in range(len(table)))
    return blake3.blake3(text.encode()).hexdigest()[:32]


def test_algorithm_1_assigns_exactly_as_before_algorithm_2_existed():
    # Digests of the tables built by the code of main before `placement` existed (a51b620): a mesh
    # upgraded to this software computes the same tables, so nothing moves on upgrade.
    layout = _golden_layout(1)
    assert _digest(build_table(layout, "eu")) == "7f17d3fd6ba6b2764f9bc4bb44e5e26c"
    assert _digest(build_table(layout, "fr3")) == "2e646860c5bfa0d00174d644d6b93f37"
    assert _digest(build_table(layout, "all3")) == "cd55c8364c7aefebeb8d1c41d98688ae"
    # and algorithm 2 is a different assignment of the same layout
    assert _digest(build_table(_golden_layout(2), "eu")) != "7f17d3fd6ba6b2764f9bc4bb44e5e26c"


def test_layout_text_without_placement_is_algorithm_1_and_keeps_its_text():
    v1 = _golden_layout(1)
    text = format_layout(v1)
    assert "placement" not in text  # the canonical text (and so the fingerprint) of an old layout
    parsed = parse_layout(text)
    assert parsed.placement == 1 and parsed == v1 and parsed.fingerprint() == v1.fingerprint()
    v2 = _golden_layout(2)
    text2 = format_layout(v2)
    assert "\nplacement = 2\n" in text2
    assert parse_layout(text2) == v2 and v2.fingerprint() != v1.fingerprint()
    assert _golden_layout(1) != v2  # a layout built in code gets the latest algorithm unless told
    assert make_layout([("a", ("eu",), [1]), ("b", ("eu",), [1])], []).placement == 3


@pytest.mark.parametrize("value", ["0", "4", '"2"', "true", "1.0"])
def test_a_placement_outside_the_known_algorithms_is_refused_naming_the_field(value):
    text = format_layout(_golden_layout(1)).replace("partition_bits = 10\n",
                                                    f"partition_bits = 10\nplacement = {value}\n")
    with pytest.raises(LayoutError, match=r"^placement: must be an integer in 1\.\.3"):
        parse_layout(text)


def test_switching_algorithm_is_an_explicit_edit_shown_in_the_diff_and_the_movement():
    v1 = _golden_layout(1)
    v2 = changes.set_placement(v1, 2)
    assert v2.placement == 2 and changes.set_placement(v2, 1) == v1
    assert changes.layout_diff(v1, v2) == ["~ placement algorithm 1 -> 2"]
    report = changes.movement(v1, v2)
    assert report.policy("eu").status == "moved" and report.policy("eu").slots_moved > 0
    for bad in (0, 4, True, "2"):
        with pytest.raises(LayoutError, match="^placement: must be one of"):
            changes.set_placement(v1, bad)
    # every other edit keeps the layout's algorithm
    assert changes.add_site(v1, "new", "eu/fr/x").placement == 1
    assert changes.drain(v2, "s1-n0").placement == 2


# ----- algorithm 2: balance and movement ---------------------------------------------------------

def _loads(layout, table):
    counts = {n.id: 0 for n in layout.eligible_nodes(table.policy.name)}
    for p in range(len(table)):
        for r in table.replicas(p):
            counts[r] += 1
    return counts


def _no_site_above(specs, replicas):
    total = sum(sum(s[2]) for s in specs)
    return max(sum(s[2]) for s in specs) <= total / (replicas + 1)


@SETTINGS
@given(site_specs(min_sites=6, max_sites=25), st.integers(2, 3), st.sampled_from([6, 8, 10]))
def test_algorithm_2_holds_every_node_to_its_cap(specs, replicas, bits):
    """No node above ``caps_for``: floor(1.05 t), one more only where the floors fall short of the
    slots; so max/mean <= 1.05 whenever they do not (any mesh with enough slots per node)."""
    assume(_no_site_above(specs, replicas))
    layout = make_layout(specs, [Policy("all", (("eu",),), replicas)], bits=bits, placement=2)
    table = build_table(layout, "all")
    nodes = layout.eligible_nodes("all")
    total = sum(n.capacity for n in nodes)
    slots = len(table) * replicas
    shares = [slots * n.capacity / total for n in nodes]
    caps = caps_for(shares, slots, LOAD_EPSILON)
    # With under 3 % of room below the caps a partition can find every node with room on a site it
    # already uses and overflow (found by CI's random examples: 12 sites, 2^6 partitions, the caps
    # topped up to the slots): test_placement_shed.py bounds algorithm 3 on the same condition.
    assume(sum(caps) >= 1.03 * slots)
    loads = _loads(layout, table)
    for n, t, cap in zip(nodes, shares, caps):
        assert loads[n.id] <= cap, (n.id, loads[n.id], cap, t)
    if sum(math.floor((1 + LOAD_EPSILON) * t + 1e-9) for t in shares) >= slots:
        assert max(loads[n.id] / t for n, t in zip(nodes, shares)) <= 1 + LOAD_EPSILON + 1e-9


def _moved(old, new):
    return sum(len(set(b) - set(a)) for a, b in moved_partitions(old, new).values()) / (len(old) * old.policy.replicas)


@SETTINGS
@given(st.integers(0, 2**32), st.integers(2, 3), st.sampled_from([1, 2]))
def test_adding_or_draining_one_site_moves_little_more_than_its_share(seed, replicas, algorithm):
    """Stated bound on meshes of 12-30 sites, 2^10 partitions, no site above 1/(R+1) of the
    capacity, no spread: moved <= 2 * ideal + 2 % of the slots (measured: mean ~1.25x ideal, the
    worst of 300 seeds +1.1 %). Small meshes move relatively more than large ones: one site is a
    large share and caps shift for many nodes at once (1,000 sites: benchmarks/RESULTS.md)."""
    rng = random.Random(seed)
    n = rng.randint(12, 30)
    specs = [(f"s{i}", ("eu", rng.choice(("fr", "de", "it")), rng.choice(("a", "b"))),
              [rng.randint(1, 8) for _ in range(rng.randint(1, 3))]) for i in range(n + 1)]
    assume(_no_site_above(specs, replicas) and _no_site_above(specs[:n], replicas))
    pol = [Policy("all", (("eu",),), replicas)]
    before = make_layout(specs[:n], pol, bits=10, placement=algorithm)
    old = build_table(before, "all")
    # one site added
    grown = make_layout(specs, pol, bits=10, placement=algorithm, version=2)
    new = build_table(grown, "all")
    ideal = sum(specs[-1][2]) / sum(sum(s[2]) for s in specs)
    moved = _moved(old, new)
    received = sum(len(new.partitions_of(f"s{n}-n{k}")) for k in range(len(specs[-1][2]))) / (len(new) * replicas)
    assert received <= moved <= 2 * ideal + 0.02, (moved, ideal)
    # one site drained: everything it held moves, and little else
    gone = rng.randrange(n)
    drained_specs = [s if i != gone else (s[0], s[1], s[2], [NodeState.DRAINING] * len(s[2]))
                     for i, s in enumerate(specs[:n])]
    drained = build_table(make_layout(drained_specs, pol, bits=10, placement=algorithm, version=3), "all")
    share = sum(specs[gone][2]) / sum(sum(s[2]) for s in specs[:n])
    held = sum(len(old.partitions_of(f"s{gone}-n{k}")) for k in range(len(specs[gone][2]))) / (len(old) * replicas)
    moved = _moved(old, drained)
    assert all(not drained.partitions_of(f"s{gone}-n{k}") for k in range(len(specs[gone][2])))
    assert held <= moved + 1e-12 and moved <= 2 * share + 0.02, (moved, share)


@SETTINGS
@given(site_specs(min_sites=3, max_sites=10), st.integers(2, 3), st.integers(0, 2**32))
def test_algorithm_2_does_not_depend_on_the_order_things_are_listed(specs, replicas, seed):
    layout = make_layout(specs, [Policy("p", (("eu",),), replicas, spread=1)], bits=6, placement=2)
    assume(len(specs) >= replicas)
    rng = random.Random(seed)
    nodes, sites = list(layout.nodes), list(layout.sites)
    rng.shuffle(nodes), rng.shuffle(sites)
    shuffled = dataclasses.replace(layout, nodes=tuple(nodes), sites=tuple(sites))
    a, b = build_table(layout, "p"), build_table(shuffled, "p")
    assert [a.replicas(p) for p in range(len(a))] == [b.replicas(p) for p in range(len(b))]
