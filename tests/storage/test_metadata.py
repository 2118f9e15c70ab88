"""Metadata store: last-writer-wins, listing, group commit, persistence, references."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maillage.proto.frame import chunk_digest
from maillage.storage import (
    BucketRecord,
    ChunkRef,
    InvalidName,
    Manifest,
    MetaStore,
    StorageError,
    StorageUnavailable,
    encode_manifest,
)
from maillage.testing.examples import examples


@pytest.fixture
def meta(tmp_path: Path):
    store = MetaStore(tmp_path / "meta")
    yield store
    store.close()


def M(key: str, version: int, *, bucket: str = "b", writer: str = "", deleted: bool = False,
      size: int = 0) -> Manifest:
    return Manifest(bucket, key, version, size, f"etag-{version}-{writer}", deleted=deleted,
                    writer=writer)


def test_put_get_and_last_writer_wins(meta: MetaStore) -> None:
    assert meta.get_manifest("b", "k") is None
    assert meta.put_manifest(M("k", 5)) is True
    assert meta.put_manifest(M("k", 4)) is False
    assert meta.put_manifest(M("k", 5)) is False  # same order: not applied again
    assert meta.get_manifest("b", "k").version == 5
    # the writer breaks the tie: stored, but reported not applied (its version number is not new)
    assert meta.put_manifest(M("k", 5, writer="node-b")) is False
    assert meta.get_manifest("b", "k").writer == "node-b"
    assert meta.put_manifest(M("k", 5, writer="node-a")) is False
    assert meta.put_manifest(M("k", 6, deleted=True)) is True
    tomb = meta.get_manifest("b", "k")
    assert tomb is not None and tomb.deleted


versions = st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["", "a", "b"])),
                    min_size=1, max_size=12, unique=True)


@given(versions, st.randoms(use_true_random=False), st.booleans())
@settings(max_examples=examples(0.25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_lww_any_order_leaves_the_max(meta: MetaStore, vs, rnd, batched: bool) -> None:
    key = f"k-{os.urandom(8).hex()}"  # a fresh key per example: the store is shared
    order = list(vs)
    rnd.shuffle(order)
    ms = [M(key, v, writer=w) for v, w in order]
    if batched:  # several versions of one key in one synced batch: the overlay must decide
        applied = meta.put_manifests(ms)
    else:
        applied = [meta.put_manifest(m) for m in ms]
    best = max(vs)
    got = meta.get_manifest("b", key)
    assert (got.version, got.writer) == best
    # A version is stored exactly when it beats every version stored before it, and reported
    # applied when, moreover, its version number is above the one it replaced.
    running = None
    for (v, w), a in zip(order, applied):
        stored = running is None or (v, w) > running
        assert a == (stored and (running is None or v > running[0]))
        if stored:
            running = (v, w)


def test_listing_order_prefix_start_after_limit_and_tombstones(meta: MetaStore) -> None:
    keys = ["a", "a/b", "a/c", "ab", "b", "é", "z", "\u2603", "a\x01", "A"]
    meta.put_manifests([M(k, 1) for k in keys])
    meta.put_manifest(M("a/c", 2, deleted=True))
    meta.put_manifest(M("other", 1, bucket="c"))
    meta.put_manifest(M("x", 1, bucket="bb"))  # a bucket whose name extends "b"
    live = sorted((k for k in keys if k != "a/c"), key=lambda k: k.encode())
    assert [m.key for m in meta.list_manifests("b")] == live
    assert [m.key for m in meta.list_manifests("b", include_deleted=True)] == sorted(keys, key=str.encode)
    assert [m.key for m in meta.list_manifests("b", prefix="a/")] == ["a/b"]
    assert [m.key for m in meta.list_manifests("b", prefix="a/", include_deleted=True)] == ["a/b", "a/c"]
    assert [m.key for m in meta.list_manifests("b", limit=3)] == live[:3]
    assert [m.key for m in meta.list_manifests("b", start_after="a/b")] == live[live.index("a/b") + 1:]
    assert [m.key for m in meta.list_manifests("b", start_after="aa", limit=2)] == ["ab", "b"]
    assert [m.key for m in meta.list_manifests("b", prefix="a", start_after="a/c")] == ["ab"]
    assert [m.key for m in meta.list_manifests("b", prefix="a", start_after="a")] == ["a\x01", "a/b", "ab"]
    assert meta.list_manifests("b", prefix="zz") == []
    assert meta.list_manifests("b", limit=0) == []
    assert [m.key for m in meta.list_manifests("c")] == ["other"]
    assert meta.list_manifests("empty") == []


def test_pagination_walks_everything_once(meta: MetaStore) -> None:
    keys = [f"obj/{i:05d}" for i in range(2500)]
    meta.put_manifests([M(k, 1) for k in keys])
    seen, marker = [], ""
    while True:
        page = meta.list_manifests("b", prefix="obj/", start_after=marker, limit=700)
        if not page:
            break
        seen.extend(m.key for m in page)
        marker = page[-1].key
    assert seen == keys


def test_has_live_objects_and_iter(meta: MetaStore) -> None:
    assert not meta.has_live_objects("b")
    meta.put_manifest(M("k", 1, deleted=True))
    assert not meta.has_live_objects("b")
    meta.put_manifest(M("k2", 1))
    assert meta.has_live_objects("b")
    meta.put_manifest(M("x", 1, bucket="other"))
    assert [m.key for m in meta.iter_manifests("b")] == ["k", "k2"]
    assert {(m.bucket, m.key) for m in meta.iter_manifests()} == {("b", "k"), ("b", "k2"), ("other", "x")}


def test_buckets(meta: MetaStore) -> None:
    a = BucketRecord("alpha", "eu", 1, "t1")
    b = BucketRecord("beta", "fr-only", 2)
    meta.put_bucket(b)
    meta.put_bucket(a)
    assert meta.get_bucket("alpha") == a
    assert meta.list_buckets() == [a, b]
    meta.delete_bucket("alpha")
    assert meta.get_bucket("alpha") is None
    assert meta.list_buckets() == [b]


def test_names_are_validated(meta: MetaStore) -> None:
    with pytest.raises(InvalidName):
        meta.put_manifest(M("a\x00b", 1))
    with pytest.raises(InvalidName):
        meta.put_manifest(M("k", 1, bucket="Bad_Bucket"))
    with pytest.raises(InvalidName):
        meta.get_manifest("b", "x" * 1025)
    with pytest.raises(InvalidName):
        meta.put_bucket(BucketRecord("NO", "p", 1))


def test_chunk_holdings_per_policy(meta: MetaStore) -> None:
    d1, d2 = sorted([chunk_digest(b"one"), chunk_digest(b"two")])
    meta.hold_chunks("france-only", [d2, d1], now_ms=5)
    meta.hold_chunks("eu-wide", [d1], now_ms=7)
    assert list(meta.iter_holdings("france-only")) == [("france-only", d1, 5), ("france-only", d2, 5)]
    assert list(meta.iter_holdings()) == [("eu-wide", d1, 7), ("france-only", d1, 5), ("france-only", d2, 5)]
    for bits in (1, 4, 8):
        for p in range(1 << bits):
            got = [d for _, d, _ in meta.iter_holdings("france-only", partition=p, bits=bits)]
            assert got == [d for d in (d1, d2) if int.from_bytes(d[:8], "big") >> (64 - bits) == p]
    with pytest.raises(ValueError):
        list(meta.iter_holdings(partition=0, bits=4))
    meta.hold_chunks("france-only", [d1], now_ms=9)  # held again: the time is refreshed
    assert meta.holding_since("france-only", d1) == 9
    meta.release_chunks("france-only", [d1, d2])
    assert list(meta.iter_holdings("france-only")) == []
    assert meta.holding_since("eu-wide", d1) == 7 and meta.holding_since("france-only", d1) is None
    with pytest.raises(InvalidName):
        meta.hold_chunks("bad\x00name", [d1], now_ms=1)


def test_drop_manifests_only_removes_the_version_each_names(meta: MetaStore) -> None:
    old, new = M("k", 1), M("k", 2)
    meta.put_manifest(old)
    meta.put_manifest(new)
    assert meta.drop_manifests("b", [("k", 1, "")]) == [False] and meta.get_manifest("b", "k") == new
    assert meta.drop_manifests("b", [("k", 2, "")]) == [True] and meta.get_manifest("b", "k") is None
    assert meta.drop_manifests("b", [("k", 2, "")]) == [False]
    assert meta.drop_manifests("b", []) == []
    assert meta.put_manifest(old) is True  # gone means any version may land again


def test_concurrent_puts_are_durable_and_group_committed(tmp_path: Path) -> None:
    meta = MetaStore(tmp_path / "meta")
    per_thread, threads_n = 100, 16
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                assert meta.put_manifest(M(f"t{t:02d}/{i:03d}", 1, size=i))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    before = meta.stats()
    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = meta.stats()
    puts = per_thread * threads_n
    assert stats.requests - before.requests == puts
    batches = stats.batches - before.batches
    assert batches < puts / 2, f"{batches} synced batches for {puts} puts: no group commit"
    meta.close()
    again = MetaStore(tmp_path / "meta")
    try:
        listed = again.list_manifests("b", limit=10_000)
        assert len(listed) == puts
        assert again.get_manifest("b", "t15/099").size == 99
    finally:
        again.close()


def test_reopen_persists_everything(tmp_path: Path) -> None:
    with MetaStore(tmp_path / "m") as meta:
        meta.put_manifest(Manifest("b", "k", 3, 10, "e", chunks=(ChunkRef(chunk_digest(b"x"), 10),),
                                   user_metadata=(("a", "1"),)))
        meta.put_bucket(BucketRecord("b", "p", 1))
        meta.hold_chunks("p", [chunk_digest(b"x")], now_ms=3)
    with MetaStore(tmp_path / "m") as meta:
        m = meta.get_manifest("b", "k")
        assert m is not None and m.chunks[0].length == 10 and m.user_metadata == (("a", "1"),)
        assert meta.get_bucket("b") == BucketRecord("b", "p", 1)
        assert meta.holding_since("p", chunk_digest(b"x")) == 3
        assert meta.put_manifest(Manifest("b", "k", 2, 0, "")) is False


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    meta = MetaStore(tmp_path / "m")
    meta.close()
    meta.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        meta.put_manifest(M("k", 1))


def test_unknown_database_format_is_refused(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    path = tmp_path / "m"
    MetaStore(path).close()
    db = Rdict(str(path), Options(raw_mode=True))
    db[b"\x00format"] = b"\x09"
    db.close()
    with pytest.raises(StorageError, match="format"):
        MetaStore(path)


class FailingWrites:
    """A RocksDB handle whose synced writes fail as a dying disk's do (rocksdict raises Exception)."""

    def __init__(self, db) -> None:
        self.db = db

    def write(self, *a, **k):
        raise Exception("IO error: fsync failed")

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_failed_synced_write_makes_the_store_refuse_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = MetaStore(tmp_path / "m")
    meta.put_manifest(M("ok", 1))

    real = meta._db
    meta._db = FailingWrites(real)
    try:
        with pytest.raises(StorageUnavailable, match="fsync failed"):
            meta.put_manifest(M("k", 1))
        meta._db = real  # the disk "recovers": writes are still refused
        with pytest.raises(StorageUnavailable):
            meta.put_manifest(M("k2", 1))
        assert meta.get_manifest("b", "ok") is not None
        assert meta.get_manifest("b", "k") is None
    finally:
        meta._db = real
        meta.close()


