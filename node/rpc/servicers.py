"""gRPC servicers: translate protobuf to domain calls and back, nothing else.

Errors leave through `@grpc_errors` (see `status.py`); values cross through `convert.py`. The bulk
methods take and return raw bytes (registered without serializers, see `server.py`), so a chunk is
never copied into a protobuf message.
"""

from __future__ import annotations

import asyncio
import shutil

import grpc

from maillage.node import errors, validation
from maillage.node.cluster.gc import ChunkCollector
from maillage.node.cluster.lifecycle_loop import LifecycleLoop
from maillage.node.cluster.membership import FailureDetector, Gossip
from maillage.node.cluster.repair import Repairer
from maillage.node.cluster.scrub import Scrubber
from maillage.node.data.coordinator import StreamEnd, UploadStream
from maillage.node.energy.scheduler import EnergyScheduler
from maillage.node.errors import InvalidRequest
from maillage.node.object_lock import LockConfig, Retention
from maillage.node.replicas.replica import LocalReplica
from maillage.node.rpc import convert
from maillage.node.rpc.boundary import DOMAIN_ERRORS, grpc_errors
from maillage.node.rpc.convert import bucket_from_pb, bucket_to_pb, group_from_pb, manifest_from_pb, manifest_to_pb
from maillage.node.rpc.gate import TrustingGate
from maillage.node.runtime.budget import Lease, UploadBudget
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.service.nodeplane import NodePlane
from maillage.node.service.objects import ObjectService
from maillage.node.service.tenancy import CALLER, current_caller
from maillage.node.trust.access_state import AccessState
from maillage.node.trust.documents import LayoutDoc, SignedLayouts
from maillage.node.trust.layout_state import LayoutState, StagedLayout
from maillage.placement import format_location
from maillage.proto import bulk, pb, rpc
from maillage.proto.limits import INLINE_MAX, MAX_MESSAGE

SOFTWARE_VERSION = "0.1.0"


