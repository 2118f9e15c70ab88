"""Protobuf <-> domain values, all in one place: servicers and the gRPC transport stay a few lines
each, and nothing else in the node touches a protobuf message."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from maillage.node.cluster.gc import GcStats
from maillage.node.cluster.scrub import ScrubStats
from maillage.node.data.coordinator import Upload
from maillage.node.data.lifecycle import Filter, LifecycleConfig, Rule, SweepCounts
from maillage.node.data.versions import Version, version_id
from maillage.node.energy.scheduler import EnergyScheduler
from maillage.node.replicas.antientropy import IndexEntry, Progress, SyncGroup
from maillage.node.replicas.replica import BucketInventory
from maillage.node.replicas.transport import MAX_NEWS, Heartbeat, PeerView, Suspicion
from maillage.node.trust.documents import LayoutDoc
from maillage.proto import pb
from maillage.storage import BucketRecord, BucketTombstone, ChunkRef, Manifest

# ----- objects and buckets -------------------------------------------------------------------


def manifest_to_pb(m: Manifest, *, with_chunks: bool = True) -> pb.Manifest:
    msg = pb.Manifest(
        bucket=m.bucket, key=m.key, version=m.version, size=m.size, etag=m.etag,
        content_type=m.content_type, user_metadata=dict(m.user_metadata),
        deleted=m.deleted, writer=m.writer, generation=m.generation, attributes=dict(m.attributes),
        version_id=version_id(m) or "")
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
        deleted=msg.deleted, writer=msg.writer, generation=msg.generation,
        attributes=tuple(sorted(msg.attributes.items())))


def version_to_pb(v: Version) -> pb.ObjectVersion:
    m = v.manifest
    return pb.ObjectVersion(key=m.key, version_id=v.version_id, is_latest=v.latest, delete_marker=v.marker,
                            size=m.size, etag=m.etag, version=m.version, content_type=m.content_type)


def _optional(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def lifecycle_from_pb(msg: pb.BucketLifecycle) -> LifecycleConfig:
    """A bucket's lifecycle rules as sent (checked by the model: InvalidArgument)."""
    return LifecycleConfig(tuple(
        Rule(id=r.id, enabled=r.enabled,
             filter=Filter(prefix=r.prefix, tags=tuple(sorted(r.tags.items())),
                           size_greater_than=_optional(r, "size_greater_than"),
                           size_less_than=_optional(r, "size_less_than")),
             expiration_days=_optional(r, "expiration_days"), expiration_date_ms=_optional(r, "expiration_date_ms"),
             expired_object_delete_marker=r.expired_object_delete_marker,
             noncurrent_days=_optional(r, "noncurrent_days"), newer_noncurrent=r.newer_noncurrent,
             abort_multipart_days=_optional(r, "abort_multipart_days"),
             transition_days=_optional(r, "transition_days"), transition_class=r.transition_class)
        for r in msg.rules))


def lifecycle_to_pb(config: LifecycleConfig | None) -> pb.BucketLifecycle:
    if config is None:
        return pb.BucketLifecycle()
    rules = []
    for r in config.rules:
        f = r.filter
        optional = {name: value for name, value in (
            ("size_greater_than", f.size_greater_than), ("size_less_than", f.size_less_than),
            ("expiration_days", r.expiration_days), ("expiration_date_ms", r.expiration_date_ms),
            ("noncurrent_days", r.noncurrent_days), ("abort_multipart_days", r.abort_multipart_days),
            ("transition_days", r.transition_days))
            if value is not None}
        rules.append(pb.LifecycleRule(id=r.id, enabled=r.enabled, prefix=f.prefix, tags=dict(f.tags),
                                      expired_object_delete_marker=r.expired_object_delete_marker,
                                      newer_noncurrent=r.newer_noncurrent, transition_class=r.transition_class,
                                      **optional))
    return pb.BucketLifecycle(rules=rules)


def object_summary_to_pb(m: Manifest) -> pb.ObjectSummary:
    return pb.ObjectSummary(key=m.key, size=m.size, etag=m.etag, version=m.version, content_type=m.content_type)


