"""This node's own copy of the data: the storage engine behind a thread pool, guarded by residency.

Every write that reaches a disk of this node passes `ensure_eligible` first: the node looks up its
own location in the admin's layout (never in a request) and refuses anything of a policy that does
not allow it. That single check is what keeps a France-only byte off a German disk, whichever
coordinator, peer or client sent it.

Bucket records are checked the same way: a manifest is stored only under this node's OWN record
of its (bucket, generation), never under a record a caller sends; a record is never replaced by one
of another policy or generation, and a deleted generation (its tombstone) never comes back.

Storage calls block (fsync, RocksDB), so they run in a thread pool; hashing and zstd release the
GIL there too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from maillage.node import object_lock, validation
from maillage.node.errors import BucketConflict, BucketDeleted, NodeError, NoSuchBucket, OutsidePolicy
from maillage.node.replicas.antientropy import IndexEntry, SyncGroup, listing_digest
from maillage.node.replicas.summary_cache import SummaryCache
from maillage.node.runtime.budget import UploadBudget
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import chunk_partition, format_location
from maillage.proto.frame import read_frame_header
from maillage.proto.storage_class import chunk_policy_named
from maillage.storage import (
    BucketRecord,
    BucketTombstone,
    ChunkNotFound,
    ChunkStore,
    ChunkStoreStats,
    Manifest,
    MetaStore,
)
from maillage.storage.hlc import DEFAULT_MAX_DRIFT, check_version, version_time

__all__ = ["Replica", "LocalReplica", "BucketInventory", "put_manifest_teaching"]

T = TypeVar("T")


@dataclass(frozen=True)
class BucketInventory:
    bucket: str
    keys: tuple[str, ...]
    chunks: tuple[bytes, ...]


class Replica(Protocol):
    """One node's copy as the coordinator, repair and the catalog see it: this node's own store
    (`LocalReplica`) or a peer's (`peers.RemoteReplica` over gRPC, or an in-memory handle in
    tests). Every method may raise the node's typed errors; a peer that does not answer raises
    `PeerUnavailable`."""

    @property
    def node_id(self) -> str: ...

    async def has_chunks(self, digests: Sequence[bytes], policy: str = "") -> list[bool]: ...

    async def put_chunk(self, frame: bytes, *, policy: str, tenant: str = "") -> bool:
        """Store a frame for `policy`, sealed at rest with `tenant`'s data key (the owner of the
        bucket the chunk is named for; "" when not known: the policy's key)."""
        ...

    async def get_chunk(self, digest: bytes) -> bytes: ...

    async def get_chunk_with_tenant(self, digest: bytes) -> tuple[bytes, str]:
        """The frame and the tenant whose data key sealed it here ("" if none): for repair, which
        re-seals its copy with the same tenant's key."""
        ...

    async def put_manifest(self, manifest: Manifest) -> bool:
        """Store a manifest of (manifest.bucket, manifest.generation) if this replica holds that
        bucket's record (NoSuchBucket otherwise: never a record made up from the request)."""
        ...

    async def get_manifest(self, bucket: str, key: str, generation: str | None = None) -> Manifest | None:
        """`generation` None: the generation of the replica's own live record of the bucket."""
        ...

    async def list_index(self, bucket: str, prefix: str, start_after: str,
                         limit: int, generation: str | None = None) -> tuple[list[Manifest], bool]: ...

    async def put_bucket(self, record: BucketRecord) -> None:
        """Learn a bucket record; BucketConflict if another record of the name is held,
        BucketDeleted if that generation has a tombstone here."""
        ...

    async def get_bucket(self, name: str) -> BucketRecord | None: ...

    async def delete_bucket(self, tombstone: BucketTombstone) -> None:
        """Delete that bucket generation here: keep its tombstone, drop its record and index."""
        ...

    async def list_buckets(self) -> list[BucketRecord]: ...

    async def put_listing(self, record: BucketRecord) -> None:
        """Enter `record` in its owner tenant's bucket list under its policy (kept here as one of
        the owners of the tenant's name in that policy's table)."""

    async def remove_listing(self, tombstone: BucketTombstone, tenant: str) -> None: ...

    async def listing(self, policy: str, tenant: str) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        """`tenant`'s bucket list under `policy` as held here: live entries, and removed ones."""

    async def bucket_catalog(self) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        """The live records and the tombstones held here (repair's bucket learning)."""
        ...

    async def sync_summaries(self, groups: Sequence[SyncGroup]) -> list[tuple[bytes, int]]: ...

    async def sync_listing(self, group: SyncGroup) -> list[Any]:
        """Chunk digests (bytes) of a chunk group, `IndexEntry`s of an index group; sorted."""
        ...

    async def referenced_chunks(self, policy: str) -> list[bytes]: ...

    async def inventory(self, bucket: str = "") -> tuple[list[BucketInventory], list[bytes]]: ...