def _metadata(context, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


class ClusterServicer(rpc.ClusterServicer):
    s3_address = ""  # HOST:PORT of this node's S3 door as peers reach it, set once it listens

    def __init__(self, local: LocalReplica, layout: LayoutState, signed: SignedLayouts, access: AccessState,
                 gossip: Gossip, detector: FailureDetector, repairer: Repairer, scrubber: Scrubber,
                 collector: ChunkCollector, clock: Clock = SYSTEM_CLOCK,
                 energy: EnergyScheduler | None = None, lifecycle: LifecycleLoop | None = None) -> None:
        self._local = local
        self._energy = energy
        self._layout = layout
        self._signed = signed
        self._access = access
        self._gossip = gossip
        self._detector = detector
        self._repairer = repairer
        self._scrubber = scrubber
        self._collector = collector
        self._lifecycle = lifecycle
        self._clock = clock

    def _info(self) -> pb.NodeInfo:
        layout = self._layout.current
        node = layout.node(self._local.node_id)
        stats = self._local.chunks.stats()
        return pb.NodeInfo(node_id=node.id, site=node.site, location=format_location(layout.location_of(node.id)),
                           layout_version=layout.version, software_version=SOFTWARE_VERSION,
                           chunks=stats.chunks, stored_bytes=stats.stored_bytes, s3_address=self.s3_address)

    @grpc_errors
    async def GetInfo(self, request, context):
        return self._info()

    @grpc_errors
    async def GetLayout(self, request, context):
        if request.before:  # one of the layouts kept before the current one (empty: none below it)
            kept = self._layout.history_doc(request.before)
            return convert.layout_doc_to_pb(LayoutDoc(*kept) if kept else LayoutDoc(0, "", b""))
        return convert.layout_doc_to_pb(LayoutDoc(self._layout.current.version, self._layout.text,
                                                  self._layout.signature))

    @grpc_errors
    async def PushLayout(self, request, context):
        layout = self._signed.verify(request)
        accepted = self._layout.offer(layout, request.signature, request.text)
        if accepted:
            self._repairer.trigger()
        return pb.PushLayoutReply(accepted=accepted, current_version=self._layout.current.version)

    @grpc_errors
    async def GetStagedLayout(self, request, context):
        staged = self._layout.staged()
        if staged is None:
            return convert.layout_doc_to_pb(LayoutDoc(self._layout.current.version, "", b""))
        return convert.layout_doc_to_pb(LayoutDoc(staged.base_version, staged.text, staged.signature))

    @grpc_errors
    async def StageLayout(self, request, context):
        if not request.text:
            self._signed.verify_clear(request, current=self._layout.current.version)
            self._layout.clear_staged()
            return pb.Ack()
        self._signed.verify_staged(request, current=self._layout.current.version)
        self._layout.stage(StagedLayout(request.version, request.text, request.signature))
        return pb.Ack()

    @grpc_errors
    async def GetAccess(self, request, context):
        access = self._access
        return convert.access_doc_to_pb(LayoutDoc(access.version, access.text, access.signature))

    @grpc_errors
    async def PushAccess(self, request, context):
        accepted = self._access.offer(convert.layout_doc_from_pb(request))
        return pb.PushAccessReply(accepted=accepted, current_version=self._access.version)

    @grpc_errors
    async def Heartbeat(self, request, context):
        caller = CALLER.get(None)
        if caller is not None and caller.node_id is not None and request.node_id != caller.node_id:
            raise errors.InvalidRequest(f"node {caller.node_id} sent a heartbeat in the name of {request.node_id!r}")
        beat = convert.heartbeat_from_pb(request)
        reply = await self._gossip.on_ping_req(beat) if beat.probe else self._gossip.on_heartbeat(beat)
        return convert.heartbeat_reply_to_pb(reply)

    @grpc_errors
    async def GetStatus(self, request, context):
        layout = self._layout.current
        node = layout.node(self._local.node_id)
        disk = shutil.disk_usage(self._local.chunks.root)
        peers = [n.id for n in layout.nodes if n.id != node.id]
        pr = self._repairer.progress
        return pb.NodeStatus(
            info=self._info(), peers=convert.peer_views_to_pb(self._detector.views(peers)),
            repair=convert.progress_to_pb(pr, self._clock.monotonic()),
            scrub=convert.scrub_stats_to_pb(self._scrubber.stats),
            gc=convert.gc_stats_to_pb(pr, self._collector.stats),
            capacity=node.capacity, disk_total=disk.total, disk_free=disk.free, node_state=node.state.value,
            energy=convert.energy_to_pb(self._energy) if self._energy is not None else None,
            lifecycle=convert.lifecycle_stats_to_pb(self._lifecycle.sweeps, self._lifecycle.totals)
            if self._lifecycle is not None else None)

    @grpc_errors
    async def Repair(self, request, context):
        if request.start_round_now:
            self._repairer.trigger()
        return convert.progress_to_pb(self._repairer.progress, self._clock.monotonic())


class ReplicaServicer(rpc.ReplicaServicer):
    """Node-plane calls: parse, ask the node plane (which checks the calling node's territory), render."""

    def __init__(self, plane: NodePlane) -> None:
        self._plane = plane

    @grpc_errors
    async def HasChunks(self, request, context):
        validation.check_digests(request.digests)
        present = await self._plane.has_chunks(current_caller(), list(request.digests), request.policy)
        return pb.HasChunksReply(present=present)

    @grpc_errors
    async def PutManifest(self, request, context):
        applied = await self._plane.put_manifest(current_caller(), manifest_from_pb(request.manifest))
        return pb.PutManifestReply(applied=applied)

    @grpc_errors
    async def GetManifest(self, request, context):
        m = await self._plane.get_manifest(current_caller(), request.bucket, request.key,
                                           convert.optional_generation(request))
        return pb.GetManifestReply(found=m is not None, manifest=manifest_to_pb(m) if m else None)

    @grpc_errors
    async def ListIndex(self, request, context):
        entries, truncated = await self._plane.list_index(
            current_caller(), request.bucket, request.prefix, request.start_after,
            validation.page_limit(request.limit), convert.optional_generation(request))
        return pb.ListIndexReply(entries=[manifest_to_pb(m, with_chunks=False) for m in entries],
                                 truncated=truncated)

    @grpc_errors
    async def PutBucketRecord(self, request, context):
        if request.listing:
            await self._plane.put_listing(current_caller(), bucket_from_pb(request))
        else:
            await self._plane.put_bucket(current_caller(), bucket_from_pb(request))
        return pb.Ack()

    @grpc_errors
    async def GetBucketRecord(self, request, context):
        r = await self._plane.get_bucket(current_caller(), request.name)
        return pb.GetBucketRecordReply(found=r is not None, bucket=bucket_to_pb(r) if r else None)

    @grpc_errors
    async def DeleteBucketRecord(self, request, context):
        tombstone = convert.bucket_tombstone_from_pb(request.tombstone)
        if not request.HasField("tombstone") or tombstone.name != request.name:
            raise InvalidRequest("DeleteBucketRecord needs the tombstone of the bucket generation it deletes")
        if request.listing:
            await self._plane.remove_listing(current_caller(), tombstone, request.tenant)
        else:
            await self._plane.delete_bucket(current_caller(), tombstone)
        return pb.Ack()

    @grpc_errors
    async def ListBucketRecords(self, request, context):
        if request.listing:
            records, tombstones = await self._plane.listing(current_caller(), request.policy, request.tenant)
            return pb.ListBucketRecordsReply(buckets=[bucket_to_pb(r) for r in records],
                                             tombstones=[convert.bucket_tombstone_to_pb(t) for t in tombstones])
        records, tombstones = await self._plane.bucket_catalog(current_caller())
        return pb.ListBucketRecordsReply(
            buckets=[bucket_to_pb(r) for r in records],
            tombstones=[convert.bucket_tombstone_to_pb(t) for t in tombstones] if request.tombstones else [])

    @grpc_errors
    async def SyncSummaries(self, request, context):
        groups = [group_from_pb(g) for g in request.groups]
        validation.check_groups(groups, self._plane.partition_bits)
        return convert.summaries_to_pb(request.groups, await self._plane.sync_summaries(current_caller(), groups))

    @grpc_errors
    async def SyncListing(self, request, context):
        group = group_from_pb(request.group)
        validation.check_groups([group], self._plane.partition_bits)
        return convert.listing_to_pb(group, await self._plane.sync_listing(current_caller(), group))

    @grpc_errors
    async def ReferencedChunks(self, request, context):
        return pb.ReferencedChunksReply(digests=await self._plane.referenced_chunks(current_caller(), request.policy))

    @grpc_errors
    async def Inventory(self, request, context):
        # The API cannot page: one reply carries a node's whole inventory (or one bucket's); a
        # reply larger than the message cap is refused with a clear error instead of failing in gRPC.
        buckets, chunks = await self._plane.inventory(current_caller(), request.bucket)
        node_id = self._plane.node_id
        reply = convert.inventory_to_pb(node_id, buckets, chunks)
        size = reply.ByteSize()
        if size > MAX_MESSAGE:
            scope = f" for bucket {request.bucket!r}" if request.bucket else ""
            raise errors.InvalidRequest(
                f"the inventory of node {node_id}{scope} is {size} bytes, more than one reply "
                f"carries ({MAX_MESSAGE}); " + ("it cannot be listed in one call" if request.bucket
                                                else "ask for one bucket at a time"))
        return reply


class ObjectsServicer(rpc.ObjectsServicer):
    """Object calls of a tenant's key: parse, call the service layer with the caller, render."""

    def __init__(self, service: ObjectService) -> None:
        self._s = service

    @grpc_errors
    async def CreateBucket(self, request, context):
        return bucket_to_pb(await self._s.create_bucket(current_caller(), request.name, request.policy,
                                                        object_lock=request.object_lock))

    @grpc_errors
    async def HeadBucket(self, request, context):
        return bucket_to_pb(await self._s.head_bucket(current_caller(), request.name))

    @grpc_errors
    async def ListBuckets(self, request, context):
        visible = await self._s.list_buckets(current_caller())
        return pb.ListBucketsReply(buckets=[bucket_to_pb(r) for r in visible])

    @grpc_errors
    async def DeleteBucket(self, request, context):
        await self._s.delete_bucket(current_caller(), request.name)
        return pb.Ack()

    @grpc_errors
    async def HeadObject(self, request, context):
        _, manifest = await self._s.head_object(current_caller(), request.bucket, request.key,
                                                version_id=request.version_id or None)
        return manifest_to_pb(manifest)

    @grpc_errors
    async def GetObject(self, request, context):
        manifest, index, frame = await self._s.get_object(current_caller(), request.bucket, request.key,
                                                          version_id=request.version_id or None,
                                                          offset=request.offset)
        return pb.GetObjectReply(manifest=manifest_to_pb(manifest), chunk=index, frame=frame)

    @grpc_errors
    async def DeleteObject(self, request, context):
        deleted = await self._s.delete_object(current_caller(), request.bucket, request.key,
                                              request.version_id or None,
                                              bypass_governance=request.bypass_governance)
        return pb.DeleteObjectReply(version=deleted.version, version_id=deleted.version_id or "",
                                    delete_marker=deleted.marker)

    @grpc_errors
    async def CopyObject(self, request, context):
        m = await self._s.copy_object(current_caller(), request.source_bucket, request.source_key, request.bucket,
                                      request.key, source_version_id=request.source_version_id or None)
        return manifest_to_pb(m, with_chunks=False)

    @grpc_errors
    async def ListObjects(self, request, context):
        max_keys = validation.page_limit(request.max_keys, "max_keys")
        _, listing = await self._s.list_objects(
            current_caller(), request.bucket, prefix=request.prefix, delimiter=request.delimiter,
            start_after=request.continuation_token or request.start_after, max_keys=max_keys)
        return pb.ListObjectsReply(
            contents=[convert.object_summary_to_pb(m) for m in listing.contents],
            common_prefixes=listing.common_prefixes, is_truncated=listing.is_truncated,
            next_continuation_token=listing.next_token)

    @grpc_errors
    async def ChunkKey(self, request, context):
        """The key naming the bucket's chunks, for a caller who may read the bucket: the SDK checks
        every chunk it reads with it. Empty while the cluster has no naming secret."""
        return pb.ChunkKeyReply(key=await self._s.chunk_key(current_caller(), request.bucket) or b"")

    @grpc_errors
    async def PutBucketVersioning(self, request, context):
        await self._s.set_bucket_versioning(current_caller(), request.bucket, request.status)
        return pb.Ack()

    @grpc_errors
    async def GetBucketVersioning(self, request, context):
        return pb.BucketVersioning(status=await self._s.bucket_versioning(current_caller(), request.bucket))

    @grpc_errors
    async def PutObjectLockConfiguration(self, request, context):
        config = LockConfig(request.mode, days=request.days, years=request.years)
        await self._s.set_bucket_lock(current_caller(), request.bucket, config)
        return pb.Ack()

    @grpc_errors
    async def GetObjectLockConfiguration(self, request, context):
        config = await self._s.bucket_lock(current_caller(), request.bucket)
        if config is None:
            return pb.ObjectLockConfig(enabled=False)
        return pb.ObjectLockConfig(enabled=True, mode=config.mode, days=config.days, years=config.years)

    @grpc_errors
    async def PutObjectRetention(self, request, context):
        retention = Retention(request.mode, request.retain_until_ms) if request.mode else None
        await self._s.set_retention(current_caller(), request.bucket, request.key, request.version_id or None,
                                    retention, bypass_governance=request.bypass_governance)
        return pb.Ack()

    @grpc_errors
    async def GetObjectRetention(self, request, context):
        retention = await self._s.retention(current_caller(), request.bucket, request.key, request.version_id or None)
        if retention is None:
            return pb.ObjectRetention()
        return pb.ObjectRetention(mode=retention.mode, retain_until_ms=retention.until_ms)

    @grpc_errors
    async def PutObjectLegalHold(self, request, context):
        await self._s.set_legal_hold(current_caller(), request.bucket, request.key, request.version_id or None,
                                     request.on)
        return pb.Ack()

    @grpc_errors
    async def GetObjectLegalHold(self, request, context):
        on = await self._s.legal_hold(current_caller(), request.bucket, request.key, request.version_id or None)
        return pb.ObjectLegalHold(on=on)

    @grpc_errors
    async def PutBucketLifecycleConfiguration(self, request, context):
        await self._s.set_bucket_lifecycle(current_caller(), request.bucket, convert.lifecycle_from_pb(request),
                                           "PutBucketLifecycleConfiguration")
        return pb.Ack()

    @grpc_errors
    async def GetBucketLifecycleConfiguration(self, request, context):
        return convert.lifecycle_to_pb(await self._s.bucket_lifecycle(current_caller(), request.bucket))

    @grpc_errors
    async def DeleteBucketLifecycle(self, request, context):
        await self._s.set_bucket_lifecycle(current_caller(), request.bucket, None, "DeleteBucketLifecycle")
        return pb.Ack()

    @grpc_errors
    async def ListObjectVersions(self, request, context):
        max_keys = validation.page_limit(request.max_keys, "max_keys")
        _, listing = await self._s.list_object_versions(
            current_caller(), request.bucket, prefix=request.prefix, delimiter=request.delimiter,
            key_marker=request.key_marker, version_id_marker=request.version_id_marker, max_keys=max_keys)
        return pb.ListObjectVersionsReply(
            versions=[convert.version_to_pb(v) for v in listing.versions],
            common_prefixes=listing.common_prefixes, is_truncated=listing.is_truncated,
            next_key_marker=listing.next_key_marker, next_version_id_marker=listing.next_version_id_marker)


DRAIN_LIMIT = 4 * 1024 * 1024   # bytes of a refused upload read (and dropped) so its refusal arrives intact


async def _drain(stream, limit: int) -> None:
    """Read and drop what is left of a refused stream, up to `limit` bytes and briefly."""
    try:
        async with asyncio.timeout(2.0):
            async for message in stream:
                limit -= len(message)
                if limit < 0:
                    return
    except (TimeoutError, grpc.RpcError, bulk.StreamError):
        return


async def _one_piece(data: bytes):
    yield data


class BulkHandlers:
    """The raw-bytes methods: frames in and out as they are stored.

    Bytes received and not yet consumed count against the node's `UploadBudget` (`budget.py`): a
    PutChunk frame while it is stored, a PutObject message until the coordinator asks for the next,
    a PutSmallObject request while its object is stored. Both object methods end in `_store`.
    """

    def __init__(self, local: LocalReplica, service: ObjectService, plane: NodePlane,
                 budget: UploadBudget | None = None) -> None:
        self._s = service
        self._plane = plane
        self._budget = budget or local.upload_budget or UploadBudget()

    @grpc_errors
    async def put_chunk(self, frame: bytes, context) -> bytes:
        lease = self._budget.lease()
        try:
            await lease.hold(len(frame))
            tenant = _metadata(context, bulk.TENANT_KEY)
            validation.check_tenant(tenant)
            stored = await self._plane.put_chunk(current_caller(), frame, _metadata(context, bulk.POLICY_KEY), tenant)
        finally:
            lease.close()
        return pb.PutChunkReply(stored=stored).SerializeToString()

    @grpc_errors
    async def get_chunk(self, request: bytes, context) -> bytes:
        """A chunk's frame. A client names the bucket it reads for and gets only chunks held here
        for that bucket (its policy and owner), if it may read the bucket; a node, chunks held here
        for a policy it is inside of. On an `--insecure-plaintext` mesh (benchmarks) no caller has
        an identity: a GetChunk without a bucket there is a peer's (a coordinator reading a copy)."""
        digest, bucket = bulk.read_chunk_request(request)
        validation.check_digest(digest)
        caller = current_caller()
        if caller.node_id is None and (bucket or caller is not TrustingGate.CALLER):  # a client: the frame only
            return await self._s.read_chunk(caller, bucket, digest)
        if bucket:
            raise InvalidRequest(f"a node's GetChunk is the chunk's digest alone ({bulk.DIGEST_BYTES} bytes)")
        frame, tenant = await self._plane.get_chunk(caller, digest)
        if tenant:  # so a node repairing from here re-seals its copy with the same tenant's key
            context.set_trailing_metadata(((bulk.TENANT_KEY, tenant),))
        return frame

    @grpc_errors
    async def put_object(self, messages, context) -> bytes:
        lease = self._budget.lease()
        stream = messages.__aiter__()
        try:
            return await self._put_object(stream, lease)
        except DOMAIN_ERRORS:
            # Refused before the whole stream was read (a bad key, another tenant's bucket): read
            # the rest of a small upload first, or gRPC's client may see its next send fail and
            # report "Internal error from Core" instead of this refusal.
            await _drain(stream, DRAIN_LIMIT)
            raise
        finally:
            lease.close()

    @grpc_errors
    async def put_small_object(self, message: bytes, context) -> bytes:
        """A whole object of at most INLINE_MAX bytes in one request: the same checks and the same
        coordinator call as the PutObject stream (`_store`), without its three messages."""
        lease = self._budget.lease()
        try:
            await lease.hold(len(message))
            request = bulk.read_small_object(message, INLINE_MAX)
            body = UploadStream(_one_piece(request.data), StreamEnd(blake3=request.blake3 or None))
            return await self._store(request.header, body)
        finally:
            lease.close()

    async def _put_object(self, stream, lease: Lease) -> bytes:
        first = await anext(stream, None)
        if first is not None:
            await lease.hold(len(first))
        header = bulk.read_header(first)
        del first
        lease.close()
        end = StreamEnd()
        trailed = False

        async def pieces():
            nonlocal trailed
            async for message in stream:
                await lease.hold(len(message))  # gives back the previous message's bytes first
                item = bulk.read_message(message)
                if isinstance(item, memoryview):
                    yield item
                elif trailed:
                    raise bulk.StreamError("a PutObject stream has one trailer")
                else:
                    trailed, end.blake3 = True, item.blake3 or None

        return await self._store(header, UploadStream(pieces(), end))

    async def _store(self, header: pb.PutObjectHeader, body: UploadStream) -> bytes:
        """The one path of both object methods: the service checks the caller may write the bucket,
        then the coordinator stores the pieces and checks the client's BLAKE3 (the stream's end
        value) before the manifest is written."""
        manifest, sites = await self._s.put_object(current_caller(), header.bucket, convert.upload_from_pb(header),
                                                   body)
        return pb.PutObjectReply(manifest=manifest_to_pb(manifest, with_chunks=False),
                                 sites=sites).SerializeToString()

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(bulk.SERVICE, {
            "PutChunk": grpc.unary_unary_rpc_method_handler(self.put_chunk),
            "GetChunk": grpc.unary_unary_rpc_method_handler(self.get_chunk),
            "PutObject": grpc.stream_unary_rpc_method_handler(self.put_object),
            "PutSmallObject": grpc.unary_unary_rpc_method_handler(self.put_small_object),
        })
