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

    \\x00format                                   -> format version of this database (2)
    B <bucket>                                    -> the bucket's live record (one generation)
    T <bucket> \\x00 <generation>                  -> tombstone of a deleted bucket generation
    M <bucket> \\x00 <key utf-8>                   -> manifest (or tombstone) of generation ""
    M <bucket> \\x01 <generation> \\x00 <key utf-8> -> manifest (or tombstone) of another generation
    H <policy> \\x00 <digest:32>                  -> unix ms, 8 BE (chunk held here for that policy)
    K <key id:8>                                  -> a data key wrapped by the node key (``keys.py``)

The index of a bucket is scoped by (bucket, generation): all manifests of one generation share one
prefix (``M<bucket>\\x00`` or ``M<bucket>\\x01<generation>\\x00``) and sort by key in UTF-8 byte
order, so listing (with a prefix and a ``start_after`` marker) is one ordered range scan, and a
re-created name never sees the keys of its previous generation. All holdings of a policy share
``H<policy>\\x00`` in digest order, so the chunks of one (policy, partition) are one contiguous
range: anti-entropy and GC walk them in order.

Formats: database format 1 (before generations) had only the generation-"" manifest keys and
format-1 records, which read as generation "" (see ``manifest.py``): a format-1 directory opens
as it is, and is marked format 2 on open (nothing is rewritten). A node of format 1 refuses a
format-2 directory rather than misread it.

Encryption at rest: once :meth:`MetaStore.use_data_keys` is given the node's data keys (the node
always does; ``maillage.node.daemon.bootstrap``), manifests are written in format 5: user metadata and
inline bytes sealed with the data key of the tenant owning the bucket (the live record's
``owner``; ``""`` when there is no record of that generation). Records written before read as
they are. The wrapped data keys themselves are ``K`` records; :meth:`MetaStore.read_key_records`
reads them without the store's lock (tests and forensics, while a node runs).