async def put_manifest_teaching(replica: Replica, manifest: Manifest, record: BucketRecord,
                                confirm: Callable[[], Awaitable[None]] | None = None) -> bool:
    """Write `manifest` to `replica`; a replica that does not know the bucket's generation yet
    (down when it was created, or new) is first sent the record, which it checks by its own
    rules (inside the policy, never replacing another record, never reviving a deleted
    generation: then its refusal is this replica's failure), then the manifest again. Used by
    the coordinator and by repair. `confirm` raises (NoSuchBucket) unless the record is still the
    one its owners hold: only the owners keep a deleted generation's tombstone, so a writer whose
    lookup predates a delete never teaches the dead record to another node."""
    if (record.name, record.generation) != (manifest.bucket, manifest.generation):
        raise NodeError(f"a manifest of bucket {manifest.bucket!r} generation {manifest.generation or '(none)'} "
                        f"does not belong to record {record.name!r} generation {record.generation or '(none)'}")
    try:
        return await replica.put_manifest(manifest)
    except NoSuchBucket:
        pass
    if confirm is not None:
        await confirm()
    await replica.put_bucket(record)
    return await replica.put_manifest(manifest)


BUCKET_CACHE = 10_000   # bucket records kept in memory (cleared when full)
#: A manifest of more chunks than this is encoded and sealed on a pool thread, not the event loop.
_COMMIT_FROM_LOOP_CHUNKS = 64


