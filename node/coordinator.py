"""The coordinator: any node turns a client's request into work on the right replica sets.

Write path: the object stream is cut into chunks; each chunk is hashed (BLAKE3), framed (zstd when
it helps) in the thread pool and sent to the R replicas of its partition, skipping replicas that
already hold it (dedup). A chunk's name is its BLAKE3 keyed with K(bucket owner, bucket policy)
(`proto/naming.py`, from the access document's naming secret; unkeyed while there is none), so
dedup works inside one tenant's policy and a name tells nothing to another tenant. At most
`CHUNKS_IN_FLIGHT` chunks per upload and `NODE_CHUNKS_IN_FLIGHT`
across all uploads are held at once, so a 10 GiB upload needs a few chunks of memory and 32
concurrent ones do not multiply it by 32. The manifest is written last, to the replicas of the bucket's index
partition, with a version above the one it replaces (HLC, observed from the replicas) so a node
with a slow clock cannot lose a newer write. The write is acknowledged only when chunks and
manifest are durable on at least two sites.

The coordinator itself stores nothing unless it is one of the replicas: a node outside a bucket's
policy only forwards bytes in memory, and logs no key.

Buckets: each creation of a name makes a new generation (a random id) bound to the policy for
good; manifests, listings and lookups name (bucket, generation), so a name deleted and created
again under another policy never receives the old generation's keys. Deleting a bucket sends a
tombstone of its generation to the policy's nodes. A server-side copy is refused
(`ResidencyWidening`) unless the destination's policy is within the source's; a copy into a bucket
of another key (another tenant or policy) re-names the chunks with the destination's key.

Multipart uploads (S3's, `node/s3/multipart.py`) live in their bucket, under reserved keys users
can neither write nor list (`validation.RESERVED_PREFIX`): an upload record
`\x01mpu/u/<key>\x01<upload id>` (content type, metadata, stored headers, initiator) and one manifest
per part `\x01mpu/p/<upload id>/<5-digit number>` whose chunks are the part's (never inline). Being
ordinary manifests of the bucket, they get residency, replication, repair, encryption at rest and
the chunk GC's references like any object. Completing writes the object's manifest as the parts'
chunk lists concatenated (no byte is read or copied), then tombstones the parts and the record.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

import blake3

from maillage.placement import PartitionTable, bucket_partition, chunk_partition, format_location
from maillage.proto.frame import chunk_digest, decode_frame, encode_frame, read_frame_header
from maillage.proto.limits import DEFAULT_CHUNK_SIZE, INLINE_MAX
from maillage.storage import BucketRecord, BucketTombstone, ChunkRef, HybridClock, Manifest, version_time

from . import validation
from .catalog import Catalog
from .chunking import FixedChunker
from .errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    IntegrityError,
    InvalidArgument,
    InvalidKey,
    NodeError,
    NoSuchKey,
    QuorumNotReached,
    ResidencyWidening,
)
from .layout_state import LayoutState
from .quorum import ReplicaSets
from .replica import Replica, put_manifest_teaching
from .transport import Peers

T = TypeVar("T")

CHUNKS_IN_FLIGHT = 4
NODE_CHUNKS_IN_FLIGHT = 16
LIST_PAGE = 1000
_MAX_CHAR = "\U0010ffff"
_RESERVED_END = validation.RESERVED_PREFIX + _MAX_CHAR  # above every reserved key written


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    content_type: str = "application/octet-stream"
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    # Stored headers and S3 ETag (Manifest.attributes). Read once the stream has been consumed, so
    # an S3 upload can add the MD5 of its bytes at the end of its stream.
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    contents: list[Manifest]
    common_prefixes: list[str]
    is_truncated: bool
    next_token: str


# ----- multipart uploads: names, limits, errors, results ------------------------------------

UPLOADS = validation.RESERVED_PREFIX + "mpu/u/"  # + key + "\x01" + upload id: an upload's record
PARTS = validation.RESERVED_PREFIX + "mpu/p/"  # + upload id + "/" + 5-digit part number: a part
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * 1024 * 1024  # every part but the last (S3's rule)
MAX_PART_SIZE = 5 * 1024 ** 3
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")  # HLC version of the creation (16 hex) + 64 random bits
# The record key must fit the store's key limit.
MAX_UPLOAD_KEY_BYTES = validation.MAX_KEY_BYTES - len(UPLOADS.encode()) - 1 - 32
MD5 = "md5"  # the attribute holding an S3 ETag (a part's MD5, an object's S3 ETag)
_INITIATOR = "mpu.initiator"  # attribute of an upload record: the tenant that began it
_WRITES_AT_ONCE = 16  # manifest writes (part reads, tombstones) in flight for one upload
_COMPOSED_CONTEXT = b"maillage composed etag v1"
_COMPOSED_ETAG = re.compile(r"[0-9a-f]{64}-([1-9][0-9]{0,4})")


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


#: The multipart errors, each named as the S3 error code it is (node/s3/multipart.py).
MULTIPART_ERRORS = (NoSuchUpload, InvalidPart, InvalidPartOrder, EntityTooSmall, EntityTooLarge)


def composed_etag(chunks: Sequence[ChunkRef], parts: int) -> str:
    """The native etag of an object completed from `parts` parts: the BLAKE3 of its chunk list
    (each chunk's digest and 8-byte length, after a context string and the 4-byte part count),
    then "-<parts>". The BLAKE3 of the whole object would need every byte read back; this one the
    SDK recomputes from the chunks it read and verified (client/_async.py keeps a copy of this
    function: the SDK imports nothing of the node), so a manifest pointing at other chunks still
    fails a whole read."""
    h = blake3.blake3(_COMPOSED_CONTEXT)
    h.update(parts.to_bytes(4, "big"))
    for c in chunks:
        h.update(c.digest)
        h.update(c.length.to_bytes(8, "big"))
    return f"{h.hexdigest()}-{parts}"


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


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str  # the part's MD5 (hex, no quotes): its S3 ETag
    version: int  # HLC version of its upload (last modified)


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
    return Part(number=number, size=m.size, etag=dict(m.attributes).get(MD5) or m.etag, version=m.version)


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


class Coordinator:
    def __init__(self, node_id: str, peers: Peers, layout: LayoutState, catalog: Catalog,
                 clock: HybridClock, executor: Executor, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 is_up: Callable[[str], bool] = lambda _: True,
                 maybe_behind: Callable[[str], bool] = lambda _: False,
                 chunk_key: Callable[[str, str], bytes | None] = lambda _tenant, _policy: None) -> None:
        self.node_id = node_id
        self._peers = peers
        self._layout = layout
        self._catalog = catalog
        self._clock = clock
        self._executor = executor
        self._sets = ReplicaSets(peers, layout, is_up, maybe_behind)
        # Across all uploads this node coordinates: bounds memory (each slot holds a chunk and
        # its frame) and keeps replica writes from queueing until their deadlines expire.
        self._node_slots = asyncio.Semaphore(NODE_CHUNKS_IN_FLIGHT)
        self._is_up = is_up
        self._chunk_key = chunk_key  # (owner tenant, policy) -> K, None for unkeyed names
        self.chunk_size = chunk_size
        self.min_part_size = MIN_PART_SIZE  # multipart limits (tests lower them)
        self.max_part_size = MAX_PART_SIZE

    # ----- buckets ---------------------------------------------------------------------------

    async def create_bucket(self, name: str, policy: str, owner: str = "") -> BucketRecord:
        validation.check_bucket_name(name)
        layout = self._layout.current
        table = self._layout.table(policy)  # UnknownPolicy / PolicyUnsatisfiable, before anything
        if await self._catalog.find(name) is not None:
            raise BucketAlreadyExists(f"bucket {name!r} already exists")
        record = BucketRecord(name=name, policy=policy, created=self._clock.now(), owner=owner,
                              generation=secrets.token_hex(16))
        eligible = layout.eligible_nodes(policy)
        answers = await asyncio.gather(*(self._try(n.id, lambda r: r.put_bucket(record)) for n in eligible))
        sites = {n.site for n, (_, err) in zip(eligible, answers) if err is None}
        needed = min(2, table.policy.replicas)
        if len(sites) < needed:
            failures = "; ".join(f"{n.id}: {err}" for n, (_, err) in zip(eligible, answers) if err is not None)
            raise QuorumNotReached(f"bucket {name!r}: only {len(sites)} site(s) recorded it, {needed} "
                                   f"needed; failures: {failures or 'none'}")
        return record

    async def head_bucket(self, name: str) -> BucketRecord:
        validation.check_bucket_name(name)
        return await self._catalog.get(name)

    async def list_buckets(self) -> list[BucketRecord]:
        nodes = [n.id for n in self._layout.current.nodes]
        answers = await asyncio.gather(*(self._try(n, lambda r: r.list_buckets()) for n in nodes))
        found: dict[str, BucketRecord] = {}
        for records, _err in answers:
            for r in records or ():  # a node that missed a delete may still show an older generation
                if r.name not in found or r.created > found[r.name].created:
                    found[r.name] = r
        return [found[name] for name in sorted(found)]

    async def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket. Multipart uploads in progress do not count (S3 does not count
        them either): the bucket tombstone drops them with the rest of the generation's index."""
        record = await self.head_bucket(name)
        listing = await self.list_objects(name, max_keys=1)
        if listing.contents or listing.common_prefixes:
            raise BucketNotEmpty(f"bucket {name!r} is not empty: delete its objects first")
        tombstone = BucketTombstone(name=name, generation=record.generation, policy=record.policy,
                                    deleted=self._clock.now())
        eligible = self._layout.current.eligible_nodes(record.policy)
        # A node that misses it learns the tombstone from its peers (repair), so its stale record
        # never comes back.
        await asyncio.gather(*(self._try(n.id, lambda r: r.delete_bucket(tombstone)) for n in eligible))
        self._catalog.forget(name)

    async def _try(self, node_id: str, op: Callable[[Replica], Awaitable[T]]) -> tuple[T | None, Exception | None]:
        try:
            return await op(self._peers.replica(node_id)), None
        except Exception as exc:  # a peer's error or the local store's: that node failed
            return None, exc

    # ----- object writes ---------------------------------------------------------------------

    async def put_object(self, upload: Upload, pieces: AsyncIterator[bytes | memoryview],
                         expected_blake3: asyncio.Future[bytes | None] | None = None) -> tuple[Manifest, list[str]]:
        """Store an object from a stream of byte pieces; returns its manifest and the sites holding it."""
        validation.check_key(upload.key)
        validation.check_metadata(upload.user_metadata, upload.content_type)
        validation.check_attributes(upload.attributes)
        bucket = await self._catalog.get(upload.bucket)
        table = self._layout.table(bucket.policy)
        previous = asyncio.ensure_future(self._latest(bucket, upload.key))
        try:
            refs, sites, inline, size, etag = await self._store_chunks(
                pieces, table, bucket.policy, self.key_of(bucket), bucket.owner)
            if expected_blake3 is not None:
                expected = await expected_blake3
                if expected is not None and expected.hex() != etag:
                    raise IntegrityError(
                        f"object {upload.key!r}: the client's BLAKE3 {expected.hex()[:16]}... does not "
                        f"match the {size} bytes received ({etag[:16]}...); nothing was written")
            manifest = Manifest(
                bucket=upload.bucket, key=upload.key, version=await self._next_version(previous),
                size=size, etag=etag, content_type=upload.content_type,
                user_metadata=tuple(sorted(upload.user_metadata.items())), chunks=tuple(refs),
                inline=inline, writer=self.node_id, generation=bucket.generation,
                attributes=tuple(sorted(upload.attributes.items())))
            validation.check_attributes(upload.attributes)
        finally:
            previous.cancel()
        manifest_sites = await self._write_manifest(bucket, manifest)
        return manifest, sorted(sites | manifest_sites if inline is not None else sites)

    def key_of(self, bucket: BucketRecord) -> bytes | None:
        """The key naming the chunks of `bucket` (None: unkeyed names)."""
        return self._chunk_key(bucket.owner, bucket.policy)

    async def _store_chunks(self, pieces, table: PartitionTable, policy: str, key: bytes | None, tenant: str,
                            *, always_chunk: bool = False):
        """Cut, name, frame and replicate the stream's chunks. A small object comes back as inline
        bytes instead, unless `always_chunk` (a multipart part: a completed upload's manifest is the
        concatenation of its parts' chunk lists, so no part may be inline)."""
        chunker = FixedChunker(self.chunk_size)
        whole = blake3.blake3()
        refs: list[ChunkRef | None] = []
        sites: set[str] = set()
        size = 0
        slots = asyncio.Semaphore(CHUNKS_IN_FLIGHT)
        tasks: list[asyncio.Task] = []

        started: list[bool] = []  # a task cancelled before it ran never releases its node slot

        async def store(index: int, plain: bytes) -> None:
            started[index] = True
            try:
                digest, frame = await self._frame(plain, key)
                refs[index] = ChunkRef(digest=digest, length=len(plain))
                sites.update(await self._replicate_chunk(table, policy, digest, frame, tenant))
            finally:
                self._node_slots.release()
                slots.release()

        async def schedule(plain: bytes) -> None:
            await slots.acquire()
            failed = next((t.exception() for t in tasks if t.done() and t.exception()), None)
            if failed is not None:
                slots.release()
                raise failed
            try:
                await self._node_slots.acquire()
            except BaseException:
                slots.release()
                raise
            refs.append(None)
            started.append(False)
            tasks.append(asyncio.ensure_future(store(len(refs) - 1, plain)))

        try:
            async for piece in pieces:
                whole.update(piece)
                size += len(piece)
                for chunk in chunker.feed(piece):
                    await schedule(chunk)
            rest = chunker.rest()
            inline = None
            if not tasks and len(rest) <= INLINE_MAX and not always_chunk:
                inline = rest
            elif rest:
                await schedule(rest)
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for ran in started:
                if not ran:
                    self._node_slots.release()
            raise
        return refs, sites, inline, size, whole.hexdigest()

    async def _frame(self, plain: bytes, key: bytes | None) -> tuple[bytes, bytes]:
        def work():
            digest = chunk_digest(plain, key)
            return digest, encode_frame(plain, digest=digest, key=key)
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def _replicate_chunk(self, table: PartitionTable, policy: str, digest: bytes, frame: bytes,
                               tenant: str) -> set[str]:
        """Write a chunk to its replicas, sealed at rest with `tenant`'s data key (the bucket owner)."""
        async def put_if_missing(replica: Replica) -> bool:
            if replica is not self._peers.local and (await replica.has_chunks([digest], policy))[0]:
                return False
            return await replica.put_chunk(frame, policy=policy, tenant=tenant)

        outcome = await self._sets.write(table, chunk_partition(digest, table.bits), put_if_missing,
                                         f"chunk {digest.hex()[:16]}")
        return {self._sets.site_of(n) for n in outcome.results}

    async def _write_manifest(self, bucket: BucketRecord, manifest: Manifest) -> set[str]:
        table = self._layout.table(bucket.policy)
        outcome = await self._sets.write(
            table, bucket_partition(bucket.name, table.bits),
            lambda r: put_manifest_teaching(r, manifest, bucket), "object manifest")
        return {self._sets.site_of(n) for n in outcome.results}

    async def _next_version(self, previous: asyncio.Future) -> int:
        try:
            latest = await previous
        except NodeError:
            latest = None
        if latest is not None:
            self._clock.observe(latest.version)
        return self._clock.now()

    async def delete_object(self, bucket_name: str, key: str) -> int:
        validation.check_key(key)
        bucket = await self._catalog.get(bucket_name)
        latest = await self._latest(bucket, key)
        if latest is not None:
            self._clock.observe(latest.version)
        tombstone = Manifest(bucket=bucket_name, key=key, version=self._clock.now(), size=0, etag="",
                             deleted=True, writer=self.node_id, generation=bucket.generation)
        await self._write_manifest(bucket, tombstone)
        return tombstone.version

    async def copy_object(self, source_bucket: str, source_key: str, bucket_name: str, key: str, *,
                          replacement: Upload | None = None,
                          check: Callable[[Manifest], None] | None = None) -> Manifest:
        """Copy an object's current version; `replacement` gives new metadata (else the source's are
        kept); `check(source manifest)` may refuse the copy (conditional copy) before any byte moves."""
        validation.check_key(key)
        if replacement is not None:
            validation.check_metadata(replacement.user_metadata, replacement.content_type)
            validation.check_attributes(replacement.attributes)
        src_record = await self._catalog.get(source_bucket)
        dest = await self._catalog.get(bucket_name)
        self.check_copy(src_record, dest)
        source = await self.head_object(source_bucket, source_key)
        if check is not None:
            check(source)
        if replacement is not None:
            source = replace(source, content_type=replacement.content_type,
                             user_metadata=tuple(sorted(replacement.user_metadata.items())),
                             attributes=tuple(sorted({**_etag_only(source), **replacement.attributes}.items())))
        table = self._layout.table(dest.policy)
        src_table = self._layout.table(src_record.policy)
        src_key, dst_key = self.key_of(src_record), self.key_of(dest)
        chunks = []
        for ref in source.chunks:  # dedup is per policy: make sure each chunk sits where dest wants it
            frame = await self.read_chunk(src_table, ref.digest)
            if read_frame_header(frame).keyed == (dst_key is not None) and src_key == dst_key:
                digest = ref.digest  # the name is the one dest would give: copy the frame as it is
            else:  # another (tenant, policy) key: verify with the source's, re-name with dest's
                plain = await asyncio.get_running_loop().run_in_executor(
                    self._executor, partial(decode_frame, frame, expected_digest=ref.digest, key=src_key))
                digest, frame = await self._frame(plain, dst_key)
                ref = replace(ref, digest=digest)
            await self._replicate_chunk(table, dest.policy, digest, frame, dest.owner)
            chunks.append(ref)
        etag = source.etag
        if (composed := _COMPOSED_ETAG.fullmatch(etag)) is not None:  # names the chunks: re-named ones too
            etag = composed_etag(chunks, int(composed[1]))
        previous = asyncio.ensure_future(self._latest(dest, key))
        manifest = replace(source, bucket=bucket_name, key=key, version=await self._next_version(previous),
                           writer=self.node_id, generation=dest.generation, chunks=tuple(chunks), etag=etag)
        await self._write_manifest(dest, manifest)
        return manifest

    def check_copy(self, source: BucketRecord, dest: BucketRecord) -> None:
        """Refuse a server-side copy that would let the source's data rest where the source's
        policy does not allow: every location the destination's policy allows must be allowed by
        the source's (`Policy.within`). For CopyObject and any later server-side copy."""
        layout = self._layout.current
        src, dst = layout.policy(source.policy), layout.policy(dest.policy)
        if not dst.within(src):
            wider = ", ".join(format_location(p) for p in dst.allow if not src.allows(p))
            raise ResidencyWidening(
                f"copy refused: bucket {dest.name!r} (policy {dst.name!r}) allows {wider}, where the "
                f"data of bucket {source.name!r} (policy {src.name!r}, allows "
                f"{', '.join(format_location(p) for p in src.allow)}) may not rest; copy only into a "
                f"bucket whose policy is the same or narrower")

    async def read_chunk(self, table: PartitionTable, digest: bytes) -> bytes:
        """A chunk's frame, as stored, from the first replica that answers."""
        return await self._read_from_replicas(table, digest, _as_is)

    async def read_plain_chunk(self, table: PartitionTable, digest: bytes, name_key: bytes | None) -> bytes:
        """A chunk's plain bytes, verified against its name; a copy that fails the check (bit rot
        on a replica) is skipped for the next one, so a reader sees the good copy."""
        loop = asyncio.get_running_loop()

        async def decoded(frame: bytes) -> bytes:
            return await loop.run_in_executor(
                self._executor, partial(decode_frame, frame, expected_digest=digest, key=name_key))
        return await self._read_from_replicas(table, digest, decoded)

    async def _read_from_replicas(self, table: PartitionTable, digest: bytes,
                                  accept: Callable[[bytes], Awaitable[T]]) -> T:
        partition = chunk_partition(digest, table.bits)
        errors = []
        candidates = (*table.replicas(partition), *table.handoffs(partition))
        # Nodes believed up first (stable sort keeps placement order within each group).
        for node_id in sorted(candidates, key=lambda n: not self._is_up(n)):
            try:
                return await accept(await self._peers.replica(node_id).get_chunk(digest))
            except Exception as exc:  # try the next copy; all failures are reported below
                errors.append(f"{node_id}: {exc}")
        raise QuorumNotReached(f"chunk {digest.hex()[:16]}: no copy could be read ({'; '.join(errors)})")

    # ----- object reads ----------------------------------------------------------------------

    async def _latest(self, bucket: BucketRecord, key: str) -> Manifest | None:
        table = self._layout.table(bucket.policy)
        outcome = await self._sets.read(table, bucket_partition(bucket.name, table.bits),
                                        lambda r: r.get_manifest(bucket.name, key, bucket.generation),
                                        "object lookup")
        found = [m for m in outcome.results.values() if m is not None]
        if not found:
            return None
        best = max(found, key=lambda m: (m.version, m.writer))
        self._clock.observe(best.version)
        return best

    async def head_object(self, bucket_name: str, key: str) -> Manifest:
        validation.check_key(key)
        bucket = await self._catalog.get(bucket_name)
        latest = await self._latest(bucket, key)
        if latest is None or latest.deleted:
            raise NoSuchKey(f"no object {key!r} in bucket {bucket_name!r}")
        return latest

    async def list_objects(self, bucket_name: str, *, prefix: str = "", delimiter: str = "",
                           start_after: str = "", max_keys: int = 1000) -> Listing:
        bucket = await self._catalog.get(bucket_name)
        table = self._layout.table(bucket.policy)
        partition = bucket_partition(bucket.name, table.bits)
        max_keys = max(1, min(max_keys or 1000, 1000))
        contents: list[Manifest] = []
        prefixes: list[str] = []
        # The reserved space (multipart uploads in progress) sorts below every user key: starting
        # past it costs nothing and never shows it, whatever the prefix or marker.
        cursor = max(start_after, _RESERVED_END)
        while True:
            page, complete = await self._merged_page(table, partition, bucket, prefix, cursor)
            skipped = False
            for m in page:
                if m.deleted:
                    cursor = m.key
                    continue
                cut = m.key.find(delimiter, len(prefix)) if delimiter else -1
                if len(contents) + len(prefixes) >= max_keys:
                    return Listing(contents, prefixes, True, cursor)
                if cut < 0:
                    contents.append(m)
                    cursor = m.key
                    continue
                prefixes.append(m.key[:cut + len(delimiter)])
                cursor = prefixes[-1] + _MAX_CHAR  # the token skips the rest of this common prefix
                skipped = True
                break
            if complete and not skipped:
                return Listing(contents, prefixes, False, "")

    async def _merged_page(self, table: PartitionTable, partition: int, bucket: BucketRecord, prefix: str,
                           start_after: str) -> tuple[list[Manifest], bool]:
        """One page of the index merged across replicas: newest version per key, in key order."""
        outcome = await self._sets.read(
            table, partition,
            lambda r: r.list_index(bucket.name, prefix, start_after, LIST_PAGE, bucket.generation), "listing")
        newest: dict[str, Manifest] = {}
        horizon = None  # keys beyond the shortest truncated page are not complete yet
        for entries, truncated in outcome.results.values():
            for m in entries:
                held = newest.get(m.key)
                if held is None or (m.version, m.writer) > (held.version, held.writer):
                    newest[m.key] = m
            if truncated and entries:
                horizon = entries[-1].key if horizon is None else min(horizon, entries[-1].key)
        keys = sorted(k for k in newest if horizon is None or k <= horizon)
        return [newest[k] for k in keys], horizon is None

    # ----- multipart uploads -----------------------------------------------------------------
    #
    # Every method takes `expiry` (seconds, None: never): an upload begun longer ago is aborted
    # when it is next named, and answered NoSuchUpload. `expire_uploads` aborts them eagerly.
    # Closing an upload (complete or abort) tombstones its parts, then its record, then any part
    # found again; a part upload re-reads the record after writing its part and drops the part
    # if the upload was closed meanwhile: between the two, no part outlives its upload.

    async def create_upload(self, upload: Upload, initiator: str = "") -> MultipartUpload:
        """Begin a multipart upload of `upload.key` with the upload's metadata and stored headers."""
        validation.check_key(upload.key)
        size = len(upload.key.encode("utf-8"))
        if size > MAX_UPLOAD_KEY_BYTES:
            raise InvalidKey(f"object key is {size} bytes in UTF-8; a multipart upload's key may hold at most "
                             f"{MAX_UPLOAD_KEY_BYTES} (use a single PUT for longer keys)")
        validation.check_metadata(upload.user_metadata, upload.content_type)
        attributes = {**upload.attributes, _INITIATOR: initiator}
        validation.check_attributes(attributes)
        bucket = await self._catalog.get(upload.bucket)
        version = self._clock.now()
        upload_id = f"{version:016x}{secrets.token_hex(8)}"  # sorts in creation order
        record = Manifest(bucket=upload.bucket, key=_record_key(upload.key, upload_id), version=version, size=0,
                          etag="", content_type=upload.content_type,
                          user_metadata=tuple(sorted(upload.user_metadata.items())), writer=self.node_id,
                          generation=bucket.generation, attributes=tuple(sorted(attributes.items())))
        await self._write_manifest(bucket, record)
        made = _upload_of(record)
        assert made is not None
        return made

    async def upload_part(self, bucket_name: str, key: str, upload_id: str, number: int,
                          pieces: AsyncIterator[bytes | memoryview], attributes: Mapping[str, str] | None = None,
                          *, expiry: float | None = None) -> Part:
        """Store part `number` of an upload (replacing any earlier upload of that number: the newest
        version wins). `attributes` (the part's MD5 for S3) are read once the stream is consumed."""
        _check_part_number(number)
        bucket = await self._catalog.get(bucket_name)
        upload = await self._open_upload(bucket, key, upload_id, expiry)
        table = self._layout.table(bucket.policy)
        part_key = _part_key(upload_id, number)
        previous = asyncio.ensure_future(self._latest(bucket, part_key))
        try:
            refs, _sites, _inline, size, etag = await self._store_chunks(
                _at_most(pieces, self.max_part_size), table, bucket.policy, self.key_of(bucket), bucket.owner,
                always_chunk=True)
            kept = dict(attributes or {})
            validation.check_attributes(kept)
            manifest = Manifest(bucket=bucket_name, key=part_key, version=await self._next_version(previous),
                                size=size, etag=etag, chunks=tuple(refs), writer=self.node_id,
                                generation=bucket.generation, attributes=tuple(sorted(kept.items())))
        finally:
            previous.cancel()
        await self._write_manifest(bucket, manifest)
        record = await self._latest(bucket, _record_key(upload.key, upload_id))
        if record is None or record.deleted:  # completed or aborted while this part streamed in
            await self._tombstone_all(bucket, [manifest])
            raise NoSuchUpload(f"multipart upload {upload_id} of {key!r} was completed or aborted while part "
                               f"{number} was uploading; the part was dropped")
        return _part_of(manifest, number)

    async def complete_upload(self, bucket_name: str, key: str, upload_id: str, parts: Sequence[tuple[int, str]],
                              *, expiry: float | None = None) -> Manifest:
        """Compose the object from the parts named (number, ETag), in ascending order: its manifest
        is their chunk lists concatenated; then the upload is closed."""
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
        bucket = await self._catalog.get(bucket_name)
        upload = await self._open_upload(bucket, key, upload_id, expiry)
        previous = asyncio.ensure_future(self._latest(bucket, key))
        try:
            stored = await self._bounded_gather(
                [partial(self._latest, bucket, _part_key(upload_id, number)) for number, _ in parts])
            chunks: list[ChunkRef] = []
            md5s: list[str] = []
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
                if m.inline is not None or sum(c.length for c in m.chunks) != m.size:
                    raise IntegrityError(f"part {number} of upload {upload_id}: its chunks do not add up to its "
                                         f"{m.size} bytes")
                chunks += m.chunks
                md5s.append(part.etag)
                size += m.size
            attributes = {**dict(upload.attributes), MD5: multipart_md5(md5s)}
            manifest = Manifest(
                bucket=bucket_name, key=key, version=await self._next_version(previous), size=size,
                etag=composed_etag(chunks, len(parts)), content_type=upload.content_type,
                user_metadata=upload.user_metadata, chunks=tuple(chunks), writer=self.node_id,
                generation=bucket.generation, attributes=tuple(sorted(attributes.items())))
        finally:
            previous.cancel()
        await self._write_manifest(bucket, manifest)
        await self._close_upload(bucket, upload)
        return manifest

    async def abort_upload(self, bucket_name: str, key: str, upload_id: str) -> None:
        """Drop an upload and its parts (their chunks go with the next GC passes)."""
        bucket = await self._catalog.get(bucket_name)
        await self._close_upload(bucket, await self._open_upload(bucket, key, upload_id, None))

    async def get_upload(self, bucket_name: str, key: str, upload_id: str, *,
                         expiry: float | None = None) -> MultipartUpload:
        bucket = await self._catalog.get(bucket_name)
        return await self._open_upload(bucket, key, upload_id, expiry)

    async def list_parts(self, bucket_name: str, key: str, upload_id: str, *, marker: int = 0,
                         max_parts: int = LIST_PAGE,
                         expiry: float | None = None) -> tuple[MultipartUpload, PartListing]:
        """The upload and its parts numbered above `marker`, at most `max_parts` (<= 1000)."""
        bucket = await self._catalog.get(bucket_name)
        upload = await self._open_upload(bucket, key, upload_id, expiry)
        max_parts = max(1, min(max_parts, LIST_PAGE))
        marker = max(0, min(marker, MAX_PARTS))
        prefix = _part_prefix(upload_id)
        parts: list[Part] = []
        async for m in self._index_entries(bucket, prefix, f"{prefix}{marker:05d}" if marker else ""):
            number = _part_number(m.key, prefix)
            if m.deleted or number is None:
                continue
            if len(parts) >= max_parts:
                return upload, PartListing(parts, True, parts[-1].number)
            parts.append(_part_of(m, number))
        return upload, PartListing(parts, False, parts[-1].number if parts else 0)

    async def list_uploads(self, bucket_name: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
                           upload_id_marker: str = "", max_uploads: int = LIST_PAGE,
                           expiry: float | None = None) -> UploadListing:
        """Uploads in progress in key order, then creation order (S3's ListMultipartUploads): after
        (`key_marker`, `upload_id_marker`), at most `max_uploads` (<= 1000) uploads and common prefixes."""
        bucket = await self._catalog.get(bucket_name)
        max_uploads = max(1, min(max_uploads, LIST_PAGE))
        now = version_time(self._clock.now())
        if not key_marker:
            cursor = ""
        elif delimiter and key_marker.startswith(prefix) and key_marker.endswith(delimiter) \
                and key_marker.find(delimiter, len(prefix)) == len(key_marker) - len(delimiter):
            cursor = UPLOADS + key_marker + _MAX_CHAR  # a common prefix given back: past all of it
        elif _UPLOAD_ID.fullmatch(upload_id_marker):
            cursor = _record_key(key_marker, upload_id_marker)
        else:
            cursor = f"{UPLOADS}{key_marker}\x01g"  # past every upload of that key ("g" > hex digits)
        uploads: list[MultipartUpload] = []
        prefixes: list[str] = []
        last = ("", "")
        while True:
            jumped = False
            async for m in self._index_entries(bucket, UPLOADS + prefix, cursor):
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
                cursor = UPLOADS + prefixes[-1] + _MAX_CHAR  # skip the rest of this common prefix
                jumped = True
                break
            if not jumped:
                return UploadListing(uploads, prefixes, False, "", "")

    async def expire_uploads(self, bucket_name: str, expiry: float) -> int:
        """Abort the bucket's uploads begun more than `expiry` seconds ago; returns how many."""
        bucket = await self._catalog.get(bucket_name)
        now = version_time(self._clock.now())
        expired = []
        async for m in self._index_entries(bucket, UPLOADS):
            upload = _upload_of(m)
            if not m.deleted and upload is not None and now - version_time(m.version) > expiry:
                expired.append(upload)
        for upload in expired:
            await self._close_upload(bucket, upload)
        return len(expired)

    async def _open_upload(self, bucket: BucketRecord, key: str, upload_id: str,
                           expiry: float | None) -> MultipartUpload:
        """The live upload `upload_id` of `key`, or NoSuchUpload (an expired one is aborted first)."""
        validation.check_key(key)
        missing = NoSuchUpload(f"no multipart upload {upload_id[:40]!r} of key {key[:200]!r} in bucket "
                               f"{bucket.name!r}: never begun, or completed, aborted or expired")
        if not _UPLOAD_ID.fullmatch(upload_id) or len(key.encode("utf-8")) > MAX_UPLOAD_KEY_BYTES:
            raise missing
        record = await self._latest(bucket, _record_key(key, upload_id))
        upload = None if record is None or record.deleted else _upload_of(record)
        if upload is None:
            raise missing
        if expiry is not None and version_time(self._clock.now()) - version_time(upload.initiated) > expiry:
            await self._close_upload(bucket, upload)
            raise NoSuchUpload(f"multipart upload {upload_id} of key {key[:200]!r} expired (begun more than "
                               f"{expiry:g} s ago) and was aborted")
        return upload

    async def _close_upload(self, bucket: BucketRecord, upload: MultipartUpload) -> None:
        """Tombstone the parts, then the record, then any part that slipped in meanwhile."""
        prefix = _part_prefix(upload.upload_id)
        await self._tombstone_all(bucket, [m async for m in self._index_entries(bucket, prefix) if not m.deleted])
        record = await self._latest(bucket, _record_key(upload.key, upload.upload_id))
        if record is not None and not record.deleted:
            await self._tombstone_all(bucket, [record])
        await self._tombstone_all(bucket, [m async for m in self._index_entries(bucket, prefix) if not m.deleted])

    async def _tombstone_all(self, bucket: BucketRecord, manifests: Sequence[Manifest]) -> None:
        async def tombstone(m: Manifest) -> None:
            self._clock.observe(m.version)
            await self._write_manifest(bucket, Manifest(
                bucket=bucket.name, key=m.key, version=self._clock.now(), size=0, etag="", deleted=True,
                writer=self.node_id, generation=bucket.generation))
        await self._bounded_gather([partial(tombstone, m) for m in manifests])

    async def _bounded_gather(self, calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        slots = asyncio.Semaphore(_WRITES_AT_ONCE)

        async def one(call: Callable[[], Awaitable[T]]) -> T:
            async with slots:
                return await call()
        return list(await asyncio.gather(*(one(c) for c in calls)))

    async def _index_entries(self, bucket: BucketRecord, prefix: str, start_after: str = "") -> AsyncIterator[Manifest]:
        """Every index entry (tombstones too) of `bucket` under `prefix` after `start_after`, merged
        across the index replicas page by page; the reserved space included."""
        table = self._layout.table(bucket.policy)
        partition = bucket_partition(bucket.name, table.bits)
        cursor = start_after
        while True:
            page, complete = await self._merged_page(table, partition, bucket, prefix, cursor)
            for m in page:
                yield m
            if complete or not page:
                return
            cursor = page[-1].key


async def _as_is(frame: bytes) -> bytes:
    return frame


def _etag_only(m: Manifest) -> dict[str, str]:
    """The attributes a copy with new metadata keeps: the content's S3 ETag, not its old headers."""
    return {k: v for k, v in m.attributes if k == "md5"}
