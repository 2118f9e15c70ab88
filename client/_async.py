"""AsyncClient: the one implementation of the SDK's logic (the sync Client drives it).

Every call goes over mutual TLS with the cluster's client certificate and carries a signature of
the caller's access key (`Profile`: arguments, environment or a profile file, as the AWS tools do).
The client fetches the layout once, uses it only if the cluster admin's signature verifies, and
computes placement itself (the same pure function the nodes use), so it talks straight to nodes
inside a bucket's policy: writes go to an eligible coordinator (a small body in one request, any
other as a stream), and reads fetch each chunk's frame from the nearest replica, decompress it and
verify its BLAKE3 digest here, trying the next replica on any error or mismatch. A corrupt copy is
never returned to the caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import blake3
import grpc
from google.protobuf.message import Message

from maillage.client import _exceptions as e
from maillage.client._errors import translate
from maillage.client._models import (
    Bucket,
    LifecycleRule,
    ListPage,
    LockConfiguration,
    ObjectInfo,
    ObjectPlacement,
    ObjectSummary,
    ObjectVersion,
    PutResult,
    Replica,
    Retention,
    VersionPage,
)
from maillage.client._profile import Profile, resolve_profile
from maillage.client._trust import Trust, unary_method
from maillage.placement import (
    Layout,
    PlacementError,
    UnknownPolicy,
    bucket_partition,
    chunk_partition,
    format_location,
    partition_table,
)
from maillage.proto import bulk, pb
from maillage.proto.channels import open_channel
from maillage.proto.etags import composed_etag, composed_parts
from maillage.proto.frame import CorruptFrame, decode_frame
from maillage.proto.limits import INLINE_MAX
from maillage.proto.storage_class import chunk_policy_named, storage_class

Body = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes] | AsyncIterable[bytes]
Progress = Callable[[int, int | None], None]   # (bytes done, total bytes if known)
_Keyed = TypeVar("_Keyed", ObjectSummary, ObjectVersion)  # a listing entry: it has a .key

# The PutObject stream's data messages. Not the chunk size: a node takes at most its chunk size + 1 MiB
# per message (`limits.max_request_message`) and the SDK does not know a node's chunk size (tests run
# 256 KiB), so 1 MiB fits every node; 4 MiB pieces measured no better on 64 MiB PUTs (same client CPU,
# throughput within the run-to-run noise), the per-message cost being small next to hashing a MiB.
PIECE = 1024 * 1024
SMALL_OBJECT = 1024 * 1024  # up to this size a PUT goes to an owner of the bucket's index first


def _bucket(msg: pb.Bucket) -> Bucket:
    return Bucket(name=msg.name, policy=msg.policy, created=msg.created, owner=msg.owner,
                  generation=msg.generation)


def _info(m: pb.Manifest) -> ObjectInfo:
    return ObjectInfo(bucket=m.bucket, key=m.key, size=m.size, etag=m.etag, version=m.version,
                      content_type=m.content_type, metadata=dict(m.user_metadata), version_id=m.version_id,
                      storage_class=storage_class(m.attributes))


class AsyncObjectBody:
    """A streaming object body: `read()` all of it, or `async for chunk in body.iter_chunks()`."""

    def __init__(self, client: AsyncClient, info: ObjectInfo, manifest: pb.Manifest, policy: str,
                 start: int, end: int, bucket: str = "", first: tuple[int, bytes] = (0, b"")) -> None:
        self.info = info
        self.start, self.end = start, end          # byte range [start, end)
        self._client = client
        self._manifest = manifest
        self._policy = policy
        self._bucket = bucket or info.bucket       # whose chunk key verifies the chunks
        self._first = first                        # (chunk index, its frame) the coordinator sent; b"": none

    @property
    def content_length(self) -> int:
        return self.end - self.start

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The bytes of the range, chunk by chunk, each verified against its BLAKE3 digest (keyed with
        the bucket's chunk key, asked once per bucket: `AsyncClient._chunk_key`). Reading
        the whole object also checks the object's own digest (its etag) at the end, so a manifest
        pointing at other chunks (each genuine, none of this object) is an IntegrityError, not
        data; a range read verifies every chunk it touched."""
        m = self._manifest
        whole = _WholeObject(m) if (self.start, self.end) == (0, m.size) else None
        if m.has_inline:
            data = bytes(m.inline_data)
            _check_size(m, len(data), "its inline data")
            if whole is not None:
                await whole.update(data)
                whole.verify()
            yield data[self.start:self.end]
            return
        _check_size(m, sum(ref.length for ref in m.chunks), "its chunks")
        spans = []
        offset = 0
        for index, ref in enumerate(m.chunks):
            lo, hi = max(self.start, offset), min(self.end, offset + ref.length)
            if lo < hi:
                spans.append((index, ref.digest, ref.length, lo - offset, hi - offset))
            offset += ref.length
        pending: deque[tuple[asyncio.Future[bytes], int, int, int]] = deque()
        upcoming = iter(spans)
        key = await self._client._chunk_key(self._bucket) if spans else None
        sent_index, sent_frame = self._first

        def refill() -> None:
            for index, digest, length, lo, hi in upcoming:
                if index == sent_index and sent_frame:   # came with the manifest: verified the same way
                    got = self._client._sent_chunk(self._bucket, self._policy, digest, key, sent_frame)
                else:
                    got = self._client._fetch_chunk(self._bucket, self._policy, digest, key)
                fetch = asyncio.ensure_future(got)
                pending.append((fetch, length, lo, hi))
                if len(pending) >= self._client.prefetch:
                    return

        try:
            refill()
            while pending:
                task, length, lo, hi = pending.popleft()
                plain = await task
                if len(plain) != length:
                    raise e.IntegrityError(f"{m.bucket}/{m.key}: a chunk of {len(plain)} bytes where the "
                                           f"manifest says {length}")
                refill()
                if whole is not None:
                    await whole.update(plain)
                yield plain if (lo == 0 and hi == len(plain)) else plain[lo:hi]
            if whole is not None:
                whole.verify()
        finally:
            for task, _, _, _ in pending:
                task.cancel()


