"""Cold tier moves on real node processes (issue 26): a France-only policy (one copy on the French
backbone, one on a French edge site) whose objects a lifecycle Transition moves to its cold policy
(both copies on the French backbone). The objects are written, then every node is restarted with
its clock two days ahead (libfaketime: the Transition's day has come, every node alike); the
bucket's leader moves them, GC drops the edge copies, `maillage cp` (the SDK, from the cold copies)
reads each back whole, `maillage audit` finds every copy in place, and each node's own store, read
once the nodes are stopped, shows every chunk on both French backbone sites under the cold policy,
no edge copy left, and nothing in Germany."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from maillage.client import Client, LifecycleRule
from maillage.placement import BACKBONE, Policy
from maillage.storage import ChunkStore, MetaStore
from maillage.testing import eventually
from maillage.testing.clock import faketime_available, with_skew
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

from .conftest import CHUNK

SITES = (
    SiteSpec("paris-dc", "eu/fr/idf", tier=BACKBONE),
    SiteSpec("marseille-dc", "eu/fr/paca", tier=BACKBONE),
    SiteSpec("lyon-1", "eu/fr/ara"),
    SiteSpec("toulouse-1", "eu/fr/occitanie"),
    SiteSpec("munich-dc", "eu/de/bayern", tier=BACKBONE),
)
POLICIES = (
    Policy("france-hot", (("eu", "fr"),), replicas=2, backbone=1, cold="france-cold"),
    Policy("france-cold", (("eu", "fr"),), replicas=2, backbone=2),
)
FRENCH_BACKBONE = {"paris-dc", "marseille-dc"}
FRENCH_EDGE = {"lyon-1", "toulouse-1"}
SKEW = 2 * 86_400.0   # the rule's 1 day has passed; every node alike, so no node runs ahead of another


def holdings(mesh: LocalMesh) -> dict[str, set[tuple[str, bytes]]]:
    """(policy, digest) of every chunk each node holds, read from its own store (nodes stopped)."""
    out = {}
    for spec in SITES:
        with MetaStore(mesh.data_dir(spec.name) / "meta") as store:
            out[spec.name] = {(policy, digest) for policy, digest, _ in store.iter_holdings()}
    return out


def maillage(mesh: LocalMesh, *argv: str) -> subprocess.CompletedProcess:
    """The command, with the nodes' clock (its requests are signed with the time)."""
    return subprocess.run(with_skew([sys.executable, "-m", "maillage.cli", *argv, "--endpoint", mesh.addresses[0]],
                                    SKEW),
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAILLAGE_CONFIG_FILE": str(mesh.config_file),
                               "MAILLAGE_CLUSTER_DIR": str(mesh.cluster_dir)})


def statuses(mesh: LocalMesh) -> dict[str, dict]:
    done = maillage(mesh, "status", "--json", "--profile", "admin")
    assert done.returncode == 0, done.stdout + done.stderr
    return {n["node"]: n for n in json.loads(done.stdout)["nodes"] if n["reachable"]}


def transitioned(mesh: LocalMesh) -> int:
    return sum(n["lifecycle"]["transitioned"] for n in statuses(mesh).values())


def edge_chunk_files(mesh: LocalMesh) -> int | None:
    """Chunk files on the French edge sites (None while one does not answer). Repair may copy a
    garbage chunk back from an owner whose GC has not run yet: the count reaches 0 once every GC has."""
    nodes = statuses(mesh)
    return None if not FRENCH_EDGE <= set(nodes) else sum(nodes[n]["chunks"] for n in FRENCH_EDGE)


def test_a_transition_moves_a_france_only_object_to_the_french_backbone_and_nothing_leaves_france(tmp_path):
    available, why = faketime_available()
    assert available, why   # CI installs Debian's faketime
    objects = {f"scan-{i}.dcm": os.urandom(2 * CHUNK + 100) for i in range(3)}
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path / "mesh",
                   extra_args=("--chunk-size", str(CHUNK), "--lifecycle-interval", "1", "--gc-interval", "1",
                               "--gc-grace", "5")) as mesh:
        with Client(profile=mesh.profile) as client:
            client.create_bucket("scans", policy="france-hot")
            for key, data in objects.items():
                client.put_object("scans", key, data)
            client.put_bucket_lifecycle("scans", [LifecycleRule(id="cold", transition_days=1,
                                                                transition_class="STANDARD_IA")])
        for spec in SITES:
            mesh.stop_node(spec.name)
        hot = holdings(mesh)
        assert any(hot[n] for n in FRENCH_EDGE) and all(p == "france-hot" for held in hot.values() for p, _ in held)
        assert not hot["munich-dc"]

        mesh.clock_skew = SKEW
        mesh.start()
        eventually(lambda: transitioned(mesh) >= len(objects), timeout=60, what="the transitions")
        eventually(lambda: edge_chunk_files(mesh) == 0, timeout=90, what="GC dropping the edge copies")
        for key, data in objects.items():
            out = tmp_path / key
            done = maillage(mesh, "cp", f"mesh://scans/{key}", str(out), "--quiet")
            assert done.returncode == 0, done.stdout + done.stderr
            assert Path(out).read_bytes() == data
        audit = maillage(mesh, "audit", "--json", "--require-full", "--profile", "admin")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        report = json.loads(audit.stdout)   # every moved chunk judged by the cold rule too: both on the backbone
        assert report["violations"] == [] and report["under_replicated"] == report["off_tier"] == 0
        for spec in SITES:
            mesh.stop_node(spec.name)

    cold = holdings(mesh)
    digests = {d for _, d in hot["paris-dc"] | hot["marseille-dc"] | hot["lyon-1"] | hot["toulouse-1"]}
    for digest in digests:   # every chunk on both French backbone sites, under the cold policy
        assert {n for n, held in cold.items() if ("france-cold", digest) in held} == FRENCH_BACKBONE
    for node_id in FRENCH_EDGE:   # no holding and no file of any of them left on the edge
        assert not cold[node_id], node_id
        store = ChunkStore(mesh.data_dir(node_id) / "chunks")
        assert not [d for d in digests if store.has(d)], node_id
    assert not cold["munich-dc"]
    assert not list(ChunkStore(mesh.data_dir("munich-dc") / "chunks").iter_digests())
