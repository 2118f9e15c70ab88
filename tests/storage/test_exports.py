"""The public surface of maillage.storage: everything in __all__ exists and reports that module."""

from __future__ import annotations

import maillage.storage as storage


def test_all_names_exist_and_are_public() -> None:
    assert len(storage.__all__) == len(set(storage.__all__))
    for name in storage.__all__:
        assert hasattr(storage, name), name
        obj = getattr(storage, name)
        if isinstance(obj, type):
            assert obj.__module__ == "maillage.storage", name


def test_promised_api_is_exported() -> None:
    promised = {
        "StorageError", "CorruptFrame", "ChunkNotFound", "DiskFull", "StorageUnavailable",
        "ChunkStore", "ChunkStoreStats", "HybridClock",
        "version_time", "ChunkRef", "Manifest", "encode_manifest", "decode_manifest",
        "BucketRecord", "MetaStore",
    }
    assert promised <= set(storage.__all__)


def test_error_hierarchy() -> None:
    for cls in (storage.CorruptFrame, storage.ChunkNotFound, storage.DiskFull,
                storage.StorageUnavailable, storage.InvalidName, storage.CorruptRecord):
        assert issubclass(cls, storage.StorageError)
    assert issubclass(storage.InvalidName, ValueError)


def test_a_stored_corrupt_frame_is_also_the_wire_error() -> None:
    from maillage.proto import frame

    assert issubclass(storage.CorruptFrame, frame.CorruptFrame)
