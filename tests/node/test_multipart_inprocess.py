"""Multipart uploads (`node/uploads.py`, on the coordinator), over in-process replicas: parts stored
as chunks in the bucket's reserved key space, completion composing the object from the parts' chunk
lists (no byte copied), listings, abort, expiry, and the reserved space neither writable nor
listable by users."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator

import pytest

from maillage.node.cluster.upload_expiry import UploadExpiry
from maillage.node.data.coordinator import Coordinator, StreamEnd, Upload, UploadStream
from maillage.node.data.multipart import (
    MAX_UPLOAD_KEY_BYTES,
    EntityTooLarge,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    MultipartUploads,
    NoSuchUpload,
    multipart_md5,
)
from maillage.node.errors import InvalidArgument, InvalidKey, NoSuchKey
from maillage.node.s3.errors import S3Error
from maillage.node.s3.multipart import complete_request
from maillage.placement import bucket_partition
from maillage.proto import pb
from maillage.proto.etags import composed_etag
from maillage.proto.trust.access import AccessDoc, ensure_naming_secret

from .conftest import FRENCH, TIMINGS, run

MIN_PART = 2048  # the in-process mesh cuts 1 KiB chunks; parts of 2 KiB and more are "large enough"


@pytest.fixture()
def mp(mesh):
    return mesh


class ByName:
    """The multipart operations addressed by bucket name, as these tests write them: each call
    looks the bucket's record up first (in a node, the service layer hands the checked record down)."""

    def __init__(self, uploads: MultipartUploads, coordinator: Coordinator) -> None:
        self._uploads, self._coordinator = uploads, coordinator

    def __getattr__(self, name: str):
        method = getattr(self._uploads, name)

        async def call(bucket: str, *args, **kwargs):
            return await method(await self._coordinator.head_bucket(bucket), *args, **kwargs)
        return call


def uploads(mesh, via=None, **limits) -> ByName:
    """The multipart operations through node `via`'s coordinator, with parts of MIN_PART "large enough"."""
    limits.setdefault("min_part_size", MIN_PART)
    coordinator = mesh.via(via).coordinator
    return ByName(MultipartUploads(coordinator, **limits), coordinator)


def md5_body(pieces: AsyncIterator[bytes], md5: str) -> UploadStream:
    """A part's body as the S3 door hands it over: its MD5 (computed while it streams) at its end."""
    return UploadStream(pieces, StreamEnd(md5=md5))


async def _pieces(data: bytes, size: int = 700) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def put_part(mesh, bucket, key, upload_id, number, data, *, via=None, expiry=None):
    md5 = hashlib.md5(data).hexdigest()  # what the S3 front door computes while the part streams in
    return await uploads(mesh, via).upload_part(bucket, key, upload_id, number, md5_body(_pieces(data), md5),
                                                expiry=expiry)


def live_reserved(mesh, bucket: str) -> set[str]:
    """Reserved keys with a live (not tombstoned) newest version on any node."""
    live = set()
    for node in mesh.nodes.values():
        for m in node.local.meta.iter_manifests(bucket):
            if m.key.startswith("\x01") and not m.deleted:
                live.add(m.key)
    return live