class _WholeObject:
    """The BLAKE3 of a whole object as it is read, checked against the manifest's etag at the end.

    An object composed from parts (S3 multipart) has a composed etag, the BLAKE3 of its chunk list
    ("<hex>-<parts>", `maillage.proto.etags`, the very function the node completes uploads with):
    every chunk read is verified against its digest and length, so recomputing the composed etag
    from the manifest's chunk list at the end proves the same thing as hashing the bytes, that these
    are this object's chunks, without hashing them a second time."""

    def __init__(self, manifest: pb.Manifest) -> None:
        self._manifest = manifest
        self._parts = composed_parts(manifest.etag)  # None: the etag is the BLAKE3 of the whole
        self._hash = blake3.blake3()

    async def update(self, piece: bytes) -> None:
        if self._parts is not None:
            return  # the chunks themselves were verified; the chunk list is checked at the end
        if len(piece) >= 1 << 20:   # BLAKE3 releases the GIL: large pieces off the event loop
            await asyncio.to_thread(self._hash.update, piece)
        else:
            self._hash.update(piece)

    def verify(self) -> None:
        m = self._manifest
        if self._parts is not None:
            if m.has_inline or composed_etag(m.chunks, self._parts) != m.etag:
                raise e.IntegrityError(f"{m.bucket}/{m.key}: the chunks read are not the ones its composed "
                                       f"etag {m.etag[:16]}... names (every chunk verified, but they are not "
                                       "this object's: a wrong or forged manifest)")
            return
        if self._hash.hexdigest() != m.etag:
            raise e.IntegrityError(f"{m.bucket}/{m.key}: the {m.size} bytes read do not match the object's "
                                   f"BLAKE3 digest {m.etag[:16]}... (every chunk verified, but they are not "
                                   "this object's: a wrong or forged manifest)")


def _in_key_order(items: Sequence[_Keyed], prefixes: Sequence[str]) -> list[_Keyed | str]:
    """A listing page's entries and common prefixes merged in key order (a stable sort: a key's
    versions keep their order, newest first)."""
    merged: list[_Keyed | str] = list(items)
    merged.extend(prefixes)
    return sorted(merged, key=lambda x: x if isinstance(x, str) else x.key)


def _check_size(m: pb.Manifest, found: int, what: str) -> None:
    if found != m.size:
        raise e.IntegrityError(f"{m.bucket}/{m.key}: {what} hold {found} bytes, the manifest says {m.size}")


