"""Cluster life on real node processes: after a loss, a handoff, rot or a layout change, the mesh
returns by itself to R healthy copies of everything, inside every policy.

Timings are shortened with the node's own flags (suspect after 1.5 s, marked out after 4 s, a
repair round every 0.5 s) so each scenario settles in seconds.
"""

from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import replace

import grpc
import pytest

from maillage.client import Client, NoSuchKey, PermissionDenied, Retention
from maillage.client.admin import collect_audit, write_signed_layout
from maillage.placement import (
    Node,
    Site,
    bucket_partition,
    chunk_partition,
    format_layout,
    parse_location,
    partition_table,
)
from maillage.proto import pb
from maillage.proto.trust.signing import LayoutSigner
from maillage.testing import eventually
from maillage.testing.localmesh import DEMO_TENANT, LocalMesh, free_port, make_layout

from .conftest import CHUNK, FRENCH, POLICIES, SITES
from .helpers import admin_call, chunk_holders, holders, inventory, manifest_digests, node_status, sealing_scopes

FAST = ("--chunk-size", str(CHUNK), "--heartbeat-interval", "0.3", "--suspect-after", "1.5",
        "--down-after", "4", "--repair-interval", "0.5", "--repair-rate", "200",
        "--scrub-rate", "50", "--scrub-interval", "1", "--gc-grace", "3")
SETTLE = 40.0  # seconds: the bound stated for every scenario below


def seen_as(mesh: LocalMesh, observer: str, node: str) -> str:
    """The state `observer`'s failure detector gives `node` (up, suspect or down)."""
    return {p.node_id: p.state for p in node_status(mesh, observer).peers}.get(node, "")


def fully_replicated(mesh: LocalMesh) -> bool:
    report = collect_audit(mesh.admin_profile)
    assert report.ok, report.violations  # residency holds at every instant, not only at the end
    return report.fully_replicated


@pytest.fixture()
def mesh(tmp_path):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path, extra_args=FAST) as m:
        yield m


def load(client: Client, bucket: str, n: int, size: int = 2 * CHUNK) -> dict[str, bytes]:
    objects = {f"obj-{i:03d}": os.urandom(size + i) for i in range(n)}
    for key, data in objects.items():
        client.put_object(bucket, key, data)
    return objects


