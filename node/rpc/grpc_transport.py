"""The gRPC transport: replica handles, heartbeats and layout fetches to peers over channels.

`GrpcTransport.replica(node_id)` is a `RemoteReplica` with the same async methods as the local
store, so writing to "the R replicas" never special-cases itself. Remote calls translate gRPC
failures into typed errors (`boundary.error_from_rpc`); protobuf stays in `convert.py`. Each call
takes the peer's channel of the moment from `PeerChannels`, which closes one that cannot connect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from maillage.node.replicas.antientropy import SyncGroup
from maillage.node.replicas.replica import BucketInventory
from maillage.node.replicas.transport import Heartbeat
from maillage.node.rpc import convert
from maillage.node.rpc.boundary import error_from_rpc
from maillage.node.runtime import request_ids
from maillage.node.trust.documents import LayoutDoc
from maillage.node.trust.layout_state import LayoutState
from maillage.proto import bulk, pb, rpc
from maillage.proto.channels import PeerChannels
from maillage.proto.trust.identity import TlsIdentity
from maillage.storage import BucketRecord, BucketTombstone, Manifest

__all__ = ["RemoteReplica", "GrpcTransport"]

SMALL_CALL_TIMEOUT = 5.0
CHUNK_CALL_TIMEOUT = 60.0
LISTING_TIMEOUT = 30.0
SCAN_TIMEOUT = 60.0


class _Stubs:
    """The stubs of one channel to a peer."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.replica = rpc.ReplicaStub(channel)
        self.cluster = rpc.ClusterStub(channel)
        # Raw bytes both ways: no (de)serializer, passed explicitly as the stubs require.
        self.put_chunk = channel.unary_unary(bulk.PUT_CHUNK, request_serializer=None, response_deserializer=None)
        self.get_chunk = channel.unary_unary(bulk.GET_CHUNK, request_serializer=None, response_deserializer=None)