def upload_from_pb(header: pb.PutObjectHeader) -> Upload:
    return Upload(key=header.key,
                  content_type=header.content_type or "application/octet-stream",
                  user_metadata=dict(header.user_metadata))


def bucket_to_pb(r: BucketRecord) -> pb.Bucket:
    return pb.Bucket(name=r.name, policy=r.policy, created=r.created, owner=r.owner, generation=r.generation)


def bucket_from_pb(msg: pb.Bucket) -> BucketRecord:
    return BucketRecord(name=msg.name, policy=msg.policy, created=msg.created, owner=msg.owner,
                        generation=msg.generation)


def bucket_tombstone_to_pb(t: BucketTombstone) -> pb.BucketTombstone:
    return pb.BucketTombstone(name=t.name, generation=t.generation, policy=t.policy, deleted=t.deleted)


def bucket_tombstone_from_pb(msg: pb.BucketTombstone) -> BucketTombstone:
    return BucketTombstone(name=msg.name, generation=msg.generation, policy=msg.policy, deleted=msg.deleted)


def optional_generation(msg: pb.GetManifestRequest | pb.ListIndexRequest) -> str | None:
    """The generation a request names, or None when it names none (the node's live record's)."""
    return msg.generation if msg.HasField("generation") else None


# ----- anti-entropy --------------------------------------------------------------------------


def group_to_pb(g: SyncGroup) -> pb.SyncGroup:
    return pb.SyncGroup(policy=g.policy, partition=g.partition, bucket=g.bucket, generation=g.generation)


def group_from_pb(msg: pb.SyncGroup) -> SyncGroup:
    return SyncGroup(msg.policy, msg.partition, msg.bucket, msg.generation)


def summaries_to_pb(groups: Sequence[pb.SyncGroup], summaries: Sequence[tuple[bytes, int]]) -> pb.SyncSummaryReply:
    return pb.SyncSummaryReply(summaries=[
        pb.SyncSummary(group=g, digest=digest, count=count) for g, (digest, count) in zip(groups, summaries)])


def summaries_from_pb(reply: pb.SyncSummaryReply) -> list[tuple[bytes, int]]:
    return [(s.digest, s.count) for s in reply.summaries]


def listing_to_pb(group: SyncGroup, items: Sequence[Any]) -> pb.SyncListingReply:
    if group.is_index:
        return pb.SyncListingReply(entries=[
            pb.IndexEntry(key=e.key, version=e.version, writer=e.writer, deleted=e.deleted) for e in items])
    return pb.SyncListingReply(chunks=items)


def listing_from_pb(group: SyncGroup, reply: pb.SyncListingReply) -> list[Any]:
    if group.is_index:
        return [IndexEntry(e.key, e.version, e.writer, e.deleted) for e in reply.entries]
    return list(reply.chunks)


def inventory_to_pb(node_id: str, buckets: Iterable[BucketInventory], chunks: Sequence[bytes]) -> pb.InventoryReply:
    return pb.InventoryReply(
        node_id=node_id, all_chunks=chunks,
        buckets=[pb.InventoryBucket(bucket=b.bucket, keys=list(b.keys), chunks=list(b.chunks)) for b in buckets])


def inventory_from_pb(reply: pb.InventoryReply) -> tuple[list[BucketInventory], list[bytes]]:
    buckets = [BucketInventory(b.bucket, tuple(b.keys), tuple(b.chunks)) for b in reply.buckets]
    return buckets, list(reply.all_chunks)


# ----- membership and layouts ----------------------------------------------------------------


def peer_views_to_pb(views: Iterable[PeerView]) -> list[pb.PeerView]:
    return [pb.PeerView(node_id=v.node_id, state=v.state, silent_seconds=v.silent_seconds) for v in views]


def _suspects_to_pb(beat: Heartbeat) -> list[pb.Suspicion]:
    return [pb.Suspicion(node_id=s.node_id, incarnation=s.incarnation) for s in beat.suspects[:MAX_NEWS]]


def heartbeat_request_to_pb(beat: Heartbeat) -> pb.HeartbeatRequest:
    return pb.HeartbeatRequest(node_id=beat.node_id, layout_version=beat.layout_version,
                               access_version=beat.access_version, incarnation=beat.incarnation,
                               suspects=_suspects_to_pb(beat), probe=beat.probe, energy=beat.energy)


