"""Bucket versioning (`node/data/versions.py`) over in-process replicas: version ids, delete markers,
reads and deletes by version id, the null version, listings with markers, residency of every
version, and the chunk GC keeping what a noncurrent version references (and freeing what a deleted
version did, after the grace)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from maillage.node.data.coordinator import Upload, UploadStream, written_at
from maillage.node.data.versions import (
    ENABLED,
    SUSPENDED,
    VERSIONS,
    DeleteMarker,
    NoSuchVersion,
    version_id,
)
from maillage.node.errors import BucketNotEmpty, InvalidArgument, InvalidKey, NoSuchKey
from maillage.proto.frame import decode_frame
from maillage.storage import version_time

from .conftest import FRENCH, TIMINGS, run


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 700):
        yield data[i:i + 700]


class Bucket:
    """One bucket's versioned operations through one node's service layer parts, as a door calls them."""

    def __init__(self, mesh, name: str, via: str = "paris-1") -> None:
        self.mesh, self.name, self.node = mesh, name, mesh.via(via)
        self.versions = self.node.service.versions

    async def record(self):
        return await self.node.coordinator.head_bucket(self.name)

    async def put(self, key: str, data: bytes):
        record = await self.record()
        manifest, _ = await self.node.coordinator.put_object(
            record, Upload(key), UploadStream(_pieces(data)), stamp=await self.versions.stamper(record, key))
        return manifest

    async def read(self, key: str, vid: str | None = None) -> bytes:
        record = await self.record()
        m = await (self.versions.current(record, key) if vid is None else self.versions.get(record, key, vid))
        if m.inline is not None:
            return m.inline
        table = self.node.layout.table(record.policy)
        name_key = self.node.coordinator.key_of(record)
        return b"".join([decode_frame(await self.node.coordinator.read_chunk(table, ref.digest),
                                      expected_digest=ref.digest, key=name_key) for ref in m.chunks])

    async def delete(self, key: str, vid: str | None = None):
        return await self.versions.delete(await self.record(), key, vid)

    async def state(self, state: str) -> None:
        await self.versions.set_state(await self.record(), state)

    async def listing(self, **kw):
        return await self.versions.listing(await self.record(), **kw)

    async def all_versions(self, page: int = 1000, **kw) -> list[tuple[str, str, bool, bool]]:
        """(key, version id, latest, marker) of every version, page after page of `page`."""
        out, key_marker, vid_marker = [], "", ""
        while True:
            listing = await self.listing(key_marker=key_marker, version_id_marker=vid_marker, max_keys=page, **kw)
            assert len(listing.versions) + len(listing.common_prefixes) <= page
            out += [(v.manifest.key, v.version_id, v.latest, v.marker) for v in listing.versions]
            if not listing.is_truncated:
                return out
            key_marker, vid_marker = listing.next_key_marker, listing.next_version_id_marker


def test_versions_markers_and_deletes_by_version_id(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        b = Bucket(mesh, "docs")
        await b.state(ENABLED)
        v1 = version_id(await b.put("a", b"one"))
        v2 = version_id(await b.put("a", b"two" * 1000))  # chunked
        assert v1 and v2 and v1 != v2 and len(v1) == 24
        assert await b.read("a") == b"two" * 1000
        assert await b.read("a", v1) == b"one"
        assert await b.all_versions() == [("a", v2, True, False), ("a", v1, False, False)]
        # a DELETE without version id writes a marker; the key reads as gone, the versions stay
        deleted = await b.delete("a")
        assert deleted.marker and deleted.version_id not in (v1, v2)
        with pytest.raises(DeleteMarker) as gone:
            await b.read("a")
        assert not gone.value.asked and gone.value.version_id == deleted.version_id
        with pytest.raises(DeleteMarker) as asked:
            await b.read("a", deleted.version_id)
        assert asked.value.asked
        assert await b.all_versions() == [("a", deleted.version_id, True, True), ("a", v2, False, False),
                                          ("a", v1, False, False)]
        listing = await b.node.coordinator.list_objects(await b.record())
        assert listing.contents == []
        # removing the marker brings the newest version back; removing the current one the one before
        assert (await b.delete("a", deleted.version_id)).marker
        assert await b.read("a") == b"two" * 1000
        await b.delete("a", v2)
        assert await b.read("a") == b"one"
        with pytest.raises(NoSuchVersion):
            await b.read("a", v2)
        # through another coordinator, the same answers
        other = Bucket(mesh, "docs", via="lyon-1")
        assert await other.read("a", v1) == b"one"
        await other.delete("a", v1)
        with pytest.raises(NoSuchKey):
            await other.read("a")
        assert await other.all_versions() == []
    run(scenario())


def test_null_version_before_versioning_and_when_suspended(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        b = Bucket(mesh, "docs")
        before = await b.put("k", b"before")  # unversioned: the null version, at the key alone
        assert version_id(before) is None
        await b.state(ENABLED)
        assert await b.all_versions() == [("k", "null", True, False)]
        assert await b.read("k", "null") == b"before"
        v1 = version_id(await b.put("k", b"v1"))
        assert await b.all_versions() == [("k", v1, True, False), ("k", "null", False, False)]
        assert await b.read("k", "null") == b"before"
        await b.state(SUSPENDED)
        null = await b.put("k", b"suspended")  # replaces the null version, keeps v1
        assert version_id(null) == "null"
        assert await b.all_versions() == [("k", "null", True, False), ("k", v1, False, False)]
        assert await b.read("k", "null") == b"suspended" and await b.read("k", v1) == b"v1"
        marker = await b.delete("k")  # suspended: the marker is the null version
        assert marker.marker and marker.version_id == "null"
        assert await b.all_versions() == [("k", "null", True, True), ("k", v1, False, False)]
        await b.delete("k", "null")
        assert await b.read("k") == b"v1"
        with pytest.raises(NoSuchVersion):
            await b.read("k", "null")
    run(scenario())


def test_listing_pages_prefixes_and_markers(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        b = Bucket(mesh, "docs")
        await b.put("old/unversioned", b"x")
        await b.state(ENABLED)
        for key in ("a", "b/1", "b/2", "c"):
            for i in range(3):
                await b.put(key, f"{key}{i}".encode())
        await b.delete("c")
        whole = await b.all_versions()
        assert [k for k, *_ in whole] == ["a"] * 3 + ["b/1"] * 3 + ["b/2"] * 3 + ["c"] * 4 + ["old/unversioned"]
        assert [latest for _, _, latest, _ in whole] == [True, False, False] * 3 + [True, False, False, False, True]
        for page in (1, 2, 5):  # every page size gives the same versions, each once
            assert await b.all_versions(page=page) == whole
        rolled = await b.listing(delimiter="/")
        assert rolled.common_prefixes == ["b/", "old/"]
        assert [v.manifest.key for v in rolled.versions] == ["a"] * 3 + ["c"] * 4
        first = await b.listing(delimiter="/", max_keys=4)
        assert first.is_truncated and first.common_prefixes == ["b/"] and first.next_key_marker == "b/"
        rest = await b.listing(delimiter="/", key_marker="b/")
        assert [v.manifest.key for v in rest.versions] == ["c"] * 4 and rest.common_prefixes == ["old/"]
        assert [v.manifest.key for v in (await b.listing(prefix="b/2")).versions] == ["b/2"] * 3
    run(scenario())


def test_hostile_version_ids_and_keys(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        await mesh.create_bucket("other", "france-only")
        b, other = Bucket(mesh, "docs"), Bucket(mesh, "other")
        await b.state(ENABLED)
        await other.state(ENABLED)
        vid = version_id(await b.put("k", b"mine"))
        await other.put("k", b"theirs")
        for bad in ("", "x" * 2000, "../../etc", "NULL", vid.upper(), vid + "0", "\x01" * 24):
            with pytest.raises(InvalidArgument):
                await b.read("k", bad)
            with pytest.raises(InvalidArgument):
                await b.delete("k", bad)
        with pytest.raises(NoSuchVersion):  # a version id of another bucket
            await other.read("k", vid)
        assert await b.read("k", vid) == b"mine"
        with pytest.raises(InvalidKey):
            await b.put("a\x01b", b"x")
        with pytest.raises(InvalidArgument):
            await b.listing(version_id_marker=vid)
        with pytest.raises(BucketNotEmpty):  # versions are objects: the bucket keeps them
            await b.versions.check_empty(await b.record())
        await b.delete("k", vid)
        deleted = await b.delete("k")  # a marker
        with pytest.raises(BucketNotEmpty):
            await b.versions.check_empty(await b.record())
        await b.delete("k", deleted.version_id)
        await b.versions.check_empty(await b.record())
    run(scenario())


def test_versions_rest_in_policy_and_gc_keeps_noncurrent_chunks(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        b = Bucket(mesh, "docs")
        await b.state(ENABLED)
        old = bytes(range(256)) * 20  # 5 KiB: chunks of the mesh's 1 KiB
        first = await b.put("k", old)
        v1, old_chunks = version_id(first), {ref.digest for ref in first.chunks}
        new = await b.put("k", b"new" * 2000)
        marker = await b.delete("k")
        generation = (await b.record()).generation
        for node_id, node in mesh.nodes.items():  # every version's entry rests inside the policy only
            held = [m.key for m in node.local.meta.iter_manifests("docs", generation)]
            assert node_id in FRENCH or not held, (node_id, held)
        assert any(k.startswith(VERSIONS) for n in FRENCH for k in
                   (m.key for m in mesh.nodes[n].local.meta.iter_manifests("docs", generation)))
        mesh.advance(TIMINGS.gc_grace + 1)
        await mesh.gossip(3)
        await mesh.collect_garbage()
        assert all(mesh.chunk_holders(d) for d in old_chunks)  # noncurrent: kept past the grace
        assert await b.read("k", v1) == old
        await b.delete("k", v1)
        await b.delete("k", marker.version_id)
        assert await b.read("k") == b"new" * 2000  # the newest remaining version is current again
        gone = old_chunks - {ref.digest for ref in new.chunks}
        assert gone and all(mesh.chunk_holders(d) for d in gone)
        await mesh.collect_garbage()  # held past the grace and no live version references them: freed
        assert not any(mesh.chunk_holders(d) for d in gone)
        assert all(len(mesh.chunk_holders(r.digest)) >= 2 for r in new.chunks)
        assert await b.read("k") == b"new" * 2000
    run(scenario())


def test_a_copy_into_an_unversioned_bucket_is_no_version(mesh) -> None:
    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        await mesh.create_bucket("plain", "france-only")
        b = Bucket(mesh, "docs")
        await b.state(ENABLED)
        vid = version_id(await b.put("k", b"v1"))
        await b.put("k", b"v2")
        service = b.node.coordinator
        source = await b.versions.get(await b.record(), "k", vid)
        plain = await service.head_bucket("plain")
        copied = await service.copy_object(await b.record(), "k", plain, "c", source=source,
                                           stamp=await b.versions.stamper(plain, "c"))
        assert version_id(copied) is None and copied.chunks == source.chunks and copied.inline == source.inline
        assert await Bucket(mesh, "plain").all_versions() == [("c", "null", True, False)]
    run(scenario())


def test_a_listing_page_reads_pages_in_step_with_what_it_lists(mesh, monkeypatch) -> None:
    """A page of versions walks the bucket's keys only as far as the versions it lists: never the
    whole bucket ahead of them (a fully versioned bucket has no null version kept at its key alone)."""
    from maillage.node.data import coordinator as coordinator_module
    monkeypatch.setattr(coordinator_module, "LIST_PAGE", 4)

    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        b = Bucket(mesh, "docs")
        await b.state(ENABLED)
        for i in range(60):
            await b.put(f"k{i:03d}", b"x")
        c = b.node.coordinator
        pages = []
        merged = c._merged_page

        async def counted(*args, **kwargs):
            pages.append(args)
            return await merged(*args, **kwargs)
        monkeypatch.setattr(c, "_merged_page", counted)
        listing = await b.listing(max_keys=2)
        assert [v.manifest.key for v in listing.versions] == ["k000", "k001"] and listing.is_truncated
        assert len(pages) <= 4, len(pages)  # a page of slots, a page of keys (and their next pages)
        pages.clear()
        listing = await b.listing(max_keys=2, key_marker="k040")
        assert [v.manifest.key for v in listing.versions] == ["k041", "k042"]
        assert len(pages) <= 4, len(pages)
    run(scenario())


def test_an_index_replica_back_from_a_partition_sees_the_state_it_missed(mesh) -> None:
    """Every write reads the bucket's versioning state from the index replicas, never from a cache
    nor from its own store alone: an index replica that was cut off while versioning was enabled
    does not know it missed it, and a write through it must still keep the version it replaces."""
    from maillage.placement import bucket_partition

    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        table = mesh.via("paris-1").layout.table("france-only")
        cut_off = table.replicas(bucket_partition("docs", table.bits))[0]
        other = next(n for n in sorted(FRENCH) if n != cut_off)
        await Bucket(mesh, "docs", via=cut_off).put("k", b"before")
        mesh.down(cut_off)
        await Bucket(mesh, "docs", via=other).state(ENABLED)
        mesh.up(cut_off)
        await mesh.gossip(3)
        b = Bucket(mesh, "docs", via=cut_off)
        vid = version_id(await b.put("k", b"after"))
        assert await b.all_versions() == [("k", vid, True, False), ("k", "null", False, False)]
        assert await b.read("k", "null") == b"before"
    run(scenario())


def test_repair_brings_a_replica_back_to_every_version(mesh) -> None:
    """Versions are index entries: a replica down while versions were written and deleted gets them
    from repair like any object, and then answers every version read as its fellows do."""
    from maillage.placement import bucket_partition

    async def scenario():
        record = await mesh.create_bucket("docs", "france-only")
        table = mesh.via("paris-1").layout.table("france-only")
        replicas = table.replicas(bucket_partition("docs", table.bits))
        b = Bucket(mesh, "docs", via=replicas[0])
        await b.state(ENABLED)
        v1 = version_id(await b.put("k", b"one" * 600))
        mesh.down(replicas[1])
        v2 = version_id(await b.put("k", b"two" * 600))
        marker = await b.delete("k")
        await b.delete("k", v1)
        mesh.up(replicas[1])
        await mesh.gossip(3)
        await mesh.repair(rounds=2)
        stores = [{(m.key, m.version, m.deleted) for m in mesh.nodes[n].local.meta.iter_manifests("docs",
                                                                                                 record.generation)}
                  for n in replicas]
        assert stores[0] == stores[1]
        back = Bucket(mesh, "docs", via=replicas[1])
        assert await back.all_versions() == [("k", marker.version_id, True, True), ("k", v2, False, False)]
        assert await back.read("k", v2) == b"two" * 600
        with pytest.raises(NoSuchVersion):
            await back.read("k", v1)
    run(scenario())


def test_completed_uploads_and_copies_are_new_versions(mesh) -> None:
    """A completed multipart upload and a copy on a versioned bucket each add a version and keep the
    one they replace (the same stamp as a PUT)."""
    import hashlib

    from maillage.node.data.coordinator import StreamEnd
    from maillage.node.data.multipart import MultipartUploads

    async def scenario():
        await mesh.create_bucket("docs", "france-only")
        b = Bucket(mesh, "docs")
        await b.state(ENABLED)
        first = version_id(await b.put("k", b"first"))
        record = await b.record()
        uploads = MultipartUploads(b.node.coordinator, min_part_size=1)
        upload = await uploads.create_upload(record, Upload("k"), initiator="t")
        data = b"part" * 700
        part = await uploads.upload_part(record, "k", upload.upload_id, 1,
                                         UploadStream(_pieces(data), StreamEnd(md5=hashlib.md5(data).hexdigest())))
        done = await uploads.complete_upload(record, "k", upload.upload_id, [(1, part.etag)],
                                             stamp=await b.versions.stamper(record, "k"))
        composed = version_id(done)
        copied = await b.node.coordinator.copy_object(
            record, "k", record, "k", source=await b.versions.get(record, "k", first),
            stamp=await b.versions.stamper(record, "k"))
        assert await b.read("k") == b"first" and await b.read("k", composed) == data
        assert [vid for _, vid, _, _ in await b.all_versions()] == [version_id(copied), composed, first]
    run(scenario())


def test_last_modified_stays_the_writes_when_a_version_is_restated(mesh) -> None:
    """Tags changed (on the current version or an older one) and a delete marker removed renumber
    the entries they rewrite, so they win on every replica; the versions' Last-Modified (what S3
    shows, what lifecycle counts days from) stays the time they were written. A copy is a new write."""
    async def scenario() -> None:
        await mesh.create_bucket("docs", "france-only")
        docs = Bucket(mesh, "docs")
        await docs.state(ENABLED)
        old = await docs.put("k", b"one")
        mesh.advance(60)
        new = await docs.put("k", b"two")
        mesh.advance(60)
        record = await docs.record()
        tagged = await docs.versions.set_attribute(record, "k", version_id(new), "tags", "a=1")
        older = await docs.versions.set_attribute(record, "k", version_id(old), "tags", "b=2")
        assert tagged.version > new.version and written_at(tagged) == written_at(new)
        assert older.version > old.version and written_at(older) == written_at(old)
        mesh.advance(60)
        marker = await docs.delete("k")
        mesh.advance(60)
        await docs.delete("k", marker.version_id)
        current = await docs.versions.current(record, "k")
        assert version_id(current) == version_id(new) and written_at(current) == written_at(new)
        listed = {version_id(v.manifest): written_at(v.manifest) for v in (await docs.listing()).versions}
        assert listed == {version_id(new): written_at(new), version_id(old): written_at(old)}
        mesh.advance(60)
        copy = await docs.node.coordinator.copy_object(record, "k", record, "copy")
        assert written_at(copy) == version_time(copy.version) > written_at(new)

    run(scenario())


def test_removing_every_version_at_once_leaves_no_version_behind(mesh) -> None:
    """Removals of a key's versions at once (ceph/s3-tests' concurrent test): removing the current
    version promotes the newest remaining one, which another removal may be taking away meanwhile.
    Forced here: version 2 is removed while the removal of version 3 promotes it. The key must not
    end up naming a removed version (read as current, counted by DeleteBucket, not listed)."""
    async def scenario() -> None:
        await mesh.create_bucket("docs", "france-only")
        docs = Bucket(mesh, "docs")
        await docs.state(ENABLED)
        v1, v2, v3 = [version_id(await docs.put("k", f"v{i}".encode())) for i in (1, 2, 3)]
        coordinator = docs.node.coordinator
        write_newest = coordinator.write_newest
        raced = []

        async def promote_late(bucket, manifest):
            if not raced:  # the promotion of v2: v2 goes away before it is written to the key
                raced.append(await docs.delete("k", v2))
            return await write_newest(bucket, manifest)

        coordinator.write_newest = promote_late
        try:
            await docs.delete("k", v3)
        finally:
            coordinator.write_newest = write_newest
        assert raced and await docs.all_versions() == [("k", v1, True, False)]
        assert await docs.read("k") == b"v1"
        await docs.delete("k", v1)
        with pytest.raises(NoSuchKey):
            await docs.read("k")
        await docs.versions.check_empty(await docs.record())

    run(scenario())