class AsyncClient:
    """S3-like client for a maillage mesh.

    Where and as whom come from a `Profile`: give one, or let `resolve_profile` build it from the
    arguments (`endpoints`: node addresses "host:port" to learn the layout from, `key_id` and
    `secret`: the access key, `trust_dir`: the cluster's ca.pem, client.pem, client.key and
    layout-signing.pub), then $MAILLAGE_* variables, then profile `profile_name` of the config file.
    Missing or unusable credentials raise `CredentialsError`. `site` is the client's own site,
    whose nodes it prefers for reads. `insecure_plaintext` is for benchmarks only, against nodes run
    with `--insecure-plaintext`.
    """

    def __init__(self, endpoints: str | Sequence[str] | None = None, *, profile: Profile | None = None,
                 profile_name: str | None = None, key_id: str | None = None, secret: str | None = None,
                 trust_dir: str | PathLike[str] | None = None, config_file: str | PathLike[str] | None = None,
                 site: str | None = None, timeout: float = 60.0, prefetch: int = 4,
                 insecure_plaintext: bool = False) -> None:
        if profile is None:
            profile = resolve_profile(endpoints, key_id=key_id, secret=secret, trust_dir=trust_dir,
                                      profile=profile_name, config_file=config_file)
        elif endpoints:
            profile = dataclasses.replace(profile, endpoints=(endpoints,) if isinstance(endpoints, str)
                                          else tuple(endpoints))
        self.profile = profile
        self._endpoints = list(profile.endpoints)
        if not self._endpoints:
            raise e.InvalidRequest("give at least one node address (host:port)")
        self._trust = Trust.of(profile)
        # Benchmarks only, against nodes run with --insecure-plaintext: no TLS on the channels.
        self._tls = None if insecure_plaintext else self._trust.tls
        self.site = site
        self.timeout = timeout
        self.prefetch = max(1, prefetch)
        self._layout: Layout | None = None
        self._channels: dict[tuple[str, str | None], grpc.aio.Channel] = {}
        # Stubs and raw-bytes methods, made once per channel: building a stub makes a callable per
        # method, ~0.1 ms, which every call paid when they were made per call.
        self._per_channel: dict[tuple[str, str, str], Any] = {}
        self._policies: dict[str, str] = {}
        self._chunk_keys: dict[str, bytes | None] = {}  # per bucket, as `_policies`
        self._latency: dict[str, float] = {}
        self._rotation = 0

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(grace=None)
        self._channels.clear()
        self._per_channel.clear()

    # ----- layout and node choice ------------------------------------------------------------

    def _channel(self, address: str, peer: str | None) -> grpc.aio.Channel:
        """The channel to `address`, checking that its certificate names node `peer` (None: any
        node of the cluster, for an endpoint not matched to a node id yet)."""
        channel = self._channels.get((address, peer))
        if channel is None:
            channel = self._channels[(address, peer)] = open_channel(address, tls=self._tls, peer=peer)
        return channel

    def _node_channel(self, layout: Layout, node_id: str) -> grpc.aio.Channel:
        return self._channel(layout.node(node_id).address, node_id)

    def _per_node(self, layout: Layout, node_id: str, what: str, make: Callable[[grpc.aio.Channel], Any]) -> Any:
        """`make(channel)` for the node's channel, made once and kept with the channel."""
        where = (layout.node(node_id).address, node_id, what)
        made = self._per_channel.get(where)
        if made is None:
            made = self._per_channel[where] = make(self._node_channel(layout, node_id))
        return made

    def _objects_method(self, layout: Layout, node_id: str, method: str) -> Any:
        """An Objects method of the node, taking its request as the bytes `Trust.signed` signed."""
        return self._per_node(layout, node_id, f"Objects/{method}",
                              lambda channel: unary_method(channel, "Objects", method))

    def _raw_method(self, layout: Layout, node_id: str, path: str, *, streaming: bool = False) -> Any:
        """A raw-bytes method of `proto.bulk` (no (de)serializer: the bytes cross as they are)."""
        def make(channel: grpc.aio.Channel) -> Any:
            factory = channel.stream_unary if streaming else channel.unary_unary
            return factory(path, request_serializer=None, response_deserializer=None)
        return self._per_node(layout, node_id, path, make)

    async def layout(self) -> Layout:
        if self._layout is None:
            await self.refresh_layout()
        assert self._layout is not None
        return self._layout

    async def refresh_layout(self) -> Layout:
        """The layout from the first endpoint that answers with one signed by the cluster admin.

        A layout whose signature does not verify is never used: the next endpoint is tried, and
        `PermissionDenied` is raised when none gave a signed one."""
        failures: list[str] = []
        refused: e.PermissionDenied | None = None
        for address in self._endpoints:
            try:
                with translate(address):
                    # Which node answers is not known yet: signed for any node (GetLayout allows it).
                    body, metadata = self._trust.signed("Cluster", "GetLayout", pb.GetLayoutRequest(), None)
                    doc = await unary_method(self._channel(address, None), "Cluster", "GetLayout")(
                        body, timeout=10, metadata=metadata)
                layout = self._trust.verified_layout(doc.version, doc.text, doc.signature, f"endpoint {address}")
            except e.PermissionDenied as exc:
                refused = refused or exc
                failures.append(str(exc))
                continue
            except e.NodeUnavailable as exc:
                failures.append(str(exc))
                continue
            if self._layout is None or layout.version >= self._layout.version:
                self._layout = layout
            return self._layout
        if refused is not None:
            raise e.PermissionDenied("; ".join(failures)) from refused
        raise e.NodeUnavailable(f"no endpoint answered with the layout ({'; '.join(failures)})")

    def _nearest_first(self, layout: Layout, node_ids: Iterable[str]) -> list[str]:
        """Same site first, then lowest measured latency; placement order breaks ties."""
        ordered = list(node_ids)
        rank = {n: i for i, n in enumerate(ordered)}
        return sorted(ordered, key=lambda n: (
            layout.node(n).site != self.site if self.site else False,
            round(self._latency.get(n, 0.0), 3), rank[n]))

    def _note_latency(self, node_id: str, seconds: float) -> None:
        old = self._latency.get(node_id)
        self._latency[node_id] = seconds if old is None else 0.8 * old + 0.2 * seconds

    async def _policy_of(self, bucket: str) -> str:
        policy = self._policies.get(bucket)
        if policy is None:
            policy = self._policies[bucket] = (await self.head_bucket(bucket)).policy
        return policy

    def _forget(self, bucket: str) -> None:
        """Drop what is cached of `bucket`: a node outside its policy answered OutsideTerritory, so
        the bucket was made again under another policy since (its chunk key changed with it)."""
        self._policies.pop(bucket, None)
        self._chunk_keys.pop(bucket, None)

    async def _chunk_key(self, bucket: str) -> bytes | None:
        """The key naming the chunks of `bucket` (asked once; None: names are unkeyed BLAKE3). Only a
        reader of the bucket gets it; every chunk read is checked with it end to end."""
        if bucket not in self._chunk_keys:
            reply = await self._objects_call(bucket, "ChunkKey", pb.ChunkKeyRequest(bucket=bucket))
            key = bytes(reply.key)
            if key and len(key) != 32:
                raise e.IntegrityError(f"bucket {bucket!r}: the node sent a chunk key of {len(key)} bytes")
            self._chunk_keys[bucket] = key or None
        return self._chunk_keys[bucket]

    async def _coordinators(self, bucket: str | None, *, index_first: bool = False,
                            policy: str | None = None) -> list[str]:
        """Nodes to send a request to: inside the bucket's policy, spread over requests.

        With `index_first`, the owners of the bucket's index come first: for small requests the
        manifest lookup and write are then one local call and one remote instead of two remote
        (profiling showed per-request gRPC calls bound 4 KiB throughput). Large uploads keep
        spreading over every eligible node, where hashing and framing cost more than a call."""
        layout = await self.layout()
        if bucket is None and policy is None:
            nodes = [n.id for n in layout.nodes if n.state.value == "active"]
        else:  # only a node inside the policy serves a bucket of it (OutsideTerritory elsewhere)
            policy = policy or await self._policy_of(bucket or "")
            nodes = [n.id for n in layout.eligible_nodes(policy)]
            if index_first and bucket is not None:
                table = partition_table(layout, policy)
                owners = list(table.replicas(bucket_partition(bucket, table.bits)))
                nodes = owners + [n for n in nodes if n not in owners]
        self._rotation += 1
        if index_first and bucket is not None:
            k = len(owners)
            start = self._rotation % max(1, k)
            rotated = nodes[start:k] + nodes[:start] + nodes[k:]
        else:
            start = self._rotation % max(1, len(nodes))
            rotated = nodes[start:] + nodes[:start]
        if self.site:
            rotated.sort(key=lambda n: layout.node(n).site != self.site)
        return rotated

    async def _objects_call(self, bucket: str | None, method: str, request: Message, *,
                            index_first: bool = False, policy: str | None = None) -> Any:
        """Call an Objects method on the first coordinator that answers. A node outside the
        bucket's policy (the bucket was made again under another since its policy was cached here)
        answers OutsideTerritory: the policy is looked up again and the call sent inside it, once."""
        layout = await self.layout()
        last: e.MaillageError | None = None
        for attempt in range(2):
            for node_id in await self._coordinators(bucket, index_first=index_first, policy=policy):
                call = self._objects_method(layout, node_id, method)
                body, metadata = self._trust.signed("Objects", method, request, node_id)  # for this node only
                try:
                    with translate(node_id):
                        return await call(body, timeout=self.timeout, metadata=metadata)
                except e.NodeUnavailable as exc:
                    last = exc
                except e.OutsideTerritory:
                    if attempt or bucket is None or policy is not None:
                        raise
                    self._forget(bucket)
                    break
            else:
                break
        raise last or e.NodeUnavailable("no node to send the request to")

    # ----- buckets ---------------------------------------------------------------------------

    async def create_bucket(self, name: str, policy: str, *, object_lock: bool = False) -> Bucket:
        """Create bucket `name` bound to residency policy `policy`; it belongs to the access key's tenant.
        `object_lock`: with versioning Enabled and object lock from the start (never disabled)."""
        layout = await self.layout()
        try:
            partition_table(layout, policy)  # refuse early, with placement's own words
        except PlacementError as exc:
            cls = e.UnknownPolicy if isinstance(exc, UnknownPolicy) else e.PolicyUnsatisfiable
            raise cls(str(exc)) from exc
        reply = await self._objects_call(None, "CreateBucket", pb.CreateBucketRequest(
            name=name, policy=policy, object_lock=object_lock), policy=policy)  # made by a node inside its policy
        self._policies[name] = reply.policy
        self._chunk_keys.pop(name, None)
        return _bucket(reply)

    async def head_bucket(self, name: str) -> Bucket:
        reply = await self._objects_call(None, "HeadBucket", pb.HeadBucketRequest(name=name))
        self._policies[name] = reply.policy
        return _bucket(reply)

    async def list_buckets(self) -> list[Bucket]:
        reply = await self._objects_call(None, "ListBuckets", pb.ListBucketsRequest())
        return [_bucket(b) for b in reply.buckets]

    async def delete_bucket(self, name: str) -> None:
        await self._objects_call(name, "DeleteBucket", pb.DeleteBucketRequest(name=name))
        self._policies.pop(name, None)
        self._chunk_keys.pop(name, None)

    # ----- objects ---------------------------------------------------------------------------

    async def put_object(self, bucket: str, key: str, body: Body, *, content_type: str = "application/octet-stream",
                         metadata: Mapping[str, str] | None = None, progress: Progress | None = None) -> PutResult:
        """Store `body` (bytes, a binary file, or a sync/async iterator of bytes) under `key`.

        A body known to hold at most INLINE_MAX bytes (bytes, or a small seekable file) goes in one
        PutSmallObject request; anything else streams (PutObject: header, pieces, trailer)."""
        header = pb.PutObjectHeader(bucket=bucket, key=key, content_type=content_type,
                                    user_metadata=dict(metadata or {}))
        replayable, total = _replay_info(body)
        if total is not None and total <= INLINE_MAX:
            data = await _small_body(body)
            if data is not None:
                result = await self._put_small(header, data)
                if progress and data:
                    progress(len(data), total)
                return result
            replayable(0)  # a file that grew past INLINE_MAX since its size was read: back to its start
        layout = await self.layout()
        last: e.MaillageError | None = None
        small = total is not None and total <= SMALL_OBJECT
        first = bulk.header_message(header)  # what the signature covers (the trailer's BLAKE3 the data)
        for attempt in range(2):  # the second after OutsideTerritory, inside the bucket's policy as read again
            for node_id in await self._coordinators(bucket, index_first=small):
                call = self._raw_method(layout, node_id, bulk.PUT_OBJECT, streaming=True)
                sent = [0]
                try:
                    with translate(node_id):
                        raw = await call(_put_stream(first, body, progress, total, sent), timeout=None,
                                         metadata=self._trust.sign(bulk.PUT_OBJECT, target=node_id, body=first))
                except e.NodeUnavailable as exc:
                    last = exc
                    if not replayable(sent[0]):
                        raise
                    continue
                except e.OutsideTerritory:  # refused before any byte was stored
                    if attempt or not replayable(sent[0]):
                        raise
                    self._forget(bucket)
                    break
                return _put_result(header, raw)
            else:
                break
        raise last or e.NodeUnavailable(f"no node of bucket {bucket!r}'s policy is reachable")

    async def _put_small(self, header: pb.PutObjectHeader, data: bytes, digest: bytes | None = None) -> PutResult:
        """One PutSmallObject request (`data` within INLINE_MAX) to an owner of the bucket's index
        first, then the next coordinator while nodes are unreachable. `digest` is the BLAKE3 of
        `data` (tests give a wrong one: the node refuses it with IntegrityError)."""
        if len(data) > INLINE_MAX:
            raise e.InvalidRequest(f"a small PUT takes at most {INLINE_MAX} bytes, not {len(data)}")
        request = bulk.small_object_message(header, data, blake3.blake3(data).digest() if digest is None else digest)
        layout = await self.layout()
        last: e.MaillageError | None = None
        for attempt in range(2):  # the second after OutsideTerritory, inside the bucket's policy as read again
            for node_id in await self._coordinators(header.bucket, index_first=True):
                call = self._raw_method(layout, node_id, bulk.PUT_SMALL_OBJECT)
                try:
                    with translate(node_id):
                        raw = await call(request, timeout=self.timeout, metadata=self._trust.sign(
                            bulk.PUT_SMALL_OBJECT, target=node_id, body=request))
                except e.NodeUnavailable as exc:
                    last = exc
                    continue
                except e.OutsideTerritory:
                    if attempt:
                        raise
                    self._forget(header.bucket)
                    break
                return _put_result(header, raw)
            else:
                break
        raise last or e.NodeUnavailable(f"no node of bucket {header.bucket!r}'s policy is reachable")

    async def head_object(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """The key's current version, or its version `version_id` (a versioned bucket's)."""
        return _info(await self._manifest(bucket, key, version_id))

    async def object_chunks(self, bucket: str, key: str) -> list[tuple[bytes, int]]:
        """(BLAKE3 digest, length) of each chunk of the object; empty for a small object stored inline."""
        manifest = await self._manifest(bucket, key)
        return [(ref.digest, ref.length) for ref in manifest.chunks]

    async def _manifest(self, bucket: str, key: str, version_id: str | None = None) -> pb.Manifest:
        manifest: pb.Manifest = await self._objects_call(
            bucket, "HeadObject", pb.HeadObjectRequest(bucket=bucket, key=key, version_id=version_id or ""),
            index_first=True)
        return manifest

    async def get_object(self, bucket: str, key: str, *, range: tuple[int, int] | None = None,
                         version_id: str | None = None) -> AsyncObjectBody:
        """Open an object (or its version `version_id`) for reading; `range=(start, end)` selects
        bytes [start, end). One round trip: the manifest comes with the first chunk wanted."""
        manifest, first = await self._open(bucket, key, version_id, max(0, range[0]) if range else 0)
        start, end = 0, manifest.size
        if range is not None:
            start, end = max(0, range[0]), min(manifest.size, range[1])
            if start > end:
                raise e.InvalidRequest(f"range {range} is empty or outside the object's {manifest.size} bytes")
        return AsyncObjectBody(self, _info(manifest), manifest, await self._chunk_policy(bucket, manifest),
                               start, end, bucket, first)

    async def _open(self, bucket: str, key: str, version_id: str | None,
                    offset: int) -> tuple[pb.Manifest, tuple[int, bytes]]:
        """The manifest and (index, frame) of the chunk holding byte `offset`, in one call (GetObject).
        A node from before GetObject answers UNIMPLEMENTED: HeadObject then, and the chunk fetched
        with the others."""
        request = pb.GetObjectRequest(bucket=bucket, key=key, version_id=version_id or "", offset=offset)
        try:
            reply = await self._objects_call(bucket, "GetObject", request, index_first=True)
        except e.MaillageError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, grpc.RpcError) and cause.code() is grpc.StatusCode.UNIMPLEMENTED):
                raise
            return await self._manifest(bucket, key, version_id), (0, b"")
        return reply.manifest, (reply.chunk, reply.frame)

    async def _sent_chunk(self, bucket: str, policy: str, digest: bytes, key: bytes | None, frame: bytes) -> bytes:
        """The plain bytes of a frame the coordinator sent with the manifest, verified as a fetched
        one is; a frame that fails (a faulty or hostile coordinator) is fetched again from the copies."""
        try:
            return await asyncio.to_thread(decode_frame, frame, expected_digest=digest, key=key)
        except CorruptFrame as corrupt:
            try:
                return await self._fetch_chunk(bucket, policy, digest, key)
            except e.NodeUnavailable as unavailable:
                # A copy was read and failed (the nodes may have quarantined it since): corrupt
                # data, not an unreachable mesh.
                raise e.IntegrityError(f"chunk {digest.hex()[:16]}: the copy sent with the manifest failed "
                                       f"verification ({corrupt}), and no other copy answered ({unavailable})"
                                       ) from unavailable

    async def _chunk_policy(self, bucket: str, manifest: pb.Manifest) -> str:
        """The policy a version's chunks rest under: its bucket's, or the cold one a lifecycle
        transition moved them to (never one wider than the bucket's: `Layout.chunk_policy`)."""
        policy = await self._policy_of(bucket)
        return (await self.layout()).chunk_policy(policy, chunk_policy_named(manifest.attributes, policy))

    async def _fetch_chunk(self, bucket: str, policy: str, digest: bytes, key: bytes | None = None) -> bytes:
        """A chunk of `bucket` (the node serves it only to a reader of that bucket): its plain bytes
        from the nearest replica of `policy` that gives a copy verified with `key` (a keyed copy
        without a key, or a wrong digest, counts as corrupt: IntegrityError if none)."""
        layout = await self.layout()
        table = partition_table(layout, policy)
        p = chunk_partition(digest, table.bits)
        problems: list[str] = []
        corrupt = False
        request = bulk.chunk_request(digest, bucket)
        for node_id in self._nearest_first(layout, (*table.replicas(p), *table.handoffs(p))):
            call = self._raw_method(layout, node_id, bulk.GET_CHUNK)
            began = time.monotonic()
            try:
                with translate(node_id):
                    frame = await call(request, timeout=self.timeout,
                                       metadata=self._trust.sign(bulk.GET_CHUNK, target=node_id, body=request))
            except e.MaillageError as error:
                corrupt |= isinstance(error, e.IntegrityError)
                problems.append(f"{node_id}: {error}")
                continue
            self._note_latency(node_id, time.monotonic() - began)
            try:
                return await asyncio.to_thread(decode_frame, frame, expected_digest=digest, key=key)
            except CorruptFrame as exc:
                corrupt = True
                problems.append(f"{node_id}: corrupt copy ({exc})")
        detail = "; ".join(problems)
        if corrupt:
            raise e.IntegrityError(f"chunk {digest.hex()[:16]}: no copy passed verification ({detail})")
        raise e.NodeUnavailable(f"chunk {digest.hex()[:16]}: no replica answered ({detail})")

    async def delete_object(self, bucket: str, key: str, *, version_id: str | None = None,
                            bypass_governance: bool = False) -> int:
        """Delete the key (on a versioned bucket: a delete marker), or remove its version
        `version_id` (PermissionDenied while a legal hold or retention keeps it; `bypass_governance`:
        a key for all the tenant's buckets lifts a GOVERNANCE one); returns the HLC version of what the delete wrote."""
        reply = await self._objects_call(bucket, "DeleteObject", pb.DeleteObjectRequest(
            bucket=bucket, key=key, version_id=version_id or "", bypass_governance=bypass_governance),
            index_first=True)
        version: int = reply.version
        return version

    async def copy_object(self, source_bucket: str, source_key: str, bucket: str, key: str, *,
                          source_version_id: str | None = None) -> ObjectInfo:
        reply = await self._objects_call(bucket, "CopyObject", pb.CopyObjectRequest(
            source_bucket=source_bucket, source_key=source_key, bucket=bucket, key=key,
            source_version_id=source_version_id or ""))
        return _info(reply)

    # ----- versioning ------------------------------------------------------------------------

    async def put_bucket_versioning(self, bucket: str, status: str) -> None:
        """Enable ("Enabled") or suspend ("Suspended") the bucket's versioning (its owner's keys only)."""
        await self._objects_call(bucket, "PutBucketVersioning", pb.BucketVersioningRequest(bucket=bucket,
                                                                                           status=status))

    async def get_bucket_versioning(self, bucket: str) -> str:
        """"" (never enabled), "Enabled" or "Suspended"."""
        reply = await self._objects_call(bucket, "GetBucketVersioning", pb.BucketVersioningRequest(bucket=bucket))
        status: str = reply.status
        return status

    # ----- lifecycle ---------------------------------------------------------------------------

    async def put_bucket_lifecycle(self, bucket: str, rules: Sequence[LifecycleRule]) -> None:
        """Replace the bucket's lifecycle rules (1 to 100); the node leading the bucket applies them
        at its next sweep."""
        await self._objects_call(bucket, "PutBucketLifecycleConfiguration", pb.BucketLifecycle(
            bucket=bucket, rules=[_lifecycle_rule_to_pb(r) for r in rules]))

    async def get_bucket_lifecycle(self, bucket: str) -> list[LifecycleRule]:
        """The bucket's lifecycle rules ([]: none)."""
        reply = await self._objects_call(bucket, "GetBucketLifecycleConfiguration", pb.BucketLifecycle(bucket=bucket))
        return [_lifecycle_rule_from_pb(r) for r in reply.rules]

    async def delete_bucket_lifecycle(self, bucket: str) -> None:
        await self._objects_call(bucket, "DeleteBucketLifecycle", pb.BucketLifecycle(bucket=bucket))

    # ----- object lock -----------------------------------------------------------------------

    async def put_object_lock_configuration(self, bucket: str, default: LockConfiguration | None = None) -> None:
        """Enable object lock on a bucket whose versioning is Enabled (never disabled), with a
        default retention for new versions (`default`; None: none)."""
        d = default or LockConfiguration()
        await self._objects_call(bucket, "PutObjectLockConfiguration", pb.ObjectLockConfig(
            bucket=bucket, mode=d.mode, days=d.days, years=d.years))

    async def get_object_lock_configuration(self, bucket: str) -> LockConfiguration | None:
        """The bucket's default retention (mode "" for none), or None when it has no object lock."""
        reply = await self._objects_call(bucket, "GetObjectLockConfiguration", pb.ObjectLockConfig(bucket=bucket))
        if not reply.enabled:
            return None
        return LockConfiguration(reply.mode, reply.days, reply.years)

    async def put_object_retention(self, bucket: str, key: str, retention: Retention | None, *,
                                   version_id: str | None = None, bypass_governance: bool = False) -> None:
        """Set or lengthen a version's retention; shortening or removing (None) a GOVERNANCE one
        needs a key for all the tenant's buckets and `bypass_governance`, a COMPLIANCE one never."""
        mode, until = ("", 0) if retention is None else (retention.mode, _epoch_ms(retention.retain_until))
        await self._objects_call(bucket, "PutObjectRetention", pb.ObjectRetentionRequest(
            bucket=bucket, key=key, version_id=version_id or "", mode=mode, retain_until_ms=until,
            bypass_governance=bypass_governance))

    async def get_object_retention(self, bucket: str, key: str, *, version_id: str | None = None) -> Retention | None:
        reply = await self._objects_call(bucket, "GetObjectRetention", pb.ObjectRetentionRequest(
            bucket=bucket, key=key, version_id=version_id or ""))
        if not reply.mode:
            return None
        return Retention(reply.mode, datetime.fromtimestamp(reply.retain_until_ms / 1000, UTC))

    async def put_object_legal_hold(self, bucket: str, key: str, on: bool, *, version_id: str | None = None) -> None:
        await self._objects_call(bucket, "PutObjectLegalHold", pb.ObjectLegalHoldRequest(
            bucket=bucket, key=key, version_id=version_id or "", on=on))

    async def get_object_legal_hold(self, bucket: str, key: str, *, version_id: str | None = None) -> bool:
        reply = await self._objects_call(bucket, "GetObjectLegalHold", pb.ObjectLegalHoldRequest(
            bucket=bucket, key=key, version_id=version_id or ""))
        on: bool = reply.on
        return on

    async def list_object_versions_page(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                                        key_marker: str = "", version_id_marker: str = "",
                                        max_keys: int = 1000) -> VersionPage:
        reply = await self._objects_call(bucket, "ListObjectVersions", pb.ListObjectVersionsRequest(
            bucket=bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            version_id_marker=version_id_marker, max_keys=max_keys))
        return VersionPage(
            versions=tuple(ObjectVersion(v.key, v.version_id, v.is_latest, v.delete_marker, v.size, v.etag,
                                         v.version, v.content_type) for v in reply.versions),
            common_prefixes=tuple(reply.common_prefixes), is_truncated=reply.is_truncated,
            next_key_marker=reply.next_key_marker, next_version_id_marker=reply.next_version_id_marker)

    async def list_object_versions(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                                   page_size: int = 1000) -> AsyncIterator[ObjectVersion | str]:
        """Every version and delete marker (keys in order, each key's newest first; with a delimiter,
        each common prefix as a str where it sorts), page after page."""
        key_marker = version_id_marker = ""
        while True:
            page = await self.list_object_versions_page(bucket, prefix=prefix, delimiter=delimiter,
                                                        key_marker=key_marker, version_id_marker=version_id_marker,
                                                        max_keys=page_size)
            for item in _in_key_order(page.versions, page.common_prefixes):
                yield item
            if not page.is_truncated:
                return
            key_marker, version_id_marker = page.next_key_marker, page.next_version_id_marker

    async def list_objects_page(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                                start_after: str = "", continuation_token: str = "",
                                max_keys: int = 1000) -> ListPage:
        reply = await self._objects_call(bucket, "ListObjects", pb.ListObjectsRequest(
            bucket=bucket, prefix=prefix, delimiter=delimiter, start_after=start_after,
            continuation_token=continuation_token, max_keys=max_keys))
        return ListPage(
            objects=tuple(ObjectSummary(o.key, o.size, o.etag, o.version, o.content_type) for o in reply.contents),
            common_prefixes=tuple(reply.common_prefixes), is_truncated=reply.is_truncated,
            next_token=reply.next_continuation_token)

    async def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           start_after: str = "", page_size: int = 1000) -> AsyncIterator[ObjectSummary | str]:
        """Every object (and, with a delimiter, every common prefix as a str), page after page."""
        token = ""
        while True:
            page = await self.list_objects_page(bucket, prefix=prefix, delimiter=delimiter,
                                                start_after=start_after, continuation_token=token,
                                                max_keys=page_size)
            for item in _in_key_order(page.objects, page.common_prefixes):
                yield item
            if not page.is_truncated:
                return
            token = page.next_token

    # ----- files -----------------------------------------------------------------------------

    async def upload_file(self, path: str | PathLike[str], bucket: str, key: str, *,
                          content_type: str = "application/octet-stream", metadata: Mapping[str, str] | None = None,
                          progress: Progress | None = None) -> PutResult:
        with open(path, "rb") as f:
            return await self.put_object(bucket, key, f, content_type=content_type, metadata=metadata,
                                         progress=progress)

    async def download_file(self, bucket: str, key: str, path: str | PathLike[str], *,
                            progress: Progress | None = None) -> ObjectInfo:
        """Write the object to `path` (via a temp file renamed at the end: no half file on error)."""
        body = await self.get_object(bucket, key)
        target = Path(path)
        tmp = target.with_name(f".{target.name}.part")
        done = 0
        try:
            with open(tmp, "wb") as f:
                async for piece in body.iter_chunks():
                    f.write(piece)
                    done += len(piece)
                    if progress:
                        progress(done, body.content_length)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return body.info

    # ----- placement -------------------------------------------------------------------------

    async def where(self, bucket: str, key: str) -> ObjectPlacement:
        layout = await self.layout()
        policy = layout.policy(await self._policy_of(bucket))
        table = partition_table(layout, policy.name)
        p = bucket_partition(bucket, table.bits)

        def replica(node_id: str) -> Replica:
            return Replica(node_id, layout.node(node_id).site, format_location(layout.location_of(node_id)))

        return ObjectPlacement(
            bucket=bucket, key=key, policy=policy.name, allow=tuple(format_location(a) for a in policy.allow),
            replicas_required=policy.replicas, partition=p,
            index_replicas=tuple(replica(n) for n in table.replicas(p)),
            handoffs=tuple(replica(n) for n in table.handoffs(p)[:3]))


