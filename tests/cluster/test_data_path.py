"""The write/read path on a real 4-site mesh: durability, residency, integrity, validation."""

from __future__ import annotations

import datetime
import os

import pytest

from maillage.client import (
    BucketNotEmpty,
    Client,
    IntegrityError,
    InvalidBucketName,
    InvalidKey,
    InvalidRequest,
    LifecycleRule,
    LockConfiguration,
    MetadataTooLarge,
    NoSuchBucket,
    NoSuchKey,
    PermissionDenied,
    PolicyUnsatisfiable,
    QuorumNotReached,
    Retention,
    UnknownPolicy,
)
from maillage.placement import bucket_partition, partition_table
from maillage.storage import DataKeys, open_chunk_file

from .conftest import CHUNK, FRENCH
from .helpers import chunk_holders, files_containing, holders, inventory


@pytest.fixture(scope="module")
def buckets(client):
    client.create_bucket("fr-data", "france-only")
    client.create_bucket("eu-data", "eu-wide")
    return "fr-data", "eu-data"


@pytest.mark.parametrize("size", [0, 1, 4096, 64 * 1024, 64 * 1024 + 1, CHUNK, 3 * CHUNK + 17])
def test_put_get_round_trip_with_metadata(client, buckets, size):
    data = os.urandom(size)
    put = client.put_object("eu-data", f"sizes/{size}", data, content_type="application/x-test",
                            metadata={"owner": "team-a"})
    assert put.size == size and len(set(put.sites)) >= 2
    body = client.get_object("eu-data", f"sizes/{size}")
    assert body.read() == data
    info = client.head_object("eu-data", f"sizes/{size}")
    assert (info.size, info.content_type, info.metadata) == (size, "application/x-test", {"owner": "team-a"})
    assert info.etag == put.etag


def test_range_reads_cross_chunk_boundaries(client, buckets):
    data = os.urandom(4 * CHUNK + 5)
    client.put_object("eu-data", "ranged", data)
    for start, end in [(0, 10), (CHUNK - 3, CHUNK + 3), (CHUNK, 3 * CHUNK), (len(data) - 1, len(data) + 50)]:
        assert client.get_object("eu-data", "ranged", range=(start, end)).read() == data[start:end]


def test_ack_means_two_distinct_sites_hold_chunks_and_manifest(mesh, client, buckets):
    data = os.urandom(2 * CHUNK)
    put = client.put_object("fr-data", "acked", data)
    assert len(set(put.sites)) >= 2
    assert len(holders(mesh, "fr-data", "acked")) >= 2
    fr_nodes = [n for n in mesh.layout.nodes if n.site in FRENCH]
    digests = {d for n in fr_nodes for b in inventory(mesh, n.address, "fr-data").buckets
               if "acked" in b.keys for d in b.chunks}
    assert digests, "the manifest's chunks should be in the inventory"
    for digest in digests:
        assert len(chunk_holders(mesh, digest)) >= 2


def _containing(mesh, node_id: str, needle: bytes) -> list[str]:
    """`files_containing` for a node's data dir, its chunk files read decrypted with the node's own
    keys (they rest encrypted: a search of the raw bytes alone would find no object bytes anywhere)."""
    data_dir = mesh.data_dir(node_id)
    keys = DataKeys.read_only(data_dir / "meta", mesh.trust_dir(node_id) / "data.key")
    hits = files_containing(data_dir, needle)
    for path in (data_dir / "chunks").glob("??/??/*"):
        if needle in open_chunk_file(path.read_bytes(), bytes.fromhex(path.name), keys):
            hits.append(str(path))
    return hits


def test_france_only_bucket_leaves_nothing_outside_france(mesh, client, buckets):
    marker = b"PATIENT-RECORD-" + os.urandom(8).hex().encode()
    data = marker + os.urandom(3 * CHUNK)  # incompressible: frames hold the marker as is
    key = "patients/secret-key-name-" + os.urandom(4).hex()
    client.put_object("fr-data", key, data)
    client.put_object("fr-data", key + "-small", marker)  # inline in the manifest
    assert holders(mesh, "fr-data", key) <= FRENCH
    munich = mesh.data_dir("munich-1")
    assert files_containing(munich, key.encode()) == []
    assert _containing(mesh, "munich-1", marker) == []
    assert files_containing(munich, b"fr-data") == []  # not even the bucket record
    inv = inventory(mesh, mesh.address("munich-1"))
    assert [b.bucket for b in inv.buckets if b.bucket == "fr-data"] == []
    assert any(_containing(mesh, s, marker) for s in FRENCH)