class _PeerCalls:
    """Calls to one peer, each over the peer's channel of the moment: `PeerChannels` closes a
    channel that cannot connect and opens another, so nothing here keeps a closed one."""

    def __init__(self, node_id: str, channels: PeerChannels) -> None:
        self.node_id = node_id
        self._channels = channels
        self._stubs: _Stubs | None = None

    def stubs(self) -> _Stubs:
        channel = self._channels.get(self.node_id)
        if self._stubs is None or self._stubs.channel is not channel:
            self._stubs = _Stubs(channel)
        return self._stubs

    def failed(self, stubs: _Stubs, err: grpc.RpcError) -> Exception:
        """The typed error for a failed call, once its channel has been closed if it cannot connect."""
        self._channels.failed(self.node_id, stubs.channel, err.code())
        return error_from_rpc(err, self.node_id)

    async def call(self, method: Callable[[_Stubs], Callable[..., Awaitable[Any]]], request: Any,
                   timeout: float = SMALL_CALL_TIMEOUT, metadata: Any = None) -> Any:
        """`method(stubs)(request)`, with the request id passed on; a gRPC failure becomes a typed error."""
        passed_on = request_ids.outgoing()
        if passed_on:
            metadata = (*(metadata or ()), *passed_on)
        stubs = self.stubs()
        try:
            return await method(stubs)(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            raise self.failed(stubs, err) from None


class RemoteReplica:
    """A peer's copy, over gRPC."""

    def __init__(self, node_id: str, channels: PeerChannels) -> None:
        self.node_id = node_id
        self.peer = _PeerCalls(node_id, channels)   # the transport's cluster calls to the node use it too

    async def _call(self, method: Callable[[_Stubs], Callable[..., Awaitable[Any]]], request: Any,
                    timeout: float = SMALL_CALL_TIMEOUT, metadata: Any = None) -> Any:
        return await self.peer.call(method, request, timeout, metadata)

    async def has_chunks(self, digests: Sequence[bytes], policy: str = "") -> list[bool]:
        reply = await self._call(lambda s: s.replica.HasChunks,
                                 pb.HasChunksRequest(digests=list(digests), policy=policy))
        return list(reply.present)

    async def put_chunk(self, frame: bytes, *, policy: str, tenant: str = "") -> bool:
        metadata = ((bulk.POLICY_KEY, policy), (bulk.TENANT_KEY, tenant)) if tenant else ((bulk.POLICY_KEY, policy),)
        reply = await self._call(lambda s: s.put_chunk, frame, CHUNK_CALL_TIMEOUT, metadata=metadata)
        return bool(pb.PutChunkReply.FromString(reply).stored)

    async def get_chunk(self, digest: bytes) -> bytes:
        frame: bytes = await self._call(lambda s: s.get_chunk, digest, CHUNK_CALL_TIMEOUT)
        return frame

    async def get_chunk_with_tenant(self, digest: bytes) -> tuple[bytes, str]:
        """The frame and, from the reply's trailing metadata, the tenant whose key sealed it on
        the peer ("" if none, or from a node that does not say)."""
        stubs = self.peer.stubs()
        try:
            call = stubs.get_chunk(digest, timeout=CHUNK_CALL_TIMEOUT)
            frame: bytes = await call
            trailing = await call.trailing_metadata()
        except grpc.RpcError as err:
            raise self.peer.failed(stubs, err) from None
        tenant = ""
        for k, v in trailing or ():
            if k == bulk.TENANT_KEY:
                tenant = v if isinstance(v, str) else v.decode()
        return frame, tenant

    async def put_manifest(self, manifest: Manifest) -> bool:
        request = pb.PutManifestRequest(manifest=convert.manifest_to_pb(manifest))
        return bool((await self._call(lambda s: s.replica.PutManifest, request)).applied)

    async def get_manifest(self, bucket: str, key: str, generation: str | None = None) -> Manifest | None:
        reply = await self._call(lambda s: s.replica.GetManifest,
                                 pb.GetManifestRequest(bucket=bucket, key=key, generation=generation))
        return convert.manifest_from_pb(reply.manifest) if reply.found else None

    async def list_index(self, bucket: str, prefix: str, start_after: str,
                         limit: int, generation: str | None = None) -> tuple[list[Manifest], bool]:
        reply = await self._call(lambda s: s.replica.ListIndex, pb.ListIndexRequest(
            bucket=bucket, prefix=prefix, start_after=start_after, limit=limit, generation=generation))
        return [convert.manifest_from_pb(m) for m in reply.entries], reply.truncated

    async def put_bucket(self, record: BucketRecord) -> None:
        await self._call(lambda s: s.replica.PutBucketRecord, convert.bucket_to_pb(record))

    async def get_bucket(self, name: str) -> BucketRecord | None:
        reply = await self._call(lambda s: s.replica.GetBucketRecord, pb.GetBucketRecordRequest(name=name))
        return convert.bucket_from_pb(reply.bucket) if reply.found else None

    async def delete_bucket(self, tombstone: BucketTombstone) -> None:
        await self._call(lambda s: s.replica.DeleteBucketRecord, pb.DeleteBucketRecordRequest(
            name=tombstone.name, tombstone=convert.bucket_tombstone_to_pb(tombstone)))

    async def list_buckets(self) -> list[BucketRecord]:
        reply = await self._call(lambda s: s.replica.ListBucketRecords, pb.ListBucketRecordsRequest())
        return [convert.bucket_from_pb(b) for b in reply.buckets]

    async def bucket_catalog(self) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        reply = await self._call(lambda s: s.replica.ListBucketRecords, pb.ListBucketRecordsRequest(tombstones=True))
        return ([convert.bucket_from_pb(b) for b in reply.buckets],
                [convert.bucket_tombstone_from_pb(t) for t in reply.tombstones])

    async def put_listing(self, record: BucketRecord) -> None:
        entry = convert.bucket_to_pb(record)
        entry.listing = True
        await self._call(lambda s: s.replica.PutBucketRecord, entry)

    async def remove_listing(self, tombstone: BucketTombstone, tenant: str) -> None:
        await self._call(lambda s: s.replica.DeleteBucketRecord, pb.DeleteBucketRecordRequest(
            name=tombstone.name, tombstone=convert.bucket_tombstone_to_pb(tombstone), listing=True, tenant=tenant))

    async def listing(self, policy: str, tenant: str) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        reply = await self._call(lambda s: s.replica.ListBucketRecords, pb.ListBucketRecordsRequest(
            listing=True, policy=policy, tenant=tenant))
        return ([convert.bucket_from_pb(b) for b in reply.buckets],
                [convert.bucket_tombstone_from_pb(t) for t in reply.tombstones])

    async def sync_summaries(self, groups: Sequence[SyncGroup]) -> list[tuple[bytes, int]]:
        reply = await self._call(lambda s: s.replica.SyncSummaries,
                                 pb.SyncSummaryRequest(groups=[convert.group_to_pb(g) for g in groups]),
                                 LISTING_TIMEOUT)
        return convert.summaries_from_pb(reply)

    async def sync_listing(self, group: SyncGroup) -> list[Any]:
        reply = await self._call(lambda s: s.replica.SyncListing,
                                 pb.SyncListingRequest(group=convert.group_to_pb(group)), LISTING_TIMEOUT)
        return convert.listing_from_pb(group, reply)

    async def referenced_chunks(self, policy: str) -> list[bytes]:
        reply = await self._call(lambda s: s.replica.ReferencedChunks, pb.ReferencedChunksRequest(policy=policy),
                                 SCAN_TIMEOUT)
        return list(reply.digests)

    async def inventory(self, bucket: str = "") -> tuple[list[BucketInventory], list[bytes]]:
        reply = await self._call(lambda s: s.replica.Inventory, pb.InventoryRequest(bucket=bucket), SCAN_TIMEOUT)
        return convert.inventory_from_pb(reply)


class GrpcTransport:
    """The `Transport` over this node's own `PeerChannels` (one connection per peer)."""

    def __init__(self, layout: LayoutState, tls: TlsIdentity | None) -> None:
        self._channels = PeerChannels(lambda node_id: layout.current.node(node_id).address, tls)
        self._remotes: dict[str, RemoteReplica] = {}

    def replica(self, node_id: str) -> RemoteReplica:
        remote = self._remotes.get(node_id)
        if remote is None:
            remote = self._remotes[node_id] = RemoteReplica(node_id, self._channels)
        return remote

    def _peer(self, node_id: str) -> _PeerCalls:
        return self.replica(node_id).peer

    async def heartbeat(self, node_id: str, beat: Heartbeat, *, timeout: float) -> Heartbeat:
        reply = await self._peer(node_id).call(lambda s: s.cluster.Heartbeat,
                                               convert.heartbeat_request_to_pb(beat), timeout)
        return convert.heartbeat_from_pb(reply)

    async def fetch_layout(self, node_id: str, *, timeout: float, before: int = 0) -> LayoutDoc:
        reply = await self._peer(node_id).call(lambda s: s.cluster.GetLayout, pb.GetLayoutRequest(before=before),
                                               timeout)
        return convert.layout_doc_from_pb(reply)

    async def fetch_access(self, node_id: str, *, timeout: float) -> LayoutDoc:
        reply = await self._peer(node_id).call(lambda s: s.cluster.GetAccess, pb.GetAccessRequest(), timeout)
        return convert.layout_doc_from_pb(reply)

    async def close(self) -> None:
        await self._channels.close()
