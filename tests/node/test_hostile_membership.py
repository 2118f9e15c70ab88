"""Membership against made-up node ids (issue 14, case 7): heartbeats and piggybacked suspicions
count only for nodes of the current layout, and the failure detector's table never outgrows the layout.

(Mechanics adapted for SWIM: heartbeats carry suspicions, not views of every node.)"""

from __future__ import annotations

import tracemalloc

from maillage.node.replicas.transport import Heartbeat, Suspicion
from maillage.placement import format_layout

from .conftest import SITES, make_layout, run


def test_heartbeats_of_made_up_node_ids_leave_no_trace(mesh) -> None:
    async def go() -> None:
        paris = mesh.nodes["paris-1"]
        await mesh.gossip(2)
        layout_nodes = len(mesh.layout.nodes)
        assert paris.detector.tracked() <= layout_nodes
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            for i in range(50_000):
                suspects = tuple(Suspicion(f"ghost-{i}-{j}", 0) for j in range(4))
                paris.gossip.on_heartbeat(Heartbeat(f"made-up-{i}", 1, suspects=suspects))
            grown, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert paris.detector.tracked() <= layout_nodes
        assert grown - base < 1 << 20  # was ~180 MiB per million heartbeats, never released
        assert "made-up-1" not in {s.node_id for s in paris.gossip.heartbeat().suspects}
        assert paris.gossip.pending_checks() == []

    run(go())


def test_a_layout_node_views_of_unknown_ids_are_dropped_known_ones_taken(mesh) -> None:
    # A suspicion is a reason to probe, not a verdict (mechanics adapted for SWIM): the known id
    # is queued for this node's own probe, the unknown one dropped.
    async def go() -> None:
        paris = mesh.nodes["paris-1"]
        paris.gossip.on_heartbeat(Heartbeat("toulouse-1", 1, suspects=(Suspicion("lyon-1", 0),
                                                                       Suspicion("nobody", 0))))
        assert paris.detector.is_up("toulouse-1") and paris.detector.is_up("lyon-1")
        assert paris.gossip.pending_checks() == ["lyon-1"]
        assert paris.detector.tracked() == 1
        await paris.gossip.round()
        assert paris.detector.is_up("lyon-1") and paris.detector.tracked() >= 2

    run(go())


def test_nodes_that_left_the_layout_are_forgotten(mesh) -> None:
    async def go() -> None:
        await mesh.gossip(2)
        paris = mesh.nodes["paris-1"]
        assert paris.detector.tracked() == len(SITES) - 1
        smaller = make_layout(SITES[:-1], version=2)  # munich-1 leaves
        text = format_layout(smaller)
        assert paris.layout.offer(smaller, mesh.signer.sign(2, text, kind="layout"), text)
        await mesh.gossip(1)
        assert "munich-1" not in {v.node_id for v in paris.detector.views(["paris-1"])}
        assert paris.detector.tracked() <= len(SITES) - 2

    run(go())