def test_eu_bucket_may_use_germany(mesh, client, buckets):
    sites = set()
    for i in range(12):
        sites |= set(client.put_object("eu-data", f"spread/{i}", os.urandom(CHUNK)).sites)
    assert "munich-1" in sites


def test_unsatisfiable_and_unknown_policies_are_refused(client):
    with pytest.raises(PolicyUnsatisfiable, match="germany-only"):
        client.create_bucket("de-data", "germany-only")
    with pytest.raises(UnknownPolicy):
        client.create_bucket("xx-data", "mars-only")
    with pytest.raises(NoSuchBucket):
        client.head_bucket("de-data")


def test_bad_input_gets_typed_errors_and_stores_nothing(client, buckets):
    with pytest.raises(InvalidBucketName):
        client.create_bucket("Bad_Name!", "eu-wide")
    with pytest.raises(InvalidKey, match="1024"):
        client.put_object("eu-data", "k" * 1025, b"x")
    with pytest.raises(InvalidKey):
        client.put_object("eu-data", "nul\x00key", b"x")
    with pytest.raises(MetadataTooLarge):
        client.put_object("eu-data", "meta", b"x", metadata={"big": "v" * 5000})
    with pytest.raises(NoSuchBucket):
        client.put_object("no-such-bucket", "k", b"x")
    with pytest.raises(NoSuchKey):
        client.get_object("eu-data", "never-written")
    assert not any(o.key == "meta" for o in client.list_objects("eu-data"))


def test_last_writer_wins_and_delete_is_a_tombstone(client, buckets):
    client.put_object("eu-data", "lww", b"one")
    second = client.put_object("eu-data", "lww", b"two")
    assert client.get_object("eu-data", "lww").read() == b"two"
    tombstone = client.delete_object("eu-data", "lww")
    assert tombstone > second.version
    with pytest.raises(NoSuchKey):
        client.head_object("eu-data", "lww")
    assert "lww" not in [o.key for o in client.list_objects("eu-data")]


def test_copy_across_policies_places_chunks_under_the_destination_policy(mesh, client, buckets):
    data = os.urandom(2 * CHUNK)
    client.put_object("eu-data", "to-copy", data)
    client.copy_object("eu-data", "to-copy", "fr-data", "copied")
    assert client.get_object("fr-data", "copied").read() == data
    assert holders(mesh, "fr-data", "copied") <= FRENCH


def test_listing_prefix_delimiter_and_pagination(client):
    client.create_bucket("listing", "eu-wide")
    keys = sorted([f"a/{i:02d}" for i in range(7)] + [f"b/c/{i}" for i in range(3)] + ["top1", "top2"])
    for k in keys:
        client.put_object("listing", k, k.encode())
    assert [o.key for o in client.list_objects("listing")] == keys
    assert list(client.list_objects("listing", delimiter="/")) == ["a/", "b/", *[
        o for o in client.list_objects("listing", delimiter="/") if not isinstance(o, str)]]
    top = [x if isinstance(x, str) else x.key for x in client.list_objects("listing", delimiter="/")]
    assert top == ["a/", "b/", "top1", "top2"]
    assert [o.key for o in client.list_objects("listing", prefix="a/", page_size=3)] == keys[:7]
    page = client.list_objects_page("listing", max_keys=4)
    assert page.is_truncated and len(page.objects) == 4
    rest = client.list_objects_page("listing", continuation_token=page.next_token, max_keys=100)
    assert [o.key for o in page.objects + rest.objects] == keys
    assert [o.key for o in client.list_objects("listing", start_after="b/c/1")] == ["b/c/2", "top1", "top2"]
    with pytest.raises(BucketNotEmpty):
        client.delete_bucket("listing")
    for k in keys:
        client.delete_object("listing", k)
    client.delete_bucket("listing")
    with pytest.raises(NoSuchBucket):
        client.head_bucket("listing")


def test_reads_and_writes_survive_one_replica_killed(fresh_mesh):
    with Client(profile=fresh_mesh.profile) as c:
        c.create_bucket("fr-data", "france-only")
        data = os.urandom(3 * CHUNK)
        put = c.put_object("fr-data", "survivor", data)
        victim = put.sites[0]
        fresh_mesh.kill(victim)
        assert c.get_object("fr-data", "survivor").read() == data
        # a write still lands on two French sites: handoff stays inside the policy
        again = c.put_object("fr-data", "during-outage", data)
        assert len(set(again.sites)) >= 2 and set(again.sites) <= FRENCH - {victim}
        assert c.get_object("fr-data", "during-outage").read() == data