# ----- request bodies ------------------------------------------------------------------------

def _put_result(header: pb.PutObjectHeader, raw: bytes) -> PutResult:
    reply = pb.PutObjectReply.FromString(raw)
    m = reply.manifest
    return PutResult(bucket=header.bucket, key=header.key, size=m.size, etag=m.etag, version=m.version,
                     sites=tuple(reply.sites), version_id=m.version_id)


async def _small_body(body: Body) -> bytes | None:
    """All of a body `_replay_info` found to hold at most INLINE_MAX bytes, or None when a file
    turns out to hold more (it grew meanwhile)."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    data = await asyncio.to_thread(_read_up_to, body, INLINE_MAX + 1)
    return data if len(data) <= INLINE_MAX else None


def _read_up_to(f: Any, limit: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < limit and (piece := f.read(limit - got)):
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)

def _replay_info(body: Body) -> tuple[Callable[[int], bool], int | None]:
    """Whether the body can be sent again after a failed attempt, and its size if known."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return (lambda sent: True), len(body)
    if hasattr(body, "seek") and hasattr(body, "tell"):
        try:
            position = body.tell()
            size = body.seek(0, 2) - position
            body.seek(position)
        except (OSError, ValueError):
            return (lambda sent: sent == 0), None

        def rewind(sent: int) -> bool:
            body.seek(position)
            return True
        return rewind, size
    return (lambda sent: sent == 0), None