def test_partition_scan_returns_exactly_that_partition(meta: MetaStore) -> None:
    digests = sorted(chunk_digest(bytes([i])) for i in range(64))
    meta.hold_chunks("p", digests, now_ms=1)
    meta.hold_chunks("q", digests[:5], now_ms=1)  # another policy's range must not leak in
    for bits in (1, 3, 6):
        seen = []
        for p in range(1 << bits):
            got = [d for _, d, _ in meta.iter_holdings("p", partition=p, bits=bits)]
            assert got == [d for d in digests if int.from_bytes(d[:8], "big") >> (64 - bits) == p]
            seen += got
        assert seen == digests


# ----- bucket generations, immutability and tombstones -----------------------------------------

GEN1, GEN2 = "1" * 32, "2" * 32


def test_a_format_1_directory_opens_and_reads_as_generation_empty(tmp_path: Path) -> None:
    """Bytes as a format-1 node wrote them: the records and manifests read as generation ""."""
    from rocksdict import Options, Rdict

    path = tmp_path / "m"
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    db = Rdict(str(path), opts)
    db[b"\x00format"] = b"\x01"
    # format-1 bucket record: name, policy, created, owner; format-1 manifest of "b"/"k"
    db[b"Bb"] = b"\x01" + b"".join(len(x).to_bytes(4, "big") + x for x in (b"b", b"fr-only")) \
        + (5).to_bytes(8, "big") + (2).to_bytes(4, "big") + b"t1"
    m = Manifest("b", "k", 3, 1, "e", inline=b"x")
    db[b"Mb\x00k"] = b"\x01" + encode_manifest(m)[1:-8]  # no generation, no attributes
    db.close()
    with MetaStore(path) as meta:
        assert meta.get_bucket("b") == BucketRecord("b", "fr-only", 5, "t1", generation="")
        assert meta.get_manifest("b", "k") == m
        assert [x.key for x in meta.list_manifests("b")] == ["k"]
        assert meta.put_manifest(Manifest("b", "k", 4, 0, "", deleted=True), require_bucket=True)
    db = Rdict(str(path), Options(raw_mode=True))
    assert db[b"\x00format"] == b"\x02"  # marked as read by this version; nothing rewritten
    db.close()


