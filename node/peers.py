"""Replica handles for every node of the layout: this node's own, or a gRPC client to a peer.

The coordinator asks `peers.replica(node_id)` and gets an object with the same async methods either
way, so writing to "the R replicas" never special-cases itself, and a local copy costs no loopback
round trip. Remote calls translate gRPC failures into typed errors (`status.error_from_rpc`).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from maillage.proto import bulk, pb, rpc
from maillage.proto.channels import open_channel
from maillage.storage import BucketRecord, Manifest

from .convert import bucket_from_pb, bucket_to_pb, group_to_pb, manifest_from_pb, manifest_to_pb
from .layout_state import LayoutState
from .replica import BucketInventory, IndexEntry, LocalReplica, SyncGroup
from .status import error_from_rpc

SMALL_CALL_TIMEOUT = 5.0
CHUNK_CALL_TIMEOUT = 60.0


class RemoteReplica:
    """A peer's copy, over gRPC."""

    def __init__(self, node_id: str, channel: grpc.aio.Channel) -> None:
        self.node_id = node_id
        self._replica = rpc.ReplicaStub(channel)
        self._put_chunk = channel.unary_unary(bulk.PUT_CHUNK)
        self._get_chunk = channel.unary_unary(bulk.GET_CHUNK)

    async def _call(self, method, request, timeout=SMALL_CALL_TIMEOUT, metadata=None):
        try:
            return await method(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.node_id) from None

    async def has_chunks(self, digests: Sequence[bytes], policy: str = "") -> list[bool]:
        reply = await self._call(self._replica.HasChunks,
                                 pb.HasChunksRequest(digests=list(digests), policy=policy))
        return list(reply.present)

    async def put_chunk(self, frame: bytes, *, policy: str) -> bool:
        reply = await self._call(self._put_chunk, frame, CHUNK_CALL_TIMEOUT,
                                 metadata=((bulk.POLICY_KEY, policy),))
        return pb.PutChunkReply.FromString(reply).stored

    async def get_chunk(self, digest: bytes) -> bytes:
        return await self._call(self._get_chunk, digest, CHUNK_CALL_TIMEOUT)

    async def put_manifest(self, manifest: Manifest, bucket: BucketRecord) -> bool:
        request = pb.PutManifestRequest(manifest=manifest_to_pb(manifest), bucket=bucket_to_pb(bucket))
        return (await self._call(self._replica.PutManifest, request)).applied

    async def get_manifest(self, bucket: str, key: str) -> Manifest | None:
        reply = await self._call(self._replica.GetManifest, pb.GetManifestRequest(bucket=bucket, key=key))
        return manifest_from_pb(reply.manifest) if reply.found else None

    async def list_index(self, bucket: str, prefix: str, start_after: str,
                         limit: int) -> tuple[list[Manifest], bool]:
        reply = await self._call(self._replica.ListIndex, pb.ListIndexRequest(
            bucket=bucket, prefix=prefix, start_after=start_after, limit=limit))
        return [manifest_from_pb(m) for m in reply.entries], reply.truncated

    async def put_bucket(self, record: BucketRecord) -> None:
        await self._call(self._replica.PutBucketRecord, bucket_to_pb(record))

    async def get_bucket(self, name: str) -> BucketRecord | None:
        reply = await self._call(self._replica.GetBucketRecord, pb.GetBucketRecordRequest(name=name))
        return bucket_from_pb(reply.bucket) if reply.found else None

    async def delete_bucket(self, name: str) -> None:
        await self._call(self._replica.DeleteBucketRecord, pb.DeleteBucketRecordRequest(name=name))

    async def list_buckets(self) -> list[BucketRecord]:
        reply = await self._call(self._replica.ListBucketRecords, pb.ListBucketRecordsRequest())
        return [bucket_from_pb(b) for b in reply.buckets]

    async def sync_summaries(self, groups: Sequence[SyncGroup]) -> list[tuple[bytes, int]]:
        reply = await self._call(self._replica.SyncSummaries,
                                 pb.SyncSummaryRequest(groups=[group_to_pb(g) for g in groups]), 30.0)
        return [(s.digest, s.count) for s in reply.summaries]

    async def sync_listing(self, group: SyncGroup) -> list:
        reply = await self._call(self._replica.SyncListing, pb.SyncListingRequest(group=group_to_pb(group)), 30.0)
        if group.is_index:
            return [IndexEntry(e.key, e.version, e.writer, e.deleted) for e in reply.entries]
        return list(reply.chunks)

    async def referenced_chunks(self, policy: str) -> list[bytes]:
        reply = await self._call(self._replica.ReferencedChunks, pb.ReferencedChunksRequest(policy=policy), 60.0)
        return list(reply.digests)

    async def inventory(self, bucket: str = "") -> tuple[list[BucketInventory], list[bytes]]:
        reply = await self._call(self._replica.Inventory, pb.InventoryRequest(bucket=bucket), 60.0)
        buckets = [BucketInventory(b.bucket, tuple(b.keys), tuple(b.chunks)) for b in reply.buckets]
        return buckets, list(reply.all_chunks)


class Channels:
    """One channel per peer, opened lazily, reopened when the layout moves the node."""

    def __init__(self, layout: LayoutState) -> None:
        self._layout = layout
        self._open: dict[str, tuple[str, grpc.aio.Channel]] = {}

    def get(self, node_id: str) -> grpc.aio.Channel:
        address = self._layout.current.node(node_id).address
        entry = self._open.get(node_id)
        if entry is None or entry[0] != address:
            entry = self._open[node_id] = (address, open_channel(address))
        return entry[1]

    async def close(self) -> None:
        for _, channel in self._open.values():
            await channel.close()
        self._open.clear()


class Peers:
    """Replica handles over this node's own `Channels`."""

    def __init__(self, local: LocalReplica, layout: LayoutState) -> None:
        self.local = local
        self._channels = Channels(layout)
        self._remotes: dict[str, tuple[grpc.aio.Channel, RemoteReplica]] = {}

    def replica(self, node_id: str) -> LocalReplica | RemoteReplica:
        if node_id == self.local.node_id:
            return self.local
        channel = self._channels.get(node_id)
        entry = self._remotes.get(node_id)
        if entry is None or entry[0] is not channel:
            entry = self._remotes[node_id] = (channel, RemoteReplica(node_id, channel))
        return entry[1]

    async def close(self) -> None:
        await self._channels.close()
        self._remotes.clear()
