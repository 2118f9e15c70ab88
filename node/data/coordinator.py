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
again under another policy never receives the old generation's keys. A bucket's record rests on
the owners of its name (`bucket_records.Catalog.record_owners`): creating it is a claim a majority
of them must take, deleting it a tombstone of its generation on a majority of them. A server-side copy is refused
(`ResidencyWidening`) unless the destination's policy is within the source's; a copy into a bucket
of another key (another tenant or policy) re-names the chunks with the destination's key.

Multipart uploads are `uploads.MultipartUploads`, built on the public part of this write path
(`store_chunks`, `latest`, `next_version`, `write_manifest`, `write_tombstone`, `index_entries`,
`now`); they live under reserved keys of the bucket (`validation.RESERVED_PREFIX`), which
`list_objects` starts past.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar
from urllib.parse import parse_qsl

import blake3

from maillage.node import object_lock, validation
from maillage.node.data.bucket_records import Catalog, majority
from maillage.node.data.chunking import FixedChunker
from maillage.node.data.read_order import read_order
from maillage.node.errors import (
    BucketAlreadyExists,
    BucketDisputed,
    BucketNotEmpty,
    IntegrityError,
    InvalidArgument,
    NodeError,
    NoSuchBucket,
    NoSuchKey,
    QuorumNotReached,
    ResidencyWidening,
)
from maillage.node.replicas.quorum import ReplicaSets
from maillage.node.replicas.replica import Replica, put_manifest_teaching
from maillage.node.replicas.transport import Peers
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import PartitionTable, PlacementError, bucket_partition, chunk_partition, format_location
from maillage.proto.etags import composed_etag, composed_parts
from maillage.proto.frame import chunk_digest, decode_frame, encode_frame, read_frame_header
from maillage.proto.limits import DEFAULT_CHUNK_SIZE, INLINE_MAX, check_chunk_size
from maillage.proto.storage_class import CHUNK_POLICY_ATTRIBUTE, STORAGE_CLASS_ATTRIBUTE, chunk_policy_named
from maillage.storage import BucketRecord, BucketTombstone, ChunkRef, HybridClock, Manifest, version_time

T = TypeVar("T")
#: Given a new version's manifest before it is written at its key, returns the one to write there
#: (a versioned bucket's: `versions.Versions.stamper`).
Stamp = Callable[[Manifest], Awaitable[Manifest]]

CHUNKS_IN_FLIGHT = 4
# A remote replica is asked whether it already holds a chunk (dedup) only for frames larger than
# this: for a smaller one the question costs a round trip on every new chunk to save a transfer of
# at most 1 MiB on a duplicate (which PutChunk then refreshes and does not store twice). And only when
# this node cannot answer for the replica set itself (`_may_be_held`).
PROBE_ABOVE = 1024 * 1024 + 4096
NODE_CHUNKS_IN_FLIGHT = 16
LIST_PAGE = 1000
_MAX_CHAR = "\U0010ffff"


def past(prefix: str) -> str:
    """A listing cursor (start-after) past every key that begins with `prefix`."""
    return prefix + _MAX_CHAR


def is_common_prefix(marker: str, prefix: str, delimiter: str) -> bool:
    """Whether a listing marker is one of the common prefixes a listing under `prefix` and
    `delimiter` rolls keys up into (so resuming after it means past everything it holds)."""
    return bool(delimiter) and marker.startswith(prefix) and marker.endswith(delimiter) \
        and marker.find(delimiter, len(prefix)) == len(marker) - len(delimiter)


_RESERVED_END = past(validation.RESERVED_PREFIX)  # above every reserved key written


TAGS_ATTRIBUTE = "tags"  # an object's tag set, URL-encoded and sorted (the S3 door's `tagging`)
MD5_ATTRIBUTE = "md5"  # the attribute holding an object's S3 ETag (or a multipart part's MD5)
#: + an algorithm (crc32, sha256...): the checksum of the object (or part) its writer sent and the S3
#: door verified, base64; a completed upload's is the composite of its parts' ("<base64>-<parts>").
CHECKSUM_PREFIX = "checksum-"
#: The HLC version a restated manifest's content was written at (its tags changed, or it became the
#: key's current version again): the manifest is renumbered so it wins on every replica, and its
#: Last-Modified stays the write's (`written_at`).
WRITTEN_ATTRIBUTE = "written"
#: Attributes a copy does not take from its source: when it was written, and where its chunks
#: rested (a copy's rest under its own bucket's policy, class STANDARD).
_NOT_COPIED = frozenset({WRITTEN_ATTRIBUTE, CHUNK_POLICY_ATTRIBUTE, STORAGE_CLASS_ATTRIBUTE})