def test_a_bucket_record_is_never_replaced_by_another_policy_or_generation(meta: MetaStore) -> None:
    first = BucketRecord("b", "fr-only", 1, "t", GEN1)
    assert meta.put_bucket(first) is None
    assert meta.put_bucket(BucketRecord("b", "fr-only", 9, "other", GEN1)) is None  # same bucket
    assert meta.put_bucket(BucketRecord("b", "eu-wide", 1, "t", GEN1)) == first
    assert meta.put_bucket(BucketRecord("b", "fr-only", 2, "t", GEN2)) == first
    assert meta.get_bucket("b") == first


def test_a_tombstone_drops_its_generation_and_wins_over_its_stale_record(meta: MetaStore) -> None:
    old = BucketRecord("b", "fr-only", 1, "t", GEN1)
    meta.put_bucket(old)
    meta.put_manifests([Manifest("b", "patients/x", 2, 0, "", generation=GEN1),
                        Manifest("b", "k", 3, 0, "", deleted=True, generation=GEN1),
                        Manifest("c", "patients/x", 2, 0, "", generation=GEN1)])
    tomb = meta.delete_bucket("b", deleted=7)
    assert tomb is not None and (tomb.generation, tomb.policy, tomb.deleted) == (GEN1, "fr-only", 7)
    assert meta.get_bucket("b") is None and list(meta.iter_manifests("b")) == []
    assert [m.bucket for m in meta.iter_manifests()] == ["c"]  # another bucket keeps its index
    assert meta.list_bucket_tombstones() == [tomb] and meta.get_bucket_tombstone("b", GEN1) == tomb
    assert meta.put_bucket(old) == tomb  # the deleted generation cannot come back
    assert meta.put_manifest(Manifest("b", "late", 9, 0, "", generation=GEN1), require_bucket=True) is False
    new = BucketRecord("b", "eu-wide", 8, "t", GEN2)
    assert meta.put_bucket(new) is None
    assert meta.put_manifest(Manifest("b", "k2", 9, 0, "", generation=GEN2), require_bucket=True) is True
    assert meta.put_manifest(Manifest("b", "k3", 9, 0, "", generation=GEN1), require_bucket=True) is False
    assert [m.key for m in meta.iter_manifests("b")] == ["k2"]
    # A tombstone learned late for a generation that is not the live one leaves the live one alone.
    meta.put_bucket_tombstone(tomb)
    assert meta.get_bucket("b") == new