Bucket records are immutable: ``put_bucket`` never replaces a record by one of another policy or
generation, and refuses a generation that has a tombstone; ``put_bucket_tombstone`` removes the
record of that generation and every manifest of it in the same synced batch. Both checks run in
the committer, so they are atomic with respect to every other write; a manifest written with
``require_bucket=True`` is applied only while the live record has its generation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from maillage.proto.frame import DIGEST_SIZE
from maillage.storage.errors import CorruptRecord, InvalidName, StorageError, StorageUnavailable
from maillage.storage.manifest import (
    BucketRecord,
    BucketTombstone,
    Manifest,
    RecordKeys,
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

__all__ = ["MetaStore", "MetaStoreStats", "META_FORMAT"]

META_FORMAT = 2
_READABLE_FORMATS = (1, META_FORMAT)
_FORMAT_KEY = b"\x00format"
_KEY_RECORD = b"K"
_KEY_ID_SIZE = 8
_MAX_BATCH_OPS = 4096

# One write of a batch: put a manifest if (version, writer) beats the stored one ("m"; with a
# guard, only while the bucket record B<bucket> has that generation), drop a manifest if it is
# still that (version, writer) ("x"), put ("p") or delete ("d") a record, put a bucket record
# unless another one or a tombstone of its generation is there ("b"), write a bucket tombstone and
# drop that generation's record and manifests ("t"), drop a bucket record still of that generation
# and with no manifest of it here, leaving no tombstone ("r": handed back to its owners), put a
# tenant's bucket listing entry (a record, or its removal) unless a later one is there ("l").
_Order: TypeAlias = tuple[int, str]
_Guard: TypeAlias = tuple[bytes, str] | None  # (record key, generation)
_Op: TypeAlias = (
    tuple[Literal["m"], bytes, bytes, _Order, _Guard]
    | tuple[Literal["x"], bytes, _Order]
    | tuple[Literal["p"], bytes, bytes]
    | tuple[Literal["d"], bytes]
    | tuple[Literal["b"], bytes, bytes, BucketRecord, bytes]
    | tuple[Literal["t"], bytes, bytes, BucketTombstone]
    | tuple[Literal["r"], bytes, str, str]
    | tuple[Literal["l"], bytes, bytes]
)
# The result of one op that reports one: applied flag ("m", "x", "r"), or what refused a record ("b").
_Result: TypeAlias = bool | BucketRecord | BucketTombstone | None


@dataclass(frozen=True)
class MetaStoreStats:
    """Counters of the committer: ``batches`` synced WriteBatches carried ``requests`` calls."""

    batches: int
    requests: int
    operations: int

    __module__ = "maillage.storage"


def _manifest_prefix(bucket: str, generation: str = "") -> bytes:
    """Where the index of (bucket, generation) starts: generation "" keeps the format-1 layout."""
    name = validate_bucket_name(bucket)
    gen = validate_generation(generation)
    return b"M" + name + (b"\x01" + gen + b"\x00" if gen else b"\x00")


def _manifest_key(bucket: str, key: str, generation: str = "") -> bytes:
    return _manifest_prefix(bucket, generation) + validate_key(key)


def _bucket_key(name: str) -> bytes:
    return b"B" + validate_bucket_name(name)


def _tombstone_key(name: str, generation: str) -> bytes:
    return b"T" + validate_bucket_name(name) + b"\x00" + validate_generation(generation)


def _policy_name(policy: str) -> bytes:
    raw = policy.encode("utf-8")
    if not raw or b"\x00" in raw:
        raise InvalidName(f"policy name {policy!r}: must be non-empty without NUL")
    return raw


def _tenant_name(tenant: str) -> bytes:
    raw = tenant.encode("utf-8")
    if b"\x00" in raw or len(raw) > 256:
        raise InvalidName(f"tenant name {tenant!r}: at most 256 bytes, without NUL")
    return raw


def _listing_scope(policy: str, tenant: str) -> bytes:
    return b"L" + _policy_name(policy) + b"\x00" + _tenant_name(tenant) + b"\x00"


def _listing_key(policy: str, tenant: str, name: str) -> bytes:
    return _listing_scope(policy, tenant) + validate_bucket_name(name)


def _listing_time(raw: bytes) -> int:
    """When a listing entry was made: a record's creation, a removal's deletion."""
    return decode_bucket(raw[1:]).created if raw[:1] == b"R" else decode_bucket_tombstone(raw[1:]).deleted


def _holding_key(policy: str, digest: bytes) -> bytes:
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"a chunk digest is {DIGEST_SIZE} bytes")
    return b"H" + _policy_name(policy) + b"\x00" + bytes(digest)