def test_completing_composes_the_object_from_the_parts_chunks_without_copying(mp) -> None:
    async def scenario():
        await mp.create_bucket("scans", "france-only")
        c = mp.via("munich-1").coordinator  # a coordinator outside the policy
        mpu = uploads(mp, "munich-1")
        upload = await mpu.create_upload("scans", Upload("big/file", content_type="text/x-test",
                                              user_metadata={"owner": "alice"},
                                              attributes={"cache-control": "no-cache"}), initiator="t1")
        data = [bytes([i]) * size for i, size in ((1, 3000), (2, 2500), (3, 10))]
        parts = [await put_part(mp, "scans", "big/file", upload.upload_id, n, d, via=via)
                 for n, d, via in zip((1, 2, 3), data, ("paris-1", "lyon-1", "munich-1"))]
        assert [p.etag for p in parts] == [hashlib.md5(d).hexdigest() for d in data]
        # even the 10-byte last part is chunks, never inline
        stored = [await c.latest(await c.head_bucket("scans"), f"\x01mpu/p/{upload.upload_id}/{n:05d}")
                  for n in (1, 2, 3)]
        assert all(m.inline is None and m.chunks for m in stored)
        m = await mpu.complete_upload("scans", "big/file", upload.upload_id,
                                    [(p.number, f'"{p.etag}"') for p in parts])
        assert m.chunks == stored[0].chunks + stored[1].chunks + stored[2].chunks
        assert m.size == sum(map(len, data)) and m.inline is None
        assert m.etag == composed_etag(m.chunks, 3) and m.etag.endswith("-3")
        attributes = dict(m.attributes)
        assert attributes["md5"] == multipart_md5([p.etag for p in parts])
        assert attributes["md5"] == hashlib.md5(b"".join(hashlib.md5(d).digest() for d in data)).hexdigest() + "-3"
        assert attributes["cache-control"] == "no-cache" and "mpu.initiator" not in attributes
        assert m.content_type == "text/x-test" and dict(m.user_metadata) == {"owner": "alice"}
        for via in mp.nodes:
            assert await mp.get("scans", "big/file", via=via) == b"".join(data)
        # the upload's record and parts are gone (tombstones), the listing shows the object only
        assert live_reserved(mp, "scans") == set()
        listing = await c.list_objects(await c.head_bucket("scans"))
        assert [o.key for o in listing.contents] == ["big/file"]
        assert (await mpu.list_uploads("scans")).uploads == []
        with pytest.raises(NoSuchUpload):
            await put_part(mp, "scans", "big/file", upload.upload_id, 4, b"late")
        # residency: every index entry and chunk of the upload rests in France only
        for node_id, node in mp.nodes.items():
            if node_id not in FRENCH:
                assert not list(node.local.meta.iter_manifests("scans"))
                assert not list(node.local.chunks.iter_digests())
        for ref in m.chunks:
            assert len(mp.chunk_holders(ref.digest)) >= 2 and mp.chunk_holders(ref.digest) <= FRENCH
        # the SDK recomputes the same composed etag from the chunk list it reads (protobuf refs)
        assert composed_etag([pb.ChunkRef(digest=r.digest, length=r.length) for r in m.chunks], 3) == m.etag
    run(scenario())


def test_a_retried_completion_answers_the_object_it_made(mp) -> None:
    """A client whose CompleteMultipartUpload answer was lost sends it again: the same object (S3
    answers 200 with the same ETag), not NoSuchUpload; other parts named, or a later write of the
    key, are NoSuchUpload again."""
    async def scenario():
        await mp.create_bucket("retry", "france-only")
        mpu = uploads(mp, "paris-1")
        upload = await mpu.create_upload("retry", Upload("k"), initiator="t1")
        data = [b"a" * 3000, b"b" * 10]
        parts = [await put_part(mp, "retry", "k", upload.upload_id, n, d) for n, d in zip((1, 2), data)]
        named = [(p.number, f'"{p.etag}"') for p in parts]
        made = await mpu.complete_upload("retry", "k", upload.upload_id, named)
        again = await uploads(mp, "lyon-1").complete_upload("retry", "k", upload.upload_id, named)
        assert (again.etag, again.version, dict(again.attributes)["md5"]) == \
            (made.etag, made.version, dict(made.attributes)["md5"])
        with pytest.raises(NoSuchUpload):
            await mpu.complete_upload("retry", "k", upload.upload_id, named[:1])
        await mp.put("retry", "k", b"overwritten")
        with pytest.raises(NoSuchUpload):
            await mpu.complete_upload("retry", "k", upload.upload_id, named)
    run(scenario())