def test_generations_of_one_name_have_separate_indexes(meta: MetaStore) -> None:
    meta.put_manifests([Manifest("b", "same", 1, 0, "", generation=g) for g in ("", GEN1, GEN2)]
                       + [Manifest("b", f"only-{g[:1] or 'e'}", 1, 0, "", generation=g) for g in ("", GEN1)]
                       + [Manifest("bb", "x", 1, 0, "", generation=GEN1)])
    assert [m.key for m in meta.list_manifests("b")] == ["only-e", "same"]
    assert [m.key for m in meta.list_manifests("b", generation=GEN1)] == ["only-1", "same"]
    assert [m.key for m in meta.list_manifests("b", generation=GEN2)] == ["same"]
    assert meta.get_manifest("b", "only-1") is None and meta.get_manifest("b", "only-1", GEN1) is not None
    assert len(list(meta.iter_manifests("b"))) == 5 and len(list(meta.iter_manifests("b", GEN2))) == 1
    assert meta.drop_manifests("b", [("same", 1, "")], GEN2) == [True]
    assert meta.get_manifest("b", "same", GEN2) is None and meta.get_manifest("b", "same") is not None


def test_a_guarded_manifest_and_a_tombstone_in_one_batch_are_ordered(meta: MetaStore) -> None:
    """Both checks run in the committer: a manifest queued after the tombstone is not applied."""
    from maillage.storage import BucketTombstone, encode_bucket_tombstone, encode_manifest
    from maillage.storage.metadata import _bucket_key, _manifest_key, _tombstone_key

    meta.put_bucket(BucketRecord("b", "p", 1, "", GEN1))
    tomb = BucketTombstone("b", GEN1, "p", 2)

    def guarded(key: str) -> tuple:
        m = Manifest("b", key, 1, 0, "", generation=GEN1)
        return ("m", _manifest_key("b", key, GEN1), encode_manifest(m), (1, ""), (_bucket_key("b"), GEN1))
    results = meta._submit([guarded("before"), ("t", _tombstone_key("b", GEN1), encode_bucket_tombstone(tomb), tomb),
                            guarded("after")])
    assert results == [True, False]
    assert list(meta.iter_manifests("b")) == [] and meta.get_bucket("b") is None