def test_write_fails_closed_when_policy_cannot_be_met(fresh_mesh):
    with Client(profile=fresh_mesh.profile) as c:
        c.create_bucket("fr-data", "france-only")
        fresh_mesh.kill("paris-1")
        fresh_mesh.kill("toulouse-1")
        with pytest.raises(QuorumNotReached):
            c.put_object("fr-data", "must-not-spill", os.urandom(CHUNK))
        inv = inventory(fresh_mesh, fresh_mesh.address("munich-1"))
        assert all(b.bucket != "fr-data" for b in inv.buckets)
        assert files_containing(fresh_mesh.data_dir("munich-1"), b"must-not-spill") == []


def test_corrupt_replica_is_detected_and_read_served_from_the_good_one(fresh_mesh):
    with Client(profile=fresh_mesh.profile) as c:
        c.create_bucket("fr-data", "france-only")
        data = os.urandom(CHUNK)
        c.put_object("fr-data", "victim", data)
        digest = next(d for n in fresh_mesh.layout.nodes for b in inventory(fresh_mesh, n.address, "fr-data").buckets
                      if "victim" in b.keys for d in b.chunks)
        copies = [p for n in fresh_mesh.layout.nodes
                  for p in (fresh_mesh.data_dir(n.id) / "chunks").rglob(digest.hex() + "*")]
        assert len(copies) == 2
        raw = bytearray(copies[0].read_bytes())
        raw[-100] ^= 0xFF  # a bit flip in the payload of one copy
        copies[0].write_bytes(bytes(raw))
        assert c.get_object("fr-data", "victim").read() == data
        # and when every copy is bad, the reader refuses instead of returning wrong bytes
        for path in copies[1:]:
            raw = bytearray(path.read_bytes())
            raw[-50] ^= 0xFF
            path.write_bytes(bytes(raw))
        with pytest.raises((IntegrityError, QuorumNotReached)):
            c.get_object("fr-data", "victim").read()


def test_versioning_through_the_native_sdk(client):
    """The same versioning as the S3 door's, through the gRPC door and the SDK: version ids in put
    results, reads and deletes by version id, delete markers, ListObjectVersions page by page."""
    client.create_bucket("fr-sdk-versions", "france-only")
    assert client.get_bucket_versioning("fr-sdk-versions") == ""
    client.put_bucket_versioning("fr-sdk-versions", "Enabled")
    assert client.get_bucket_versioning("fr-sdk-versions") == "Enabled"
    first = client.put_object("fr-sdk-versions", "k", os.urandom(3 * CHUNK + 5))
    second = client.put_object("fr-sdk-versions", "k", b"second")
    assert len(first.version_id) == 24 and first.version_id != second.version_id
    assert client.head_object("fr-sdk-versions", "k").version_id == second.version_id
    old = client.get_object("fr-sdk-versions", "k", version_id=first.version_id)
    assert old.info.version_id == first.version_id and len(old.read()) == 3 * CHUNK + 5
    client.delete_object("fr-sdk-versions", "k")  # a delete marker
    with pytest.raises(NoSuchKey):
        client.head_object("fr-sdk-versions", "k")
    listed = list(client.list_object_versions("fr-sdk-versions", page_size=1))
    assert [(v.version_id, v.is_latest, v.delete_marker) for v in listed][1:] == \
        [(second.version_id, False, False), (first.version_id, False, False)]
    assert listed[0].delete_marker and listed[0].is_latest
    with pytest.raises(NoSuchKey):  # NoSuchVersion
        client.head_object("fr-sdk-versions", "k", version_id="0" * 24)
    with pytest.raises(InvalidRequest):
        client.head_object("fr-sdk-versions", "k", version_id="not-a-version")
    client.delete_object("fr-sdk-versions", "k", version_id=listed[0].version_id)
    assert client.get_object("fr-sdk-versions", "k").read() == b"second"
    for v in listed[1:]:
        client.delete_object("fr-sdk-versions", "k", version_id=v.version_id)
    assert list(client.list_object_versions("fr-sdk-versions")) == []
    client.delete_bucket("fr-sdk-versions")


