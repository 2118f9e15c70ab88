"""Backbone and edge tiers: a policy's `backbone` copies rest on backbone sites, exactly, the rest on
edge sites, all inside the policy; refused (never placed on another tier) when the layout cannot."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement_strategies import make_layout, site_specs

from maillage.placement import (
    LayoutError,
    Policy,
    PolicyUnsatisfiable,
    changes,
    format_layout,
    parse_layout,
)
from maillage.placement.layout import BACKBONE, EDGE, PLACEMENT_ALGORITHMS
from maillage.placement.table import build_table
from maillage.testing.examples import examples

SETTINGS = settings(max_examples=examples(0.5), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _tiered(layout, backbone_sites):
    return dataclasses.replace(layout, sites=tuple(
        dataclasses.replace(s, tier=BACKBONE) if s.name in backbone_sites else s for s in layout.sites))


@st.composite
def tiered_layouts(draw):
    specs = draw(site_specs(3, 10))
    locs = sorted({s[1][:2] for s in specs})
    replicas = draw(st.integers(2, 3))
    policy = Policy("p", (draw(st.sampled_from(locs)),), replicas, draw(st.one_of(st.none(), st.integers(1, 3))),
                    backbone=draw(st.integers(0, replicas)))
    layout = make_layout(specs, [policy], bits=draw(st.integers(4, 8)),
                         placement=draw(st.sampled_from(PLACEMENT_ALGORITHMS)))
    names = [s.name for s in layout.sites]
    return _tiered(layout, set(draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))))


@SETTINGS
@given(tiered_layouts())
def test_every_partition_has_exactly_its_backbone_copies_on_distinct_sites_inside_the_policy(layout):
    policy = layout.policy("p")
    eligible = {n.id for n in layout.eligible_nodes("p")}
    by_tier = {t: {n.site for n in layout.eligible_nodes("p") if layout.site(n.site).tier == t}
               for t in (EDGE, BACKBONE)}
    wanted = {BACKBONE: policy.backbone, EDGE: policy.replicas - policy.backbone} if policy.backbone else {}
    if any(len(by_tier[t]) < k for t, k in wanted.items()) or len(by_tier[EDGE] | by_tier[BACKBONE]) < policy.replicas:
        with pytest.raises(PolicyUnsatisfiable, match="replicas on distinct sites|copies on distinct"):
            build_table(layout, "p")
        return
    table = build_table(layout, "p")
    for p in range(len(table)):
        owners = table.replicas(p)
        assert len(owners) == policy.replicas and set(owners) <= eligible
        assert len({layout.node(n).site for n in owners}) == policy.replicas
        if policy.backbone:
            tiers = [layout.tier_of(n) for n in owners]
            assert tiers.count(BACKBONE) == policy.backbone
            assert tiers == sorted(tiers, key=lambda t: t == BACKBONE)   # edge copies first: the coordinator
        assert set(table.handoffs(p)) == eligible - set(owners)          # stand-ins stay inside the policy


def _france(backbone_sites=("fr-dc",)):
    specs = [("fr-dc", ("eu", "fr", "idf"), [8]), ("fr-roof1", ("eu", "fr", "idf"), [2]),
             ("fr-roof2", ("eu", "fr", "ara"), [2]), ("fr-pool", ("eu", "fr", "naq"), [2]),
             ("de-dc", ("eu", "de", "by"), [8]), ("de-roof", ("eu", "de", "be"), [2])]
    layout = make_layout(specs, [Policy("france", (("eu", "fr"),), 2, backbone=1)], bits=8)
    return _tiered(layout, set(backbone_sites) | {"de-dc"})


def test_france_only_two_copies_one_on_the_french_backbone():
    layout = _france()
    table = build_table(layout, "france")
    for p in range(len(table)):
        edge, backbone = table.replicas(p)
        assert layout.node(backbone).site == "fr-dc"               # the only French backbone site
        assert layout.location_of(edge)[:2] == ("eu", "fr") and layout.tier_of(edge) == EDGE


def test_a_backbone_policy_with_no_backbone_site_in_its_territory_is_refused_with_a_clear_reason():
    layout = _france(backbone_sites=())        # the German datacenter is backbone, no French one is
    with pytest.raises(PolicyUnsatisfiable) as err:
        build_table(layout, "france")
    text = str(err.value)
    assert "1 of its 2 copies on distinct backbone sites inside eu/fr" in text and "none" in text
    assert changes.unsatisfiable_buckets(layout, [("scans", "france")])[0].reason.endswith(
        "refused rather than placed on another tier")


def test_tiers_in_the_layout_text_and_a_layout_without_them_keeps_its_text():
    plain = make_layout([("a", ("eu", "fr"), [1]), ("b", ("eu", "fr"), [1])], [Policy("p", (("eu",),))])
    assert "tier" not in format_layout(plain) and "backbone" not in format_layout(plain)
    layout = _france()
    text = format_layout(layout)
    assert '\ntier = "backbone"\n' in text and "\nbackbone = 1\n" in text
    assert parse_layout(text) == layout
    with pytest.raises(LayoutError, match=r"sites\[0\]\.tier: 'core' must be one of edge, backbone"):
        parse_layout(text.replace('tier = "backbone"', 'tier = "core"', 1))
    with pytest.raises(LayoutError, match=r"policies\[0\]\.backbone: must be an integer in 0..2"):
        parse_layout(text.replace("backbone = 1", "backbone = 3"))


def test_a_cold_policy_in_the_layout_text_and_edits():
    layout = _france()
    assert 'cold = ' not in format_layout(layout)
    cold = changes.policy_set(layout, "france-cold", ["eu/fr"], replicas=2)
    linked = changes.policy_set(cold, "france", ["eu/fr"], replicas=2, backbone=1, cold="france-cold")
    text = format_layout(linked)
    assert '\ncold = "france-cold"\n' in text and parse_layout(text) == linked
    assert any("cold objects to france-cold" in line for line in changes.layout_diff(cold, linked))
    assert linked.chunk_policy("france", "france-cold") == "france-cold"
    assert linked.chunk_policy("france", "") == "france"
    with pytest.raises(LayoutError, match="allows locations"):   # a manifest may not send reads wider
        changes.policy_set(linked, "eu", ["eu"], replicas=2).chunk_policy("france", "eu")
    with pytest.raises(LayoutError, match="kept once set"):   # the moved objects are found through it
        changes.policy_set(linked, "france", ["eu/fr"], replicas=2, backbone=1, cold="")
    with pytest.raises(LayoutError, match=r"policies\[0\]\.cold: 'nowhere' is not another policy"):
        parse_layout(text.replace('cold = "france-cold"', 'cold = "nowhere"'))


def test_layout_edits_set_a_sites_tier_and_a_policys_backbone_copies():
    layout = _france(backbone_sites=())
    layout = changes.set_site_tier(layout, "fr-pool", BACKBONE)
    assert layout.site("fr-pool").tier == BACKBONE
    table = build_table(layout, "france")
    assert {layout.node(table.replicas(p)[1]).site for p in range(len(table))} == {"fr-pool"}
    assert any("tier edge -> backbone" in line or "backbone" in line
               for line in changes.layout_diff(_france(backbone_sites=()), layout))
    looser = changes.policy_set(layout, "france", ["eu/fr"], replicas=2, backbone=0)
    assert looser.policy("france").backbone == 0
    with pytest.raises(LayoutError, match="tier"):
        changes.set_site_tier(layout, "fr-pool", "core")


def test_adding_a_backbone_requirement_moves_only_what_it_must():
    before = _france(backbone_sites=("fr-dc",))
    before = dataclasses.replace(before, policies=(Policy("france", (("eu", "fr"),), 2),))
    after = changes.policy_set(before, "france", ["eu/fr"], replicas=2, backbone=1)
    moved = changes.movement(before, after).policy("france")
    assert moved.status == "moved" and 0 < moved.fraction <= 0.5   # the backbone copy only
    table = build_table(after, "france")
    assert all(after.node(table.replicas(p)[1]).site == "fr-dc" for p in range(len(table)))
