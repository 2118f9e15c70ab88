"""The chunk bound in the chunk store (issue 22, item 4): a frame declaring more than
`MAX_CHUNK_PLAIN` is never stored, and one found at rest (written by hand, by an older node, or a
file grown past any chunk's size) is refused on read, unread where the file's size says so, and
quarantined, as scrub and every read see it."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import blake3
import pytest
import zstandard

from maillage.proto.frame import CODEC_ZSTD, MAX_CHUNK_PLAIN, encode_frame, read_frame_header
from maillage.storage import ChunkStore, CorruptFrame, DataKeys, MetaStore, NodeKey
from maillage.storage.chunks import MAX_CHUNK_FILE, _sealed_file

GIB = 1 << 30


def _bomb() -> tuple[bytes, bytes]:
    """A 32 KiB frame of 1 GiB of zeros, exactly what it says (its digest is the real one)."""
    out = io.BytesIO()
    zeros = bytes(1 << 20)
    hasher = blake3.blake3()
    with zstandard.ZstdCompressor(level=1, write_content_size=True).stream_writer(out, size=GIB, closefd=False) as w:
        for _ in range(GIB >> 20):
            w.write(zeros)
            hasher.update(zeros)
    payload, digest = out.getvalue(), hasher.digest()
    prefix = struct.pack(">4sBBHQQ32s8s", b"MLGF", 1, CODEC_ZSTD, 0, GIB, len(payload), digest,
                         blake3.blake3(payload).digest(length=8))
    return digest, prefix + struct.pack(">I", zlib.crc32(prefix)) + payload


@pytest.fixture(scope="module")
def bomb() -> tuple[bytes, bytes]:
    return _bomb()


@pytest.fixture(params=["plain", "encrypted"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "plain":
        yield ChunkStore(tmp_path / "chunks", fsync=False)
        return
    meta = MetaStore(tmp_path / "meta")
    keys = DataKeys(meta, NodeKey.load_or_create(tmp_path / "data.key"))
    meta.use_data_keys(keys)
    yield ChunkStore(tmp_path / "chunks", fsync=False, keys=keys)
    meta.close()


def _plant(store: ChunkStore, digest: bytes, frame: bytes) -> Path:
    """Put `frame` at rest under `digest` as the store would have sealed it, bypassing `put`."""
    path = store.path_of(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    pieces = (frame,) if store.keys is None else _sealed_file(store.keys, store.keys.policy_key("p"), frame, digest)
    path.write_bytes(b"".join(pieces))
    return path


def _quarantined(store: ChunkStore, digest: bytes) -> bool:
    return not store.has(digest) and any(p.name.startswith(digest.hex()) for p in (store.root / "quarantine").iterdir())


def test_the_1_gib_bomb_is_never_stored(store: ChunkStore, bomb: tuple[bytes, bytes]) -> None:
    digest, frame = bomb
    with pytest.raises(CorruptFrame, match=f"declares {GIB} plain bytes, above the largest chunk"):
        store.put(frame, "p")
    assert not store.has(digest) and store.stats().chunks == 0
    assert not list((store.root / "tmp").iterdir())


def test_a_bomb_at_rest_is_refused_on_read_and_quarantined(store: ChunkStore, bomb: tuple[bytes, bytes]) -> None:
    digest, frame = bomb
    _plant(store, digest, frame)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFrame, match="above the largest chunk any node takes"):
            store.get(digest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"reading the bomb allocated {peak} bytes"
    assert _quarantined(store, digest)


def test_a_file_larger_than_any_chunk_is_refused_unread(store: ChunkStore) -> None:
    digest = bytes(range(32))
    path = _plant(store, digest, encode_frame(b"x"))
    with open(path, "r+b") as f:
        f.truncate(MAX_CHUNK_FILE + 1)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFrame, match=f"file of {MAX_CHUNK_FILE + 1} bytes, larger than the file of any"):
            store.get(digest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"the oversized file was read ({peak} bytes allocated)"
    assert _quarantined(store, digest)


def test_the_largest_chunk_stored_raw_still_reads(store: ChunkStore) -> None:
    plain = os.urandom(MAX_CHUNK_PLAIN)
    frame = encode_frame(plain)
    header = read_frame_header(frame)
    assert header.stored_length == MAX_CHUNK_PLAIN  # incompressible: the largest frame there is
    assert store.put(frame, "p")
    size = store.path_of(header.digest).stat().st_size
    assert size <= MAX_CHUNK_FILE and (store.keys is None or size == MAX_CHUNK_FILE)
    assert store.get(header.digest) == frame