def test_put_manifests_later_is_settled_by_the_committer_once_durable(tmp_path: Path) -> None:
    """The event loop's write path: no caller waits, the committer settles the future with the
    applied flags, or the error that failed the batch, and a closed store refuses at once."""
    meta = MetaStore(tmp_path / "m")
    got: list = []
    done = threading.Event()

    def then(future) -> None:
        outcome = future.exception() or future.result()
        got.append((outcome, threading.current_thread() is meta._committer,
                    meta.get_manifest("b", "k") is not None))
        done.set()

    with meta._cond:   # the committer cannot take the request before the callback is on it
        future = meta.put_manifests_later([M("k", 5), M("k", 4), M("j", 1)])
        assert not future.cancel()   # asked for: the write is not withdrawn
        future.add_done_callback(then)
    assert done.wait(10)
    assert got == [([True, False, True], True, True)]  # settled on the committer, stored before

    real, done, got = meta._db, threading.Event(), []
    meta._db = FailingWrites(real)
    try:
        with meta._cond:
            meta.put_manifests_later([M("k", 9)]).add_done_callback(then)
        assert done.wait(10)
        assert isinstance(got[0][0], StorageUnavailable) and got[0][2] is True  # version 5 still there
        assert meta.get_manifest("b", "k").version == 5
    finally:
        meta._db = real
        meta.close()
    with pytest.raises(StorageError, match="closed"):
        meta.put_manifests_later([M("k", 10)])
