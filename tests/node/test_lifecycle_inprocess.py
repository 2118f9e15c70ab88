"""Lifecycle (`node/data/lifecycle.py`, `node/cluster/lifecycle_loop.py`) over in-process replicas on
the mesh's manual clock: current versions expire into delete markers, noncurrent ones go after
their days but for the newest kept, a lone marker goes, old multipart uploads are aborted; object
lock keeps what it retains until its date; one node (the bucket's leader) acts; the rules alone
drawn by hypothesis against a plain reading of S3's."""

from __future__ import annotations

from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.data.coordinator import Upload, UploadStream
from maillage.node.data.lifecycle import (
    DAY_MS,
    Filter,
    LifecycleConfig,
    Rule,
    SweepCounts,
    current_expires,
    noncurrent_to_remove,
)
from maillage.node.data.versions import ENABLED, Version
from maillage.node.object_lock import GOVERNANCE, LockConfig
from maillage.node.service.tenancy import Caller
from maillage.proto.trust.access import AccessKey
from maillage.storage import Manifest

from .conftest import run

DAY = 86_400
WRITER = Caller(key=AccessKey("AKW", "secret", "acme", "read-write"))


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _put(mesh, bucket: str, key: str, data: bytes = b"x") -> str:
    manifest, _ = await mesh.via("paris-1").service.put_object(WRITER, bucket, Upload(key), UploadStream(_pieces(data)))
    return dict(manifest.attributes).get("version", "")


async def _sweep(mesh) -> SweepCounts:
    """Every node's sweep once; only the bucket's leader acts."""
    total, acting = SweepCounts(), []
    for node_id in mesh.up_nodes():
        done = await mesh.nodes[node_id].lifecycle.sweep()
        if done != SweepCounts():
            acting.append(node_id)
        total.add(done)
    assert len(acting) <= 1, acting
    return total


async def _versions(mesh, bucket: str) -> list[tuple[str, bool, bool]]:
    record = await mesh.via("paris-1").coordinator.head_bucket(bucket)
    listing = await mesh.via("paris-1").service.versions.listing(record)
    return [(v.manifest.key, v.latest, v.marker) for v in listing.versions]


def test_expiration_noncurrent_versions_lone_markers_and_uploads(mesh) -> None:
    async def scenario():
        service = mesh.via("paris-1").service
        await service.create_bucket(WRITER, "logs", "france-only")
        await service.set_bucket_versioning(WRITER, "logs", ENABLED)
        rules = (Rule(id="tmp", filter=Filter(prefix="tmp/"), expiration_days=1, noncurrent_days=2),
                 Rule(id="old", filter=Filter(prefix="keep/"), noncurrent_days=2, newer_noncurrent=1),
                 Rule(id="markers", expired_object_delete_marker=True),
                 Rule(id="uploads", abort_multipart_days=1),
                 Rule(id="off", enabled=False, expiration_days=1))
        await service.set_bucket_lifecycle(WRITER, "logs", LifecycleConfig(rules), "PutBucketLifecycleConfiguration")
        assert (await service.bucket_lifecycle(WRITER, "logs")) == LifecycleConfig(rules)
        await _put(mesh, "logs", "tmp/a")
        for _ in range(3):
            await _put(mesh, "logs", "keep/b")
        await service.create_upload(WRITER, "logs", Upload("tmp/mp"))
        assert await _sweep(mesh) == SweepCounts()  # nothing is due yet
        mesh.clock.advance(DAY + 1)
        assert await _sweep(mesh) == SweepCounts(expired=1, uploads_aborted=1)
        assert await _versions(mesh, "logs") == [("keep/b", True, False), ("keep/b", False, False),
                                                 ("keep/b", False, False), ("tmp/a", True, True),
                                                 ("tmp/a", False, False)]
        mesh.clock.advance(2 * DAY)  # b's oldest noncurrent goes (the newest is kept), tmp/a's too, then its marker
        assert await _sweep(mesh) == SweepCounts(noncurrent_removed=2, markers_removed=1)
        assert await _versions(mesh, "logs") == [("keep/b", True, False), ("keep/b", False, False)]
        mesh.clock.advance(30 * DAY)
        assert await _sweep(mesh) == SweepCounts()  # the newest noncurrent version is kept whatever its age
    run(scenario())


def test_object_lock_keeps_what_lifecycle_would_remove_until_its_date(mesh) -> None:
    async def scenario():
        service = mesh.via("paris-1").service
        await service.create_bucket(WRITER, "vault", "france-only", object_lock=True)
        await service.set_bucket_lock(WRITER, "vault", LockConfig(GOVERNANCE, days=10))
        await service.set_bucket_lifecycle(WRITER, "vault", LifecycleConfig((
            Rule(expiration_days=1, noncurrent_days=1),)), "PutBucketLifecycleConfiguration")
        await _put(mesh, "vault", "k")
        mesh.clock.advance(DAY + 1)
        assert await _sweep(mesh) == SweepCounts(expired=1)  # a delete marker: allowed under lock
        mesh.clock.advance(DAY + 1)
        assert await _sweep(mesh) == SweepCounts(kept_by_lock=1)  # the version is retained 10 days
        mesh.clock.advance(9 * DAY)
        assert await _sweep(mesh) == SweepCounts(noncurrent_removed=1)
        assert await _versions(mesh, "vault") == [("k", True, True)]  # the marker stays: no rule removes it
    run(scenario())


# ----- the rules alone, drawn --------------------------------------------------------------------

def _version(key: str, written_ms: int, size: int = 10, latest: bool = False) -> Version:
    m = Manifest(bucket="b", key=key, version=written_ms << 16, size=size, etag="")
    return Version(m, "0" * 24, latest)


@settings(max_examples=300, deadline=None)
@given(ages=st.lists(st.integers(0, 40), min_size=1, max_size=8), days=st.integers(1, 20),
       keep=st.integers(0, 4), now_days=st.integers(0, 60))
def test_noncurrent_removal_is_exactly_s3s_reading(ages, days, keep, now_days) -> None:
    """Version i (newest first) is noncurrent since version i-1's write; it goes when that is at
    least `days` ago and at least `keep` newer noncurrent versions exist; the current one never."""
    writes = sorted({a * DAY_MS for a in ages}, reverse=True)  # distinct write times, newest first
    versions = [_version("k", w, latest=(i == 0)) for i, w in enumerate(writes)]
    now = now_days * DAY_MS + max(writes)
    rule = Rule(noncurrent_days=days, newer_noncurrent=keep)
    gone = noncurrent_to_remove([rule], versions, now)
    expected = [v for i, v in enumerate(versions) if i >= 1 and now - writes[i - 1] >= days * DAY_MS and i - 1 >= keep]
    assert gone == expected and versions[0] not in gone
    assert not current_expires([Rule(noncurrent_days=days)], versions[0], now)  # no expiration action


@given(key=st.text(max_size=12), size=st.integers(0, 100), prefix=st.text(max_size=3),
       above=st.none() | st.integers(0, 100), below=st.none() | st.integers(0, 100), age=st.integers(0, 10))
def test_a_filter_applies_all_its_conditions(key, size, prefix, above, below, age) -> None:
    rule = Rule(filter=Filter(prefix=prefix, size_greater_than=above, size_less_than=below), expiration_days=3)
    v = _version(key, 0, size=size, latest=True)
    fits = key.startswith(prefix) and (above is None or size > above) and (below is None or size < below)
    assert current_expires([rule], v, age * DAY_MS) == (fits and age >= 3)
