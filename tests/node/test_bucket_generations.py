"""A bucket's policy is immutable, and copies never widen residency (issue 14, cases 1 to 3), in
process: a name deleted and created again under a wider policy is another bucket generation, so
repair never carries the old generation's key names to a node the old policy excluded; PutManifest
is checked against the replica's own record; CopyObject never lets data out of its policy."""

from __future__ import annotations

import pytest

from maillage.node.errors import (
    BucketAlreadyExists,
    NoSuchBucket,
    NoSuchKey,
    OutsidePolicy,
    ResidencyWidening,
)
from maillage.node.rpc.boundary import reason_for
from maillage.placement import bucket_partition
from maillage.proto.reasons import Reason
from maillage.storage import BucketRecord, Manifest

from .conftest import FRENCH, run

OLD_KEY = "patients/dupont-jeanne-1961-04-02.txt"
GERMAN = "munich-1"


def owners(mesh, bucket: str, policy: str) -> tuple[str, ...]:
    table = mesh.nodes["paris-1"].layout.table(policy)
    return table.replicas(bucket_partition(bucket, table.bits))


def exposed_name(mesh) -> str:
    """A bucket name whose EU-wide index owners are the German node and a French node that also
    owns its France-only index: the node that would hand the old keys over."""
    for i in range(1000):
        name = f"records-{i}"
        eu, fr = owners(mesh, name, "eu-wide"), owners(mesh, name, "france-only")
        if GERMAN in eu and set(eu) & set(fr):
            return name
    raise AssertionError("no such bucket name in this layout")