def assert_all_readable(client: Client, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        assert client.get_object(bucket, key).read() == data, key


def test_wiped_node_is_rebuilt_from_its_peers(mesh):
    with Client(profile=mesh.profile) as c:
        c.create_bucket("scans", "france-only")
        objects = load(c, "scans", 12)
        victim = "toulouse-1"
        before = inventory(mesh, mesh.address(victim))
        assert before.all_chunks, "the victim held data before the wipe"
        mesh.kill(victim)
        shutil.rmtree(mesh.data_dir(victim))
        mesh.start_node(victim)
        eventually(lambda: fully_replicated(mesh), timeout=SETTLE, what="full replication after a wipe")
        after = inventory(mesh, mesh.address(victim))
        # every chunk it owns comes back (a copy it held only as a stand-in for a replica
        # suspected while the test wrote, on a loaded machine, is not owed to it any more)
        table = partition_table(mesh.layout, "france-only")
        owned = {d for d in before.all_chunks if victim in table.replicas(chunk_partition(d, table.bits))}
        assert owned and owned <= set(after.all_chunks)
        assert all(victim in table.replicas(chunk_partition(d, table.bits)) for d in after.all_chunks)
        assert_all_readable(c, "scans", objects)
        # pulled from peers over GetChunk, which names the tenant: sealed with its key again
        sealed = sealing_scopes(mesh, victim, after.all_chunks)
        assert len(sealed) == len(after.all_chunks) and set(sealed.values()) == {("tenant", DEMO_TENANT)}


def test_writes_during_an_outage_are_handed_back(mesh):
    with Client(profile=mesh.profile) as c:
        c.create_bucket("frdata", "france-only")
        victim = "lyon-1"
        mesh.kill(victim)
        # suspected (routed around), not yet marked out: writes go to handoff nodes
        eventually(lambda: seen_as(mesh, "paris-1", victim) == "suspect", timeout=4,
                   what=f"{victim} suspected by paris-1")
        objects = load(c, "frdata", 8)
        table = partition_table(mesh.layout, "france-only")
        owed = {d for key in objects for d in manifest_digests(mesh, "frdata", key)
                if victim in table.replicas(chunk_partition(d, table.bits))}
        assert owed, "some chunks of the outage belong on the victim"
        mesh.start_node(victim)

        def handed_back():
            held = set(inventory(mesh, mesh.address(victim)).all_chunks)
            extra = [d for d in owed if chunk_holders(mesh, d) - set(table.replicas(chunk_partition(d, table.bits)))]
            return owed <= held and not extra
        eventually(handed_back, timeout=SETTLE, what="hand-back of hinted writes")
        eventually(lambda: fully_replicated(mesh), timeout=SETTLE, what="full replication after hand-back")
        assert_all_readable(c, "frdata", objects)
        # pushed or pulled with their tenant's name: sealed with the owner's key on the victim too
        assert set(sealing_scopes(mesh, victim, owed).values()) == {("tenant", DEMO_TENANT)}


def test_marked_out_node_is_replaced_and_data_stays_in_policy(mesh):
    with Client(profile=mesh.profile) as c:
        c.create_bucket("frdata", "france-only")
        objects = load(c, "frdata", 8)
        mesh.kill("paris-1")
        # past --down-after the two French survivors must each hold every French object
        def survivors_hold_everything():
            return all(holders(mesh, "frdata", key) >= {"toulouse-1", "lyon-1"} for key in objects)
        eventually(survivors_hold_everything, timeout=SETTLE, what="re-replication of a marked-out node")
        for key in objects:
            assert holders(mesh, "frdata", key) <= FRENCH
        assert_all_readable(c, "frdata", objects)


def test_corrupt_frame_is_found_by_scrub_and_repaired(mesh):
    with Client(profile=mesh.profile) as c:
        c.create_bucket("frdata", "france-only")
        data = os.urandom(CHUNK)
        c.put_object("frdata", "rot", data)
        digest = manifest_digests(mesh, "frdata", "rot")[0]
        # an owner of the chunk: it pulls a good copy back. (A node that held it as a stand-in for
        # an owner suspected while the mesh started hands it back instead: a corrupt stand-in copy
        # is not re-fetched, which made this test fail when the put met such a suspicion.)
        table = partition_table(mesh.layout, "france-only")
        owners = set(table.replicas(chunk_partition(digest, table.bits)))
        eventually(lambda: owners <= chunk_holders(mesh, digest), timeout=SETTLE, what="the chunk on its owners")
        node = sorted(owners)[0]
        path = next(mesh.data_dir(node).rglob(digest.hex()))
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))

        def scrubbed_and_repaired():
            status = node_status(mesh, node)
            return status.scrub.corrupt_found >= 1 and path.exists() and path.read_bytes() != bytes(raw)
        eventually(scrubbed_and_repaired, timeout=SETTLE, what="scrub quarantine and re-fetch")
        assert c.get_object("frdata", "rot").read() == data


def test_tombstones_expire_once_every_owner_has_them(mesh):
    with Client(profile=mesh.profile) as c:
        c.create_bucket("frdata", "france-only")
        c.put_object("frdata", "gone", b"x" * 100)
        c.delete_object("frdata", "gone")
        assert holders(mesh, "frdata", "gone"), "the tombstone is stored first"
        eventually(lambda: not holders(mesh, "frdata", "gone"), timeout=SETTLE,
                   what="tombstone expiry after --gc-grace")
        with pytest.raises(NoSuchKey):
            c.head_object("frdata", "gone")


