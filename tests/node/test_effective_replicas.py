"""Owners while nodes are marked out: the rule repair and hinted writes share."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "placement"))
from placement_strategies import make_layout, site_specs  # noqa: E402

from maillage.node.replicas.quorum import effective_replicas
from maillage.placement import Policy, PolicyUnsatisfiable, partition_table  # noqa: E402
from maillage.testing.examples import examples


@settings(max_examples=examples(0.4), deadline=None)
@given(site_specs(min_sites=3, max_sites=10), st.integers(2, 3), st.data())
def test_out_nodes_are_replaced_inside_the_policy_on_distinct_sites(specs, replicas, data):
    layout = make_layout(specs, [Policy("p", (("eu",),), replicas)], bits=6)
    try:
        table = partition_table(layout, "p")
    except PolicyUnsatisfiable:
        assume(False)
    node_ids = [n.id for n in layout.nodes]
    out = set(data.draw(st.lists(st.sampled_from(node_ids), max_size=len(node_ids) // 2, unique=True)))
    site_of = {n.id: n.site for n in layout.nodes}
    eligible = {n.id for n in layout.eligible_nodes("p")}
    for p in range(len(table)):
        owners = effective_replicas(table, p, out.__contains__, site_of.__getitem__)
        kept = [n for n in table.replicas(p) if n not in out]
        assert list(owners[:len(kept)]) == kept  # owners that are not out never move
        assert not set(owners) & out and set(owners) <= eligible
        assert len({site_of[n] for n in owners}) == len(owners)  # distinct sites
        live_sites = {site_of[n] for n in eligible - out}
        assert len(owners) == min(replicas, len(live_sites))
        if not out:
            assert owners == table.replicas(p)