def checksums_of(m: Manifest) -> dict[str, str]:
    """The checksums (algorithm -> base64) a version's or part's writer sent and the door verified."""
    return {k[len(CHECKSUM_PREFIX):]: v for k, v in m.attributes if k.startswith(CHECKSUM_PREFIX)}


def tags_of(attributes: Mapping[str, str]) -> dict[str, str]:
    """The tag set of a version's attributes ({} when it has none)."""
    stored = attributes.get(TAGS_ATTRIBUTE, "")
    return dict(parse_qsl(stored, keep_blank_values=True)) if stored else {}


def written_at(m: Manifest) -> float:
    """Seconds since the epoch the version's content was written: its S3 Last-Modified, what
    lifecycle rules count days from."""
    written = dict(m.attributes).get(WRITTEN_ATTRIBUTE, "")
    return version_time(int(written) if written.isdigit() else m.version)


def restated(source: Manifest, attributes: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The attributes of a renumbered copy of `source` whose content is unchanged: keeping when it
    was written."""
    kept = dict(attributes)
    kept.setdefault(WRITTEN_ATTRIBUTE, dict(source.attributes).get(WRITTEN_ATTRIBUTE) or str(source.version))
    return tuple(sorted(kept.items()))


@dataclass(frozen=True)
class Upload:
    """What a write says of the object it makes (its bucket is the record the caller was checked on)."""

    key: str
    content_type: str = "application/octet-stream"
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)  # stored headers (Manifest.attributes)


@dataclass
class StreamEnd:
    """What a write's sender says of its body once the body has ended, filled in by the door when
    the last piece is through and read by the coordinator only then: the sender's BLAKE3 of the
    whole object (the native SDK's trailer; checked before the manifest is written) and the MD5
    the S3 door computed on the way (kept as the object's S3 ETag), with the checksums its sender
    sent and the door verified."""

    blake3: bytes | None = None
    md5: str | None = None
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64, sent and verified (S3)

    def attributes(self) -> dict[str, str]:
        kept = {CHECKSUM_PREFIX + algorithm: value for algorithm, value in self.checksums.items()}
        if self.md5 is not None:
            kept[MD5_ATTRIBUTE] = self.md5
        return kept


@dataclass(frozen=True)
class UploadStream:
    """The body of a write: its pieces, and what the sender says of them once they have ended."""

    pieces: AsyncIterator[bytes | memoryview]
    end: StreamEnd = field(default_factory=StreamEnd)


@dataclass(frozen=True)
class Listing:
    contents: list[Manifest]
    common_prefixes: list[str]
    is_truncated: bool
    next_token: str


class Coordinator:
    def __init__(self, node_id: str, peers: Peers, layout: LayoutState, catalog: Catalog,
                 clock: HybridClock, executor: Executor, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 is_up: Callable[[str], bool] = lambda _: True,
                 maybe_behind: Callable[[str], bool] = lambda _: False,
                 chunk_key: Callable[[str, str], bytes | None] = lambda _tenant, _policy: None,
                 energy_of: Callable[[str], str] = lambda _: "unknown") -> None:
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
        self._energy_of = energy_of  # node -> its site's energy state as last heard (read_order)
        self._chunk_key = chunk_key  # (owner tenant, policy) -> K, None for unkeyed names
        self.chunk_size = check_chunk_size(chunk_size)

    # ----- buckets ---------------------------------------------------------------------------

    async def create_bucket(self, name: str, policy: str, owner: str = "") -> BucketRecord:
        """One atomic decision between concurrent creators: a conditional write (a claim) on the
        name's owners in `policy`, each owner taking it only if it holds no live record of the name
        (`MetaStore.put_bucket`, a compare-and-set in its single writer). The creator whose claim a
        majority of the R owners took wins; a loser withdraws its claim (a tombstone of its own
        generation), and a claim never withdrawn is dropped by repair (`Repairer._learn_buckets`).
        The name's owners in every other policy are asked before and after the claim: a name held
        elsewhere is taken, and of two creators under different policies, one that sees the other's
        claim withdraws (both may: neither then wins; BucketAlreadyExists, try again)."""
        validation.check_bucket_name(name)
        table = self._layout.table(policy)  # UnknownPolicy / PolicyUnsatisfiable, before anything
        if await self._taken_elsewhere(name, policy) or await self._held_before_a_layout_change(name, policy):
            raise BucketAlreadyExists(f"bucket {name!r} already exists")
        record = BucketRecord(name=name, policy=policy, created=self._clock.now(), owner=owner,
                              generation=secrets.token_hex(16))
        results, errors = await self._catalog.at_owners(name, policy, lambda r: r.put_bucket(record))
        owners = self._catalog.record_owners(name, policy)
        taken = sum(1 for n in results if n in owners)
        sites = {self._sets.site_of(n) for n in results}
        needed = min(2, table.policy.replicas)
        if taken >= majority(len(owners)) and len(sites) >= needed:
            if not await self._taken_elsewhere(name, policy):
                self._catalog.forget(name)
                await self._catalog.enter(record)  # the tenant's bucket list (repair re-enters a missed one)
                return record
            await self._withdraw(record, [*results, *errors])
            raise BucketAlreadyExists(f"bucket {name!r} already exists (created at the same time under "
                                      f"another policy)")
        await self._withdraw(record, [*results, *errors])
        if any(isinstance(err, BucketAlreadyExists) for err in errors.values()):
            raise BucketAlreadyExists(f"bucket {name!r} already exists")
        failures = "; ".join(f"{n}: {err}" for n, err in errors.items())
        raise QuorumNotReached(f"bucket {name!r}: {taken} of its {len(owners)} owners took the record on "
                               f"{len(sites)} site(s); a majority on {needed} sites is needed; failures: "
                               f"{failures or 'none'}")

    async def _taken_elsewhere(self, name: str, policy: str) -> bool:
        """Whether the name is a bucket under another policy: some of its owners there hold it
        (R of them asked), and the owners of that policy decide on it when all are asked. One owner
        still holding a record its fellows deleted (it missed the delete, or the layout changed
        who the owners are since) does not keep the name taken; an undecidable answer does."""
        held = await self._catalog.held_elsewhere(name, policy, strict=False)
        for other in sorted({record.policy for _, record in held}):
            try:
                decided = await self._catalog.decided(name, other)
            except (QuorumNotReached, BucketDisputed):
                return True  # cannot show the name free there: refused, as before
            if decided is not None and decided.policy != policy:
                return True
        return False

    async def _held_before_a_layout_change(self, name: str, policy: str) -> bool:
        """Whether the name's owners before the last layout changes hold its record, not handed to
        the current owners yet (who would take a claim of the name: a second bucket of that name)."""
        if not self._catalog.moved_owners(name, policy):
            return False
        return await self._catalog.moved(name, policy, await self._catalog.answers(name, [policy])) is not None

    async def _withdraw(self, record: BucketRecord, nodes: Sequence[str]) -> None:
        """Withdraw a claim that did not win: a tombstone of its generation wherever it may rest
        (a node holding another record of the name refuses it, and keeps that one)."""
        tombstone = BucketTombstone(name=record.name, generation=record.generation, policy=record.policy,
                                    deleted=self._clock.now())
        await asyncio.gather(*(self._try(n, lambda r: r.delete_bucket(tombstone)) for n in nodes))
        self._catalog.forget(record.name)

    async def confirm_bucket(self, record: BucketRecord) -> None:
        """NoSuchBucket unless `record` is the one its owners hold now (asked again, not cached)."""
        self._catalog.forget(record.name)
        if await self._catalog.find(record.name, record.policy) != record:
            raise NoSuchBucket(f"bucket {record.name!r} generation {record.generation or '(none)'} no longer exists")

    def forget_bucket(self, name: str) -> None:
        """Drop this node's cached lookup of `name` (the next one asks the owners)."""
        self._catalog.forget(name)

    def check_policy(self, policy: str) -> None:
        """UnknownPolicy or PolicyUnsatisfiable unless the layout can place a bucket of `policy`."""
        self._layout.table(policy)

    async def head_bucket(self, name: str, policy: str | None = None) -> BucketRecord:
        """`policy`: where the caller believes the bucket is (asked first), if it knows."""
        validation.check_bucket_name(name)
        return await self._catalog.get(name, policy)

    def last_known_bucket(self, name: str) -> BucketRecord | None:
        """The record this node last looked up for `name` (`Catalog.last_known`: a guess)."""
        return self._catalog.last_known(name)

    async def find_bucket(self, name: str, policy: str | None = None) -> BucketRecord | None:
        """The bucket's record, None if there is none (`bucket_records.Catalog.find`)."""
        validation.check_bucket_name(name)
        return await self._catalog.find(name, policy)

    async def tenant_buckets(self, tenant: str) -> list[BucketRecord]:
        """`tenant`'s buckets, from its bucket list in each policy (`Catalog.tenant_buckets`)."""
        return await self._catalog.tenant_buckets(tenant)

    async def led_buckets(self) -> list[BucketRecord]:
        """The buckets whose record this node holds as their first owner (`Catalog.leads`)."""
        records, _ = await self._peers.local.bucket_catalog()
        return [r for r in records if self._catalog.leads(r.name, r.policy)]

    async def delete_bucket(self, record: BucketRecord) -> None:
        """Delete an empty bucket. Multipart uploads in progress do not count (S3 does not count
        them either): the bucket tombstone drops them with the rest of the generation's index.
        The tombstone goes to the record's owners and must reach a majority of them: the next
        create's claim meets it there (an owner that misses it learns it by repair)."""
        name = record.name
        self._catalog.forget(name)
        if await self._catalog.find(name, record.policy) != record:  # a record cached before a delete and re-create
            raise NoSuchBucket(f"bucket {name!r} generation {record.generation or '(none)'} no longer exists")
        listing = await self.list_objects(record, max_keys=1)
        if listing.contents or listing.common_prefixes:
            raise BucketNotEmpty(f"bucket {name!r} is not empty: delete its objects first")
        tombstone = BucketTombstone(name=name, generation=record.generation, policy=record.policy,
                                    deleted=self._clock.now())
        results, errors = await self._catalog.at_owners(name, record.policy, lambda r: r.delete_bucket(tombstone))
        self._catalog.forget(name)
        await self._catalog.enter(record, removal=tombstone)
        owners = self._catalog.record_owners(name, record.policy)
        if sum(1 for n in results if n in owners) < majority(len(owners)):
            failures = "; ".join(f"{n}: {err}" for n, err in errors.items())
            raise QuorumNotReached(f"bucket {name!r}: the deletion reached fewer than a majority of its "
                                   f"{len(owners)} owners; failures: {failures or 'none'}")

    async def _try(self, node_id: str, op: Callable[[Replica], Awaitable[T]]) -> tuple[T | None, Exception | None]:
        try:
            return await op(self._peers.replica(node_id)), None
        except Exception as exc:  # a peer's error or the local store's: that node failed
            return None, exc

    # ----- object writes ---------------------------------------------------------------------

    async def put_object(self, bucket: BucketRecord, upload: Upload, body: UploadStream, *,
                         stamp: Stamp | None = None) -> tuple[Manifest, list[str]]:
        """Store an object from a stream of byte pieces; returns its manifest and the sites holding it.
        `stamp` (a versioned bucket's, `versions.py`) is given the manifest before it is written."""
        validation.check_key(upload.key)
        validation.check_metadata(upload.user_metadata, upload.content_type)
        validation.check_attributes(upload.attributes)
        # The new version must be above the key's current one. With the index replicas settled, the
        # write itself finds out (a replica holding a newer version answers "not applied", then
        # `write_newest` writes again above it): one round trip instead of a read then a write.
        previous = None if self._index_settled(bucket) else asyncio.ensure_future(self.latest(bucket, upload.key))
        try:
            refs, sites, inline, size, etag = await self.store_chunks(bucket, body.pieces)
            expected = body.end.blake3
            if expected is not None and expected.hex() != etag:
                raise IntegrityError(
                    f"object {upload.key!r}: the client's BLAKE3 {expected.hex()[:16]}... does not "
                    f"match the {size} bytes received ({etag[:16]}...); nothing was written")
            attributes = {**upload.attributes, **body.end.attributes()}
            validation.check_attributes(attributes)
            manifest = Manifest(
                bucket=bucket.name, key=upload.key,
                version=self._clock.now() if previous is None else await self.next_version(previous),
                size=size, etag=etag, content_type=upload.content_type,
                user_metadata=tuple(sorted(upload.user_metadata.items())), chunks=tuple(refs),
                inline=inline, writer=self.node_id, generation=bucket.generation,
                attributes=tuple(sorted(attributes.items())))
        finally:
            if previous is not None:
                previous.cancel()
        if stamp is not None:
            manifest = await stamp(manifest)
        manifest, manifest_sites = await self.write_newest(bucket, manifest)
        return manifest, sorted(sites | manifest_sites if inline is not None else sites)

    def _index_settled(self, bucket: BucketRecord) -> bool:
        table = self._layout.table(bucket.policy)
        return self._sets.settled(table, bucket_partition(bucket.name, table.bits))

    async def write_newest(self, bucket: BucketRecord, manifest: Manifest) -> tuple[Manifest, set[str]]:
        """Write `manifest` as its key's newest version, with a version number above every one the
        key had. A replica that already holds a newer or an equally numbered one (written under
        another coordinator's clock, ahead of ours or equal to it) answers "not applied": the
        newest version is then read, observed by our clock, and the manifest written again above
        it, as a read before the write would have ordered it. Returns what was written and where."""
        applied, sites = await self._write_manifest_applied(bucket, manifest)
        if applied:
            return manifest, sites
        newest = await self.latest(bucket, manifest.key)  # observes its version
        if newest is None or newest.version < manifest.version:
            return manifest, sites  # not applied for another reason (the bucket deleted meanwhile)
        manifest = replace(manifest, version=self._clock.now())
        _, sites = await self._write_manifest_applied(bucket, manifest)
        return manifest, sites

    def key_of(self, bucket: BucketRecord) -> bytes | None:
        """The key naming the chunks of `bucket` (None: unkeyed names)."""
        return self._chunk_key(bucket.owner, bucket.policy)

    async def store_chunks(self, bucket: BucketRecord, pieces: AsyncIterator[bytes | memoryview], *,
                           always_chunk: bool = False):
        """Cut, name (with `bucket`'s chunk key), frame and replicate the stream's chunks to the
        replicas of `bucket`'s policy; returns (chunk refs, sites holding them, inline bytes or None,
        size, hex BLAKE3 of the whole stream). A small object comes back as inline bytes instead,
        unless `always_chunk` (e.g. a multipart part: a completed upload's manifest is the
        concatenation of its parts' chunk lists, so no part may be inline). The manifest is the
        caller's to write (`write_manifest`)."""
        table = self._layout.table(bucket.policy)  # UnknownPolicy / PolicyUnsatisfiable, before any chunk
        policy, key, tenant = bucket.policy, self.key_of(bucket), bucket.owner
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
                sites.update(await self._replicate_chunk(table, policy, digest, frame, tenant, built=True))
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
                               tenant: str, *, built: bool = False) -> set[str]:
        """Write a chunk to its replicas, sealed at rest with `tenant`'s data key (the bucket owner).
        `built`: `frame` is this process's own `_frame`, which this node's store does not verify
        again (a frame read from a peer or the disk is)."""
        partition = chunk_partition(digest, table.bits)
        probe = len(frame) > PROBE_ABOVE and await self._may_be_held(table, partition, digest)

        async def put_if_missing(replica: Replica) -> bool:
            if replica is self._peers.local:
                return await self._peers.local.put_chunk(frame, policy=policy, tenant=tenant, built=built)
            if probe and (await replica.has_chunks([digest], policy))[0]:
                return False
            return await replica.put_chunk(frame, policy=policy, tenant=tenant)

        outcome = await self._sets.write(table, partition, put_if_missing, f"chunk {digest.hex()[:16]}")
        return {self._sets.site_of(n) for n in outcome.results}

    async def _may_be_held(self, table: PartitionTable, partition: int, digest: bytes) -> bool:
        """Whether a remote replica may already hold this chunk: worth a HasChunks round trip before
        sending it. When this node is one of the partition's replicas its own store answers for the
        set (the replicas of a partition hold the same chunks; repair keeps them so): a chunk it lacks
        is new data, sent at once, with no probe; one it holds is probably held by the others too.
        (A chunk a peer holds and this node lost is then sent once more: PutChunk stores it once.)"""
        if self.node_id not in table.replicas(partition):
            return True
        return (await self._peers.local.has_chunks([digest]))[0]

    async def write_manifest(self, bucket: BucketRecord, manifest: Manifest) -> set[str]:
        """Write `manifest` (an object's, a tombstone, or any index entry of `bucket`) to the
        replicas of the bucket's index; returns the sites that hold it once durable."""
        return (await self._write_manifest_applied(bucket, manifest))[1]

    async def _write_manifest_applied(self, bucket: BucketRecord, manifest: Manifest) -> tuple[bool, set[str]]:
        """`write_manifest`, and whether every replica that answered applied it (none held a newer
        version or one of the same number: `MetaStore.put_manifest`)."""
        table = self._layout.table(bucket.policy)
        outcome = await self._sets.write(
            table, bucket_partition(bucket.name, table.bits),
            lambda r: put_manifest_teaching(r, manifest, bucket, lambda: self.confirm_bucket(bucket)),
            "object manifest")
        return all(outcome.results.values()), {self._sets.site_of(n) for n in outcome.results}

    def now(self) -> int:
        """A new version from this coordinator's hybrid logical clock (`version_time` gives its time)."""
        return self._clock.now()

    def wall_ms(self) -> int:
        """This node's wall clock, in milliseconds since the epoch."""
        return self._clock.wall_ms()

    async def next_version(self, previous: asyncio.Future) -> int:
        """A version above the one `previous` (a pending `latest` of the key) found, if it could
        be read: the version of the key's next write."""
        try:
            latest = await previous
        except NodeError:
            latest = None
        if latest is not None:
            self._clock.observe(latest.version)
        return self._clock.now()

    async def tags(self, bucket: BucketRecord, key: str) -> dict[str, str]:
        """The tags of the key's current version ({} when there is none): what a bucket policy's
        s3:ExistingObjectTag conditions test."""
        try:
            return tags_of(dict((await self.head_object(bucket, key)).attributes))
        except NoSuchKey:
            return {}

    async def restate(self, bucket: BucketRecord, key: str, attributes: Mapping[str, str]) -> Manifest:
        """A new version of the key's current object with the same content and these attributes
        (e.g. its tags changed): no chunk is read or moved, the manifest alone is written."""
        validation.check_attributes(attributes)
        source = await self.head_object(bucket, key)
        settled: asyncio.Future[Manifest | None] = asyncio.get_running_loop().create_future()
        settled.set_result(source)
        manifest = replace(source, attributes=restated(source, attributes), writer=self.node_id,
                           version=await self.next_version(settled))
        await self.write_manifest(bucket, manifest)
        return manifest

    async def delete_object(self, bucket: BucketRecord, key: str) -> int:
        validation.check_key(key)
        tombstone = await self.write_tombstone(bucket, key, await self.latest(bucket, key))
        return tombstone.version

    async def write_tombstone(self, bucket: BucketRecord, key: str, above: Manifest | None) -> Manifest:
        """Write a tombstone of `key` (any index entry, unchecked) with a version above `above`'s,
        the key's latest version seen (None: none)."""
        if above is not None:
            self._clock.observe(above.version)
        tombstone = Manifest(bucket=bucket.name, key=key, version=self._clock.now(), size=0, etag="",
                             deleted=True, writer=self.node_id, generation=bucket.generation)
        await self.write_manifest(bucket, tombstone)
        return tombstone

    async def copy_object(self, src_record: BucketRecord, source_key: str, dest: BucketRecord, key: str, *,
                          replacement: Upload | None = None,
                          check: Callable[[Manifest], None] | None = None,
                          source: Manifest | None = None, stamp: Stamp | None = None) -> Manifest:
        """Copy an object's current version (or `source`, a version of it already read); `replacement`
        gives new metadata (else the source's are kept); `check(source manifest)` may refuse the copy
        (conditional copy) before any byte moves; `stamp` as for `put_object`."""
        validation.check_key(key)
        if replacement is not None:
            validation.check_metadata(replacement.user_metadata, replacement.content_type)
            validation.check_attributes(replacement.attributes)
        self.check_copy(src_record, dest)
        if source is None:
            source = await self.head_object(src_record, source_key)
        if check is not None:
            check(source)
        if replacement is not None:
            source = replace(source, content_type=replacement.content_type,
                             user_metadata=tuple(sorted(replacement.user_metadata.items())),
                             attributes=tuple(sorted({**_etag_only(source), **replacement.attributes}.items())))
        table = self._layout.table(dest.policy)
        src_table = self._layout.table(self.chunk_policy(src_record, source))
        src_key, dst_key = self.key_of(src_record), self.key_of(dest)
        chunks = []
        for ref in source.chunks:  # dedup is per policy: make sure each chunk sits where dest wants it
            frame = await self.read_chunk(src_table, ref.digest)
            built = False
            if read_frame_header(frame).keyed == (dst_key is not None) and src_key == dst_key:
                digest = ref.digest  # the name is the one dest would give: copy the frame as it is
            else:  # another (tenant, policy) key: verify with the source's, re-name with dest's
                plain = await asyncio.get_running_loop().run_in_executor(
                    self._executor, partial(decode_frame, frame, expected_digest=ref.digest, key=src_key))
                digest, frame = await self._frame(plain, dst_key)
                ref, built = replace(ref, digest=digest), True
            await self._replicate_chunk(table, dest.policy, digest, frame, dest.owner, built=built)
            chunks.append(ref)
        etag = source.etag
        if (parts := composed_parts(etag)) is not None:  # names the chunks: re-named ones too
            etag = composed_etag(chunks, parts)
        previous = asyncio.ensure_future(self.latest(dest, key))
        manifest = replace(source, bucket=dest.name, key=key, version=await self.next_version(previous),
                           writer=self.node_id, generation=dest.generation, chunks=tuple(chunks), etag=etag,
                           attributes=tuple(kv for kv in source.attributes if kv[0] not in _NOT_COPIED))
        if stamp is not None:
            manifest = await stamp(manifest)
        await self.write_manifest(dest, manifest)
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
        """A chunk's frame, as stored, from the first replica that answers with a sound header
        (one declaring more than any chunk, `FrameTooLarge`, is skipped for the next replica)."""
        return await self._read_from_replicas(table, digest, _header_checked)

    def chunk_policy(self, bucket: BucketRecord, version: Manifest) -> str:
        """The policy `version`'s chunks rest under: its bucket's, or the cold one a lifecycle
        transition moved them to (never one wider than the bucket's: `Layout.chunk_policy`)."""
        return self._layout.current.chunk_policy(
            bucket.policy, chunk_policy_named(dict(version.attributes), bucket.policy))

    async def move_to_cold(self, bucket: BucketRecord, version: Manifest, storage_class: str) -> dict[str, str]:
        """Copy `version`'s chunks to its bucket policy's cold policy (`Policy.cold`: inside the same
        territory), and answer the attributes its restated manifest takes; the copies it leaves are
        dropped by GC once no live manifest names them there. Each frame is sent as read and verified
        by the replica that stores it. Nothing moves when the policy names no cold policy
        (InvalidArgument) or the layout cannot place the cold one (PolicyUnsatisfiable)."""
        cold = self._layout.current.policy(bucket.policy).cold
        if not cold:
            raise InvalidArgument(f"policy {bucket.policy!r} of bucket {bucket.name!r} names no cold policy "
                                  f"to move objects of class {storage_class} to (`maillage layout policy-set "
                                  f"{bucket.policy} --cold POLICY`)")
        source, table = self._layout.table(self.chunk_policy(bucket, version)), self._layout.table(cold)
        for ref in version.chunks:
            frame = await self.read_chunk(source, ref.digest)
            await self._replicate_chunk(table, cold, ref.digest, frame, bucket.owner)
        attributes = dict(version.attributes)
        attributes.update({CHUNK_POLICY_ATTRIBUTE: cold, STORAGE_CLASS_ATTRIBUTE: storage_class})
        return attributes

    async def read_version_chunk(self, bucket: BucketRecord, version: Manifest, digest: bytes) -> bytes:
        """A chunk's frame of `version` of an object of `bucket`, from where its chunks rest."""
        return await self.read_chunk(self._layout.table(self.chunk_policy(bucket, version)), digest)

    async def read_plain_chunk(self, table: PartitionTable, digest: bytes, name_key: bytes | None) -> bytes:
        """A chunk's plain bytes, verified against its name; a copy that fails the check (bit rot
        on a replica) is skipped for the next one, so a reader sees the good copy."""
        loop = asyncio.get_running_loop()

        async def decoded(frame: bytes) -> bytes:
            return await loop.run_in_executor(
                self._executor, partial(decode_frame, frame, expected_digest=digest, key=name_key))
        return await self._read_from_replicas(table, digest, decoded)

    def _location_of(self, node_id: str) -> tuple[str, ...]:
        """Where the current layout puts a node; () for one it no longer has (counted farthest)."""
        try:
            return self._layout.current.location_of(node_id)
        except PlacementError:
            return ()

    async def _read_from_replicas(self, table: PartitionTable, digest: bytes,
                                  accept: Callable[[bytes], Awaitable[T]]) -> T:
        partition = chunk_partition(digest, table.bits)
        errors = []
        candidates = (*table.replicas(partition), *table.handoffs(partition))
        for node_id in read_order(candidates, local=self.node_id, location_of=self._location_of,
                                  is_up=self._is_up, energy_of=self._energy_of):
            try:
                return await accept(await self._peers.replica(node_id).get_chunk(digest))
            except Exception as exc:  # try the next copy; all failures are reported below
                errors.append(f"{node_id}: {exc}")
        raise QuorumNotReached(f"chunk {digest.hex()[:16]}: no copy could be read ({'; '.join(errors)})")

    # ----- object reads ----------------------------------------------------------------------

    async def latest(self, bucket: BucketRecord, key: str,
                     local: asyncio.Future[Manifest | None] | None = None) -> Manifest | None:
        """The newest version of `key` (a tombstone too, any index entry) across the bucket's index
        replicas, or None. `local`: this node's own read of it, already started (a GET reads ahead
        from it), taken as this node's answer instead of a second read."""
        table = self._layout.table(bucket.policy)

        def lookup(replica: Replica) -> Awaitable[Manifest | None]:
            if local is not None and replica is self._peers.local:
                return local
            return replica.get_manifest(bucket.name, key, bucket.generation)

        outcome = await self._sets.read(table, bucket_partition(bucket.name, table.bits), lookup, "object lookup")
        found = [m for m in outcome.results.values() if m is not None]
        if not found:
            return None
        best = max(found, key=lambda m: (m.version, m.writer))
        if best.deleted and key.startswith(validation.VERSION_SLOTS):
            # A removal one owner took while another still keeps the version locked (an owner whose
            # own clock runs ahead takes its own removal): the locked version is what is read.
            kept = [m for m in found if not m.deleted and object_lock.keeps(dict(m.attributes), self.wall_ms())]
            if kept:
                best = max(kept, key=lambda m: (m.version, m.writer))
        self._clock.observe(best.version)
        return best

    async def head_object(self, bucket: BucketRecord, key: str) -> Manifest:
        validation.check_key(key)
        latest = await self.latest(bucket, key)
        if latest is None or latest.deleted:
            raise NoSuchKey(f"no object {key!r} in bucket {bucket.name!r}")
        return latest

    async def list_objects(self, bucket: BucketRecord, *, prefix: str = "", delimiter: str = "",
                           start_after: str = "", max_keys: int = 1000) -> Listing:
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
                cursor = past(prefixes[-1])  # the token skips the rest of this common prefix
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

    async def index_entries(self, bucket: BucketRecord, prefix: str, start_after: str = "") -> AsyncIterator[Manifest]:
        """Every index entry (tombstones too) of `bucket` under `prefix` after `start_after`, merged
        across the index replicas page by page; the reserved space included (`list_objects` starts
        past it)."""
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


async def _header_checked(frame: bytes) -> bytes:
    read_frame_header(frame)
    return frame


def _etag_only(m: Manifest) -> dict[str, str]:
    """The attributes a copy with new metadata keeps: the content's S3 ETag and its tags (S3's
    tagging directive is its own), not its old headers."""
    return {k: v for k, v in m.attributes if k in (MD5_ATTRIBUTE, TAGS_ATTRIBUTE)}
