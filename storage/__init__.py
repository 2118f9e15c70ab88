"""maillage.storage: one node's storage engine (no network).

* :class:`ChunkStore` — frames as files, written crash-safely, verified on read;
* :class:`MetaStore` — manifests, buckets and chunk references in RocksDB with group commit;
* :class:`HybridClock` — versions that always exceed the ones they replace;
* :class:`NodeKey`, :class:`DataKeys` — encryption at rest: chunk files, inline object bytes and
  user metadata are AES-256-GCM encrypted with data keys wrapped by a node key kept outside the
  data directory (see ``keys.py``); :func:`open_chunk_file` reads a chunk file's frame.

Frames (how a chunk is stored and sent) are the wire codec of :mod:`maillage.proto.frame`.

Layering: this package imports only the standard library, blake3, zstandard, rocksdict,
cryptography (AES-GCM) and the wire codec; it knows no network (checked by import-linter).
"""

from maillage.storage.chunks import ChunkStore, ChunkStoreStats, open_chunk_file
from maillage.storage.datadir import DATA_FORMAT, DataFormatError, check_data_format, read_data_format
from maillage.storage.errors import (
    ChunkNotFound,
    CorruptFrame,
    CorruptRecord,
    DiskFull,
    InvalidName,
    StorageError,
    StorageUnavailable,
)
from maillage.storage.hlc import HybridClock, version_time
from maillage.storage.keys import NODE_KEY_FILE, DataKeys, KeyWrapper, NodeKey
from maillage.storage.manifest import (
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
from maillage.storage.metadata import MetaStore, MetaStoreStats

__all__ = [
    # errors
    "StorageError",
    "CorruptFrame",
    "CorruptRecord",
    "ChunkNotFound",
    "DiskFull",
    "StorageUnavailable",
    "InvalidName",
    # the data directory's format marker
    "DATA_FORMAT",
    "DataFormatError",
    "check_data_format",
    "read_data_format",
    # chunk store
    "ChunkStore",
    "ChunkStoreStats",
    "open_chunk_file",
    # keys (encryption at rest)
    "NODE_KEY_FILE",
    "KeyWrapper",
    "NodeKey",
    "DataKeys",
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