def test_added_site_receives_its_share_and_old_owners_drop_it(tmp_path):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path, extra_args=FAST) as mesh:
        with Client(profile=mesh.profile) as c:
            c.create_bucket("frdata", "france-only")
            objects = load(c, "frdata", 16, size=CHUNK)
            bigger = _with_site(mesh, "bordeaux-1", "eu/fr/nouvelle-aquitaine")
            old_table = partition_table(mesh.layout, "france-only")
            new_table = partition_table(bigger, "france-only")
            _push_layout(mesh, bigger)
            mesh.layout = bigger
            mesh.start_node("bordeaux-1")

            def rebalanced():
                for key in objects:
                    for d in manifest_digests(mesh, "frdata", key):
                        if chunk_holders(mesh, d) != set(new_table.replicas(chunk_partition(d, new_table.bits))):
                            return False
                return True
            eventually(rebalanced, timeout=60, what="rebalance onto the added site")
            moved = [d for key in objects for d in manifest_digests(mesh, "frdata", key)
                     if set(old_table.replicas(chunk_partition(d, old_table.bits)))
                     != set(new_table.replicas(chunk_partition(d, new_table.bits)))]
            assert moved, "adding a site moved some partitions"
            assert_all_readable(c, "frdata", objects)
            assert collect_audit(mesh.admin_profile).ok


def test_layout_push_without_the_signing_key_is_refused(mesh):
    bigger = _with_site(mesh, "rogue-1", "eu/de/bayern")
    # Not the cluster's key:
    forged = LayoutSigner.generate().sign(bigger.version, format_layout(bigger), kind="layout")
    with pytest.raises(grpc.RpcError) as err:
        admin_call(mesh, mesh.addresses[0], "Cluster", "PushLayout",
                   pb.LayoutDoc(version=bigger.version, text=format_layout(bigger), signature=forged))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    current = admin_call(mesh, mesh.addresses[0], "Cluster", "GetLayout", pb.GetLayoutRequest())
    assert current.version == mesh.layout.version


def test_gossip_spreads_a_signed_layout_and_status_reports_peers(mesh):
    bigger = _with_site(mesh, "nantes-1", "eu/fr/pdl")
    text = format_layout(bigger)
    admin_call(mesh, mesh.addresses[0], "Cluster", "PushLayout",
               pb.LayoutDoc(version=bigger.version, text=text,
                            signature=mesh.signer.sign(bigger.version, text, kind="layout")))
    def everyone_adopted():
        return all(node_status(mesh, n.id).info.layout_version == bigger.version for n in mesh.layout.nodes)
    eventually(everyone_adopted, timeout=15, what="layout spread by gossip")
    # each node keeps the layout it applied before (a node that joined in the change pulls it)
    earlier = admin_call(mesh, mesh.addresses[1], "Cluster", "GetLayout", pb.GetLayoutRequest(before=bigger.version))
    assert (earlier.version, earlier.text) == (mesh.layout.version, format_layout(mesh.layout))
    assert not admin_call(mesh, mesh.addresses[1], "Cluster", "GetLayout", pb.GetLayoutRequest(before=1)).text
    def states():
        return {p.node_id: p.state for p in node_status(mesh, "paris-1").peers}
    # in the layout but never started: suspected once its grace since paris-1 started is over
    eventually(lambda: states()["nantes-1"] in ("suspect", "down"), timeout=10, what="suspicion")
    assert all(states()[n] == "up" for n in ("toulouse-1", "lyon-1", "munich-1"))


# ----- helpers -------------------------------------------------------------------------------

def _with_site(mesh: LocalMesh, name: str, location: str):
    layout = mesh.layout
    node = Node(id=name, address=f"127.0.0.1:{free_port()}", site=name, capacity=1 << 40,
                cert_key=mesh.issue_certificate(name))   # the layout pins every node's certificate key
    return replace(layout, version=layout.version + 1, sites=(*layout.sites, Site(name, parse_location(location))),
                   nodes=(*layout.nodes, node))


def _push_layout(mesh: LocalMesh, layout) -> None:
    text = format_layout(layout)
    write_signed_layout(mesh.layout_file, layout, mesh.signer)
    for node in mesh.layout.nodes:
        admin_call(mesh, node.address, "Cluster", "PushLayout",
                   pb.LayoutDoc(version=layout.version, text=text,
                                signature=mesh.signer.sign(layout.version, text, kind="layout")))