class LocalReplica:
    max_clock_drift = DEFAULT_MAX_DRIFT  # seconds a received version may lead our clock (wiring sets it)
    upload_budget: UploadBudget | None = None  # node-wide bytes of uploads in flight (wiring sets it)

    def __init__(self, node_id: str, chunks: ChunkStore, meta: MetaStore,
                 layout: LayoutState, executor: Executor, clock: Clock = SYSTEM_CLOCK) -> None:
        self._node_id = node_id
        self.chunks = chunks
        self.meta = meta
        self._layout = layout
        self._executor = executor
        self._clock = clock
        # Bucket records (or their absence) as read from the metadata store. Every request looks
        # its bucket up, and the store read costs less than the thread hop to do it; every write
        # of a record here goes through put_bucket / delete_bucket, which drop the entry, and a
        # read that raced a write (the epoch moved) is not kept.
        self._buckets: dict[str, BucketRecord | None] = {}
        self._bucket_epoch = 0
        # Called with a bucket's name whenever a record or tombstone of it is written here (the
        # catalog drops what it learned of the name from its peers: it is out of date).
        self.bucket_listeners: list[Callable[[str], None]] = []
        # Group summaries and held groups, walked again only after the stores changed (repair asks
        # every round, and so does each co-owner: `summary_cache.py`).
        self.summaries = SummaryCache(clock=clock)
        # Chunks held per policy, counted by the last walk of the holdings `held_groups` made (the
        # metrics read it: counting them on scrape would walk the store).
        self.held_chunks: dict[str, int] = {}
        # Manifests in the bucket indexes held here, per policy, counted by the same walk.
        self.held_manifests: dict[str, int] = {}

    @property
    def node_id(self) -> str:
        return self._node_id

    def _now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ----- residency -------------------------------------------------------------------------

    def ensure_eligible(self, policy_name: str) -> None:
        layout = self._layout.current
        policy = layout.policy(policy_name)
        location = layout.location_of(self.node_id)
        if not policy.allows(location):
            allowed = ", ".join(format_location(a) for a in policy.allow)
            raise OutsidePolicy(
                f"node {self.node_id} at {format_location(location)} is outside policy "
                f"{policy.name!r} (allows {allowed}); it stores nothing of this bucket")

    # ----- chunks ----------------------------------------------------------------------------

    async def has_chunks(self, digests: Sequence[bytes], policy: str = "") -> list[bool]:
        """Which chunks are stored here; with `policy`, also recorded as held for it. A chunk
        found held is held again (its time refreshed), so the GC cannot take a chunk that an
        upload just counted on instead of sending it."""
        digests = list(digests)
        if not policy:
            return await self._run(self.chunks.has_many, digests)

        def check() -> list[bool]:
            present = [self.meta.holding_since(policy, d) is not None and self.chunks.has(d) for d in digests]
            self.meta.hold_chunks(policy, [d for d, p in zip(digests, present) if p], now_ms=self._now_ms())
            return present
        return await self._run(check)

    async def put_chunk(self, frame: bytes, *, policy: str, tenant: str = "", built: bool = False) -> bool:
        """Store a frame for `policy` (residency checked first), sealed with `tenant`'s data key
        (the policy's if "" or the name is unkeyed); durable, and held, on return. `built`: this
        process encoded the frame (the coordinator's own write), so the store does not verify it
        again (`ChunkStore.put`); a frame a peer or client sent is always verified."""
        self.ensure_eligible(policy)
        header = read_frame_header(frame)
        digest = header.digest

        def store() -> bool:
            stored = self.chunks.put(frame, policy, tenant, built=header if built else None)
            self.meta.hold_chunks(policy, [digest], now_ms=self._now_ms())
            return stored
        return await self._run(store)

    async def drop_chunks(self, policy: str, digests: Sequence[bytes]) -> None:
        """Stop holding chunks for `policy`; delete each file no other policy still holds."""
        policies = [p.name for p in self._layout.current.policies]

        def drop() -> None:
            self.meta.release_chunks(policy, digests)
            for d in digests:
                if all(self.meta.holding_since(p, d) is None for p in policies):
                    self.chunks.delete(d)
        await self._run(drop)

    async def get_chunk(self, digest: bytes) -> bytes:
        return await self._run(self.chunks.get, digest)

    async def get_chunk_for(self, digest: bytes, policies: tuple[str, ...], owner: str) -> bytes:
        """A chunk read for a client of a bucket owned by `owner` whose chunks rest under `policies`
        (its policy and its cold one): served only if this node holds it for one of them and, where
        its file names the tenant whose key sealed it, for
        that tenant; otherwise ChunkNotFound, as if it were not here (a reader of one bucket learns
        nothing of another's chunks). Chunks whose names are not keyed (a cluster without a naming
        secret) and whose files are not sealed per tenant are checked against the policy only."""
        def read() -> bytes:
            if all(self.meta.holding_since(policy, digest) is None for policy in policies):
                raise ChunkNotFound(f"chunk {digest.hex()[:16]} is not held here for this bucket")
            tenant = self.chunks.tenant_of(digest)
            if tenant and tenant != owner:
                raise ChunkNotFound(f"chunk {digest.hex()[:16]} is not held here for this bucket")
            return self.chunks.get(digest)
        return await self._run(read)

    async def get_chunk_with_tenant(self, digest: bytes) -> tuple[bytes, str]:
        def read() -> tuple[bytes, str]:
            frame = self.chunks.get(digest)
            return frame, self.chunks.tenant_of(digest)
        return await self._run(read)

    async def stored_digests(self) -> list[bytes]:
        return await self._run(lambda: list(self.chunks.iter_digests()))

    async def frame_size(self, digest: bytes) -> int | None:
        def size() -> int | None:
            try:
                return self.chunks.path_of(digest).stat().st_size
            except FileNotFoundError:
                return None
        return await self._run(size)

    # ----- manifests -------------------------------------------------------------------------

    def own_record(self, bucket: str, generation: str) -> BucketRecord:
        """This node's live record of (bucket, generation); NoSuchBucket (BucketDeleted for a
        deleted generation) when it has none. The name and generation are the caller's, so the
        message never names a key."""
        record = self.meta.get_bucket(bucket)
        if record is not None and record.generation == generation:
            return record
        if self.meta.get_bucket_tombstone(bucket, generation) is not None:
            raise BucketDeleted(f"bucket {bucket!r} generation {generation or '(none)'} was deleted; "
                                f"node {self.node_id} stores nothing more of it")
        raise NoSuchBucket(f"node {self.node_id} holds no record of bucket {bucket!r} generation "
                           f"{generation or '(none)'}; it stores no manifest of it")

    async def put_manifest(self, manifest: Manifest, bucket: BucketRecord | None = None) -> bool:
        """Store `manifest` under this node's own record of its (bucket, generation); `bucket`
        (the caller's view of the record) is accepted for old callers and never trusted."""
        check_version(manifest.version, self._clock.time(), self.max_clock_drift)  # VersionTooFarAhead
        record = self.own_record(manifest.bucket, manifest.generation)
        self.ensure_eligible(record.policy)
        if manifest.key.startswith(validation.VERSION_SLOTS):  # a version: its lock, by the older clock
            held = self.meta.get_manifest(manifest.bucket, manifest.key, manifest.generation)
            if held is not None and not held.deleted and held.version < manifest.version:
                # This node's clock and the writer's (its HLC version): a node whose own clock runs
                # ahead still refuses a removal a sane coordinator's clock says is too early.
                now_ms = min(self._now_ms(), int(version_time(manifest.version) * 1000))
                object_lock.check_replacement(dict(held.attributes), manifest.deleted, dict(manifest.attributes),
                                              now_ms)
        # require_bucket: applied only while the record still has this generation (atomic with a
        # concurrent delete of the bucket)
        if getattr(self._executor, "runs_inline", False) or len(manifest.chunks) > _COMMIT_FROM_LOOP_CHUNKS:
            return await self._run(lambda: self.meta.put_manifest(manifest, require_bucket=True))
        # Handed to the store's committer from the event loop, which settles the future itself: no
        # pool thread parked on the commit, whose two extra wake-ups and GIL hand-offs per write
        # cost 4 KiB PUTs at c32 ~0.3-0.5 ms of node CPU each (benchmarks/RESULTS.md).
        applied = await asyncio.wrap_future(self.meta.put_manifests_later([manifest], require_bucket=True))
        return bool(applied[0])

    async def get_manifest(self, bucket: str, key: str, generation: str | None = None) -> Manifest | None:
        # On the event loop: a point read of RocksDB (block cache, a few µs) costs less than the
        # hop to a pool thread and back (~50 µs, more on a busy node), and every GET and PUT does one.
        return self.meta.get_manifest(bucket, key, generation)

    async def list_index(self, bucket: str, prefix: str, start_after: str,
                         limit: int, generation: str | None = None) -> tuple[list[Manifest], bool]:
        entries = await self._run(lambda: self.meta.list_manifests(
            bucket, generation=generation, prefix=prefix, start_after=start_after,
            limit=limit + 1, include_deleted=True))
        return entries[:limit], len(entries) > limit

    async def drop_index_entries(self, bucket: str, entries: Sequence[IndexEntry], generation: str = "") -> int:
        """Remove index entries of (bucket, generation) (handed over, or expired tombstones), each
        only if it is still the stored version; returns how many were removed."""
        versions = [(e.key, e.version, e.writer) for e in entries]
        return sum(await self._run(self.meta.drop_manifests, bucket, versions, generation))

    # ----- anti-entropy listings -------------------------------------------------------------

    def _chunk_listings(self, policy: str, bits: int) -> dict[int, list[bytes]]:
        out: dict[int, list[bytes]] = {}
        for _, digest, _ in self.meta.iter_holdings(policy):
            if self.chunks.has(digest):
                out.setdefault(chunk_partition(digest, bits), []).append(digest)
        return out

    def _index_listing(self, bucket: str, generation: str) -> list[IndexEntry]:
        return [IndexEntry.of(m) for m in self.meta.iter_manifests(bucket, generation)]

    def _listing(self, group: SyncGroup, bits: int) -> list[Any]:
        if group.is_index:
            return self._index_listing(group.bucket, group.generation)
        return [d for _, d, _ in self.meta.iter_holdings(group.policy, partition=group.partition, bits=bits)
                if self.chunks.has(d)]

    async def sync_listing(self, group: SyncGroup) -> list[Any]:
        """The sorted contents of a group on this node (chunk digests or index entries)."""
        bits = self._layout.current.partition_bits
        return await self._run(self._listing, group, bits)

    async def sync_summaries(self, groups: Sequence[SyncGroup]) -> list[tuple[bytes, int]]:
        """(digest, count) of each group's listing, in the order asked."""
        bits = self._layout.current.partition_bits

        def summarize() -> list[tuple[bytes, int]]:
            mark = self._change_mark(bits)
            by_policy: dict[str, dict[int, list[bytes]]] = {}
            out: list[tuple[bytes, int]] = []
            for g in groups:
                summary = self.summaries.get(g, mark)
                if summary is None:
                    items: list[Any]
                    if g.is_index:
                        items = self._index_listing(g.bucket, g.generation)
                    else:
                        if g.policy not in by_policy:
                            by_policy[g.policy] = self._chunk_listings(g.policy, bits)
                        items = by_policy[g.policy].get(g.partition, [])
                    summary = (listing_digest(items), len(items))
                    self.summaries.put(g, mark, summary)
                out.append(summary)
            return out
        return await self._run(summarize)

    def _change_mark(self, bits: int) -> tuple[int, ChunkStoreStats, int]:
        """What moves whenever a listing could differ: metadata written, chunk files added, removed
        or quarantined, another partition size."""
        return self.meta.change_mark(), self.chunks.stats(), bits

    async def referenced_chunks(self, policy: str) -> list[bytes]:
        """Chunks resting under `policy` referenced by the live manifests stored here (of their
        buckets' live generations: a deleted generation references nothing): those of buckets bound
        to `policy` that were not moved to its cold policy, and those a lifecycle transition moved
        to `policy` from a bucket whose policy names it cold (`Layout.resting_under`)."""
        bound = {policy, *(p.name for p in self._layout.current.resting_under(policy))}   # known or not

        def collect() -> list[bytes]:
            buckets = {(r.name, r.generation, r.policy) for r in self.meta.list_buckets() if r.policy in bound}
            refs: set[bytes] = set()
            for bucket, generation, bound_to in buckets:
                for m in self.meta.iter_manifests(bucket, generation):
                    if not m.deleted and chunk_policy_named(dict(m.attributes), bound_to) == policy:
                        refs.update(c.digest for c in m.chunks)
            return sorted(refs)
        return await self._run(collect)

    async def old_holdings(self, policy: str, older_than_ms: int) -> list[bytes]:
        """Chunks held for `policy` since before `older_than_ms` (unix ms): GC candidates."""
        return await self._run(lambda: [d for _, d, since in self.meta.iter_holdings(policy)
                                        if since < older_than_ms])

    async def held_groups(self) -> tuple[dict[str, set[int]], list[BucketRecord]]:
        """What this node holds: chunk partitions per policy, and buckets with an index here."""
        bits = self._layout.current.partition_bits

        def collect() -> tuple[dict[str, set[int]], list[BucketRecord]]:
            mark = self._change_mark(bits)
            held: tuple[dict[str, set[int]], list[BucketRecord]] | None = self.summaries.get("held groups", mark)
            if held is None:
                chunks: dict[str, set[int]] = {}
                counts: dict[str, int] = {}
                for policy, digest, _ in self.meta.iter_holdings():
                    chunks.setdefault(policy, set()).add(chunk_partition(digest, bits))
                    counts[policy] = counts.get(policy, 0) + 1
                buckets = self.meta.list_buckets()
                held = chunks, buckets
                self.summaries.put("held groups", mark, held)
                self.held_chunks = counts
                manifests: dict[str, int] = {}
                for record in buckets:
                    count = self.meta.count_manifests(record.name, record.generation)
                    manifests[record.policy] = manifests.get(record.policy, 0) + count
                self.held_manifests = manifests
            return held
        return await self._run(collect)

    # ----- bucket records (kept only on nodes inside the bucket's policy) --------------------

    async def put_bucket(self, record: BucketRecord) -> None:
        self.ensure_eligible(record.policy)
        self._bucket_written(record.name)
        try:
            refused = await self._run(self.meta.put_bucket, record)
        finally:
            self._bucket_written(record.name)
        if isinstance(refused, BucketTombstone):
            raise BucketDeleted(f"bucket {record.name!r} generation {record.generation or '(none)'} was "
                                f"deleted; node {self.node_id} keeps its tombstone and refuses its record")
        if refused is not None:
            raise BucketConflict(
                f"node {self.node_id} holds bucket {record.name!r} as generation "
                f"{refused.generation or '(none)'} of policy {refused.policy!r}; a bucket's policy and "
                f"generation never change, so the record of generation {record.generation or '(none)'} "
                f"(policy {record.policy!r}) is refused")

    async def get_bucket(self, name: str) -> BucketRecord | None:
        if name in self._buckets:
            return self._buckets[name]
        epoch = self._bucket_epoch
        record = await self._run(self.meta.get_bucket, name)
        if epoch == self._bucket_epoch:
            if len(self._buckets) >= BUCKET_CACHE:
                self._buckets.clear()
            self._buckets[name] = record
        return record

    async def delete_bucket(self, tombstone: BucketTombstone) -> None:
        self.ensure_eligible(tombstone.policy)  # even a bucket's name rests only inside its policy
        held = await self.get_bucket(tombstone.name)
        if held is not None and held.generation == tombstone.generation and held.policy != tombstone.policy:
            raise BucketConflict(f"node {self.node_id} holds bucket {tombstone.name!r} generation "
                                 f"{tombstone.generation or '(none)'} under policy {held.policy!r}; a tombstone "
                                 f"of it under policy {tombstone.policy!r} is refused")
        self._bucket_written(tombstone.name)
        try:
            await self._run(self.meta.put_bucket_tombstone, tombstone)
        finally:
            self._bucket_written(tombstone.name)

    async def drop_bucket_record(self, name: str, generation: str) -> bool:
        """Drop this node's copy of a record handed back to its owners (repair): only while it is
        of `generation` and no manifest of it rests here; no tombstone is left."""
        self._bucket_written(name)
        try:
            return await self._run(self.meta.drop_bucket_record, name, generation)
        finally:
            self._bucket_written(name)

    def _bucket_written(self, name: str) -> None:
        self._bucket_epoch += 1
        self._buckets.pop(name, None)
        for listener in self.bucket_listeners:
            listener(name)

    async def list_buckets(self) -> list[BucketRecord]:
        return await self._run(self.meta.list_buckets)

    async def bucket_catalog(self) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        return await self._run(lambda: (self.meta.list_buckets(), self.meta.list_bucket_tombstones()))

    async def put_listing(self, record: BucketRecord) -> None:
        self.ensure_eligible(record.policy)  # a tenant's bucket names rest inside their policy too
        await self._run(self.meta.put_listing, record)

    async def remove_listing(self, tombstone: BucketTombstone, tenant: str) -> None:
        self.ensure_eligible(tombstone.policy)
        await self._run(self.meta.remove_listing, tombstone, tenant)

    async def listing(self, policy: str, tenant: str) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        return await self._run(self.meta.listing, policy, tenant)

    # ----- inventory, for the demo and the audit ---------------------------------------------

    async def inventory(self, bucket: str = "") -> tuple[list[BucketInventory], list[bytes]]:
        def collect() -> tuple[list[BucketInventory], list[bytes]]:
            stored = set(self.chunks.iter_digests())
            per_bucket: dict[str, tuple[list[str], set[bytes]]] = {}
            for m in self.meta.iter_manifests(bucket or None):
                keys, digests = per_bucket.setdefault(m.bucket, ([], set()))
                keys.append(m.key)
                digests.update(c.digest for c in m.chunks if c.digest in stored)
            buckets = [BucketInventory(b, tuple(k), tuple(sorted(d)))
                       for b, (k, d) in sorted(per_bucket.items())]
            return buckets, sorted(stored)
        return await self._run(collect)
