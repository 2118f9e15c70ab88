"""The node plane: what a peer (or an admin auditing) may ask of this node's copy, checked by territory.

Replication, repair and gossip call these between nodes with a node certificate. A certificate
proves the caller is a node of the layout, not that it has any business with the data it names: a
hostile German node must not pull France-only chunks, listings or inventories, nor write or delete
France-only records, manifests or chunks. So every call that touches a policy's data checks that the
calling node is inside that policy (`territory.Territory.require_inside`): the policy the request
names (chunks), or the policy of this node's OWN record of the bucket it names (manifests, indexes),
never a policy the caller claims for a bucket. What each call checks is `rules.OPERATIONS[op].territory`,
and `tests/node/test_node_plane.py` walks every method with a node of each territory against it.

Bucket records are read by any node of the layout (a coordinator outside a policy must learn where
to send a request); they rest only on the name's owners inside their policy. A record pushed by a
peer is learned only if the peer is inside its policy and the name's owners in every other policy
answer and none holds it under that policy (`bucket_records.Catalog.check_undisputed`): one record
call cannot re-label a France-only bucket. Entries of a tenant's bucket list (PutBucketRecord,
DeleteBucketRecord and ListBucketRecords with `listing`) follow the rules of records.
An admin's key reads what the audit needs (rules.py) and is not a node: no territory applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from maillage.node.data.bucket_records import Catalog
from maillage.node.errors import InvalidRequest
from maillage.node.replicas.antientropy import SyncGroup
from maillage.node.replicas.replica import BucketInventory, LocalReplica
from maillage.node.service.tenancy import Caller
from maillage.node.service.territory import Territory
from maillage.storage import BucketRecord, BucketTombstone, ChunkNotFound, Manifest

__all__ = ["NodePlane"]


class NodePlane:
    def __init__(self, local: LocalReplica, territory: Territory, catalog: Catalog) -> None:
        self._local = local
        self._territory = territory
        self._catalog = catalog

    def _inside(self, caller: Caller, policy: str, what: str) -> None:
        if caller.node_id is not None:  # an admin's key (audit reads) is checked by its role alone
            self._territory.require_inside(caller.node_id, policy, what)

    @property
    def node_id(self) -> str:
        return self._local.node_id

    @property
    def partition_bits(self) -> int:
        return self._territory.partition_bits

    async def _bucket_policy(self, caller: Caller, bucket: str, generation: str | None) -> bool:
        """Check the caller against the policy of this node's own record of `bucket` (the live one,
        or the one of `generation`); False when this node holds no such record (nothing to read)."""
        record = await self._local.get_bucket(bucket)
        if record is None or (generation is not None and record.generation != generation):
            tomb = None if generation is None else self._local.meta.get_bucket_tombstone(bucket, generation)
            if tomb is None:
                return False
            self._inside(caller, tomb.policy, f"bucket {bucket!r}")
            return True
        self._inside(caller, record.policy, f"bucket {bucket!r}")
        return True

    # ----- chunks ----------------------------------------------------------------------------

    async def has_chunks(self, caller: Caller, digests: Sequence[bytes], policy: str) -> list[bool]:
        if caller.node_id is not None and not policy:
            raise InvalidRequest("a node's HasChunks names the policy it asks for")
        self._inside(caller, policy, f"the chunks of policy {policy!r}")
        return await self._local.has_chunks(digests, policy)

    async def put_chunk(self, caller: Caller, frame: bytes, policy: str, tenant: str) -> bool:
        self._inside(caller, policy, f"the chunks of policy {policy!r}")
        return await self._local.put_chunk(frame, policy=policy, tenant=tenant)

    async def get_chunk(self, caller: Caller, digest: bytes) -> tuple[bytes, str]:
        """A chunk's frame and sealing tenant, for a node inside a policy this node holds it for
        (NoSuchChunk otherwise, as if it were not here); a caller with no node id is a peer of an
        `--insecure-plaintext` mesh (benchmarks), where nothing has an identity to check."""
        held_for = [p for p in self._territory.policies() if self._local.meta.holding_since(p, digest) is not None]
        if not held_for or (caller.node_id is not None
                            and not any(self._territory.inside(p, caller.node_id) for p in held_for)):
            raise ChunkNotFound(f"chunk {digest.hex()[:16]} is not held here for a policy node "
                                f"{caller.node_id} is inside")
        return await self._local.get_chunk_with_tenant(digest)

    async def referenced_chunks(self, caller: Caller, policy: str) -> list[bytes]:
        self._inside(caller, policy, f"the chunks of policy {policy!r}")
        return await self._local.referenced_chunks(policy)

    # ----- manifests and indexes -------------------------------------------------------------

    async def put_manifest(self, caller: Caller, manifest: Manifest) -> bool:
        # The record's policy, never the caller's word: no record here means NoSuchBucket from the replica.
        await self._bucket_policy(caller, manifest.bucket, manifest.generation)
        return await self._local.put_manifest(manifest)

    async def get_manifest(self, caller: Caller, bucket: str, key: str, generation: str | None) -> Manifest | None:
        if not await self._bucket_policy(caller, bucket, generation):
            return None
        return await self._local.get_manifest(bucket, key, generation)

    async def list_index(self, caller: Caller, bucket: str, prefix: str, start_after: str, limit: int,
                         generation: str | None) -> tuple[list[Manifest], bool]:
        if not await self._bucket_policy(caller, bucket, generation):
            return [], False
        return await self._local.list_index(bucket, prefix, start_after, limit, generation)

    async def sync_summaries(self, caller: Caller, groups: Sequence[SyncGroup]) -> list[tuple[bytes, int]]:
        for group in groups:
            await self._check_group(caller, group)
        return await self._local.sync_summaries(groups)

    async def sync_listing(self, caller: Caller, group: SyncGroup) -> list[Any]:
        await self._check_group(caller, group)
        return await self._local.sync_listing(group)

    async def _check_group(self, caller: Caller, group: SyncGroup) -> None:
        self._inside(caller, group.policy, f"the data of policy {group.policy!r}")
        if group.is_index:  # and the bucket's own policy here, whatever the group says
            await self._bucket_policy(caller, group.bucket, group.generation)

    # ----- bucket records --------------------------------------------------------------------

    async def put_bucket(self, caller: Caller, record: BucketRecord) -> None:
        self._inside(caller, record.policy, f"the records of policy {record.policy!r}")
        if await self._local.get_bucket(record.name) != record:
            await self._catalog.check_undisputed(record, pusher=caller.node_id)
        await self._local.put_bucket(record)

    async def get_bucket(self, caller: Caller, name: str) -> BucketRecord | None:
        return await self._local.get_bucket(name)

    async def delete_bucket(self, caller: Caller, tombstone: BucketTombstone) -> None:
        self._inside(caller, tombstone.policy, f"the records of policy {tombstone.policy!r}")
        await self._local.delete_bucket(tombstone)

    async def bucket_catalog(self, caller: Caller) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        return await self._local.bucket_catalog()

    async def put_listing(self, caller: Caller, record: BucketRecord) -> None:
        """An entry of a tenant's bucket list: from a node inside the bucket's policy (which has
        authority over its records), resting inside it."""
        self._inside(caller, record.policy, f"the records of policy {record.policy!r}")
        await self._local.put_listing(record)

    async def remove_listing(self, caller: Caller, tombstone: BucketTombstone, tenant: str) -> None:
        self._inside(caller, tombstone.policy, f"the records of policy {tombstone.policy!r}")
        await self._local.remove_listing(tombstone, tenant)

    async def listing(self, caller: Caller, policy: str,
                      tenant: str) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        """Readable by every node, as bucket records are (a coordinator outside the policy lists
        the tenant's buckets of every policy); nothing else of the policy's data."""
        return await self._local.listing(policy, tenant)

    async def inventory(self, caller: Caller, bucket: str) -> tuple[list[BucketInventory], list[bytes]]:
        return await self._local.inventory(bucket)