def test_complete_checks_the_parts_named(mp) -> None:
    async def scenario():
        await mp.create_bucket("scans", "france-only")
        mpu = uploads(mp, "paris-1")
        up = await mpu.create_upload("scans", Upload("k"))
        p1 = await put_part(mp, "scans", "k", up.upload_id, 1, b"a" * 3000)
        p2 = await put_part(mp, "scans", "k", up.upload_id, 2, b"b" * 100)
        p3 = await put_part(mp, "scans", "k", up.upload_id, 3, b"c" * 100)
        with pytest.raises(InvalidPartOrder):
            await mpu.complete_upload("scans", "k", up.upload_id, [(2, p2.etag), (1, p1.etag)])
        with pytest.raises(InvalidPartOrder):
            await mpu.complete_upload("scans", "k", up.upload_id, [(1, p1.etag), (1, p1.etag)])
        with pytest.raises(InvalidPart, match="part 5"):
            await mpu.complete_upload("scans", "k", up.upload_id, [(1, p1.etag), (5, p2.etag)])
        with pytest.raises(InvalidPart, match="ETag"):
            await mpu.complete_upload("scans", "k", up.upload_id, [(1, p2.etag), (2, p2.etag)])
        with pytest.raises(EntityTooSmall):  # part 2 (100 bytes) is not the last
            await mpu.complete_upload("scans", "k", up.upload_id, [(1, p1.etag), (2, p2.etag), (3, p3.etag)])
        with pytest.raises(InvalidPart):
            await mpu.complete_upload("scans", "k", up.upload_id, [])
        with pytest.raises(InvalidArgument):
            await put_part(mp, "scans", "k", up.upload_id, 10001, b"x")
        with pytest.raises(InvalidArgument):
            await put_part(mp, "scans", "k", up.upload_id, 0, b"x")
        # another key, a malformed id, an unknown id: no such upload
        for key, upload_id in (("other", up.upload_id), ("k", "../../etc"), ("k", "0" * 32)):
            with pytest.raises(NoSuchUpload):
                await put_part(mp, "scans", key, upload_id, 1, b"x")
        # a part uploaded again replaces the first (newest wins); parts may skip numbers
        p1b = await put_part(mp, "scans", "k", up.upload_id, 1, b"A" * 2500)
        with pytest.raises(InvalidPart, match="ETag"):
            await mpu.complete_upload("scans", "k", up.upload_id, [(1, p1.etag), (3, p3.etag)])
        m = await mpu.complete_upload("scans", "k", up.upload_id, [(1, p1b.etag), (3, p3.etag)])
        assert await mp.get("scans", "k") == b"A" * 2500 + b"c" * 100
        assert m.etag.endswith("-2")
        # a failed part upload (too large) writes nothing
        up2 = await mpu.create_upload("scans", Upload("k2"))
        with pytest.raises(EntityTooLarge):
            await uploads(mp, "paris-1", max_part_size=4000).upload_part(
                "scans", "k2", up2.upload_id, 1, md5_body(_pieces(b"z" * 5000), hashlib.md5(b"z" * 5000).hexdigest()))
        _, listing = await mpu.list_parts("scans", "k2", up2.upload_id)
        assert listing.parts == []
    run(scenario())


