"""Protobuf <-> domain values, in one place so servicers and peers stay a few lines each."""

from __future__ import annotations

from maillage.proto import pb
from maillage.storage import BucketRecord, ChunkRef, Manifest

from .replica import SyncGroup


def manifest_to_pb(m: Manifest, *, with_chunks: bool = True) -> pb.Manifest:
    msg = pb.Manifest(
        bucket=m.bucket, key=m.key, version=m.version, size=m.size, etag=m.etag,
        content_type=m.content_type, user_metadata=dict(m.user_metadata),
        deleted=m.deleted, writer=m.writer)
    if with_chunks:
        msg.chunks.extend(pb.ChunkRef(digest=c.digest, length=c.length) for c in m.chunks)
        if m.inline is not None:
            msg.has_inline = True
            msg.inline_data = m.inline
    return msg


def manifest_from_pb(msg: pb.Manifest) -> Manifest:
    return Manifest(
        bucket=msg.bucket, key=msg.key, version=msg.version, size=msg.size, etag=msg.etag,
        content_type=msg.content_type or "application/octet-stream",
        user_metadata=tuple(sorted(msg.user_metadata.items())),
        chunks=tuple(ChunkRef(digest=c.digest, length=c.length) for c in msg.chunks),
        inline=msg.inline_data if msg.has_inline else None,
        deleted=msg.deleted, writer=msg.writer)


def bucket_to_pb(r: BucketRecord) -> pb.Bucket:
    return pb.Bucket(name=r.name, policy=r.policy, created=r.created, owner=r.owner)


def bucket_from_pb(msg: pb.Bucket) -> BucketRecord:
    return BucketRecord(name=msg.name, policy=msg.policy, created=msg.created, owner=msg.owner)


def group_to_pb(g: SyncGroup) -> pb.SyncGroup:
    return pb.SyncGroup(policy=g.policy, partition=g.partition, bucket=g.bucket)


def group_from_pb(msg: pb.SyncGroup) -> SyncGroup:
    return SyncGroup(msg.policy, msg.partition, msg.bucket)