def heartbeat_reply_to_pb(beat: Heartbeat) -> pb.HeartbeatReply:
    return pb.HeartbeatReply(node_id=beat.node_id, layout_version=beat.layout_version,
                             access_version=beat.access_version, incarnation=beat.incarnation,
                             suspects=_suspects_to_pb(beat), acked=beat.acked, energy=beat.energy)


def heartbeat_from_pb(msg: pb.HeartbeatRequest | pb.HeartbeatReply) -> Heartbeat:
    """Only the first `MAX_NEWS` suspicions are read, whatever the sender put in."""
    suspects = tuple(Suspicion(s.node_id, s.incarnation) for s in msg.suspects[:MAX_NEWS])
    probe = msg.probe if isinstance(msg, pb.HeartbeatRequest) else ""
    acked = msg.acked if isinstance(msg, pb.HeartbeatReply) else False
    return Heartbeat(msg.node_id, msg.layout_version, msg.access_version, msg.incarnation, suspects,
                     probe=probe, acked=acked, energy=msg.energy)


def layout_doc_to_pb(doc: LayoutDoc) -> pb.LayoutDoc:
    return pb.LayoutDoc(version=doc.version, text=doc.text, signature=doc.signature)


def layout_doc_from_pb(msg: pb.LayoutDoc | pb.AccessDoc) -> LayoutDoc:
    return LayoutDoc(msg.version, msg.text, msg.signature)


# ----- status --------------------------------------------------------------------------------


def progress_to_pb(pr: Progress, now: float) -> pb.RepairProgress:
    """Repair progress at monotonic time `now` (for its rate and ETA)."""
    return pb.RepairProgress(
        running=pr.running, rounds_completed=pr.rounds_completed, groups_total=pr.groups_total,
        groups_done=pr.groups_done, groups_behind=pr.groups_behind, items_copied=pr.items_copied,
        bytes_copied=pr.bytes_copied, rate_bytes_per_s=pr.rate(now), eta_seconds=pr.eta(now),
        handoff_items=pr.handoff_items, last_round_finished_ms=pr.last_round_finished_ms)


def scrub_stats_to_pb(s: ScrubStats) -> pb.ScrubStats:
    return pb.ScrubStats(frames_checked=s.frames_checked, bytes_checked=s.bytes_checked,
                         corrupt_found=s.corrupt_found, passes_completed=s.passes_completed)


def lifecycle_stats_to_pb(sweeps: int, totals: SweepCounts) -> pb.LifecycleStats:
    return pb.LifecycleStats(sweeps=sweeps, **asdict(totals))


def gc_stats_to_pb(repair: Progress, gc: GcStats) -> pb.GcStats:
    return pb.GcStats(tombstones_removed=repair.tombstones_removed, chunks_removed=gc.chunks_removed)


def energy_to_pb(e: EnergyScheduler) -> pb.EnergyStatus:
    now = e.signal.now
    msg = pb.EnergyStatus(source=e.source.kind if e.source is not None else "none", state=e.state.value,
                          problem=e.signal.problem, next_green=e.signal.next_green(e.green_carbon) or 0.0,
                          idle_w=e.power.idle_w)
    if now is not None and now.surplus_w is not None:
        msg.has_surplus, msg.surplus_w = True, now.surplus_w
    if now is not None and now.carbon is not None:
        msg.has_carbon, msg.carbon_g_per_kwh = True, now.carbon
    msg.kinds.extend(pb.EnergyKind(kind=kind.value, turns=job.stats.turns, bytes=job.stats.bytes,
                                   green_bytes=job.stats.green_bytes, waits=job.stats.waits,
                                   waiting=job.stats.waiting, joules=job.stats.joules,
                                   green_joules=job.stats.green_joules) for kind, job in sorted(e.jobs.items(),
                                                                                       key=lambda kv: kv[0].value))
    return msg


def access_doc_to_pb(doc: LayoutDoc) -> pb.AccessDoc:
    return pb.AccessDoc(version=doc.version, text=doc.text, signature=doc.signature)
