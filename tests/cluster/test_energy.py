"""Energy-aware background work on real node processes: a site whose building system says "shed"
runs no scrub and no GC, yet a partition it is short of is repaired at once; "normal" lets the
deferred work go on; "shed" again stops it within seconds (issue 26)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from maillage.client import Client
from maillage.placement import chunk_partition, partition_table
from maillage.placement.changes import set_site_energy
from maillage.testing import eventually
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

from .conftest import POLICIES
from .helpers import inventory, node_status

SITES = (SiteSpec("paris-1", "eu/fr/idf"), SiteSpec("toulouse-1", "eu/fr/occitanie"), SiteSpec("lyon-1", "eu/fr/ara"))
CHUNK = 64 * 1024
# Scrub at 100 KB/s, so a pass over the test's data lasts long enough to be stopped in its middle.
FAST = ("--chunk-size", str(CHUNK), "--heartbeat-interval", "0.3", "--suspect-after", "1.5",
        "--repair-interval", "0.5", "--scrub-rate", "0.1", "--scrub-interval", "1", "--gc-interval", "1")
SITE = "paris-1"


def say(path: Path, order: str, surplus_w: float = 800.0) -> None:
    """What the building's energy manager writes (atomically, as it should)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"time": time.time(), "surplus_w": surplus_w, "order": order}))
    os.replace(tmp, path)


def energy(mesh: LocalMesh) -> dict:
    e = node_status(mesh, SITE).energy
    return {"state": e.state, "source": e.source, **{k.kind: k for k in e.kinds}}


def test_shed_stops_scrub_and_gc_but_not_urgent_repair_and_normal_resumes(tmp_path: Path) -> None:
    signal = tmp_path / "energy.json"
    say(signal, "shed")
    layout = set_site_energy(make_layout(SITES, POLICIES), SITE, f"file:{signal}")
    with LocalMesh(layout, tmp_path / "mesh", extra_args=FAST) as mesh, Client(profile=mesh.profile) as c:
        eventually(lambda: energy(mesh)["state"] == "shed", timeout=10, what="the node reads the shed order")
        c.create_bucket("meters", "france-only")
        for i in range(12):
            c.put_object("meters", f"m-{i}", os.urandom(3 * CHUNK + i))
        # Wipe the shed site's node: every partition it owns is short of a copy, which is urgent.
        table = partition_table(mesh.layout, "france-only")
        before = set(inventory(mesh, mesh.address(SITE)).all_chunks)
        owned = {d for d in before if SITE in table.replicas(chunk_partition(d, table.bits))}
        assert owned
        mesh.kill(SITE)
        shutil.rmtree(mesh.data_dir(SITE))
        mesh.start_node(SITE)
        eventually(lambda: owned <= set(inventory(mesh, mesh.address(SITE)).all_chunks), timeout=20,
                   what="urgent repair of the wiped node under a shed order")
        eventually(lambda: energy(mesh)["scrub"].waiting, timeout=5, what="scrub waiting for its turn")
        status = node_status(mesh, SITE)
        e = energy(mesh)
        assert e["state"] == "shed" and e["source"] == "file"
        assert e["urgent-repair"].bytes > 0
        assert status.scrub.frames_checked == 0 and e["scrub"].turns == 0
        assert e["gc"].turns == 0 and e["gc"].waits > 0
        # Normal again: scrub and GC go on.
        say(signal, "normal")
        eventually(lambda: node_status(mesh, SITE).scrub.frames_checked > 0 and energy(mesh)["gc"].turns > 0,
                   timeout=10, what="scrub and GC resume after the order is lifted")
        # Shed in the middle of a scrub pass: it stops at its next frame, within 5 s.
        say(signal, "shed")
        began = time.monotonic()
        eventually(lambda: energy(mesh)["scrub"].waiting, timeout=5, what="scrub paused by a new shed order")
        assert time.monotonic() - began < 5
        stopped = node_status(mesh, SITE)
        rounds = stopped.repair.rounds_completed
        eventually(lambda: node_status(mesh, SITE).repair.rounds_completed >= rounds + 3, timeout=10,
                   what="repair rounds go on under the shed order")
        after = node_status(mesh, SITE).scrub
        assert (after.frames_checked, after.passes_completed) == (stopped.scrub.frames_checked,
                                                                  stopped.scrub.passes_completed)
        # The operator sees it: `maillage status` names each node's energy state and deferred work.
        shown = maillage(mesh, "status")
        line = next(ln for ln in shown.stdout.splitlines() if ln.startswith(SITE))
        assert "energy shed +800 W" in line and "deferred:" in line and "scrub" in line, shown.stdout
        rows = {r["node"]: r for r in json.loads(maillage(mesh, "status", "--json").stdout)["nodes"]}
        assert rows[SITE]["energy"]["state"] == "shed" and rows[SITE]["energy"]["kinds"]["scrub"]["waiting"]
        assert rows[SITE]["energy"]["kinds"]["urgent-repair"]["joules"] > 0
        assert {rows[n]["energy"]["state"] for n in rows if n != SITE} == {"unknown"}  # no source: as before
        # The admin takes the source out of the layout: the node follows the applied layout (no
        # restart), its signal is unknown, and scrub goes on as it did before energy was known.
        # With it, the power figures of the site's servers, which its estimates count from then on.
        staged = maillage(mesh, "layout", "site-energy", SITE, "none")
        assert staged.returncode == 0 and "energy" in staged.stdout, staged.stdout + staged.stderr
        staged = maillage(mesh, "layout", "site-power", SITE, "idle_w=12.5,transfer_nj=30")
        assert staged.returncode == 0 and "power figures of paris-1" in staged.stdout, staged.stdout + staged.stderr
        assert node_status(mesh, SITE).energy.idle_w == 40.0   # staged only: nothing changes yet
        applied = maillage(mesh, "layout", "apply", "--yes")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        eventually(lambda: energy(mesh)["source"] == "none" and energy(mesh)["state"] == "unknown", timeout=15,
                   what="the node drops the source the layout no longer declares")
        eventually(lambda: node_status(mesh, SITE).energy.idle_w == 12.5, timeout=15,
                   what="the node takes the power figures the layout declares")
        eventually(lambda: node_status(mesh, SITE).scrub.frames_checked > after.frames_checked, timeout=10,
                   what="scrub goes on without a source")


def maillage(mesh: LocalMesh, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maillage.cli", *argv, "--endpoint", mesh.addresses[0],
                           "--profile", "admin"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAILLAGE_CONFIG_FILE": str(mesh.config_file),
                               "MAILLAGE_CLUSTER_DIR": str(mesh.cluster_dir)})
