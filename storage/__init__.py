"""maillage.storage: one node's storage engine (no network).

* :mod:`frame` — the versioned, self-verifying frame a chunk is stored and sent as;
* :class:`ChunkStore` — frames as files, written crash-safely, verified on read;
* :class:`MetaStore` — manifests, buckets and chunk references in RocksDB with group commit;
* :class:`HybridClock` — versions that always exceed the ones they replace.

Layering: this package imports only the standard library, blake3, zstandard and rocksdict.
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
from .frame import (
    CODEC_RAW,
    CODEC_ZSTD,
    DIGEST_SIZE,
    FRAME_HEADER_SIZE,
    FRAME_VERSION,
    MAX_PLAIN_LENGTH,
    FrameHeader,
    chunk_digest,
    decode_frame,
    encode_frame,
    read_frame_header,
    verify_frame,
)
from .hlc import HybridClock, version_time
from .manifest import (
    MAX_KEY_BYTES,
    BucketRecord,
    ChunkRef,
    Manifest,
    decode_bucket,
    decode_manifest,
    encode_bucket,
    encode_manifest,
    manifest_order,
    validate_bucket_name,
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
    # frames
    "DIGEST_SIZE",
    "FRAME_HEADER_SIZE",
    "FRAME_VERSION",
    "CODEC_RAW",
    "CODEC_ZSTD",
    "MAX_PLAIN_LENGTH",
    "FrameHeader",
    "chunk_digest",
    "encode_frame",
    "read_frame_header",
    "decode_frame",
    "verify_frame",
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
    "encode_manifest",
    "decode_manifest",
    "manifest_order",
    "encode_bucket",
    "decode_bucket",
    "validate_bucket_name",
    "validate_key",
    # metadata
    "MetaStore",
    "MetaStoreStats",
]