def test_object_lock_through_the_native_sdk(mesh, client):
    """The S3 door's object lock through the gRPC door and the SDK: a bucket created locked, its
    default retention, a version's retention and legal hold; PermissionDenied for a removal they
    forbid, the bypass of GOVERNANCE for the owner's keys for all its buckets only."""

    bucket = "fr-sdk-locked"
    client.create_bucket(bucket, "france-only", object_lock=True)
    assert client.get_bucket_versioning(bucket) == "Enabled"
    assert client.get_object_lock_configuration(bucket) == LockConfiguration()
    client.put_object_lock_configuration(bucket, LockConfiguration("GOVERNANCE", days=1))
    assert client.get_object_lock_configuration(bucket) == LockConfiguration("GOVERNANCE", 1, 0)
    put = client.put_object(bucket, "k", b"kept")
    retention = client.get_object_retention(bucket, "k", version_id=put.version_id)
    assert retention is not None and retention.mode == "GOVERNANCE"
    with Client(profile=mesh.new_key("demo", "read-write", buckets=(bucket,))) as app:  # an application's key
        with pytest.raises(PermissionDenied):
            app.delete_object(bucket, "k", version_id=put.version_id, bypass_governance=True)
    later = retention.retain_until + datetime.timedelta(days=30)
    with pytest.raises(PermissionDenied):  # a mode changes only with the bypass (the owner's key may)
        client.put_object_retention(bucket, "k", Retention("COMPLIANCE", later), version_id=put.version_id)
    client.put_object_retention(bucket, "k", Retention("COMPLIANCE", later), version_id=put.version_id,
                                bypass_governance=True)
    assert client.get_object_retention(bucket, "k") == Retention("COMPLIANCE", later)
    client.put_object_legal_hold(bucket, "k", True)
    assert client.get_object_legal_hold(bucket, "k", version_id=put.version_id)
    with Client(profile=mesh.new_key("demo", "admin")) as admin:
        for bypass in (False, True):
            with pytest.raises(PermissionDenied):
                admin.delete_object(bucket, "k", version_id=put.version_id, bypass_governance=bypass)
        with pytest.raises(PermissionDenied):  # COMPLIANCE is never shortened
            admin.put_object_retention(bucket, "k", None, version_id=put.version_id, bypass_governance=True)
    assert client.get_object(bucket, "k", version_id=put.version_id).read() == b"kept"
    client.create_bucket("fr-sdk-unlocked", "france-only")
    assert client.get_object_lock_configuration("fr-sdk-unlocked") is None
    with pytest.raises(InvalidRequest):
        client.put_object_lock_configuration("fr-sdk-unlocked")  # versioning is not Enabled


def test_a_locked_version_survives_its_owner_restarted_and_the_other_lost(fresh_mesh):
    """The lock is the version's own, on disk: one index owner SIGKILLed and restarted, then the
    other killed, the restarted one alone still answers the COMPLIANCE retention and the removal
    stays refused."""
    with Client(profile=fresh_mesh.profile) as c:
        c.create_bucket("fr-vault", "france-only", object_lock=True)
        put = c.put_object("fr-vault", "k", b"kept")
        until = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
        c.put_object_retention("fr-vault", "k", Retention("COMPLIANCE", until), version_id=put.version_id)
        table = partition_table(fresh_mesh.layout, "france-only")
        owners = table.replicas(bucket_partition("fr-vault", table.bits))
        fresh_mesh.kill(owners[0])
        fresh_mesh.start_node(owners[0])
        fresh_mesh.kill(owners[1])
        assert c.get_object_retention("fr-vault", "k", version_id=put.version_id) == Retention("COMPLIANCE", until)
        with pytest.raises(PermissionDenied):
            c.delete_object("fr-vault", "k", version_id=put.version_id, bypass_governance=True)
        assert c.get_object("fr-vault", "k", version_id=put.version_id).read() == b"kept"


def test_lifecycle_rules_through_the_native_sdk(client):
    """The S3 door's lifecycle rules through the gRPC door and the SDK: put, read back the same,
    bad rules refused with nothing stored, delete."""
    client.create_bucket("fr-sdk-lifecycle", "france-only")
    assert client.get_bucket_lifecycle("fr-sdk-lifecycle") == []
    rules = [LifecycleRule(id="logs", prefix="logs/", tags=(("stage", "raw"),), size_greater_than=10,
                           expiration_days=30, noncurrent_days=7, newer_noncurrent=2),
             LifecycleRule(id="old", enabled=False,
                           expiration_date=datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)),
             LifecycleRule(id="uploads", abort_multipart_days=3, expired_object_delete_marker=True)]
    client.put_bucket_lifecycle("fr-sdk-lifecycle", rules)
    assert client.get_bucket_lifecycle("fr-sdk-lifecycle") == rules
    for bad in ([], [LifecycleRule(id="nothing")], [LifecycleRule(expiration_days=0)],
                [LifecycleRule(id="a", expiration_days=1), LifecycleRule(id="a", expiration_days=2)]):
        with pytest.raises(InvalidRequest):
            client.put_bucket_lifecycle("fr-sdk-lifecycle", bad)
    assert client.get_bucket_lifecycle("fr-sdk-lifecycle") == rules
    client.delete_bucket_lifecycle("fr-sdk-lifecycle")
    assert client.get_bucket_lifecycle("fr-sdk-lifecycle") == []
