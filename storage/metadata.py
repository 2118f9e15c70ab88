"""The metadata store: manifests, buckets and chunk holdings in RocksDB, with group commit.

Why group commit: a synced RocksDB write costs one fsync of the write-ahead log whatever its size.
One synced put per request caps a node at a few thousand writes per second (~6 k/s here), while a
synced batch of 100 keys reaches ~190 k keys/s. So every write goes through one committer thread:
callers enqueue their operations and block; the committer takes everything queued, applies it as
ONE ``WriteBatch`` with ``sync=True``, and then wakes every caller. While a batch is being synced,
new requests pile up and form the next batch, so batching grows with load and a lone writer pays
no added delay.

Why every write goes through it: the committer is the only writer, so last-writer-wins is an
atomic compare-and-set without locks: it reads the stored ``(version, writer)``, compares, and
puts the new manifest in the same batch (an in-batch overlay handles two versions of one key in
the same batch). Nothing is acknowledged before its batch is durable. If a synced write fails,
every caller of that batch gets :class:`StorageUnavailable` and the store refuses later writes
(fsyncgate: see ``errors.py``).

Key layout (raw bytes; bucket names never contain NUL, object keys are rejected if they do)::

    \\x00format                                   -> format version of this database (1)
    B <bucket>                                    -> bucket record
    M <bucket> \\x00 <key utf-8>                   -> manifest (or tombstone)
    H <policy> \\x00 <digest:32>                  -> unix ms, 8 BE (chunk held here for that policy)

All manifests of a bucket share the prefix ``M<bucket>\\x00`` and sort by key in UTF-8 byte
order, so listing (with a prefix and a ``start_after`` marker) is one ordered range scan. All
holdings of a policy share ``H<policy>\\x00`` in digest order, so the chunks of one (policy,
partition) are one contiguous range: anti-entropy and GC walk them in order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from rocksdict import (
    BlockBasedOptions,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from maillage.proto.frame import DIGEST_SIZE

from .errors import CorruptRecord, InvalidName, StorageError, StorageUnavailable
from .manifest import (
    BucketRecord,
    Manifest,
    decode_bucket,
    decode_manifest,
    encode_bucket,
    encode_manifest,
    manifest_order,
    validate_bucket_name,
    validate_key,
)

__all__ = ["MetaStore", "MetaStoreStats", "META_FORMAT"]

META_FORMAT = 1
_FORMAT_KEY = b"\x00format"
_MAX_BATCH_OPS = 4096

# One write of a batch: put a manifest if (version, writer) beats the stored one ("m"), drop a
# manifest if it is still that (version, writer) ("x"), put ("p") or delete ("d") a record.
_Order: TypeAlias = tuple[int, str]
_Op: TypeAlias = (
    tuple[Literal["m"], bytes, bytes, _Order]
    | tuple[Literal["x"], bytes, _Order]
    | tuple[Literal["p"], bytes, bytes]
    | tuple[Literal["d"], bytes]
)


@dataclass(frozen=True)
class MetaStoreStats:
    """Counters of the committer: ``batches`` synced WriteBatches carried ``requests`` calls."""

    batches: int
    requests: int
    operations: int

    __module__ = "maillage.storage"


def _manifest_prefix(bucket: str) -> bytes:
    return b"M" + validate_bucket_name(bucket) + b"\x00"


def _manifest_key(bucket: str, key: str) -> bytes:
    return _manifest_prefix(bucket) + validate_key(key)


def _policy_name(policy: str) -> bytes:
    raw = policy.encode("utf-8")
    if not raw or b"\x00" in raw:
        raise InvalidName(f"policy name {policy!r}: must be non-empty without NUL")
    return raw


def _holding_key(policy: str, digest: bytes) -> bytes:
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"a chunk digest is {DIGEST_SIZE} bytes")
    return b"H" + _policy_name(policy) + b"\x00" + bytes(digest)



class _Request:
    """One caller's operations; ``done`` is a lock held until the committer releases it
    (cheaper than an Event: no Condition, one wake-up)."""

    __slots__ = ("ops", "results", "error", "done")

    def __init__(self, ops: Sequence[_Op]) -> None:
        self.ops = ops
        self.results: list[bool] = []  # one flag per "m" or "x" op, in order
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


class MetaStore:
    """Manifests, buckets and chunk holdings of one node, durable on return."""

    __module__ = "maillage.storage"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.increase_parallelism(2)
        opts.set_max_background_jobs(2)
        opts.set_keep_log_file_num(4)
        opts.set_compression_type(DBCompressionType.lz4())
        table = BlockBasedOptions()
        table.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table)
        self._db = Rdict(str(self.path), opts)
        self._sync = WriteOptions()
        self._sync.sync = True
        fmt = self._db.get(_FORMAT_KEY)
        if fmt is None:
            wb = WriteBatch(raw_mode=True)
            wb.put(_FORMAT_KEY, bytes([META_FORMAT]))
            self._db.write(wb, self._sync)
        elif fmt != bytes([META_FORMAT]):
            self._db.close()
            raise StorageError(
                f"metadata at {self.path} has format {fmt!r}; this node reads format {META_FORMAT}"
            )
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._closing = False
        self._closed = False
        self._failure: str | None = None
        self._batches = self._requests = self._ops = 0
        self._committer = threading.Thread(
            target=self._run, name=f"meta-committer:{self.path.name}", daemon=True
        )
        self._committer.start()

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Finish queued writes, stop the committer and close RocksDB."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        self._committer.join()
        self._closed = True
        self._db.close()

    def __enter__(self) -> MetaStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> MetaStoreStats:
        with self._cond:
            return MetaStoreStats(self._batches, self._requests, self._ops)

    @property
    def unavailable(self) -> str | None:
        """Why this store refuses writes, or None while it is healthy."""
        return self._failure

    # ----------------------------------------------------------------- manifests

    def put_manifest(self, m: Manifest) -> bool:
        """Store ``m`` if ``(m.version, m.writer)`` beats the stored one; durable on return."""
        return self.put_manifests([m])[0]

    def put_manifests(self, ms: Sequence[Manifest]) -> list[bool]:
        """Several :meth:`put_manifest` in one synced batch; one applied flag per manifest."""
        ops: list[_Op] = [("m", _manifest_key(m.bucket, m.key), encode_manifest(m), (m.version, m.writer))
                          for m in ms]
        return self._submit(ops)

    def get_manifest(self, bucket: str, key: str) -> Manifest | None:
        """The current manifest of ``bucket/key``, tombstones included; None if never written."""
        raw = self._db.get(_manifest_key(bucket, key))
        return None if raw is None else decode_manifest(raw)

    def list_manifests(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        limit: int = 1000,
        include_deleted: bool = False,
    ) -> list[Manifest]:
        """Manifests of ``bucket`` in key order (UTF-8 bytes), like an S3 ListObjectsV2 page."""
        if limit <= 0:
            return []
        base = _manifest_prefix(bucket)
        scope = base + prefix.encode("utf-8")
        start = scope
        after = base + start_after.encode("utf-8") if start_after else None
        if after is not None and after > start:
            start = after
        out: list[Manifest] = []
        for k, v in self._scan(start, scope):
            if k == after:
                continue
            m = decode_manifest(v)
            if m.deleted and not include_deleted:
                continue
            out.append(m)
            if len(out) >= limit:
                break
        return out

    def iter_manifests(self, bucket: str | None = None) -> Iterator[Manifest]:
        """Every manifest (tombstones included), of one bucket or of all, in key order."""
        scope = b"M" if bucket is None else _manifest_prefix(bucket)
        for _, v in self._scan(scope, scope):
            yield decode_manifest(v)

    def has_live_objects(self, bucket: str) -> bool:
        """Whether ``bucket`` holds at least one object that is not a tombstone."""
        scope = _manifest_prefix(bucket)
        return any(not decode_manifest(v).deleted for _, v in self._scan(scope, scope))

    # ----------------------------------------------------------------- buckets

    def put_bucket(self, r: BucketRecord) -> None:
        """Create or replace a bucket record (durable on return)."""
        self._submit([("p", b"B" + validate_bucket_name(r.name), encode_bucket(r))])

    def get_bucket(self, name: str) -> BucketRecord | None:
        raw = self._db.get(b"B" + validate_bucket_name(name))
        return None if raw is None else decode_bucket(raw)

    def list_buckets(self) -> list[BucketRecord]:
        return [decode_bucket(v) for _, v in self._scan(b"B", b"B")]

    def delete_bucket(self, name: str) -> None:
        """Remove a bucket record (its objects are the caller's business; see has_live_objects)."""
        self._submit([("d", b"B" + validate_bucket_name(name))])

    # ----------------------------------------------------------------- chunk holdings

    def hold_chunks(self, policy: str, digests: Iterable[bytes], *, now_ms: int) -> None:
        """Record that this node keeps each chunk for ``policy`` (again: refreshes the time)."""
        stamp = now_ms.to_bytes(8, "big")
        ops: list[_Op] = [("p", _holding_key(policy, d), stamp) for d in digests]
        if ops:
            self._submit(ops)

    def release_chunks(self, policy: str, digests: Iterable[bytes]) -> None:
        """Forget that this node keeps each chunk for ``policy``."""
        ops: list[_Op] = [("d", _holding_key(policy, d)) for d in digests]
        if ops:
            self._submit(ops)

    def holding_since(self, policy: str, digest: bytes) -> int | None:
        """Unix ms when ``digest`` was last held for ``policy``; None if it is not."""
        raw = self._db.get(_holding_key(policy, digest))
        return None if raw is None else int.from_bytes(raw, "big")

    def iter_holdings(self, policy: str | None = None, *, partition: int | None = None,
                      bits: int = 0) -> Iterator[tuple[str, bytes, int]]:
        """(policy, digest, since ms) of every holding, of one policy or all, sorted. With
        `partition`, only digests whose top `bits` bits equal it: one range scan, not a filter."""
        scope = b"H" if policy is None else b"H" + _policy_name(policy) + b"\x00"
        start = scope
        if partition is not None:
            if policy is None or not 1 <= bits <= 64:
                raise ValueError("a partition scan needs a policy and bits in 1..64")
            start = scope + (partition << (64 - bits)).to_bytes(8, "big")
        for k, v in self._scan(start, scope):
            name, sep, digest = k[1:].partition(b"\x00")
            if not sep or len(digest) != DIGEST_SIZE or len(v) != 8:
                raise CorruptRecord(f"malformed chunk holding {k!r}")
            if partition is not None and int.from_bytes(digest[:8], "big") >> (64 - bits) != partition:
                return
            yield name.decode("utf-8"), digest, int.from_bytes(v, "big")

    def drop_manifests(self, bucket: str, versions: Iterable[tuple[str, int, str]]) -> list[bool]:
        """Remove each ``(key, version, writer)`` of ``bucket`` only if it is still the stored
        version (a newer one is kept), in one synced batch; one removed flag per entry."""
        ops: list[_Op] = [("x", _manifest_key(bucket, key), (version, writer)) for key, version, writer in versions]
        return self._submit(ops) if ops else []

    # ----------------------------------------------------------------- internals

    def _scan(self, start: bytes, scope: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Items with keys >= ``start`` that begin with ``scope``, in order."""
        it = self._db.iter()
        it.seek(start)
        while it.valid():
            k = it.key()
            if not k.startswith(scope):
                break
            yield k, it.value()
            it.next()

    def _submit(self, ops: Sequence[_Op]) -> list[bool]:
        req = _Request(ops)
        with self._cond:
            if self._closing:
                raise StorageError(f"metadata store {self.path} is closed")
            if self._failure is not None:
                raise self._unavailable_error()
            self._queue.append(req)
            self._cond.notify()
        req.done.acquire()
        if req.error is not None:
            raise req.error
        return req.results

    def _unavailable_error(self) -> StorageUnavailable:
        return StorageUnavailable(
            f"metadata store {self.path} refuses writes since a synced write failed "
            f"({self._failure}); repair or replace the disk and restart the node"
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                take, n = 0, 0
                while take < len(self._queue) and (n == 0 or n + len(self._queue[take].ops) <= _MAX_BATCH_OPS):
                    n += len(self._queue[take].ops)
                    take += 1
                reqs = self._queue[:take]
                del self._queue[:take]
            self._commit(reqs)

    def _commit(self, reqs: list[_Request]) -> None:
        try:
            if self._failure is not None:
                raise self._unavailable_error()
            wb = WriteBatch(raw_mode=True)
            overlay: dict[bytes, tuple[int, str]] = {}
            nops = 0
            for req in reqs:
                for op in req.ops:
                    nops += 1
                    key = op[1]
                    if op[0] == "m":
                        order = op[3]
                        current = overlay.get(key)
                        if current is None:
                            raw = self._db.get(key)
                            if raw is not None:
                                current = manifest_order(raw)
                        if current is None or order > current:
                            wb.put(key, op[2])
                            overlay[key] = order
                            req.results.append(True)
                        else:
                            req.results.append(False)
                    elif op[0] == "x":
                        current = overlay.get(key)
                        if current is None:
                            raw = self._db.get(key)
                            current = None if raw is None else manifest_order(raw)
                        same = current == op[2]
                        if same:
                            wb.delete(key)
                            overlay[key] = (-1, "")
                        req.results.append(same)
                    elif op[0] == "p":
                        wb.put(key, op[2])
                    else:
                        wb.delete(key)
            try:
                self._db.write(wb, self._sync)
            except Exception as exc:  # rocksdict raises plain Exception on I/O errors
                self._failure = f"{type(exc).__name__}: {exc}"
                raise StorageUnavailable(
                    f"synced metadata write failed ({exc}); store {self.path} now refuses writes"
                ) from exc
            with self._cond:
                self._batches += 1
                self._requests += len(reqs)
                self._ops += nops
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for req in reqs:
                req.error = exc
        finally:
            for req in reqs:
                req.done.release()