def test_list_parts_and_uploads_page_by_page(mp) -> None:
    async def scenario():
        await mp.create_bucket("scans", "eu-wide")
        mpu = uploads(mp, "lyon-1")
        up = await mpu.create_upload("scans", Upload("k"), initiator="t1")
        for n in (1, 2, 3, 7, 12):
            await put_part(mp, "scans", "k", up.upload_id, n, bytes([n]) * 30)
        got, page = await mpu.list_parts("scans", "k", up.upload_id, max_parts=2)
        assert got.initiator == "t1" and got.key == "k"
        assert [p.number for p in page.parts] == [1, 2] and page.is_truncated and page.next_marker == 2
        _, page = await mpu.list_parts("scans", "k", up.upload_id, marker=2, max_parts=2)
        assert [p.number for p in page.parts] == [3, 7] and page.is_truncated
        _, page = await mpu.list_parts("scans", "k", up.upload_id, marker=7)
        assert [(p.number, p.size) for p in page.parts] == [(12, 30)] and not page.is_truncated
        assert page.parts[0].etag == hashlib.md5(bytes([12]) * 30).hexdigest()

        made = {}
        for key in ("a/1", "a/2", "b/1", "c", "a/1"):
            u = await mpu.create_upload("scans", Upload(key))
            made.setdefault(key, []).append(u.upload_id)
        everything = await mpu.list_uploads("scans")
        order = [(u.key, u.upload_id) for u in everything.uploads]
        assert order == sorted(order) and len(order) == 6 and not everything.is_truncated
        assert [u for k, u in order if k == "a/1"] == made["a/1"]  # same key: creation order
        top = await mpu.list_uploads("scans", delimiter="/")
        assert [u.key for u in top.uploads] == ["c", "k"] and top.common_prefixes == ["a/", "b/"]
        under_a = await mpu.list_uploads("scans", prefix="a/")
        assert [u.key for u in under_a.uploads] == ["a/1", "a/1", "a/2"]
        # pages of two, resuming from the markers each page gives
        seen, key_marker, id_marker = [], "", ""
        for _ in range(10):
            page = await mpu.list_uploads("scans", key_marker=key_marker, upload_id_marker=id_marker, max_uploads=2)
            seen += [(u.key, u.upload_id) for u in page.uploads]
            if not page.is_truncated:
                break
            key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker
        assert seen == order
        after = await mpu.list_uploads("scans", key_marker="a/1")  # a key marker alone: past all its uploads
        assert [u.key for u in after.uploads] == ["a/2", "b/1", "c", "k"]
        paged = await mpu.list_uploads("scans", delimiter="/", max_uploads=1)
        assert paged.common_prefixes == ["a/"] and paged.is_truncated and paged.next_key_marker == "a/"
        rest = await mpu.list_uploads("scans", delimiter="/", key_marker="a/")
        assert rest.common_prefixes == ["b/"] and [u.key for u in rest.uploads] == ["c", "k"]
    run(scenario())


def test_abort_drops_the_parts_and_the_gc_keeps_part_chunks_until_then(mp) -> None:
    async def scenario():
        await mp.create_bucket("scans", "france-only")
        c = mp.via("paris-1").coordinator
        mpu = uploads(mp, "paris-1")
        up = await mpu.create_upload("scans", Upload("k"))
        part = await put_part(mp, "scans", "k", up.upload_id, 1, b"p" * 3000)
        stored = await c.latest(await c.head_bucket("scans"), f"\x01mpu/p/{up.upload_id}/00001")
        digests = [r.digest for r in stored.chunks]
        # past the GC grace, an unfinished upload's chunks are referenced like any object's
        mp.advance(200)
        await mp.gossip(3)
        await mp.collect_garbage()
        assert all(mp.chunk_holders(d) for d in digests)
        await mpu.abort_upload("scans", "k", up.upload_id)
        assert live_reserved(mp, "scans") == set()
        with pytest.raises(NoSuchUpload):
            await mpu.complete_upload("scans", "k", up.upload_id, [(1, part.etag)])
        with pytest.raises(NoSuchUpload):
            await mpu.abort_upload("scans", "k", up.upload_id)
        with pytest.raises(NoSuchKey):
            await c.head_object(await c.head_bucket("scans"), "k")
        mp.advance(200)
        await mp.gossip(3)
        await mp.collect_garbage()
        assert not any(mp.chunk_holders(d) for d in digests)
    run(scenario())


def test_a_part_racing_an_abort_is_dropped(mp) -> None:
    async def scenario():
        await mp.create_bucket("scans", "france-only")
        mpu = uploads(mp, "paris-1")
        up = await mpu.create_upload("scans", Upload("k"))
        streaming, release = asyncio.Event(), asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"x" * 1500
            streaming.set()
            await release.wait()
            yield b"y" * 1500

        racing = asyncio.ensure_future(mpu.upload_part("scans", "k", up.upload_id, 1, md5_body(slow(), "00" * 16)))
        await streaming.wait()
        await uploads(mp, "lyon-1").abort_upload("scans", "k", up.upload_id)
        release.set()
        with pytest.raises(NoSuchUpload, match="while part 1"):
            await racing
        assert live_reserved(mp, "scans") == set()
    run(scenario())


