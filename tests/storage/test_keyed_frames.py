"""The chunk store holds keyed frames without their key: it checks all but the name, and still
refuses (and quarantines) a damaged one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maillage.proto.frame import chunk_digest, decode_frame, encode_frame
from maillage.proto.naming import chunk_key
from maillage.storage import ChunkStore, CorruptFrame, DataKeys, MetaStore, NodeKey

KEY = chunk_key("42" * 32, "hospital", "france-only")


@pytest.fixture(params=["plain", "encrypted"])
def store(tmp_path: Path, request):
    if request.param == "plain":
        yield ChunkStore(tmp_path / "chunks", fsync=False)
        return
    meta = MetaStore(tmp_path / "meta")
    keys = DataKeys(meta, NodeKey.load_or_create(tmp_path / "data.key"))
    meta.use_data_keys(keys)
    yield ChunkStore(tmp_path / "chunks", fsync=False, keys=keys)
    meta.close()


@pytest.mark.parametrize("data", [os.urandom(5000), b"compressible " * 500], ids=["raw", "zstd"])
def test_a_keyed_frame_is_stored_and_read_back_as_is(store: ChunkStore, data: bytes) -> None:
    frame = encode_frame(data, key=KEY)
    digest = chunk_digest(data, KEY)
    assert store.put(frame, "france-only")
    assert store.get(digest) == frame
    assert decode_frame(store.get(digest), expected_digest=digest, key=KEY) == data


@pytest.mark.parametrize("data", [os.urandom(5000), b"compressible " * 500], ids=["raw", "zstd"])
def test_a_damaged_keyed_frame_is_refused_without_the_key(store: ChunkStore, data: bytes) -> None:
    frame = bytearray(encode_frame(data, key=KEY))
    frame[-10] ^= 0x04  # a payload bit: the payload check catches it, keyed raw frames included
    with pytest.raises(CorruptFrame):
        store.put(bytes(frame), "france-only")
    assert not store.has(chunk_digest(data, KEY))
