"""Chunk store: idempotent durable puts, verified reads, quarantine, partitions, disk errors."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maillage.proto.frame import chunk_digest, decode_frame, encode_frame, read_frame_header
from maillage.storage import ChunkNotFound, ChunkStore, CorruptFrame, DiskFull, StorageUnavailable
from maillage.testing.examples import examples


def _frame(i: int, size: int = 1000) -> tuple[bytes, bytes]:
    data = i.to_bytes(8, "big") + os.urandom(size)
    return chunk_digest(data), encode_frame(data)


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    return ChunkStore(tmp_path / "chunks")


def test_put_get_has_delete(store: ChunkStore) -> None:
    digest, frame = _frame(1)
    assert not store.has(digest)
    with pytest.raises(ChunkNotFound):
        store.get(digest)
    assert store.put(frame) is True
    assert store.has(digest)
    assert store.get(digest) == frame
    assert store.path_of(digest).read_bytes() == frame
    assert store.stats().chunks == 1 and store.stats().stored_bytes == len(frame)
    assert store.delete(digest) is True
    assert store.delete(digest) is False
    assert not store.has(digest)
    with pytest.raises(ChunkNotFound):
        store.get(digest)
    assert store.stats().chunks == 0 and store.stats().stored_bytes == 0


def test_put_is_idempotent_and_does_not_rewrite(store: ChunkStore) -> None:
    digest, frame = _frame(2)
    assert store.put(frame)
    inode = store.path_of(digest).stat().st_ino
    mtime = store.path_of(digest).stat().st_mtime_ns
    assert store.put(frame) is False
    assert store.path_of(digest).stat().st_ino == inode
    assert store.path_of(digest).stat().st_mtime_ns == mtime
    assert store.stats().chunks == 1


def test_concurrent_puts_of_one_digest_store_it_once(store: ChunkStore) -> None:
    digest, frame = _frame(3, 200_000)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(store.put(frame))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert store.stats().chunks == 1
    assert list((store.root / "tmp").iterdir()) == []


def test_has_many(store: ChunkStore) -> None:
    frames = [_frame(i) for i in range(5)]
    for _, f in frames[:3]:
        store.put(f)
    assert store.has_many([d for d, _ in frames]) == [True, True, True, False, False]


def test_put_rejects_a_corrupt_frame_and_stores_nothing(store: ChunkStore) -> None:
    digest, frame = _frame(4)
    bad = bytearray(frame)
    bad[-1] ^= 0x01
    with pytest.raises(CorruptFrame):
        store.put(bytes(bad))
    assert not store.has(digest)
    assert store.stats().chunks == 0


def test_compressed_frames_are_stored_as_sent(store: ChunkStore) -> None:
    data = b"compress me " * 50_000
    frame = encode_frame(data)
    store.put(frame)
    got = store.get(chunk_digest(data))
    assert got == frame and len(got) < len(data) // 10
    assert decode_frame(got) == data


@pytest.mark.parametrize("where", ["header", "payload", "truncate"])
def test_corrupt_file_is_quarantined(store: ChunkStore, where: str) -> None:
    digest, frame = _frame(5, 5000)
    store.put(frame)
    path = store.path_of(digest)
    raw = bytearray(path.read_bytes())
    if where == "header":
        raw[10] ^= 0x40
    elif where == "payload":
        raw[-100] ^= 0x01
    else:
        raw = raw[:-1]
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFrame, match="quarantine"):
        store.get(digest)
    assert not path.exists()
    assert not store.has(digest)
    quarantined = list((store.root / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].read_bytes() == bytes(raw)
    assert store.stats().quarantined == 1 and store.stats().chunks == 0
    with pytest.raises(ChunkNotFound):
        store.get(digest)
    assert store.put(frame) is True  # a good copy from another replica heals it
    assert store.get(digest) == frame


def test_file_holding_another_chunk_is_rejected(store: ChunkStore) -> None:
    d1, f1 = _frame(6)
    d2, f2 = _frame(7)
    store.put(f1)
    store.path_of(d1).write_bytes(f2)  # a valid frame under the wrong name
    with pytest.raises(CorruptFrame):
        store.get(d1)


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=60, unique=True),
       st.integers(1, 20), st.data())
@settings(max_examples=examples(0.3), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_iter_digests_by_partition_equals_brute_force(
    tmp_path: Path, digests: list[bytes], bits: int, data: st.DataObject
) -> None:
    # Files named by arbitrary digests are enough for iteration; frames are verified on get.
    root = tmp_path / f"iter-{os.urandom(6).hex()}"
    store = ChunkStore(root, fsync=False)
    for d in digests:
        p = store.path_of(d)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert list(store.iter_digests()) == sorted(digests)
    partitions = {int.from_bytes(d, "big") >> (256 - bits) for d in digests}
    partitions.add(data.draw(st.integers(0, (1 << bits) - 1)))
    for p in partitions:
        expected = sorted(d for d in digests if int.from_bytes(d, "big") >> (256 - bits) == p)
        assert list(store.iter_digests(p, bits)) == expected


def test_iter_digests_rejects_bad_partitions(store: ChunkStore) -> None:
    with pytest.raises(ValueError):
        list(store.iter_digests(1 << 10, 10))
    with pytest.raises(ValueError):
        list(store.iter_digests(0, 0))


def test_reopen_counts_and_cleans_temp_files(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "c")
    frames = [_frame(i) for i in range(10)]
    for _, f in frames:
        store.put(f)
    (tmp_path / "c" / "tmp" / "leftover.tmp").write_bytes(b"half a frame")
    again = ChunkStore(tmp_path / "c")
    assert list((tmp_path / "c" / "tmp").iterdir()) == []
    assert again.stats() == store.stats()
    assert again.stats().chunks == 10
    for d, f in frames:
        assert again.get(d) == f


def _tmp_files(store: ChunkStore) -> list[Path]:
    return list((store.root / "tmp").iterdir())


def test_enospc_while_writing_raises_disk_full_and_leaves_nothing(
    store: ChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest, frame = _frame(8, 300_000)
    real_write = os.write
    calls = {"n": 0}

    def failing_writev(fd: int, buffers) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(buffers[0])[:1000])  # a partial write first
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", failing_writev)
    with pytest.raises(DiskFull, match="disk full"):
        store.put(frame)
    monkeypatch.undo()
    assert calls["n"] >= 2
    assert _tmp_files(store) == []
    assert not store.has(digest)
    assert store.stats().chunks == 0
    # The store stays usable once space is back.
    assert store.put(frame) is True
    assert store.get(digest) == frame


def test_enospc_on_link_raises_disk_full(store: ChunkStore, monkeypatch: pytest.MonkeyPatch) -> None:
    digest, frame = _frame(9)

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_space)
    with pytest.raises(DiskFull):
        store.put(frame)
    assert _tmp_files(store) == [] and not store.has(digest)


def test_failed_fsync_makes_the_store_refuse_writes(
    store: ChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    good_digest, good = _frame(10)
    store.put(good)
    digest, frame = _frame(11)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(StorageUnavailable, match="fsync"):
        store.put(frame)
    monkeypatch.undo()  # the disk "recovers": the store must still refuse (fsyncgate)
    assert store.unavailable is not None
    assert _tmp_files(store) == []
    with pytest.raises(StorageUnavailable):
        store.put(frame)
    with pytest.raises(StorageUnavailable):
        store.put(_frame(12)[1])
    with pytest.raises(StorageUnavailable):
        store.delete(good_digest)
    assert store.get(good_digest) == good  # reads still work


def test_fsync_false_still_stores(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "nofsync", fsync=False)
    d, f = _frame(13)
    assert store.put(f) and store.get(d) == f


def test_frames_land_in_the_fan_out_tree(store: ChunkStore) -> None:
    d, f = _frame(14)
    store.put(f)
    h = d.hex()
    assert store.path_of(d) == store.root / h[:2] / h[2:4] / h
    assert read_frame_header(store.path_of(d).read_bytes()).digest == d


def test_a_frame_this_process_built_is_not_hashed_again_any_other_always_is(store: ChunkStore, monkeypatch) -> None:
    from maillage.proto import frame as wire
    verified: list[int] = []
    real = wire.verify_frame
    monkeypatch.setattr(wire, "verify_frame", lambda f, **kw: verified.append(len(f)) or real(f, **kw))
    digest, frame = _frame(1, 100_000)
    assert store.put(frame, built=read_frame_header(frame))
    assert verified == [] and store.get(digest) == frame   # stored as built; read back verified
    assert len(verified) == 1
    other_digest, other = _frame(2, 100_000)
    rotten = bytearray(other)
    rotten[len(rotten) // 2] ^= 1
    with pytest.raises(CorruptFrame):                     # without the builder's word: hashed, refused
        store.put(bytes(rotten))
    assert not store.has(other_digest)