def test_unfinished_uploads_expire_lazily_and_by_the_sweep(mp) -> None:
    async def scenario():
        await mp.create_bucket("scans", "france-only")
        await mp.create_bucket("other", "eu-wide")
        mpu = uploads(mp, "paris-1")
        old = await mpu.create_upload("scans", Upload("old"))
        await put_part(mp, "scans", "old", old.upload_id, 1, b"o" * 100)
        swept = await mpu.create_upload("other", Upload("swept"))
        mp.advance(50)
        await mp.gossip(3)
        young = await mpu.create_upload("scans", Upload("young"))
        # with a 30 s expiry: the old ones are no longer listed, and named, they are aborted
        listing = await mpu.list_uploads("scans", expiry=30)
        assert [u.key for u in listing.uploads] == ["young"]
        assert len((await mpu.list_uploads("scans")).uploads) == 2  # not aborted by a listing
        with pytest.raises(NoSuchUpload, match="expired"):
            await put_part(mp, "scans", "old", old.upload_id, 2, b"late", expiry=30)
        assert not any(k for k in live_reserved(mp, "scans") if old.upload_id in k)
        await put_part(mp, "scans", "young", young.upload_id, 1, b"y", expiry=30)
        # the sweep (a background loop of every node, each over the buckets it leads: together all
        # of them) aborts expired uploads everywhere
        node = mp.nodes["toulouse-1"]
        assert node.upload_expiry in node.background  # started with repair, GC and scrub, S3 port or not
        swept_by = [await UploadExpiry(n.coordinator, n.service.uploads, 30, interval=1).sweep()
                    for n in mp.nodes.values()]
        assert sum(swept_by) == 1
        assert (await mpu.list_uploads("other")).uploads == []
        with pytest.raises(NoSuchUpload):
            await mpu.list_parts("other", "swept", swept.upload_id)
        assert [u.key for u in (await mpu.list_uploads("scans")).uploads] == ["young"]
    run(scenario())


def test_the_reserved_key_space_is_neither_writable_nor_listable(mp) -> None:
    async def scenario():
        await mp.create_bucket("scans", "france-only")
        c = mp.via("paris-1").coordinator
        mpu = uploads(mp, "paris-1")
        up = await mpu.create_upload("scans", Upload("k"))
        await put_part(mp, "scans", "k", up.upload_id, 1, b"x" * 10)
        reserved = f"\x01mpu/p/{up.upload_id}/00001"
        with pytest.raises(InvalidKey, match="reserves"):
            await mp.put("scans", reserved, b"forged")
        with pytest.raises(InvalidKey):
            await mp.put("scans", "\x01anything", b"forged")
        with pytest.raises(InvalidKey):
            await c.head_object(await c.head_bucket("scans"), reserved)
        with pytest.raises(InvalidKey):
            await c.delete_object("scans", reserved)
        await mp.put("scans", "visible", b"v")
        with pytest.raises(InvalidKey):
            await c.copy_object(await c.head_bucket("scans"), "visible", await c.head_bucket("scans"), "\x01mpu/u/x")
        with pytest.raises(InvalidKey):
            await mpu.create_upload("scans", Upload("\x01mpu/u/x"))
        with pytest.raises(InvalidKey, match="multipart"):
            await mpu.create_upload("scans", Upload("k" * (MAX_UPLOAD_KEY_BYTES + 1)))
        assert [o.key for o in (await c.list_objects(await c.head_bucket("scans"))).contents] == ["visible"]
        for prefix in ("\x01", "\x01mpu/", "\x01mpu/p/"):
            assert (await c.list_objects(await c.head_bucket("scans"), prefix=prefix)).contents == []
        page = await c.list_objects(await c.head_bucket("scans"), max_keys=1, start_after="\x00")
        assert [o.key for o in page.contents] == ["visible"] and not page.is_truncated
        # an unfinished upload does not keep the bucket from being deleted: it goes with the bucket
        await mp.delete("scans", "visible")
        await mp.delete_bucket("scans")
        await mp.create_bucket("scans", "france-only")
        assert (await mpu.list_uploads("scans")).uploads == []
        with pytest.raises(NoSuchUpload):
            await mpu.list_parts("scans", "k", up.upload_id)
    run(scenario())