def test_status_and_repair_commands(mesh):
    import json
    import subprocess
    import sys

    def maillage(*argv):
        return subprocess.run([sys.executable, "-m", "maillage.cli", *argv, "--endpoint", mesh.addresses[0],
                               "--profile", "admin"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "MAILLAGE_CONFIG_FILE": str(mesh.config_file)})

    with Client(profile=mesh.profile) as c:
        c.create_bucket("frdata", "france-only")
        load(c, "frdata", 3)
    done = maillage("repair", "--now", "--wait", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    ok = maillage("status", "--json")
    assert ok.returncode == 0, ok.stderr
    rows = {r["node"]: r for r in json.loads(ok.stdout)["nodes"]}
    assert set(rows) == {n.id for n in mesh.layout.nodes} and all(r["reachable"] for r in rows.values())
    mesh.kill("munich-1")
    def seen_as(node_id):
        return {r["node"]: r["seen_as"] for r in json.loads(maillage("status", "--json").stdout)["nodes"]}[node_id]
    eventually(lambda: seen_as("munich-1") != "up", timeout=10, what="munich-1 seen as suspect")
    down = maillage("status")
    assert down.returncode == 1 and "munich-1" in down.stdout and "unreachable" in down.stdout


def test_unreferenced_chunks_are_collected_and_referenced_ones_kept(mesh):
    with Client(profile=mesh.profile) as c:
        c.create_bucket("frdata", "france-only")
        c.put_object("frdata", "kept", os.urandom(2 * CHUNK))
        c.put_object("frdata", "replaced", os.urandom(2 * CHUNK))
        c.put_object("frdata", "deleted", os.urandom(2 * CHUNK))
        old = manifest_digests(mesh, "frdata", "replaced") + manifest_digests(mesh, "frdata", "deleted")
        kept = manifest_digests(mesh, "frdata", "kept")
        new_data = os.urandom(2 * CHUNK)
        c.put_object("frdata", "replaced", new_data)
        c.delete_object("frdata", "deleted")
        new = manifest_digests(mesh, "frdata", "replaced")
        eventually(lambda: not any(chunk_holders(mesh, d) for d in old), timeout=SETTLE,
                   what="chunk GC after --gc-grace")
        assert all(len(chunk_holders(mesh, d)) >= 2 for d in kept + new)
        assert c.get_object("frdata", "replaced").read() == new_data
        assert sum(node_status(mesh, n.id).gc.chunks_removed for n in mesh.layout.nodes) >= len(old)


def test_a_locked_version_comes_back_with_its_lock_to_a_wiped_owner(mesh):
    """An index owner of a locked bucket wiped and restarted gets the version back by repair, its
    COMPLIANCE retention with it: once the other owner is gone, the rebuilt one alone answers the
    retention and refuses the removal."""
    with Client(profile=mesh.profile) as c:
        c.create_bucket("vault", "france-only", object_lock=True)
        data = os.urandom(2 * CHUNK)
        put = c.put_object("vault", "k", data)
        until = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
        c.put_object_retention("vault", "k", Retention("COMPLIANCE", until), version_id=put.version_id)
        table = partition_table(mesh.layout, "france-only")
        victim, other = table.replicas(bucket_partition("vault", table.bits))
        mesh.kill(victim)
        shutil.rmtree(mesh.data_dir(victim))
        mesh.start_node(victim)
        eventually(lambda: fully_replicated(mesh), timeout=SETTLE, what="full replication after a wipe")
        mesh.kill(other)
        assert c.get_object_retention("vault", "k", version_id=put.version_id) == Retention("COMPLIANCE", until)
        with pytest.raises(PermissionDenied):
            c.delete_object("vault", "k", version_id=put.version_id, bypass_governance=True)
        assert c.get_object("vault", "k", version_id=put.version_id).read() == data
