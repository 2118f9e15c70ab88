"""SWIM membership on real node processes (issue 23's measured case: a paused node stayed "up" on all
5 peers for 20 s). A paused node (SIGSTOP: its sockets stay open, it just stops answering) is
suspected by every peer within a bound, marked down after the grace, and up everywhere again once
it resumes; what each node thinks is read from its own status."""

from __future__ import annotations

import os
import signal

import pytest

from maillage.testing import eventually
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

from .conftest import POLICIES
from .helpers import node_status

SITES = tuple(SiteSpec(name, location) for name, location in (
    ("paris-1", "eu/fr/idf"), ("toulouse-1", "eu/fr/occitanie"), ("lyon-1", "eu/fr/ara"),
    ("lille-1", "eu/fr/hdf"), ("munich-1", "eu/de/bayern"), ("berlin-1", "eu/de/berlin")))
FAST = ("--heartbeat-interval", "0.3", "--suspect-after", "1.5", "--down-after", "4")
VICTIM = "lyon-1"


@pytest.fixture()
def mesh(tmp_path):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path, extra_args=FAST) as m:
        yield m


def states(mesh: LocalMesh, node_id: str) -> set[str]:
    """What every other node's status says of `node_id`."""
    return {next(p.state for p in node_status(mesh, n.id).peers if p.node_id == node_id)
            for n in mesh.layout.nodes if n.id != node_id}


def test_a_paused_node_is_suspected_by_every_peer_then_down_then_up_again_when_it_resumes(mesh):
    eventually(lambda: states(mesh, VICTIM) == {"up"}, timeout=10, what="everyone up")
    pid = mesh.processes[VICTIM].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # six nodes, 0.3 s periods: each peer probes it within ~2 sweeps or is told and checks
        eventually(lambda: "up" not in states(mesh, VICTIM), timeout=15, what="suspected by all 5 peers")
        eventually(lambda: states(mesh, VICTIM) == {"down"}, timeout=15, what="down on all 5 peers")
    finally:
        os.kill(pid, signal.SIGCONT)
    eventually(lambda: states(mesh, VICTIM) == {"up"}, timeout=20, what="up again everywhere")
    assert all(states(mesh, n.id) == {"up"} for n in mesh.layout.nodes)   # no one else was harmed
