"""This node's own copy of the data: the storage engine behind a thread pool, guarded by residency.

Every write that reaches a disk of this node passes `ensure_eligible` first: the node looks up its
own location in the admin's layout (never in a request) and refuses anything of a policy that does
not allow it. That single check is what keeps a France-only byte off a German disk, whichever
coordinator, peer or client sent it.

Storage calls block (fsync, RocksDB), so they run in a thread pool; hashing and zstd release the
GIL there too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from maillage.placement import format_location
from maillage.storage import BucketRecord, ChunkStore, Manifest, MetaStore

from .errors import OutsidePolicy
from .layout_state import LayoutState


@dataclass(frozen=True)
class BucketInventory:
    bucket: str
    keys: tuple[str, ...]
    chunks: tuple[bytes, ...]


class LocalReplica:
    def __init__(self, node_id: str, chunks: ChunkStore, meta: MetaStore,
                 layout: LayoutState, executor: Executor) -> None:
        self.node_id = node_id
        self.chunks = chunks
        self.meta = meta
        self._layout = layout
        self._executor = executor

    async def _run(self, fn, *args):
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

    async def has_chunks(self, digests: Sequence[bytes]) -> list[bool]:
        return await self._run(self.chunks.has_many, list(digests))

    async def put_chunk(self, frame: bytes, *, policy: str) -> bool:
        self.ensure_eligible(policy)
        return await self._run(self.chunks.put, frame)

    async def get_chunk(self, digest: bytes) -> bytes:
        return await self._run(self.chunks.get, digest)

    # ----- manifests -------------------------------------------------------------------------

    async def put_manifest(self, manifest: Manifest, bucket: BucketRecord) -> bool:
        self.ensure_eligible(bucket.policy)
        if self.meta.get_bucket(bucket.name) is None:
            await self._run(self.meta.put_bucket, bucket)
        return await self._run(self.meta.put_manifest, manifest)

    async def get_manifest(self, bucket: str, key: str) -> Manifest | None:
        return await self._run(self.meta.get_manifest, bucket, key)

    async def list_index(self, bucket: str, prefix: str, start_after: str,
                         limit: int) -> tuple[list[Manifest], bool]:
        entries = await self._run(lambda: self.meta.list_manifests(
            bucket, prefix=prefix, start_after=start_after, limit=limit + 1, include_deleted=True))
        return entries[:limit], len(entries) > limit

    # ----- bucket records (kept only on nodes inside the bucket's policy) --------------------

    async def put_bucket(self, record: BucketRecord) -> None:
        self.ensure_eligible(record.policy)
        await self._run(self.meta.put_bucket, record)

    async def get_bucket(self, name: str) -> BucketRecord | None:
        return await self._run(self.meta.get_bucket, name)

    async def delete_bucket(self, name: str) -> None:
        await self._run(self.meta.delete_bucket, name)

    async def list_buckets(self) -> list[BucketRecord]:
        return await self._run(self.meta.list_buckets)

    # ----- inventory, for the demo and the audit ---------------------------------------------

    async def inventory(self, bucket: str = "") -> tuple[list[BucketInventory], list[bytes]]:
        def collect():
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
