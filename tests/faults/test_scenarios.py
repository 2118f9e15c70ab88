"""Bounded fault scenarios on a real five-site mesh (see maillage.testing.harness), each < ~60 s.

Every scenario runs the recorded workload on a France-only and an EU-wide bucket, injects its
fault, heals, and hands the history to the checker (nothing lost, no invented bytes, no
resurrection, versions in real-time order, listings agree, zero residency violations, full
replication within a bound). The seed is printed: replay with MAILLAGE_SEED=<seed>.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from maillage.client import Client
from maillage.client import admin as residency
from maillage.client.admin import read_access_file
from maillage.placement import chunk_partition, partition_table
from maillage.proto.frame import chunk_digest, decode_frame
from maillage.proto.limits import INLINE_MAX
from maillage.proto.naming import chunk_key
from maillage.storage import DataKeys, open_chunk_file
from maillage.testing import eventually
from maillage.testing.checker import read_final, replication_state
from maillage.testing.disk import Tmpfs, fill, flip_bit
from maillage.testing.harness import CHUNK_SIZE, FRANCE, GERMANY, Harness
from maillage.testing.localmesh import DEMO_TENANT
from maillage.testing.netns import require_netns
from maillage.testing.workload import OK, make_value

pytestmark = pytest.mark.timeout(150)

REPAIR_BOUND = 20.0   # seconds from healing to R copies of everything (nodes repair every 1 s)
# A fault window lasts until the workload has run this many operations through it (bounded by
# Workload.wait_ops's timeout), not for a guessed number of seconds.
WINDOW_OPS = 40
# A partition window's: its operations wait on unreachable nodes, so 40 of them took ~45 s of the
# suite's time; 20 writes per direction still meet both sides of the cut.
PARTITION_PUTS = 20


def _assert_clean(report, h: Harness) -> None:
    if not report.ok:
        tails = "\n".join(f"--- {n.id}\n{h.log_tail(n.id, 15)}" for n in h.mesh.layout.nodes)
        pytest.fail(f"{len(report.anomalies)} anomalies (seed {h.seed}):\n" + "\n".join(report.anomalies[:20])
                    + f"\n\nnode logs:\n{tails}", pytrace=False)


def _ok_during(history, t0: float, t1: float, kind: str = "put") -> int:
    return sum(1 for op in history if op.kind == kind and op.outcome == OK and t0 <= op.start and op.end <= t1)


# ----- 1. site kill during writes, then restart ---------------------------------------------------

def test_site_kill_during_writes_then_restart(harness_mode):
    with Harness(mode=harness_mode) as h:
        victim = h.node_for("lyon")
        h.workload.start()
        h.workload.wait_ops(20)                     # the workload is under way
        t_kill = time.monotonic()
        h.mesh.kill(victim)
        h.fault(f"SIGKILL {victim} during writes")
        h.workload.wait_ops(WINDOW_OPS, kind="put", since=t_kill)
        t_restart = time.monotonic()
        h.mesh.start_node(victim)
        h.fault(f"restart {victim}")
        h.workload.wait_ops(20, since=t_restart)
        report = h.check(replication_bound=REPAIR_BOUND)
        assert _ok_during(report.history, t_kill, t_restart) > 0, "no write succeeded while one site was down"
        _assert_clean(report, h)


# ----- 2. region partition, both directions then one-way --------------------------------------------

def test_region_partition_both_ways_then_one_way(harness_mode):
    require_netns("a region partition")
    with Harness(mode=harness_mode) as h:
        faults = h.net.faults
        h.workload.start()
        h.workload.wait_ops(20)
        t0 = time.monotonic()
        faults.split(FRANCE, GERMANY)
        h.fault("partition France | Germany (both directions)")
        h.workload.wait_ops(PARTITION_PUTS, kind="put", since=t0)
        t1 = time.monotonic()
        faults.heal()
        h.fault("heal")
        h.workload.wait_ops(20, since=t1)
        t2 = time.monotonic()
        for a in FRANCE:
            for b in GERMANY:
                faults.partition(a, b, one_way=True)
        h.fault("one-way partition France -> Germany")
        h.workload.wait_ops(PARTITION_PUTS, kind="put", since=t2)
        t3 = time.monotonic()
        faults.heal()
        h.fault("heal")
        h.workload.wait_ops(20, since=t3)
        report = h.check(replication_bound=REPAIR_BOUND)
        assert _ok_during(report.history, t0, t1) > 0, "no write succeeded during the partition"
        _assert_clean(report, h)


# ----- 3. frame corruption on disk ----------------------------------------------------------------

def _chunk_file(data_dir: Path, digest: bytes) -> Path:
    h = digest.hex()
    return data_dir / "chunks" / h[:2] / h[2:4] / h


def test_frame_corruption_read_from_good_copy_then_repaired(harness_mode):
    with Harness(mode=harness_mode) as h:
        bucket = h.buckets[0]  # France-only
        key = "corrupt-me"
        value = make_value(h.seed, bucket.name, key, 0, size=300_000)
        layout = h.mesh.layout
        with Client(profile=h.mesh.profile, timeout=10) as c:
            c.put_object(bucket.name, key, value)
        manifest = residency.fetch_manifest(layout, bucket.policy, bucket.name, key, h.mesh.admin_profile)
        digest = manifest.chunks[0].digest
        table = partition_table(layout, bucket.policy)
        holders = [n for n in table.replicas(chunk_partition(digest, table.bits))
                   if _chunk_file(h.mesh.data_dir(n), digest).exists()]
        assert holders, "the chunk is on none of its preferred replicas"
        victim = holders[0]
        path = _chunk_file(h.mesh.data_dir(victim), digest)
        old, new = flip_bit(path, -100, 3)
        h.fault(f"flip bit 3 of byte -100 of chunk {digest.hex()[:12]} on {victim} ({old:#x}->{new:#x})")
        # a client in the victim's site reads the corrupt copy first: it must still get the right bytes
        with Client(profile=h.mesh.profile, site=layout.node(victim).site, timeout=10) as c:
            assert c.get_object(bucket.name, key).read() == value, "read returned wrong bytes"
        quarantine = h.mesh.data_dir(victim) / "chunks" / "quarantine"
        assert any(p.name.startswith(digest.hex()) for p in quarantine.iterdir()), \
            f"corrupt frame not quarantined on {victim} (quarantine: {list(quarantine.iterdir())})"
        h.say(f"corrupt copy on {victim} quarantined; good copy served")
        h.workload.start()
        h.workload.wait_ops(WINDOW_OPS)
        report = h.check(replication_bound=REPAIR_BOUND)
        _assert_clean(report, h)
        # the repaired copy: the victim holds a verified frame of the chunk again (repair/scrub)
        eventually(path.exists, timeout=REPAIR_BOUND,
                   what=f"chunk {digest.hex()[:12]} re-fetched onto {victim} after quarantine (repair/scrub)")
        # chunk files are encrypted at rest: open the file with the victim's own keys, then check the frame
        keys = DataKeys.read_only(h.mesh.data_dir(victim) / "meta", h.mesh.trust_dir(victim) / "data.key")
        decode_frame(open_chunk_file(path.read_bytes(), digest, keys), expected_digest=digest,
                     key=_name_key(h, bucket.name))


# ----- 4. disk full on one node ------------------------------------------------------------------

def test_disk_full_on_one_node_never_a_wrong_ack(harness_mode):
    require_netns("a tmpfs disk")
    with Tmpfs("24m") as disk:
        with Harness(mode=harness_mode, data_dirs={"paris": Path(disk.path) / "node"}) as h:
            h.workload.start()
            h.workload.wait_ops(20)
            filler = fill(disk.path, leave_bytes=0)
            h.fault(f"disk of paris full (tmpfs {disk.size}, {disk.free_bytes()} bytes free)")
            t0 = time.monotonic()
            h.workload.wait_ops(2 * WINDOW_OPS, kind="put", since=t0)
            t1 = time.monotonic()
            # never a wrong ack: paris, still full, holds a piece of every write it acknowledged
            held = residency.fetch_inventories(h.mesh.layout, h.mesh.admin_profile)[0].get("paris")
            Path(filler).unlink()
            h.fault("disk of paris freed")
            h.mesh.start_node("paris")   # a node that stopped writing after ENOSPC comes back clean
            h.fault("restart paris")
            h.workload.wait_ops(20, since=time.monotonic())
            report = h.check(replication_bound=REPAIR_BOUND)
            full_ops = [op for op in report.history if op.kind == "put" and t0 <= op.start and op.end <= t1]
            h.say(f"puts while full: {sum(op.outcome == OK for op in full_ops)} ok, "
                  f"{sum(op.outcome != OK for op in full_ops)} not ok, "
                  f"{sum('paris' in op.sites for op in full_ops)} acknowledged by paris; errors: "
                  f"{sorted({op.error.split(':')[0] for op in full_ops if op.error})}")
            assert held is not None, "paris did not answer its inventory while its disk was full"
            for op in full_ops:
                if op.outcome == OK and "paris" in op.sites:
                    pieces = _chunk_digests(make_value(h.seed, op.bucket, op.key, op.seq), _name_key(h, op.bucket))
                    assert op.key in held.keys.get(op.bucket, ()) or pieces & held.chunks, \
                        f"{op.line()} was acknowledged by paris, whose full disk holds none of it"
            _assert_clean(report, h)


def _name_key(h, bucket: str) -> bytes | None:
    """The key naming the chunks of ``bucket`` (the workload's tenant, the bucket's policy)."""
    secret = read_access_file(h.mesh.cluster_dir / "access.signed", h.mesh.signer).naming_secret
    return chunk_key(secret, DEMO_TENANT, next(b.policy for b in h.buckets if b.name == bucket))


def _chunk_digests(value: bytes, key: bytes | None) -> set[bytes]:
    """Names of the chunks the coordinator cuts ``value`` into (fixed-size; none if inline)."""
    if len(value) <= INLINE_MAX:
        return set()
    return {chunk_digest(value[i:i + CHUNK_SIZE], key) for i in range(0, len(value), CHUNK_SIZE)}


# ----- 5. clock skew on one node ------------------------------------------------------------------

def test_clock_skew_on_one_node_keeps_last_writer_order(harness_mode):
    from maillage.testing.clock import faketime_available
    ok, why = faketime_available()
    if not ok:
        pytest.skip(why)
    # lyon runs 30 s behind, munich 30 s ahead: their coordinators must still version writes above
    # what they replace (HLC), or a later acknowledged write loses to an older one
    with Harness(mode=harness_mode, clock_skew={"lyon": -30.0, "munich": 30.0}) as h:
        h.fault("clock skew: lyon -30 s, munich +30 s (libfaketime, whole run)")
        h.workload.start()
        h.workload.wait_ops(4 * WINDOW_OPS, kind="put", ok=True)
        report = h.check(replication_bound=REPAIR_BOUND)
        coordinated = sum(1 for op in report.history if op.kind == "put" and op.outcome == OK)
        h.say(f"{coordinated} acknowledged puts under skew; "
              f"{sum('VERSION ORDER' in a for a in report.anomalies)} version-order inversions")
        _assert_clean(report, h)


# ----- 6. node restart with handback of hinted writes ------------------------------------------------

def test_hinted_writes_are_handed_back_after_restart(harness_mode):
    with Harness(mode=harness_mode) as h:
        victim = h.node_for("munich")
        h.mesh.kill(victim)
        h.fault(f"SIGKILL {victim}")
        h.workload.start()
        h.workload.wait_ops(2 * WINDOW_OPS, kind="put", ok=True)
        history = h.workload.stop()
        # while munich is down, the writes it should hold land on a handoff node inside the policy
        state = replication_state(h.mesh.layout, h.mesh.admin_profile, h.buckets, _present(h))
        assert not state.violations, state.violations
        handed = [m for m in state.misplaced if victim in m]
        h.say(f"{len(handed)} pieces wait for {victim} (on handoff nodes)")
        assert handed, f"no write needed {victim} while it was down: the scenario tested nothing"
        assert _ok_during(history, 0, time.monotonic()) > 0
        h.mesh.start_node(victim)
        h.fault(f"restart {victim}")
        # after it returns, everything it should hold is handed back: nothing misplaced
        report = h.check(replication_bound=REPAIR_BOUND, placed=True)
        _assert_clean(report, h)


def _present(h: Harness) -> dict:
    final, _, problems = read_final(h.mesh.profile, h.buckets, h.workload.keys(), 15)
    assert not problems, problems
    return final