def _sliced(piece: bytes | bytearray | memoryview) -> Iterable[bytes | bytearray | memoryview]:
    """A piece in slices of at most PIECE bytes: a node refuses larger messages."""
    if len(piece) <= PIECE:
        return (piece,)
    view = memoryview(piece)
    return (view[i:i + PIECE] for i in range(0, len(view), PIECE))


async def _pieces(body: Body) -> AsyncIterator[bytes | bytearray | memoryview]:
    if isinstance(body, (bytes, bytearray, memoryview)):
        for piece in _sliced(body):
            yield piece
    elif hasattr(body, "read"):
        while piece := await asyncio.to_thread(body.read, PIECE):
            yield piece
    elif hasattr(body, "__aiter__"):
        async for piece in body:
            for part in _sliced(piece) if isinstance(piece, (bytes, bytearray, memoryview)) else (piece,):
                yield part
    elif isinstance(body, Iterable):
        for piece in body:
            for part in _sliced(piece) if isinstance(piece, (bytes, bytearray, memoryview)) else (piece,):
                yield part
    else:
        raise e.InvalidRequest(f"cannot upload a body of type {type(body).__name__}: "
                               "give bytes, a binary file, or an iterator of bytes")


async def _put_stream(first: bytes, body: Body, progress: Progress | None,
                      total: int | None, sent: list[int]) -> AsyncIterator[bytes]:
    """The PutObject stream: `first` (the header message, as signed), the data, the trailer."""
    yield first
    digest = blake3.blake3()
    async for piece in _pieces(body):
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise e.InvalidRequest(f"body iterator yielded {type(piece).__name__}, expected bytes")
        if not len(piece):
            continue
        digest.update(piece)
        yield bulk.data_message(piece)
        sent[0] += len(piece)
        if progress:
            progress(sent[0], total)
    yield bulk.trailer_message(digest.digest())


