"""maillage.storage: one node's storage engine (no network).

* :class:`ChunkStore` — frames as files, written crash-safely, verified on read;
* :class:`MetaStore` — manifests, buckets and chunk references in RocksDB with group commit;
* :class:`HybridClock` — versions that always exceed the ones they replace.

Frames (how a chunk is stored and sent) are the wire codec of :mod:`maillage.proto.frame`.

Layering: this package imports only the standard library, blake3, zstandard, rocksdict and the
wire codec; it knows no network (checked by import-linter).
"""

from .chunks import ChunkStore, ChunkStoreStats
from .errors import (
    ChunkNotFound,
    CorruptFrame,
    CorruptRecord,
    DiskFull,
    InvalidName,
    StorageError,
    StorageUnavailable,
)
from .hlc import HybridClock, version_time
from .manifest import (
    MAX_KEY_BYTES,
    BucketRecord,
    BucketTombstone,
    ChunkRef,
    Manifest,
    decode_bucket,
    decode_bucket_tombstone,
    decode_manifest,
    encode_bucket,
    encode_bucket_tombstone,
    encode_manifest,
    manifest_order,
    validate_bucket_name,
    validate_generation,
    validate_key,
)
from .metadata import MetaStore, MetaStoreStats

__all__ = [
    # errors
    "StorageError",
    "CorruptFrame",
    "CorruptRecord",
    "ChunkNotFound",
    "DiskFull",
    "StorageUnavailable",
    "InvalidName",
    # chunk store
    "ChunkStore",
    "ChunkStoreStats",
    # clock
    "HybridClock",
    "version_time",
    # manifests and buckets
    "MAX_KEY_BYTES",
    "ChunkRef",
    "Manifest",
    "BucketRecord",
    "BucketTombstone",
    "encode_manifest",
    "decode_manifest",
    "manifest_order",
    "encode_bucket",
    "decode_bucket",
    "encode_bucket_tombstone",
    "decode_bucket_tombstone",
    "validate_bucket_name",
    "validate_generation",
    "validate_key",
    # metadata
    "MetaStore",
    "MetaStoreStats",
]
