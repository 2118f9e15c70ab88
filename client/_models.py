"""Values the SDK returns: frozen, typed, and free of protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Bucket:
    name: str
    policy: str
    created: int
    owner: str = ""
    generation: str = ""           # unique id of this creation of the name: a re-created name is another bucket


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str                      # hex BLAKE3 of the whole object; for an object composed from N parts (S3
                                   # multipart): "<hex BLAKE3 of its chunk list>-N" (maillage.proto.etags)
    version: int                   # hybrid logical clock
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    version_id: str = ""           # on a versioned bucket: this version's id (24 hex digits or "null")
    storage_class: str = "STANDARD"  # or the cold class a lifecycle Transition moved it to (STANDARD_IA...)


@dataclass(frozen=True)
class PutResult:
    bucket: str
    key: str
    size: int
    etag: str
    version: int
    sites: tuple[str, ...]         # sites that acknowledged the data, fsync'd
    version_id: str = ""           # on a versioned bucket: the version it made


@dataclass(frozen=True)
class ObjectSummary:
    key: str
    size: int
    etag: str
    version: int
    content_type: str


@dataclass(frozen=True)
class ListPage:
    objects: tuple[ObjectSummary, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_token: str


@dataclass(frozen=True)
class ObjectVersion:
    """One version of a key, or a delete marker, on a versioned bucket."""
    key: str
    version_id: str                # 24 hex digits, or "null"
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str
    version: int                   # hybrid logical clock of its write
    content_type: str


@dataclass(frozen=True)
class LockConfiguration:
    """A lock-enabled bucket's default retention: `mode` "" (none), GOVERNANCE or COMPLIANCE, for
    `days` or `years`."""
    mode: str = ""
    days: int = 0
    years: int = 0


@dataclass(frozen=True)
class Retention:
    """A version's retention: GOVERNANCE or COMPLIANCE until `retain_until` (timezone-aware, UTC)."""
    mode: str
    retain_until: datetime


@dataclass(frozen=True)
class LifecycleRule:
    """One lifecycle rule: a filter (every condition given must hold) and at least one action."""
    id: str = ""
    enabled: bool = True
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_greater_than: int | None = None
    size_less_than: int | None = None
    expiration_days: int | None = None          # the current version expires this many days after its write
    expiration_date: datetime | None = None     # ... or from this date (midnight UTC)
    expired_object_delete_marker: bool = False  # a delete marker left alone is removed
    noncurrent_days: int | None = None          # noncurrent versions go this many days after they became so
    newer_noncurrent: int = 0                   # ... but for this many newest ones
    abort_multipart_days: int | None = None     # unfinished multipart uploads are aborted after this many days
    transition_days: int | None = None          # the current version moves to `transition_class` after this many
    transition_class: str = ""                  # ... days: STANDARD_IA or GLACIER_IR (its policy's cold copies)


@dataclass(frozen=True)
class VersionPage:
    versions: tuple[ObjectVersion, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_key_marker: str
    next_version_id_marker: str


@dataclass(frozen=True)
class Replica:
    node: str
    site: str
    location: str


@dataclass(frozen=True)
class ObjectPlacement:
    """Where a key's manifest lives under its bucket's policy, and why."""
    bucket: str
    key: str
    policy: str
    allow: tuple[str, ...]
    replicas_required: int
    partition: int
    index_replicas: tuple[Replica, ...]
    handoffs: tuple[Replica, ...]
