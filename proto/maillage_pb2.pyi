from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChunkRef(_message.Message):
    __slots__ = ("digest", "length")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    length: int
    def __init__(self, digest: _Optional[bytes] = ..., length: _Optional[int] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("bucket", "key", "version", "size", "etag", "content_type", "user_metadata", "chunks", "has_inline", "inline_data", "deleted", "writer", "generation", "attributes", "version_id")
    class UserMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    USER_METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    HAS_INLINE_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version: int
    size: int
    etag: str
    content_type: str
    user_metadata: _containers.ScalarMap[str, str]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    has_inline: bool
    inline_data: bytes
    deleted: bool
    writer: str
    generation: str
    attributes: _containers.ScalarMap[str, str]
    version_id: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version: _Optional[int] = ..., size: _Optional[int] = ..., etag: _Optional[str] = ..., content_type: _Optional[str] = ..., user_metadata: _Optional[_Mapping[str, str]] = ..., chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ..., has_inline: _Optional[bool] = ..., inline_data: _Optional[bytes] = ..., deleted: _Optional[bool] = ..., writer: _Optional[str] = ..., generation: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., version_id: _Optional[str] = ...) -> None: ...

class Bucket(_message.Message):
    __slots__ = ("name", "policy", "created", "owner", "generation", "listing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LISTING_FIELD_NUMBER: _ClassVar[int]
    name: str
    policy: str
    created: int
    owner: str
    generation: str
    listing: bool
    def __init__(self, name: _Optional[str] = ..., policy: _Optional[str] = ..., created: _Optional[int] = ..., owner: _Optional[str] = ..., generation: _Optional[str] = ..., listing: _Optional[bool] = ...) -> None: ...

class BucketTombstone(_message.Message):
    __slots__ = ("name", "generation", "policy", "deleted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    name: str
    generation: str
    policy: str
    deleted: int
    def __init__(self, name: _Optional[str] = ..., generation: _Optional[str] = ..., policy: _Optional[str] = ..., deleted: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "site", "location", "layout_version", "software_version", "chunks", "stored_bytes", "s3_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    S3_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    site: str
    location: str
    layout_version: int
    software_version: str
    chunks: int
    stored_bytes: int
    s3_address: str
    def __init__(self, node_id: _Optional[str] = ..., site: _Optional[str] = ..., location: _Optional[str] = ..., layout_version: _Optional[int] = ..., software_version: _Optional[str] = ..., chunks: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., s3_address: _Optional[str] = ...) -> None: ...

class GetLayoutRequest(_message.Message):
    __slots__ = ("before",)
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    before: int
    def __init__(self, before: _Optional[int] = ...) -> None: ...

class LayoutDoc(_message.Message):
    __slots__ = ("version", "text", "signature")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    version: int
    text: str
    signature: bytes
    def __init__(self, version: _Optional[int] = ..., text: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class AccessDoc(_message.Message):
    __slots__ = ("version", "text", "signature")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    version: int
    text: str
    signature: bytes
    def __init__(self, version: _Optional[int] = ..., text: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class GetAccessRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PushAccessReply(_message.Message):
    __slots__ = ("accepted", "current_version")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    current_version: int
    def __init__(self, accepted: _Optional[bool] = ..., current_version: _Optional[int] = ...) -> None: ...

class PushLayoutReply(_message.Message):
    __slots__ = ("accepted", "current_version")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    current_version: int
    def __init__(self, accepted: _Optional[bool] = ..., current_version: _Optional[int] = ...) -> None: ...

class PeerView(_message.Message):
    __slots__ = ("node_id", "state", "silent_seconds")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SILENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    state: str
    silent_seconds: float
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[str] = ..., silent_seconds: _Optional[float] = ...) -> None: ...

class Suspicion(_message.Message):
    __slots__ = ("node_id", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    incarnation: int
    def __init__(self, node_id: _Optional[str] = ..., incarnation: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "layout_version", "access_version", "incarnation", "suspects", "probe", "energy")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_VERSION_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    SUSPECTS_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    layout_version: int
    access_version: int
    incarnation: int
    suspects: _containers.RepeatedCompositeFieldContainer[Suspicion]
    probe: str
    energy: str
    def __init__(self, node_id: _Optional[str] = ..., layout_version: _Optional[int] = ..., access_version: _Optional[int] = ..., incarnation: _Optional[int] = ..., suspects: _Optional[_Iterable[_Union[Suspicion, _Mapping]]] = ..., probe: _Optional[str] = ..., energy: _Optional[str] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("node_id", "layout_version", "access_version", "incarnation", "suspects", "acked", "energy")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_VERSION_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    SUSPECTS_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    layout_version: int
    access_version: int
    incarnation: int
    suspects: _containers.RepeatedCompositeFieldContainer[Suspicion]
    acked: bool
    energy: str
    def __init__(self, node_id: _Optional[str] = ..., layout_version: _Optional[int] = ..., access_version: _Optional[int] = ..., incarnation: _Optional[int] = ..., suspects: _Optional[_Iterable[_Union[Suspicion, _Mapping]]] = ..., acked: _Optional[bool] = ..., energy: _Optional[str] = ...) -> None: ...

class RepairProgress(_message.Message):
    __slots__ = ("running", "rounds_completed", "groups_total", "groups_done", "groups_behind", "items_copied", "bytes_copied", "rate_bytes_per_s", "eta_seconds", "handoff_items", "last_round_finished_ms")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    GROUPS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GROUPS_DONE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_BEHIND_FIELD_NUMBER: _ClassVar[int]
    ITEMS_COPIED_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    RATE_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_ITEMS_FIELD_NUMBER: _ClassVar[int]
    LAST_ROUND_FINISHED_MS_FIELD_NUMBER: _ClassVar[int]
    running: bool
    rounds_completed: int
    groups_total: int
    groups_done: int
    groups_behind: int
    items_copied: int
    bytes_copied: int
    rate_bytes_per_s: float
    eta_seconds: float
    handoff_items: int
    last_round_finished_ms: int
    def __init__(self, running: _Optional[bool] = ..., rounds_completed: _Optional[int] = ..., groups_total: _Optional[int] = ..., groups_done: _Optional[int] = ..., groups_behind: _Optional[int] = ..., items_copied: _Optional[int] = ..., bytes_copied: _Optional[int] = ..., rate_bytes_per_s: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., handoff_items: _Optional[int] = ..., last_round_finished_ms: _Optional[int] = ...) -> None: ...

class ScrubStats(_message.Message):
    __slots__ = ("frames_checked", "bytes_checked", "corrupt_found", "passes_completed")
    FRAMES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    BYTES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_FOUND_FIELD_NUMBER: _ClassVar[int]
    PASSES_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    frames_checked: int
    bytes_checked: int
    corrupt_found: int
    passes_completed: int
    def __init__(self, frames_checked: _Optional[int] = ..., bytes_checked: _Optional[int] = ..., corrupt_found: _Optional[int] = ..., passes_completed: _Optional[int] = ...) -> None: ...

class GcStats(_message.Message):
    __slots__ = ("tombstones_removed", "chunks_removed")
    TOMBSTONES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    tombstones_removed: int
    chunks_removed: int
    def __init__(self, tombstones_removed: _Optional[int] = ..., chunks_removed: _Optional[int] = ...) -> None: ...

class LifecycleStats(_message.Message):
    __slots__ = ("sweeps", "expired", "noncurrent_removed", "markers_removed", "uploads_aborted", "kept_by_lock", "transitioned")
    SWEEPS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    NONCURRENT_REMOVED_FIELD_NUMBER: _ClassVar[int]
    MARKERS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_ABORTED_FIELD_NUMBER: _ClassVar[int]
    KEPT_BY_LOCK_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONED_FIELD_NUMBER: _ClassVar[int]
    sweeps: int
    expired: int
    noncurrent_removed: int
    markers_removed: int
    uploads_aborted: int
    kept_by_lock: int
    transitioned: int
    def __init__(self, sweeps: _Optional[int] = ..., expired: _Optional[int] = ..., noncurrent_removed: _Optional[int] = ..., markers_removed: _Optional[int] = ..., uploads_aborted: _Optional[int] = ..., kept_by_lock: _Optional[int] = ..., transitioned: _Optional[int] = ...) -> None: ...

class EnergyKind(_message.Message):
    __slots__ = ("kind", "turns", "bytes", "green_bytes", "waits", "waiting", "joules", "green_joules")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    GREEN_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAITS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    JOULES_FIELD_NUMBER: _ClassVar[int]
    GREEN_JOULES_FIELD_NUMBER: _ClassVar[int]
    kind: str
    turns: int
    bytes: int
    green_bytes: int
    waits: int
    waiting: bool
    joules: float
    green_joules: float
    def __init__(self, kind: _Optional[str] = ..., turns: _Optional[int] = ..., bytes: _Optional[int] = ..., green_bytes: _Optional[int] = ..., waits: _Optional[int] = ..., waiting: _Optional[bool] = ..., joules: _Optional[float] = ..., green_joules: _Optional[float] = ...) -> None: ...

class EnergyStatus(_message.Message):
    __slots__ = ("source", "state", "has_surplus", "surplus_w", "has_carbon", "carbon_g_per_kwh", "problem", "next_green", "kinds", "idle_w")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HAS_SURPLUS_FIELD_NUMBER: _ClassVar[int]
    SURPLUS_W_FIELD_NUMBER: _ClassVar[int]
    HAS_CARBON_FIELD_NUMBER: _ClassVar[int]
    CARBON_G_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    NEXT_GREEN_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    IDLE_W_FIELD_NUMBER: _ClassVar[int]
    source: str
    state: str
    has_surplus: bool
    surplus_w: float
    has_carbon: bool
    carbon_g_per_kwh: float
    problem: str
    next_green: float
    kinds: _containers.RepeatedCompositeFieldContainer[EnergyKind]
    idle_w: float
    def __init__(self, source: _Optional[str] = ..., state: _Optional[str] = ..., has_surplus: _Optional[bool] = ..., surplus_w: _Optional[float] = ..., has_carbon: _Optional[bool] = ..., carbon_g_per_kwh: _Optional[float] = ..., problem: _Optional[str] = ..., next_green: _Optional[float] = ..., kinds: _Optional[_Iterable[_Union[EnergyKind, _Mapping]]] = ..., idle_w: _Optional[float] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("info", "peers", "repair", "scrub", "gc", "capacity", "disk_total", "disk_free", "node_state", "energy", "lifecycle")
    INFO_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    SCRUB_FIELD_NUMBER: _ClassVar[int]
    GC_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_FIELD_NUMBER: _ClassVar[int]
    NODE_STATE_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    info: NodeInfo
    peers: _containers.RepeatedCompositeFieldContainer[PeerView]
    repair: RepairProgress
    scrub: ScrubStats
    gc: GcStats
    capacity: int
    disk_total: int
    disk_free: int
    node_state: str
    energy: EnergyStatus
    lifecycle: LifecycleStats
    def __init__(self, info: _Optional[_Union[NodeInfo, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[PeerView, _Mapping]]] = ..., repair: _Optional[_Union[RepairProgress, _Mapping]] = ..., scrub: _Optional[_Union[ScrubStats, _Mapping]] = ..., gc: _Optional[_Union[GcStats, _Mapping]] = ..., capacity: _Optional[int] = ..., disk_total: _Optional[int] = ..., disk_free: _Optional[int] = ..., node_state: _Optional[str] = ..., energy: _Optional[_Union[EnergyStatus, _Mapping]] = ..., lifecycle: _Optional[_Union[LifecycleStats, _Mapping]] = ...) -> None: ...

class RepairRequest(_message.Message):
    __slots__ = ("start_round_now",)
    START_ROUND_NOW_FIELD_NUMBER: _ClassVar[int]
    start_round_now: bool
    def __init__(self, start_round_now: _Optional[bool] = ...) -> None: ...

class HasChunksRequest(_message.Message):
    __slots__ = ("bucket", "digests", "policy")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    digests: _containers.RepeatedScalarFieldContainer[bytes]
    policy: str
    def __init__(self, bucket: _Optional[str] = ..., digests: _Optional[_Iterable[bytes]] = ..., policy: _Optional[str] = ...) -> None: ...

class SyncGroup(_message.Message):
    __slots__ = ("policy", "partition", "bucket", "generation")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    policy: str
    partition: int
    bucket: str
    generation: str
    def __init__(self, policy: _Optional[str] = ..., partition: _Optional[int] = ..., bucket: _Optional[str] = ..., generation: _Optional[str] = ...) -> None: ...

class SyncSummaryRequest(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[SyncGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[SyncGroup, _Mapping]]] = ...) -> None: ...

class SyncSummary(_message.Message):
    __slots__ = ("group", "digest", "count")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    group: SyncGroup
    digest: bytes
    count: int
    def __init__(self, group: _Optional[_Union[SyncGroup, _Mapping]] = ..., digest: _Optional[bytes] = ..., count: _Optional[int] = ...) -> None: ...

class SyncSummaryReply(_message.Message):
    __slots__ = ("summaries",)
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    summaries: _containers.RepeatedCompositeFieldContainer[SyncSummary]
    def __init__(self, summaries: _Optional[_Iterable[_Union[SyncSummary, _Mapping]]] = ...) -> None: ...

class SyncListingRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: SyncGroup
    def __init__(self, group: _Optional[_Union[SyncGroup, _Mapping]] = ...) -> None: ...

class IndexEntry(_message.Message):
    __slots__ = ("key", "version", "writer", "deleted")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    key: str
    version: int
    writer: str
    deleted: bool
    def __init__(self, key: _Optional[str] = ..., version: _Optional[int] = ..., writer: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...

class ReferencedChunksRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: str
    def __init__(self, policy: _Optional[str] = ...) -> None: ...

class ReferencedChunksReply(_message.Message):
    __slots__ = ("digests",)
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, digests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SyncListingReply(_message.Message):
    __slots__ = ("chunks", "entries")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedScalarFieldContainer[bytes]
    entries: _containers.RepeatedCompositeFieldContainer[IndexEntry]
    def __init__(self, chunks: _Optional[_Iterable[bytes]] = ..., entries: _Optional[_Iterable[_Union[IndexEntry, _Mapping]]] = ...) -> None: ...

class HasChunksReply(_message.Message):
    __slots__ = ("present",)
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    present: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, present: _Optional[_Iterable[bool]] = ...) -> None: ...

class PutChunkReply(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    def __init__(self, stored: _Optional[bool] = ...) -> None: ...

class PutManifestRequest(_message.Message):
    __slots__ = ("manifest",)
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    manifest: Manifest
    def __init__(self, manifest: _Optional[_Union[Manifest, _Mapping]] = ...) -> None: ...

class PutManifestReply(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    def __init__(self, applied: _Optional[bool] = ...) -> None: ...

class GetManifestRequest(_message.Message):
    __slots__ = ("bucket", "key", "generation")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    generation: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., generation: _Optional[str] = ...) -> None: ...

class GetManifestReply(_message.Message):
    __slots__ = ("found", "manifest")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    found: bool
    manifest: Manifest
    def __init__(self, found: _Optional[bool] = ..., manifest: _Optional[_Union[Manifest, _Mapping]] = ...) -> None: ...

class ListIndexRequest(_message.Message):
    __slots__ = ("bucket", "prefix", "start_after", "limit", "generation")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    prefix: str
    start_after: str
    limit: int
    generation: str
    def __init__(self, bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., start_after: _Optional[str] = ..., limit: _Optional[int] = ..., generation: _Optional[str] = ...) -> None: ...

class ListIndexReply(_message.Message):
    __slots__ = ("entries", "truncated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Manifest]
    truncated: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[Manifest, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class GetBucketRecordRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetBucketRecordReply(_message.Message):
    __slots__ = ("found", "bucket")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    found: bool
    bucket: Bucket
    def __init__(self, found: _Optional[bool] = ..., bucket: _Optional[_Union[Bucket, _Mapping]] = ...) -> None: ...

class DeleteBucketRecordRequest(_message.Message):
    __slots__ = ("name", "tombstone", "listing", "tenant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONE_FIELD_NUMBER: _ClassVar[int]
    LISTING_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tombstone: BucketTombstone
    listing: bool
    tenant: str
    def __init__(self, name: _Optional[str] = ..., tombstone: _Optional[_Union[BucketTombstone, _Mapping]] = ..., listing: _Optional[bool] = ..., tenant: _Optional[str] = ...) -> None: ...

class ListBucketRecordsRequest(_message.Message):
    __slots__ = ("tombstones", "listing", "policy", "tenant")
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    LISTING_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tombstones: bool
    listing: bool
    policy: str
    tenant: str
    def __init__(self, tombstones: _Optional[bool] = ..., listing: _Optional[bool] = ..., policy: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class ListBucketRecordsReply(_message.Message):
    __slots__ = ("buckets", "tombstones")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    tombstones: _containers.RepeatedCompositeFieldContainer[BucketTombstone]
    def __init__(self, buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ..., tombstones: _Optional[_Iterable[_Union[BucketTombstone, _Mapping]]] = ...) -> None: ...

class InventoryRequest(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    def __init__(self, bucket: _Optional[str] = ...) -> None: ...

class InventoryBucket(_message.Message):
    __slots__ = ("bucket", "keys", "chunks")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    chunks: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, bucket: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., chunks: _Optional[_Iterable[bytes]] = ...) -> None: ...

class InventoryReply(_message.Message):
    __slots__ = ("node_id", "buckets", "all_chunks")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    ALL_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    buckets: _containers.RepeatedCompositeFieldContainer[InventoryBucket]
    all_chunks: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, node_id: _Optional[str] = ..., buckets: _Optional[_Iterable[_Union[InventoryBucket, _Mapping]]] = ..., all_chunks: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PutObjectHeader(_message.Message):
    __slots__ = ("bucket", "key", "content_type", "user_metadata")
    class UserMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    USER_METADATA_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    content_type: str
    user_metadata: _containers.ScalarMap[str, str]
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., content_type: _Optional[str] = ..., user_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PutObjectTrailer(_message.Message):
    __slots__ = ("blake3",)
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    blake3: bytes
    def __init__(self, blake3: _Optional[bytes] = ...) -> None: ...

class PutSmallObjectRequest(_message.Message):
    __slots__ = ("header", "data", "blake3")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    header: PutObjectHeader
    data: bytes
    blake3: bytes
    def __init__(self, header: _Optional[_Union[PutObjectHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., blake3: _Optional[bytes] = ...) -> None: ...

class PutObjectReply(_message.Message):
    __slots__ = ("manifest", "sites")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    manifest: Manifest
    sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, manifest: _Optional[_Union[Manifest, _Mapping]] = ..., sites: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateBucketRequest(_message.Message):
    __slots__ = ("name", "policy", "owner", "object_lock")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    OBJECT_LOCK_FIELD_NUMBER: _ClassVar[int]
    name: str
    policy: str
    owner: str
    object_lock: bool
    def __init__(self, name: _Optional[str] = ..., policy: _Optional[str] = ..., owner: _Optional[str] = ..., object_lock: _Optional[bool] = ...) -> None: ...

class HeadBucketRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListBucketsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBucketsReply(_message.Message):
    __slots__ = ("buckets",)
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    def __init__(self, buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ...) -> None: ...

class DeleteBucketRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class HeadObjectRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ...) -> None: ...

class GetObjectRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id", "offset")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    offset: int
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class GetObjectReply(_message.Message):
    __slots__ = ("manifest", "chunk", "frame")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    manifest: Manifest
    chunk: int
    frame: bytes
    def __init__(self, manifest: _Optional[_Union[Manifest, _Mapping]] = ..., chunk: _Optional[int] = ..., frame: _Optional[bytes] = ...) -> None: ...

class DeleteObjectRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id", "bypass_governance")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    BYPASS_GOVERNANCE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    bypass_governance: bool
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., bypass_governance: _Optional[bool] = ...) -> None: ...

class DeleteObjectReply(_message.Message):
    __slots__ = ("version", "version_id", "delete_marker")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_MARKER_FIELD_NUMBER: _ClassVar[int]
    version: int
    version_id: str
    delete_marker: bool
    def __init__(self, version: _Optional[int] = ..., version_id: _Optional[str] = ..., delete_marker: _Optional[bool] = ...) -> None: ...

class CopyObjectRequest(_message.Message):
    __slots__ = ("source_bucket", "source_key", "bucket", "key", "source_version_id")
    SOURCE_BUCKET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KEY_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    source_bucket: str
    source_key: str
    bucket: str
    key: str
    source_version_id: str
    def __init__(self, source_bucket: _Optional[str] = ..., source_key: _Optional[str] = ..., bucket: _Optional[str] = ..., key: _Optional[str] = ..., source_version_id: _Optional[str] = ...) -> None: ...

class BucketVersioningRequest(_message.Message):
    __slots__ = ("bucket", "status")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    status: str
    def __init__(self, bucket: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class BucketVersioning(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class ObjectLockConfig(_message.Message):
    __slots__ = ("bucket", "enabled", "mode", "days", "years")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    enabled: bool
    mode: str
    days: int
    years: int
    def __init__(self, bucket: _Optional[str] = ..., enabled: _Optional[bool] = ..., mode: _Optional[str] = ..., days: _Optional[int] = ..., years: _Optional[int] = ...) -> None: ...

class ObjectRetentionRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id", "mode", "retain_until_ms", "bypass_governance")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RETAIN_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    BYPASS_GOVERNANCE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    mode: str
    retain_until_ms: int
    bypass_governance: bool
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., mode: _Optional[str] = ..., retain_until_ms: _Optional[int] = ..., bypass_governance: _Optional[bool] = ...) -> None: ...

class ObjectRetention(_message.Message):
    __slots__ = ("mode", "retain_until_ms")
    MODE_FIELD_NUMBER: _ClassVar[int]
    RETAIN_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    retain_until_ms: int
    def __init__(self, mode: _Optional[str] = ..., retain_until_ms: _Optional[int] = ...) -> None: ...

class ObjectLegalHoldRequest(_message.Message):
    __slots__ = ("bucket", "key", "version_id", "on")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    key: str
    version_id: str
    on: bool
    def __init__(self, bucket: _Optional[str] = ..., key: _Optional[str] = ..., version_id: _Optional[str] = ..., on: _Optional[bool] = ...) -> None: ...

class ObjectLegalHold(_message.Message):
    __slots__ = ("on",)
    ON_FIELD_NUMBER: _ClassVar[int]
    on: bool
    def __init__(self, on: _Optional[bool] = ...) -> None: ...

class LifecycleRule(_message.Message):
    __slots__ = ("id", "enabled", "prefix", "tags", "size_greater_than", "size_less_than", "expiration_days", "expiration_date_ms", "expired_object_delete_marker", "noncurrent_days", "newer_noncurrent", "abort_multipart_days", "transition_days", "transition_class")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SIZE_GREATER_THAN_FIELD_NUMBER: _ClassVar[int]
    SIZE_LESS_THAN_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_DAYS_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_DATE_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_OBJECT_DELETE_MARKER_FIELD_NUMBER: _ClassVar[int]
    NONCURRENT_DAYS_FIELD_NUMBER: _ClassVar[int]
    NEWER_NONCURRENT_FIELD_NUMBER: _ClassVar[int]
    ABORT_MULTIPART_DAYS_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_DAYS_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_CLASS_FIELD_NUMBER: _ClassVar[int]
    id: str
    enabled: bool
    prefix: str
    tags: _containers.ScalarMap[str, str]
    size_greater_than: int
    size_less_than: int
    expiration_days: int
    expiration_date_ms: int
    expired_object_delete_marker: bool
    noncurrent_days: int
    newer_noncurrent: int
    abort_multipart_days: int
    transition_days: int
    transition_class: str
    def __init__(self, id: _Optional[str] = ..., enabled: _Optional[bool] = ..., prefix: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., size_greater_than: _Optional[int] = ..., size_less_than: _Optional[int] = ..., expiration_days: _Optional[int] = ..., expiration_date_ms: _Optional[int] = ..., expired_object_delete_marker: _Optional[bool] = ..., noncurrent_days: _Optional[int] = ..., newer_noncurrent: _Optional[int] = ..., abort_multipart_days: _Optional[int] = ..., transition_days: _Optional[int] = ..., transition_class: _Optional[str] = ...) -> None: ...

class BucketLifecycle(_message.Message):
    __slots__ = ("bucket", "rules")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    rules: _containers.RepeatedCompositeFieldContainer[LifecycleRule]
    def __init__(self, bucket: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[LifecycleRule, _Mapping]]] = ...) -> None: ...

class ListObjectVersionsRequest(_message.Message):
    __slots__ = ("bucket", "prefix", "delimiter", "key_marker", "version_id_marker", "max_keys")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    KEY_MARKER_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_MARKER_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    prefix: str
    delimiter: str
    key_marker: str
    version_id_marker: str
    max_keys: int
    def __init__(self, bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., delimiter: _Optional[str] = ..., key_marker: _Optional[str] = ..., version_id_marker: _Optional[str] = ..., max_keys: _Optional[int] = ...) -> None: ...

class ObjectVersion(_message.Message):
    __slots__ = ("key", "version_id", "is_latest", "delete_marker", "size", "etag", "version", "content_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    IS_LATEST_FIELD_NUMBER: _ClassVar[int]
    DELETE_MARKER_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str
    version: int
    content_type: str
    def __init__(self, key: _Optional[str] = ..., version_id: _Optional[str] = ..., is_latest: _Optional[bool] = ..., delete_marker: _Optional[bool] = ..., size: _Optional[int] = ..., etag: _Optional[str] = ..., version: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class ListObjectVersionsReply(_message.Message):
    __slots__ = ("versions", "common_prefixes", "is_truncated", "next_key_marker", "next_version_id_marker")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    COMMON_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    IS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_KEY_MARKER_FIELD_NUMBER: _ClassVar[int]
    NEXT_VERSION_ID_MARKER_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ObjectVersion]
    common_prefixes: _containers.RepeatedScalarFieldContainer[str]
    is_truncated: bool
    next_key_marker: str
    next_version_id_marker: str
    def __init__(self, versions: _Optional[_Iterable[_Union[ObjectVersion, _Mapping]]] = ..., common_prefixes: _Optional[_Iterable[str]] = ..., is_truncated: _Optional[bool] = ..., next_key_marker: _Optional[str] = ..., next_version_id_marker: _Optional[str] = ...) -> None: ...

class ListObjectsRequest(_message.Message):
    __slots__ = ("bucket", "prefix", "delimiter", "start_after", "continuation_token", "max_keys")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    prefix: str
    delimiter: str
    start_after: str
    continuation_token: str
    max_keys: int
    def __init__(self, bucket: _Optional[str] = ..., prefix: _Optional[str] = ..., delimiter: _Optional[str] = ..., start_after: _Optional[str] = ..., continuation_token: _Optional[str] = ..., max_keys: _Optional[int] = ...) -> None: ...

class ObjectSummary(_message.Message):
    __slots__ = ("key", "size", "etag", "version", "content_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    size: int
    etag: str
    version: int
    content_type: str
    def __init__(self, key: _Optional[str] = ..., size: _Optional[int] = ..., etag: _Optional[str] = ..., version: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class ChunkKeyRequest(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    def __init__(self, bucket: _Optional[str] = ...) -> None: ...

class ChunkKeyReply(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class ListObjectsReply(_message.Message):
    __slots__ = ("contents", "common_prefixes", "is_truncated", "next_continuation_token")
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    COMMON_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    IS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_CONTINUATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    contents: _containers.RepeatedCompositeFieldContainer[ObjectSummary]
    common_prefixes: _containers.RepeatedScalarFieldContainer[str]
    is_truncated: bool
    next_continuation_token: str
    def __init__(self, contents: _Optional[_Iterable[_Union[ObjectSummary, _Mapping]]] = ..., common_prefixes: _Optional[_Iterable[str]] = ..., is_truncated: _Optional[bool] = ..., next_continuation_token: _Optional[str] = ...) -> None: ...