def files_containing(root, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def assert_no_trace_on_german_node(mesh) -> None:
    assert not any(key == OLD_KEY for _, key in mesh.key_names(GERMAN))
    assert files_containing(mesh.root / GERMAN, OLD_KEY.encode()) == []


def test_a_recreated_bucket_never_receives_the_old_generations_keys(mesh):
    """The issue's scenario: France-only key, key deleted, bucket deleted, name created again
    EU-wide, repair: the old key name never reaches the German node, not even on disk."""
    async def main():
        name = exposed_name(mesh)
        old = await mesh.create_bucket(name, "france-only")
        await mesh.put(name, OLD_KEY, b"x" * 3000)  # chunked
        await mesh.delete(name, OLD_KEY)
        await mesh.delete_bucket(name)
        # the delete left a tombstone of that generation and no index on the French nodes
        for node_id in FRENCH:
            meta = mesh.nodes[node_id].local.meta
            assert meta.get_bucket(name) is None and not list(meta.iter_manifests(name))
        for node_id in owners(mesh, name, "france-only"):  # the record's owners: where its tombstone rests
            assert mesh.nodes[node_id].local.meta.get_bucket_tombstone(name, old.generation) is not None
        new = await mesh.create_bucket(name, "eu-wide")
        assert new.generation != old.generation and len(new.generation) == 32
        await mesh.put(name, "fresh", b"new")
        for _ in range(3):
            await mesh.repair()
            assert_no_trace_on_german_node(mesh)
        listing = await mesh.list_objects(name, via=GERMAN)
        assert [m.key for m in listing.contents] == ["fresh"]
        with pytest.raises(NoSuchKey):
            await mesh.get(name, OLD_KEY, via=GERMAN)
        assert mesh.nodes[GERMAN].local.meta.get_bucket(name) == new
    run(main())


def test_a_node_down_during_the_delete_learns_the_tombstone_and_spreads_nothing(mesh):
    """A France-only owner misses the key's delete, the bucket's delete and its re-creation:
    when it comes back it still holds the old record and the live old key, but the tombstone
    wins: repair drops them there, and nothing of the old generation reaches anyone else."""
    async def main():
        name = exposed_name(mesh)
        old = await mesh.create_bucket(name, "france-only")
        await mesh.put(name, OLD_KEY, b"secret")
        stale = next(n for n in owners(mesh, name, "france-only") if n in mesh.holders(name, OLD_KEY))
        mesh.down(stale)
        await mesh.delete(name, OLD_KEY)
        await mesh.delete_bucket(name)
        new = await mesh.create_bucket(name, "eu-wide")
        await mesh.put(name, "fresh", b"new")
        mesh.up(stale)
        stale_meta = mesh.nodes[stale].local.meta
        assert stale_meta.get_bucket(name) == old  # it missed everything
        assert stale_meta.get_manifest(name, OLD_KEY, old.generation) is not None
        for _ in range(3):
            await mesh.repair()
            assert_no_trace_on_german_node(mesh)
            for node_id in set(mesh.nodes) - {stale}:  # the stale record is never learned again
                assert mesh.nodes[node_id].local.meta.get_bucket(name) in (None, new)
        assert stale_meta.get_bucket_tombstone(name, old.generation) is not None
        assert stale_meta.get_bucket(name) in (None, new)
        assert not any(key == OLD_KEY for _, key in mesh.key_names(stale))
        for via in mesh.nodes:
            listing = await mesh.list_objects(name, via=via)
            assert [m.key for m in listing.contents] == ["fresh"], via
    run(main())


def test_put_manifest_is_checked_against_the_replicas_own_record_and_makes_no_phantom(mesh):
    async def main():
        record = await mesh.create_bucket("scans", "france-only")
        m = Manifest("scans", "k", mesh.nodes["paris-1"].coordinator._clock.now(), 1, "e", inline=b"v",
                     writer="x", generation=record.generation)
        german = mesh.network.transport("paris-1").replica(GERMAN)
        # Outside the policy and without a record: refused, and no phantom record is made.
        with pytest.raises(NoSuchBucket):
            await german.put_manifest(m)
        meta = mesh.nodes[GERMAN].local.meta
        assert meta.get_bucket("scans") is None and not list(meta.iter_manifests())
        # A record made up on its disk (bypassing PutBucketRecord) does not make it eligible:
        # its own record's policy is checked against its own location.
        meta.put_bucket(record)
        with pytest.raises(OutsidePolicy):
            await german.put_manifest(m)
        assert not list(meta.iter_manifests())
        # Inside the policy: an unknown generation of a known name is refused, nothing stored.
        french = mesh.network.transport(GERMAN).replica("lyon-1")
        with pytest.raises(NoSuchBucket):
            await french.put_manifest(Manifest("scans", "k", m.version, 1, "e", generation="ab" * 16))
        with pytest.raises(NoSuchBucket):
            await french.put_manifest(Manifest("other", "k", m.version, 1, "e"))
        lyon = mesh.nodes["lyon-1"].local.meta
        assert lyon.get_bucket("other") is None and not list(lyon.iter_manifests())
        assert await french.put_manifest(m)
        # A record is never replaced by one of another policy or generation.
        for other in (BucketRecord("scans", "eu-wide", 1, "", record.generation),
                      BucketRecord("scans", "france-only", 1, "", "cd" * 16)):
            with pytest.raises(BucketAlreadyExists, match="never change"):
                await french.put_bucket(other)
        assert lyon.get_bucket("scans") == record
    run(main())


def test_a_node_down_at_creation_learns_the_record_from_the_coordinator(mesh):
    async def main():
        name = "late"
        index = owners(mesh, name, "france-only")
        mesh.down(index[0])
        record = await mesh.create_bucket(name, "france-only")
        mesh.up(index[0])
        await mesh.put(name, "k", b"v")  # the owner is taught the record, then takes the manifest
        meta = mesh.nodes[index[0]].local.meta
        assert meta.get_bucket(name) == record and meta.get_manifest(name, "k") is not None
    run(main())


def test_copy_into_a_wider_policy_is_refused_and_stores_nothing(mesh):
    async def main():
        await mesh.create_bucket("fr-one", "france-only")
        await mesh.create_bucket("fr-two", "france-only")
        await mesh.create_bucket("eu-all", "eu-wide")
        data = bytes(range(256)) * 12
        m = await mesh.put("fr-one", OLD_KEY, data)
        with pytest.raises(ResidencyWidening, match="france-only") as refused:
            await mesh.copy("fr-one", OLD_KEY, "eu-all", "copy", via="paris-1")
        assert reason_for(refused.value) is Reason.OUTSIDE_POLICY
        with pytest.raises(NoSuchKey):
            await mesh.get("eu-all", "copy")
        assert not list(mesh.nodes[GERMAN].local.chunks.iter_digests())
        assert_no_trace_on_german_node(mesh)
        assert all(not (mesh.chunk_holders(r.digest) - FRENCH) for r in m.chunks)
        # the same policy, or a narrower one, is fine
        await mesh.copy("fr-one", OLD_KEY, "fr-two", "copy", via="lyon-1")
        assert await mesh.get("fr-two", "copy") == data
        await mesh.put("eu-all", "src", data)
        await mesh.copy("eu-all", "src", "fr-one", "from-eu", via=GERMAN)
        assert await mesh.get("fr-one", "from-eu") == data
    run(main())


@pytest.mark.parametrize("sources", [3, 1])
def test_a_record_offered_differently_by_peers_is_not_learned(mesh, monkeypatch, sources):
    """One French node holds a forged record of a France-only bucket, bound to eu-wide (taught while
    it lacked the real one): the German node, which has no record of the bucket, hears both from its
    peers and learns neither, so it never places the bucket's writes by the wider policy. With one
    source a round, a round that asks only the forger still hears every peer before learning."""
    from maillage.node.cluster import repair as repair_module
    monkeypatch.setattr(repair_module, "BUCKET_SOURCES", sources)

    async def main():
        name = "scans"
        forger = "lyon-1"
        mesh.down(forger)
        real = await mesh.create_bucket(name, "france-only")
        mesh.up(forger)
        forged = BucketRecord(name=name, policy="eu-wide", created=real.created, owner=real.owner,
                              generation="f" * 32)
        await mesh.nodes[forger].local.put_bucket(forged)
        await mesh.repair(6)
        assert mesh.nodes[GERMAN].local.meta.get_bucket(name) is None
        for node_id in set(mesh.nodes["paris-1"].catalog.record_owners(name, "france-only")) - {forger}:
            assert mesh.nodes[node_id].local.meta.get_bucket(name) == real  # records rest on their owners
    run(main())