def _epoch_ms(when: datetime) -> int:
    """Milliseconds since the epoch of a date (a naive one is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _lifecycle_rule_to_pb(r: LifecycleRule) -> pb.LifecycleRule:
    optional = {name: value for name, value in (
        ("size_greater_than", r.size_greater_than), ("size_less_than", r.size_less_than),
        ("expiration_days", r.expiration_days),
        ("expiration_date_ms", None if r.expiration_date is None else _epoch_ms(r.expiration_date)),
        ("noncurrent_days", r.noncurrent_days), ("abort_multipart_days", r.abort_multipart_days),
        ("transition_days", r.transition_days))
        if value is not None}
    return pb.LifecycleRule(id=r.id, enabled=r.enabled, prefix=r.prefix, tags=dict(r.tags),
                            expired_object_delete_marker=r.expired_object_delete_marker,
                            newer_noncurrent=r.newer_noncurrent, transition_class=r.transition_class, **optional)


def _lifecycle_rule_from_pb(r: pb.LifecycleRule) -> LifecycleRule:
    def optional(name: str) -> Any:
        return getattr(r, name) if r.HasField(name) else None
    date_ms = optional("expiration_date_ms")
    return LifecycleRule(
        id=r.id, enabled=r.enabled, prefix=r.prefix, tags=tuple(sorted(r.tags.items())),
        size_greater_than=optional("size_greater_than"), size_less_than=optional("size_less_than"),
        expiration_days=optional("expiration_days"),
        expiration_date=None if date_ms is None else datetime.fromtimestamp(date_ms / 1000, UTC),
        expired_object_delete_marker=r.expired_object_delete_marker, noncurrent_days=optional("noncurrent_days"),
        newer_noncurrent=r.newer_noncurrent, abort_multipart_days=optional("abort_multipart_days"),
        transition_days=optional("transition_days"), transition_class=r.transition_class)