class _Request:
    """One caller's operations; ``done`` is a lock held until the committer releases it
    (cheaper than an Event: no Condition, one wake-up). A request with a ``future`` has no waiter:
    the committer settles the future instead (a caller on an event loop awaits it with
    ``asyncio.wrap_future``)."""

    __slots__ = ("ops", "results", "error", "done", "future")

    def __init__(self, ops: Sequence[_Op], future: Future[list[_Result]] | None = None) -> None:
        self.ops = ops
        self.results: list[_Result] = []  # one per "m", "x", "b" or "r" op, in order
        self.error: BaseException | None = None
        self.future = future
        self.done = threading.Lock()
        if future is None:
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
        try:
            self._db = Rdict(str(self.path), opts)
        except Exception as exc:  # rocksdict raises a bare Exception with RocksDB's words
            if "lock" in str(exc).lower():
                raise StorageError(f"metadata store {self.path} is in use by another process "
                                   "(is a node running on this data dir?)") from None
            raise StorageError(f"cannot open the metadata store {self.path}: {exc}") from None
        self._sync = WriteOptions()
        self._sync.sync = True
        fmt = self._db.get(_FORMAT_KEY)
        if fmt is not None and (len(fmt) != 1 or fmt[0] not in _READABLE_FORMATS):
            self._db.close()
            raise StorageError(
                f"metadata at {self.path} has format {fmt!r}; this node reads formats "
                f"{', '.join(map(str, _READABLE_FORMATS))}"
            )
        if fmt != bytes([META_FORMAT]):  # new, or format 1: its keys and records read as they are
            wb = WriteBatch(raw_mode=True)
            wb.put(_FORMAT_KEY, bytes([META_FORMAT]))
            self._db.write(wb, self._sync)
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._closing = False
        self._closed = False
        self._failure: str | None = None
        self._keys: RecordKeys | None = None
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

    def change_mark(self) -> int:
        """A number that moves with every write committed (RocksDB's latest sequence number): a
        summary of the store made at one mark is still right while the mark is the same."""
        return int(self._db.latest_sequence_number())

    @property
    def unavailable(self) -> str | None:
        """Why this store refuses writes, or None while it is healthy."""
        return self._failure

    # ----------------------------------------------------------------- data keys

    def use_data_keys(self, keys: RecordKeys) -> None:
        """Encrypt the secret part of every manifest written from now on (format 5) with these
        keys, and decrypt with them."""
        self._keys = keys

    @property
    def data_keys(self) -> RecordKeys | None:
        return self._keys

    def key_records(self) -> list[tuple[bytes, bytes]]:
        """Every wrapped data key: ``(key id, record)`` (see ``keys.py``)."""
        return [(k[1:], v) for k, v in self._scan(_KEY_RECORD, _KEY_RECORD)]

    def put_key_record(self, key_id: bytes, record: bytes) -> None:
        """Store a wrapped data key; durable on return."""
        self.put_key_records([(key_id, record)])

    def put_key_records(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Store wrapped data keys in one synced batch: all or none (a node key rotation)."""
        for key_id, _ in records:
            if len(key_id) != _KEY_ID_SIZE:
                raise ValueError(f"a data key id is {_KEY_ID_SIZE} bytes")
        self._submit([("p", _KEY_RECORD + bytes(k), bytes(r)) for k, r in records])

    @staticmethod
    def read_key_records(path: Path | str) -> list[tuple[bytes, bytes]]:
        """:meth:`key_records` of the store at ``path``, opened read only (a node may be running on
        it): for tests and forensics."""
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            it = db.iter()
            it.seek(_KEY_RECORD)
            out = []
            while it.valid() and it.key().startswith(_KEY_RECORD):
                out.append((it.key()[1:], it.value()))
                it.next()
            return out
        finally:
            db.close()

    def _tenant_of(self, m: Manifest) -> str:
        record = self.get_bucket(m.bucket)
        return record.owner if record is not None and record.generation == m.generation else ""

    def _encode(self, m: Manifest) -> bytes:
        if self._keys is None:
            return encode_manifest(m)
        tenant = self._tenant_of(m) if m.user_metadata or m.inline is not None else ""
        return encode_manifest(m, self._keys, tenant)

    # ----------------------------------------------------------------- manifests

    def put_manifest(self, m: Manifest, *, require_bucket: bool = False) -> bool:
        """Store ``m`` if ``(m.version, m.writer)`` beats the stored one; durable on return.
        With ``require_bucket``, only while the live record of ``m.bucket`` has ``m.generation``.
        True when stored with a version number above the replaced one's; False when not stored,
        and also when stored over a manifest of the same version number (the writer broke the
        tie): a coordinator then knows its version was not new for the key and writes again."""
        return self.put_manifests([m], require_bucket=require_bucket)[0]

    def put_manifests(self, ms: Sequence[Manifest], *, require_bucket: bool = False) -> list[bool]:
        """Several :meth:`put_manifest` in one synced batch; one applied flag per manifest."""
        return [bool(r) for r in self._submit(self._manifest_ops(ms, require_bucket))]

    def put_manifests_later(self, ms: Sequence[Manifest], *, require_bucket: bool = False) -> Future[list[_Result]]:
        """:meth:`put_manifests` without waiting: a future the committer settles with one applied
        flag per manifest once the batch is durable, or with the error that failed it. Why: a
        caller on an event loop would otherwise park a pool thread on the commit, two more thread
        wake-ups and GIL hand-offs per write (see ``LocalReplica.put_manifest``)."""
        future: Future[list[_Result]] = Future()
        future.set_running_or_notify_cancel()   # the write is not withdrawn once asked for
        self._enqueue(_Request(self._manifest_ops(ms, require_bucket), future))
        return future

    def _manifest_ops(self, ms: Sequence[Manifest], require_bucket: bool) -> list[_Op]:
        return [("m", _manifest_key(m.bucket, m.key, m.generation), self._encode(m),
                 (m.version, m.writer), (_bucket_key(m.bucket), m.generation) if require_bucket else None)
                for m in ms]

    def _generation(self, bucket: str, generation: str | None) -> str:
        """``generation``, or when None the generation of the bucket's live record ("" without)."""
        if generation is not None:
            return generation
        record = self.get_bucket(bucket)
        return "" if record is None else record.generation

    def get_manifest(self, bucket: str, key: str, generation: str | None = None) -> Manifest | None:
        """The current manifest of ``bucket/key`` in that generation of the bucket (None: the
        live record's), tombstones included; None if never written."""
        raw = self._db.get(_manifest_key(bucket, key, self._generation(bucket, generation)))
        return None if raw is None else decode_manifest(raw, self._keys)

    def list_manifests(
        self,
        bucket: str,
        *,
        generation: str | None = None,
        prefix: str = "",
        start_after: str = "",
        limit: int = 1000,
        include_deleted: bool = False,
    ) -> list[Manifest]:
        """Manifests of ``bucket`` (one generation; None: the live record's) in key order (UTF-8
        bytes), like an S3 ListObjectsV2 page."""
        if limit <= 0:
            return []
        base = _manifest_prefix(bucket, self._generation(bucket, generation))
        scope = base + prefix.encode("utf-8")
        start = scope
        after = base + start_after.encode("utf-8") if start_after else None
        if after is not None and after > start:
            start = after
        out: list[Manifest] = []
        for k, v in self._scan(start, scope):
            if k == after:
                continue
            m = decode_manifest(v, self._keys)
            if m.deleted and not include_deleted:
                continue
            out.append(m)
            if len(out) >= limit:
                break
        return out

    def _manifest_scopes(self, bucket: str | None, generation: str | None) -> list[bytes]:
        if bucket is None:
            if generation is not None:
                raise ValueError("a generation scan needs a bucket")
            return [b"M"]
        if generation is not None:
            return [_manifest_prefix(bucket, generation)]
        name = b"M" + validate_bucket_name(bucket)
        return [name + b"\x00", name + b"\x01"]  # generation "", then every other one

    def iter_manifests(self, bucket: str | None = None, generation: str | None = None) -> Iterator[Manifest]:
        """Every manifest (tombstones included), of all buckets, of one bucket name (every
        generation), or of one (bucket, generation), in key order."""
        for scope in self._manifest_scopes(bucket, generation):
            for _, v in self._scan(scope, scope):
                yield decode_manifest(v, self._keys)

    def count_manifests(self, bucket: str, generation: str | None = None) -> int:
        """How many manifests (tombstones included) the index of ``bucket`` holds here: a walk of
        the keys alone, nothing decoded or decrypted (the metrics' count per policy)."""
        return sum(1 for scope in self._manifest_scopes(bucket, generation) for _ in self._scan(scope, scope))

    def has_live_objects(self, bucket: str, generation: str | None = None) -> bool:
        """Whether ``bucket`` (one generation, or any) holds an object that is not a tombstone."""
        return any(not m.deleted for m in self.iter_manifests(bucket, generation))

    # ----------------------------------------------------------------- buckets

    def put_bucket(self, r: BucketRecord) -> BucketRecord | BucketTombstone | None:
        """Store a bucket record unless the name has another live record (other generation or
        policy) or this generation has a tombstone; durable on return. Returns None when the
        record is stored (or the same bucket already was), else the record or tombstone that
        refused it: a record is never replaced."""
        result = self._submit([("b", _bucket_key(r.name), encode_bucket(r), r,
                                _tombstone_key(r.name, r.generation))])[0]
        assert not isinstance(result, bool)
        return result

    def get_bucket(self, name: str) -> BucketRecord | None:
        """The live record of bucket ``name`` (None if it has none: never made, or deleted)."""
        raw = self._db.get(_bucket_key(name))
        return None if raw is None else decode_bucket(raw)

    def list_buckets(self) -> list[BucketRecord]:
        return [decode_bucket(v) for _, v in self._scan(b"B", b"B")]

    def put_bucket_tombstone(self, t: BucketTombstone) -> None:
        """Record that generation ``t.generation`` of bucket ``t.name`` is deleted: its record (if
        it is the live one) and every manifest of that generation go in the same synced batch."""
        self._submit([("t", _tombstone_key(t.name, t.generation), encode_bucket_tombstone(t), t)])

    def delete_bucket(self, name: str, *, deleted: int = 0) -> BucketTombstone | None:
        """Delete the live record of ``name`` with a tombstone of its generation (made at version
        ``deleted``); returns the tombstone, or None when there was no record."""
        record = self.get_bucket(name)
        if record is None:
            return None
        t = BucketTombstone(record.name, record.generation, record.policy, deleted)
        self.put_bucket_tombstone(t)
        return t

    def drop_bucket_record(self, name: str, generation: str) -> bool:
        """Drop the record of ``name`` if it is still of ``generation`` and no manifest of that
        generation is held here, leaving no tombstone (a copy handed back to the record's owners).
        Returns whether it was dropped."""
        result = self._submit([("r", _bucket_key(name), name, generation)])[0]
        return bool(result)

    # A tenant's bucket list in one policy, kept by the owners of the tenant's name in that policy's
    # table: an entry per bucket, a record while it lives, its removal once deleted (a later
    # entry of the name replaces an earlier one, so a re-made bucket shows again).

    def put_listing(self, r: BucketRecord) -> None:
        self._submit([("l", _listing_key(r.policy, r.owner, r.name), b"R" + encode_bucket(r))])

    def remove_listing(self, t: BucketTombstone, tenant: str) -> None:
        self._submit([("l", _listing_key(t.policy, tenant, t.name), b"T" + encode_bucket_tombstone(t))])

    def listing(self, policy: str, tenant: str) -> tuple[list[BucketRecord], list[BucketTombstone]]:
        """The entries of `tenant`'s buckets under `policy` held here: records, and removals."""
        records, removals = [], []
        scope = _listing_scope(policy, tenant)
        for _, v in self._scan(scope, scope):
            if v[:1] == b"R":
                records.append(decode_bucket(v[1:]))
            else:
                removals.append(decode_bucket_tombstone(v[1:]))
        return records, removals

    def get_bucket_tombstone(self, name: str, generation: str) -> BucketTombstone | None:
        raw = self._db.get(_tombstone_key(name, generation))
        return None if raw is None else decode_bucket_tombstone(raw)

    def list_bucket_tombstones(self) -> list[BucketTombstone]:
        return [decode_bucket_tombstone(v) for _, v in self._scan(b"T", b"T")]

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

    def drop_manifests(self, bucket: str, versions: Iterable[tuple[str, int, str]],
                       generation: str | None = None) -> list[bool]:
        """Remove each ``(key, version, writer)`` of ``bucket`` (one generation; None: the live
        record's) only if it is still the stored version (a newer one is kept), in one synced
        batch; one removed flag per entry."""
        generation = self._generation(bucket, generation)
        ops: list[_Op] = [("x", _manifest_key(bucket, key, generation), (version, writer))
                          for key, version, writer in versions]
        return [bool(r) for r in self._submit(ops)] if ops else []

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

    def _submit(self, ops: Sequence[_Op]) -> list[_Result]:
        req = _Request(ops)
        self._enqueue(req)
        req.done.acquire()
        if req.error is not None:
            raise req.error
        return req.results

    def _enqueue(self, req: _Request) -> None:
        with self._cond:
            if self._closing:
                raise StorageError(f"metadata store {self.path} is closed")
            if self._failure is not None:
                raise self._unavailable_error()
            self._queue.append(req)
            self._cond.notify()

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
            # What this batch has written so far (None: deleted), read before the database, so
            # two ops of one batch see each other; `orders` caches the manifests' (version, writer).
            overlay: dict[bytes, bytes | None] = {}
            orders: dict[bytes, tuple[int, str] | None] = {}

            def read(key: bytes) -> bytes | None:
                return overlay[key] if key in overlay else self._db.get(key)

            def order_of(key: bytes) -> tuple[int, str] | None:
                if key in orders:
                    return orders[key]
                raw = read(key)
                return None if raw is None else manifest_order(raw)

            def put(key: bytes, value: bytes, order: tuple[int, str] | None = None) -> None:
                wb.put(key, value)
                overlay[key] = value
                orders[key] = order

            def delete(key: bytes) -> None:
                wb.delete(key)
                overlay[key] = None
                orders[key] = None

            nops = 0
            for req in reqs:
                for op in req.ops:
                    nops += 1
                    key = op[1]
                    if op[0] == "m":
                        order, guard = op[3], op[4]
                        if guard is not None:
                            raw_record = read(guard[0])
                            if raw_record is None or decode_bucket(raw_record).generation != guard[1]:
                                req.results.append(False)
                                continue
                        current = order_of(key)
                        if current is None or order > current:
                            put(key, op[2], order)
                            # stored; "applied" only with a version number above the replaced one's
                            req.results.append(current is None or order[0] > current[0])
                        else:
                            req.results.append(False)
                    elif op[0] == "x":
                        same = order_of(key) == op[2]
                        if same:
                            delete(key)
                        req.results.append(same)
                    elif op[0] == "p":
                        put(key, op[2])
                    elif op[0] == "d":
                        delete(key)
                    elif op[0] == "b":
                        record, tomb_key = op[3], op[4]
                        raw_tomb = read(tomb_key)
                        raw_record = read(key)
                        if raw_tomb is not None:
                            req.results.append(decode_bucket_tombstone(raw_tomb))
                        elif raw_record is None:
                            put(key, op[2])
                            req.results.append(None)
                        else:
                            held = decode_bucket(raw_record)
                            req.results.append(None if held.same_bucket(record) else held)
                    elif op[0] == "l":
                        raw_entry = read(key)
                        if raw_entry is None or _listing_time(raw_entry) < _listing_time(op[2]):
                            put(key, op[2])
                    elif op[0] == "r":
                        raw_record = read(key)
                        scope = _manifest_prefix(op[2], op[3])
                        drop = raw_record is not None and decode_bucket(raw_record).generation == op[3] \
                            and not any(True for _ in self._scan(scope, scope)) \
                            and not any(v is not None and k.startswith(scope) for k, v in overlay.items())
                        if drop:
                            delete(key)
                        req.results.append(drop)
                    else:  # "t": tombstone, then the generation's record and manifests go
                        t = op[3]
                        put(key, op[2])
                        raw_record = read(_bucket_key(t.name))
                        if raw_record is not None and decode_bucket(raw_record).generation == t.generation:
                            delete(_bucket_key(t.name))
                        scope = _manifest_prefix(t.name, t.generation)
                        doomed = {k for k, _ in self._scan(scope, scope)}
                        doomed.update(k for k, v in overlay.items() if v is not None and k.startswith(scope))
                        for k in sorted(doomed):
                            delete(k)
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
                if req.future is None:
                    req.done.release()
                elif req.error is not None:
                    req.future.set_exception(req.error)
                else:
                    req.future.set_result(req.results)