def test_the_complete_request_body_is_parsed_strictly() -> None:
    body = (b'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b'<Part><PartNumber>1</PartNumber><ETag>"aa"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>'
            b'<Part><ETag>bb</ETag><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>')
    assert complete_request(body) == [(1, '"aa"'), (2, "bb")]
    for bad in (b"<CompleteMultipartUpload/>", b"<Other><Part/></Other>", b"not xml",
                b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>a</ETag></Part>"
                b"</CompleteMultipartUpload>",
                b'<!DOCTYPE x [<!ENTITY e "e">]><CompleteMultipartUpload>&e;</CompleteMultipartUpload>'):
        with pytest.raises(S3Error) as err:
            complete_request(bad)
        assert err.value.code == "MalformedXML"


def test_parts_written_during_an_outage_are_handed_back_by_repair(mp) -> None:
    async def scenario():
        await mp.create_bucket("scans", "france-only")
        table = mp.nodes["paris-1"].layout.table("france-only")
        owners = table.replicas(bucket_partition("scans", table.bits))
        via = next(n for n in mp.nodes if n not in owners)
        mpu = uploads(mp, via)
        up = await mpu.create_upload("scans", Upload("k"))
        p1 = await put_part(mp, "scans", "k", up.upload_id, 1, b"1" * 3000, via=via)
        mp.down(owners[0])
        mp.advance(TIMINGS.suspect_after)
        await mp.gossip(3)
        p2 = await put_part(mp, "scans", "k", up.upload_id, 2, b"2" * 100, via=via)  # to a handoff node
        part_key = f"\x01mpu/p/{up.upload_id}/00002"
        assert mp.nodes[owners[0]].local.meta.get_manifest("scans", part_key) is None
        mp.up(owners[0])
        await mp.gossip(3)
        await mp.repair(2)
        assert mp.nodes[owners[0]].local.meta.get_manifest("scans", part_key) is not None
        assert mp.holders("scans", part_key) <= FRENCH
        await mpu.complete_upload("scans", "k", up.upload_id, [(1, p1.etag), (2, p2.etag)])
        assert await mp.get("scans", "k", via=owners[0]) == b"1" * 3000 + b"2" * 100
    run(scenario())


def test_a_copy_renaming_a_composed_objects_chunks_recomputes_its_etag(mp) -> None:
    async def scenario():
        mp.push_access(ensure_naming_secret(AccessDoc(), random.Random(1)))  # keyed names
        await mp.create_bucket("eu-all", "eu-wide", owner="hospital")
        await mp.create_bucket("fr-one", "france-only", owner="hospital")
        c = mp.via("paris-1").coordinator
        mpu = uploads(mp, "paris-1")
        up = await mpu.create_upload("eu-all", Upload("k"))
        p1 = await put_part(mp, "eu-all", "k", up.upload_id, 1, b"1" * 3000)
        p2 = await put_part(mp, "eu-all", "k", up.upload_id, 2, b"2" * 10)
        source = await mpu.complete_upload("eu-all", "k", up.upload_id, [(1, p1.etag), (2, p2.etag)])
        copy = await c.copy_object(await c.head_bucket("eu-all"), "k", await c.head_bucket("fr-one"), "copy")
        assert {r.digest for r in copy.chunks}.isdisjoint(r.digest for r in source.chunks)  # other key
        assert copy.etag == composed_etag(copy.chunks, 2) != source.etag
        assert dict(copy.attributes)["md5"] == dict(source.attributes)["md5"]
        assert await mp.get("fr-one", "copy") == b"1" * 3000 + b"2" * 10
    run(scenario())
