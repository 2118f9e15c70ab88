"""Multipart uploads (S3's, served by `node/s3/multipart.py`), on the coordinator's write path.

An upload in progress lives in its bucket, under reserved keys users can neither write nor list
(`validation.RESERVED_PREFIX`): an upload record `\\x01mpu/u/<key>\\x01<upload id>` (content type,
metadata, stored headers, initiator) and one manifest per part `\\x01mpu/p/<upload id>/<5-digit
number>` whose chunks are the part's (never inline). Being ordinary manifests of the bucket, they
get residency, replication, repair, encryption at rest and the chunk GC's references like any
object. Completing writes the object's manifest as the parts' chunk lists concatenated (no byte is
read or copied), with the composed etag (`proto/etags.py`), then tombstones the parts and the record.

`MultipartUploads` holds no state but its size limits: it works through a narrow part of the
`Coordinator` (bucket records, `store_chunks`, `latest`, `next_version`, `write_manifest`,
`write_tombstone`, `index_entries`, `now`), so building one per request costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from maillage.node import validation
from maillage.node.data.coordinator import (
    CHECKSUM_PREFIX,
    LIST_PAGE,
    MD5_ATTRIBUTE,
    Coordinator,
    Stamp,
    Upload,
    UploadStream,
    checksums_of,
    is_common_prefix,
    past,
)
from maillage.node.data.parts import PARTS as PART_TABLE
from maillage.node.data.parts import part_table
from maillage.node.errors import IntegrityError, InvalidArgument, InvalidKey, NoSuchKey
from maillage.node.runtime.concurrency import gather_bounded
from maillage.proto.etags import composed_etag
from maillage.storage import BucketRecord, ChunkRef, Manifest, version_time

__all__ = ["Compose", "MultipartUploads", "MultipartUpload", "Part", "PartBody", "PartListing",
           "UploadListing", "multipart_md5",
           "NoSuchUpload", "InvalidPart", "InvalidPartOrder", "EntityTooSmall", "EntityTooLarge",
           "UPLOADS", "PARTS", "MAX_PARTS", "MIN_PART_SIZE", "MAX_PART_SIZE",
           "MAX_UPLOAD_KEY_BYTES"]

UPLOADS = validation.RESERVED_PREFIX + "mpu/u/"  # + key + "\x01" + upload id: an upload's record
PARTS = validation.RESERVED_PREFIX + "mpu/p/"  # + upload id + "/" + 5-digit part number: a part
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * 1024 * 1024  # every part but the last (S3's rule)
MAX_PART_SIZE = 5 * 1024 ** 3
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")  # HLC version of the creation (16 hex) + 64 random bits
# The record key must fit the store's key limit.
MAX_UPLOAD_KEY_BYTES = validation.MAX_KEY_BYTES - len(UPLOADS.encode()) - 1 - 32
_INITIATOR = "mpu.initiator"  # attribute of an upload record: the tenant that began it
_WRITES_AT_ONCE = 16  # manifest writes (part reads, tombstones) in flight for one upload


# The attribute of a completed object naming the completion that made it (upload id and a digest of
# the parts named): a retried CompleteMultipartUpload is recognised by it.
COMPLETION_ATTRIBUTE = "multipart-completion"


def _completion_mark(upload_id: str, parts: Sequence[tuple[int, str]]) -> str:
    named = "\n".join(f"{number}:{given.strip().strip(chr(34)).lower()}" for number, given in parts)
    return f"{upload_id}:{hashlib.sha256(named.encode()).hexdigest()[:32]}"


class NoSuchUpload(NoSuchKey):
    """No such multipart upload: never made, completed, aborted, expired, or of another key."""


class InvalidPart(InvalidArgument):
    """A part named to complete an upload was not uploaded, or its ETag is not the one given."""


class InvalidPartOrder(InvalidArgument):
    """The parts named to complete an upload are not in ascending order."""


class EntityTooSmall(InvalidArgument):
    """A part other than the last is smaller than the minimum part size."""


class EntityTooLarge(InvalidArgument):
    """A part is larger than the maximum part size."""


def multipart_md5(md5s: Sequence[str]) -> str:
    """S3's ETag of a multipart object: MD5 of the parts' binary MD5s, then "-<parts>"."""
    try:
        joined = b"".join(bytes.fromhex(m) for m in md5s)
    except ValueError:
        raise InvalidPart("a part has no MD5 ETag (not uploaded through S3)") from None
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(md5s)}"


@dataclass(frozen=True)
class MultipartUpload:
    bucket: str
    key: str
    upload_id: str
    initiated: int  # the HLC version of its creation
    initiator: str = ""  # the tenant that began it
    content_type: str = "application/octet-stream"
    user_metadata: tuple[tuple[str, str], ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()  # stored headers, for the completed object


#: A part's body made from its upload, once found (`MultipartUploads.upload_part`).
PartBody = Callable[[MultipartUpload], UploadStream]
#: The completed object's checksums (algorithm -> value) from its parts' (the S3 door's composites).
Compose = Callable[[Sequence[Mapping[str, str]]], dict[str, str]]


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str  # the part's MD5 (hex, no quotes): its S3 ETag
    version: int  # HLC version of its upload (last modified)
    checksums: Mapping[str, str] = field(default_factory=dict)  # algorithm -> base64, as sent and verified


@dataclass(frozen=True)
class PartListing:
    parts: list[Part]
    is_truncated: bool
    next_marker: int


@dataclass(frozen=True)
class UploadListing:
    uploads: list[MultipartUpload]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str
    next_upload_id_marker: str


def _record_key(key: str, upload_id: str) -> str:
    return f"{UPLOADS}{key}\x01{upload_id}"


def _part_prefix(upload_id: str) -> str:
    return f"{PARTS}{upload_id}/"


def _part_key(upload_id: str, number: int) -> str:
    return f"{PARTS}{upload_id}/{number:05d}"


def _upload_of(m: Manifest) -> MultipartUpload | None:
    """The upload an upload record describes (None for anything else)."""
    body = m.key[len(UPLOADS):]
    if not m.key.startswith(UPLOADS) or len(body) < 34 or body[-33] != "\x01":
        return None
    key, upload_id = body[:-33], body[-32:]
    if not _UPLOAD_ID.fullmatch(upload_id):
        return None
    attributes = dict(m.attributes)
    initiator = attributes.pop(_INITIATOR, "")
    return MultipartUpload(bucket=m.bucket, key=key, upload_id=upload_id, initiated=m.version, initiator=initiator,
                           content_type=m.content_type, user_metadata=m.user_metadata,
                           attributes=tuple(sorted(attributes.items())))


def _part_of(m: Manifest, number: int) -> Part:
    return Part(number=number, size=m.size, etag=dict(m.attributes).get(MD5_ATTRIBUTE) or m.etag, version=m.version,
                checksums=checksums_of(m))


def _part_number(key: str, prefix: str) -> int | None:
    tail = key[len(prefix):]
    return int(tail) if len(tail) == 5 and tail.isascii() and tail.isdigit() else None


def _check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise InvalidArgument(f"part number {number} is out of range: use 1 to {MAX_PARTS}")


async def _at_most(pieces: AsyncIterator[bytes | memoryview], limit: int) -> AsyncIterator[bytes | memoryview]:
    size = 0
    async for piece in pieces:
        size += len(piece)
        if size > limit:
            raise EntityTooLarge(f"a part may hold at most {limit} bytes; nothing was written")
        yield piece


class MultipartUploads:
    """The multipart operations of one node, on its coordinator.

    Every method takes `expiry` (seconds, None: never): an upload begun longer ago is aborted when
    it is next named, and answered NoSuchUpload. `expire_uploads` aborts them eagerly. Closing an
    upload (complete or abort) tombstones its parts, then its record, then any part found again; a
    part upload re-reads the record after writing its part and drops the part if the upload was
    closed meanwhile: between the two, no part outlives its upload.
    """

    def __init__(self, coordinator: Coordinator, *, min_part_size: int = MIN_PART_SIZE,
                 max_part_size: int = MAX_PART_SIZE) -> None:
        self._coordinator = coordinator
        self.min_part_size = min_part_size  # every part but the last (tests lower it)
        self.max_part_size = max_part_size

    async def create_upload(self, bucket: BucketRecord, upload: Upload, initiator: str = "") -> MultipartUpload:
        """Begin a multipart upload of `upload.key` with the upload's metadata and stored headers."""
        c = self._coordinator
        validation.check_key(upload.key)
        size = len(upload.key.encode("utf-8"))
        if size > MAX_UPLOAD_KEY_BYTES:
            raise InvalidKey(f"object key is {size} bytes in UTF-8; a multipart upload's key may hold at most "
                             f"{MAX_UPLOAD_KEY_BYTES} (use a single PUT for longer keys)")
        validation.check_metadata(upload.user_metadata, upload.content_type)
        attributes = {**upload.attributes, _INITIATOR: initiator}
        validation.check_attributes(attributes)
        version = c.now()
        upload_id = f"{version:016x}{secrets.token_hex(8)}"  # sorts in creation order
        record = Manifest(bucket=bucket.name, key=_record_key(upload.key, upload_id), version=version, size=0,
                          etag="", content_type=upload.content_type,
                          user_metadata=tuple(sorted(upload.user_metadata.items())), writer=c.node_id,
                          generation=bucket.generation, attributes=tuple(sorted(attributes.items())))
        await c.write_manifest(bucket, record)
        made = _upload_of(record)
        assert made is not None
        return made

    async def upload_part(self, bucket: BucketRecord, key: str, upload_id: str, number: int,
                          body: UploadStream | PartBody, *, expiry: float | None = None) -> Part:
        """Store part `number` of an upload (replacing any earlier upload of that number: the newest
        version wins). The part's MD5 (its S3 ETag) is the body's end value. `body` may be made from
        the upload once it is found (a part under a customer key is encrypted with its nonce)."""
        c = self._coordinator
        _check_part_number(number)
        upload = await self._open_upload(bucket, key, upload_id, expiry)
        if not isinstance(body, UploadStream):
            body = body(upload)
        part_key = _part_key(upload_id, number)
        previous = asyncio.ensure_future(c.latest(bucket, part_key))
        try:
            refs, _sites, _inline, size, etag = await c.store_chunks(
                bucket, _at_most(body.pieces, self.max_part_size), always_chunk=True)
            kept = body.end.attributes()
            validation.check_attributes(kept)
            manifest = Manifest(bucket=bucket.name, key=part_key, version=await c.next_version(previous),
                                size=size, etag=etag, chunks=tuple(refs), writer=c.node_id,
                                generation=bucket.generation, attributes=tuple(sorted(kept.items())))
        finally:
            previous.cancel()
        await c.write_manifest(bucket, manifest)
        record = await c.latest(bucket, _record_key(upload.key, upload_id))
        if record is None or record.deleted:  # completed or aborted while this part streamed in
            await self._tombstone_all(bucket, [manifest])
            raise NoSuchUpload(f"multipart upload {upload_id} of {key!r} was completed or aborted while part "
                               f"{number} was uploading; the part was dropped")
        return _part_of(manifest, number)

    async def complete_upload(self, bucket: BucketRecord, key: str, upload_id: str, parts: Sequence[tuple[int, str]],
                              *, expiry: float | None = None, stamp: Stamp | None = None,
                              compose: Compose | None = None) -> Manifest:
        """Compose the object from the parts named (number, ETag), in ascending order: its manifest
        is their chunk lists concatenated (given to `stamp` first, on a versioned bucket); then the
        upload is closed. `compose(each part's checksums)`: the object's (the door's composite)."""
        c = self._coordinator
        if not parts:
            raise InvalidPart("completing a multipart upload needs at least one part")
        if len(parts) > MAX_PARTS:
            raise InvalidPart(f"{len(parts)} parts named; an upload has at most {MAX_PARTS}")
        for (before, _), (after, _) in zip(parts, parts[1:]):
            if after <= before:
                raise InvalidPartOrder(f"the parts must be listed in ascending order without repeats: part {after} "
                                       f"comes after part {before}")
        for number, _ in parts:
            if not 1 <= number <= MAX_PARTS:
                raise InvalidPart(f"part number {number} is out of range: use 1 to {MAX_PARTS}")
        try:
            upload = await self._open_upload(bucket, key, upload_id, expiry)
        except NoSuchUpload:
            done = await self._completed(bucket, key, upload_id, parts)
            if done is None:
                raise
            return done  # the same completion again (its answer was lost): the same object, as S3 does
        previous = asyncio.ensure_future(c.latest(bucket, key))
        try:
            stored = await gather_bounded(
                [partial(c.latest, bucket, _part_key(upload_id, number)) for number, _ in parts], _WRITES_AT_ONCE)
            chunks: list[ChunkRef] = []
            md5s: list[str] = []
            checksums: list[Mapping[str, str]] = []
            sizes: list[tuple[int, int]] = []
            size = 0
            for i, ((number, given), m) in enumerate(zip(parts, stored)):
                if m is None or m.deleted:
                    raise InvalidPart(f"part {number} of upload {upload_id} was never uploaded (list the parts "
                                      "to see which were)")
                part = _part_of(m, number)
                if given.strip().strip('"').lower() != part.etag:
                    raise InvalidPart(f"part {number}: the ETag given ({given[:40]!r}) is not the stored part's "
                                      f"(\"{part.etag}\"): upload the part again or list the parts")
                if i < len(parts) - 1 and m.size < self.min_part_size:
                    raise EntityTooSmall(f"part {number} holds {m.size} bytes: every part but the last must hold "
                                         f"at least {self.min_part_size}")
                if m.inline is not None or sum(ref.length for ref in m.chunks) != m.size:
                    raise IntegrityError(f"part {number} of upload {upload_id}: its chunks do not add up to its "
                                         f"{m.size} bytes")
                chunks += m.chunks
                md5s.append(part.etag)
                checksums.append(part.checksums)
                sizes.append((number, m.size))
                size += m.size
            attributes = {**dict(upload.attributes), MD5_ATTRIBUTE: multipart_md5(md5s),
                          COMPLETION_ATTRIBUTE: _completion_mark(upload_id, parts)}
            if compose is not None:
                attributes.update({CHECKSUM_PREFIX + a: v for a, v in compose(checksums).items()})
            attributes[PART_TABLE] = part_table(sizes)  # where each part lies (partNumber reads, SSE-C counters)
            manifest = Manifest(
                bucket=bucket.name, key=key, version=await c.next_version(previous), size=size,
                etag=composed_etag(chunks, len(parts)), content_type=upload.content_type,
                user_metadata=upload.user_metadata, chunks=tuple(chunks), writer=c.node_id,
                generation=bucket.generation, attributes=tuple(sorted(attributes.items())))
        finally:
            previous.cancel()
        if stamp is not None:
            manifest = await stamp(manifest)
        await c.write_manifest(bucket, manifest)
        await self._close_upload(bucket, upload)
        return manifest

    async def _completed(self, bucket: BucketRecord, key: str, upload_id: str,
                         parts: Sequence[tuple[int, str]]) -> Manifest | None:
        """The key's current version if this very completion (upload and parts) made it: a client
        whose answer was lost sends the same CompleteMultipartUpload again and must get the object,
        not NoSuchUpload. Another completion, or a later write of the key, is not this one."""
        current = await self._coordinator.latest(bucket, key)
        if current is None or current.deleted:
            return None
        return current if dict(current.attributes).get(COMPLETION_ATTRIBUTE) == _completion_mark(upload_id, parts) \
            else None

    async def abort_upload(self, bucket: BucketRecord, key: str, upload_id: str) -> None:
        """Drop an upload and its parts (their chunks go with the next GC passes)."""
        await self._close_upload(bucket, await self._open_upload(bucket, key, upload_id, None))

    async def get_upload(self, bucket: BucketRecord, key: str, upload_id: str, *,
                         expiry: float | None = None) -> MultipartUpload:
        return await self._open_upload(bucket, key, upload_id, expiry)

    async def list_parts(self, bucket: BucketRecord, key: str, upload_id: str, *, marker: int = 0,
                         max_parts: int = LIST_PAGE,
                         expiry: float | None = None) -> tuple[MultipartUpload, PartListing]:
        """The upload and its parts numbered above `marker`, at most `max_parts` (<= 1000)."""
        c = self._coordinator
        upload = await self._open_upload(bucket, key, upload_id, expiry)
        max_parts = max(1, min(max_parts, LIST_PAGE))
        marker = max(0, min(marker, MAX_PARTS))
        prefix = _part_prefix(upload_id)
        parts: list[Part] = []
        async for m in c.index_entries(bucket, prefix, f"{prefix}{marker:05d}" if marker else ""):
            number = _part_number(m.key, prefix)
            if m.deleted or number is None:
                continue
            if len(parts) >= max_parts:
                return upload, PartListing(parts, True, parts[-1].number)
            parts.append(_part_of(m, number))
        return upload, PartListing(parts, False, parts[-1].number if parts else 0)

    async def list_uploads(self, bucket: BucketRecord, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
                           upload_id_marker: str = "", max_uploads: int = LIST_PAGE,
                           expiry: float | None = None) -> UploadListing:
        """Uploads in progress in key order, then creation order (S3's ListMultipartUploads): after
        (`key_marker`, `upload_id_marker`), at most `max_uploads` (<= 1000) uploads and common prefixes."""
        c = self._coordinator
        max_uploads = max(1, min(max_uploads, LIST_PAGE))
        now = version_time(c.now())
        if not key_marker:
            cursor = ""
        elif is_common_prefix(key_marker, prefix, delimiter):
            cursor = past(UPLOADS + key_marker)  # a common prefix given back: past all of it
        elif _UPLOAD_ID.fullmatch(upload_id_marker):
            cursor = _record_key(key_marker, upload_id_marker)
        else:
            cursor = f"{UPLOADS}{key_marker}\x01g"  # past every upload of that key ("g" > hex digits)
        uploads: list[MultipartUpload] = []
        prefixes: list[str] = []
        last = ("", "")
        while True:
            jumped = False
            async for m in c.index_entries(bucket, UPLOADS + prefix, cursor):
                upload = _upload_of(m)
                if m.deleted or upload is None or (expiry is not None and now - version_time(m.version) > expiry):
                    continue
                if len(uploads) + len(prefixes) >= max_uploads:
                    return UploadListing(uploads, prefixes, True, *last)
                cut = upload.key.find(delimiter, len(prefix)) if delimiter else -1
                if cut < 0:
                    uploads.append(upload)
                    last = (upload.key, upload.upload_id)
                    continue
                prefixes.append(upload.key[:cut + len(delimiter)])
                last = (prefixes[-1], "")
                cursor = past(UPLOADS + prefixes[-1])  # skip the rest of this common prefix
                jumped = True
                break
            if not jumped:
                return UploadListing(uploads, prefixes, False, "", "")

    async def expire_uploads(self, bucket: BucketRecord, expiry: float, *, prefix: str = "") -> int:
        """Abort the bucket's uploads (of keys under `prefix`) begun more than `expiry` seconds ago;
        returns how many."""
        c = self._coordinator
        now = version_time(c.now())
        expired = []
        async for m in c.index_entries(bucket, UPLOADS):
            upload = _upload_of(m)
            if (not m.deleted and upload is not None and upload.key.startswith(prefix)
                    and now - version_time(m.version) > expiry):
                expired.append(upload)
        for upload in expired:
            await self._close_upload(bucket, upload)
        return len(expired)

    async def _open_upload(self, bucket: BucketRecord, key: str, upload_id: str,
                           expiry: float | None) -> MultipartUpload:
        """The live upload `upload_id` of `key`, or NoSuchUpload (an expired one is aborted first)."""
        c = self._coordinator
        validation.check_key(key)
        missing = NoSuchUpload(f"no multipart upload {upload_id[:40]!r} of key {key[:200]!r} in bucket "
                               f"{bucket.name!r}: never begun, or completed, aborted or expired")
        if not _UPLOAD_ID.fullmatch(upload_id) or len(key.encode("utf-8")) > MAX_UPLOAD_KEY_BYTES:
            raise missing
        record = await c.latest(bucket, _record_key(key, upload_id))
        upload = None if record is None or record.deleted else _upload_of(record)
        if upload is None:
            raise missing
        if expiry is not None and version_time(c.now()) - version_time(upload.initiated) > expiry:
            await self._close_upload(bucket, upload)
            raise NoSuchUpload(f"multipart upload {upload_id} of key {key[:200]!r} expired (begun more than "
                               f"{expiry:g} s ago) and was aborted")
        return upload

    async def _close_upload(self, bucket: BucketRecord, upload: MultipartUpload) -> None:
        """Tombstone the parts, then the record, then any part that slipped in meanwhile."""
        c = self._coordinator
        prefix = _part_prefix(upload.upload_id)
        await self._tombstone_all(bucket, [m async for m in c.index_entries(bucket, prefix) if not m.deleted])
        record = await c.latest(bucket, _record_key(upload.key, upload.upload_id))
        if record is not None and not record.deleted:
            await self._tombstone_all(bucket, [record])
        await self._tombstone_all(bucket, [m async for m in c.index_entries(bucket, prefix) if not m.deleted])

    async def _tombstone_all(self, bucket: BucketRecord, manifests: Sequence[Manifest]) -> None:
        await gather_bounded([partial(self._coordinator.write_tombstone, bucket, m.key, m) for m in manifests],
                             _WRITES_AT_ONCE)
