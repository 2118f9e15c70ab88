"""A seeded, concurrent client workload that records every operation for the checker.

Why: "nothing is lost" is only provable from a history. Jepsen's model is used: each operation
ends ``ok`` (it happened), ``fail`` (it certainly did not: the request was refused before anything
was stored, e.g. a validation error) or ``unknown`` (timeout, unavailable, quorum not reached: it
may or may not have been applied, now or after repair).

Values are traceable: the bytes written by write number ``seq`` to ``bucket/key`` are a pure
function of (seed, bucket, key, seq): a header naming them, then BLAKE3 output keyed by that
header. Any byte string read back can therefore be traced to the write that produced it
(``decode_value``), and bytes that no write produced are recognised as such.

The workload runs its own asyncio loop in a thread (one ``AsyncClient`` shared by ``clients``
concurrent workers), so a test injects faults from its own thread while operations go on.
Times are ``time.monotonic()`` of this process.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import blake3

from maillage.client import (
    AsyncClient,
    BucketAlreadyExists,
    InvalidRequest,
    NoSuchBucket,
    NoSuchKey,
    ObjectSummary,
    PolicyUnsatisfiable,
    Profile,
)

__all__ = ["Op", "Workload", "BucketSpec", "make_value", "decode_value", "BadValue", "classify"]

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
_MAGIC = b"ml1|"
#: Errors after which a write certainly did not happen (refused before anything was stored).
_DEFINITE = (InvalidRequest, NoSuchBucket, PolicyUnsatisfiable, BucketAlreadyExists)


class BadValue(ValueError):
    """Bytes that no write of this workload produced (or a damaged copy of one)."""


@dataclass(frozen=True)
class BucketSpec:
    name: str
    policy: str


@dataclass
class Op:
    """One client operation, as the checker sees it."""
    id: int
    worker: int
    kind: str                      # put | get | delete | list
    bucket: str
    key: str = ""
    start: float = 0.0
    end: float = 0.0
    outcome: str = UNKNOWN         # ok | fail | unknown
    seq: int | None = None         # put: the value written; get: the value read (None: absent)
    version: int = 0               # HLC version the mesh answered (put / delete)
    error: str = ""
    listed: tuple[str, ...] = ()   # list: keys returned
    sites: tuple[str, ...] = ()    # put: sites that acknowledged

    def line(self) -> str:
        what = f"{self.kind} {self.bucket}/{self.key}" + (f" seq={self.seq}" if self.seq is not None else "")
        return (f"#{self.id} w{self.worker} {what} [{self.start:.3f}, {self.end:.3f}] {self.outcome}"
                + (f" ({self.error})" if self.error else ""))


def value_size(seed: int, seq: int, big_every: int = 5, big: int = 200_000) -> int:
    """Mostly small (inline) values, one in ``big_every`` spans several chunks."""
    rng = random.Random(f"{seed}:{seq}")
    return rng.randrange(big // 2, big) if rng.randrange(big_every) == 0 else rng.randrange(64, 3000)


def make_value(seed: int, bucket: str, key: str, seq: int, size: int | None = None) -> bytes:
    """The bytes write ``seq`` puts under bucket/key: traceable header + keyed BLAKE3 stream."""
    n = value_size(seed, seq) if size is None else size
    header = b"%s%d|%s|%s|%d|%d\n" % (_MAGIC, seed, bucket.encode(), key.encode(), seq, n)
    body = blake3.blake3(header).digest(length=max(0, n - len(header)))
    return header + body


def decode_value(data: bytes) -> tuple[int, str, str, int]:
    """(seed, bucket, key, seq) of bytes produced by ``make_value``; ``BadValue`` otherwise."""
    if not data.startswith(_MAGIC):
        raise BadValue(f"{len(data)} bytes without the workload header: {data[:24]!r}")
    try:
        line = data[:data.index(b"\n")].decode()
        _, seed, bucket, key, seq, size = line.split("|")
        seed_i, seq_i, size_i = int(seed), int(seq), int(size)
    except ValueError as exc:
        raise BadValue(f"unreadable workload header {data[:80]!r}") from exc
    if make_value(seed_i, bucket, key, seq_i, size_i) != data:
        raise BadValue(f"bytes of {bucket}/{key} seq {seq_i} differ from what that write produced "
                       f"({len(data)} bytes read, {size_i} written)")
    return seed_i, bucket, key, seq_i


def classify(exc: BaseException) -> str:
    return FAIL if isinstance(exc, _DEFINITE) else UNKNOWN


@dataclass
class Workload:
    """Concurrent put/get/delete/list on ``buckets`` until ``stop()``; see module docstring."""

    profile: Profile
    buckets: Sequence[BucketSpec]
    seed: int
    clients: int = 4
    keys_per_bucket: int = 8
    op_timeout: float = 5.0
    think: float = 0.01            # pause between a worker's operations (seconds)
    mix: tuple[tuple[str, int], ...] = (("put", 45), ("get", 35), ("delete", 10), ("list", 10))
    history: list[Op] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = iter(range(1, 1 << 62))
        self._seq = iter(range(1, 1 << 62))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.paused = threading.Event()

    # ----- control (from the test's thread) ----------------------------------------------------

    def keys(self) -> list[str]:
        return [f"k{i:02d}" for i in range(self.keys_per_bucket)]

    def setup(self) -> None:
        """Create the buckets (before faults), each bound to its policy."""
        async def go() -> None:
            async with AsyncClient(profile=self.profile, timeout=15) as client:
                for b in self.buckets:
                    try:
                        await client.create_bucket(b.name, policy=b.policy)
                    except BucketAlreadyExists:
                        pass
        asyncio.run(go())

    def start(self) -> Workload:
        self._thread = threading.Thread(target=self._main, name="workload", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Op]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.op_timeout * 3 + 10)
            if self._thread.is_alive():
                raise RuntimeError("workload did not stop")
        if self._error is not None:
            raise RuntimeError(f"workload crashed: {self._error!r}") from self._error
        return self.history

    def run_for(self, seconds: float) -> list[Op]:
        self.start()
        time.sleep(seconds)
        return self.stop()

    def wait_ops(self, count: int, *, kind: str | None = None, ok: bool = False, since: float | None = None,
                 timeout: float = 60.0) -> int:
        """Wait until `count` operations (of `kind`; successful only if `ok`) have ended since
        `since` (monotonic; default: now), so a fault window lasts until the workload has really
        run through it instead of a guessed number of seconds. Raises TimeoutError past `timeout`."""
        began = time.monotonic() if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            if self._error is not None:
                raise RuntimeError(f"workload crashed: {self._error!r}") from self._error
            done = sum(1 for op in list(self.history)
                       if op.end and op.start >= began and (kind is None or op.kind == kind)
                       and (not ok or op.outcome == OK))
            if done >= count:
                return done
            if time.monotonic() > deadline:
                what = f"{'successful ' if ok else ''}{kind or 'operation'}s"
                raise TimeoutError(f"only {done} of {count} {what} ended within {timeout:.0f} s")
            time.sleep(0.05)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for op in list(self.history):
            out.setdefault(op.kind, {OK: 0, FAIL: 0, UNKNOWN: 0})[op.outcome] += 1
        return out

    # ----- the loop -----------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by stop()
            self._error = exc

    async def _run(self) -> None:
        async with AsyncClient(profile=self.profile, timeout=self.op_timeout) as client:
            await asyncio.gather(*(self._worker(client, w) for w in range(self.clients)))

    async def _worker(self, client: AsyncClient, worker: int) -> None:
        rng = random.Random(f"{self.seed}:worker:{worker}")
        kinds = [k for k, _ in self.mix]
        weights = [w for _, w in self.mix]
        while not self._stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            bucket = rng.choice(self.buckets).name
            key = rng.choice(self.keys())
            await self._one(client, worker, kind, bucket, key)
            await asyncio.sleep(self.think * rng.random() * 2)

    async def _one(self, client: AsyncClient, worker: int, kind: str, bucket: str, key: str) -> None:
        with self._lock:
            op = Op(next(self._ids), worker, kind, bucket, key if kind != "list" else "")
            if kind == "put":
                op.seq = next(self._seq)
            self.history.append(op)
        op.start = time.monotonic()
        try:
            await asyncio.wait_for(self._do(client, op), self.op_timeout)
            op.outcome = OK
        except NoSuchKey:
            if kind == "get":
                op.outcome, op.seq = OK, None
            else:
                op.outcome, op.error = UNKNOWN, "NoSuchKey"
        except BadValue as exc:
            op.outcome, op.error = OK, f"BAD VALUE: {exc}"   # the read happened; the checker flags it
        except TimeoutError:
            op.outcome, op.error = UNKNOWN, f"timeout after {self.op_timeout}s"
        except Exception as exc:
            op.outcome, op.error = classify(exc), f"{type(exc).__name__}: {str(exc)[:160]}"
        finally:
            op.end = time.monotonic()

    async def _do(self, client: AsyncClient, op: Op) -> None:
        if op.kind == "put":
            assert op.seq is not None
            r = await client.put_object(op.bucket, op.key, make_value(self.seed, op.bucket, op.key, op.seq))
            op.version, op.sites = r.version, tuple(r.sites)
        elif op.kind == "get":
            body = await client.get_object(op.bucket, op.key)
            data = await body.read()
            _, b, k, op.seq = decode_value(data)
            if (b, k) != (op.bucket, op.key):
                raise BadValue(f"read {op.bucket}/{op.key} returned the bytes of {b}/{k} seq {op.seq}")
        elif op.kind == "delete":
            op.version = await client.delete_object(op.bucket, op.key)
        else:
            op.listed = tuple(o.key for o in [x async for x in client.list_objects(op.bucket)]
                              if isinstance(o, ObjectSummary))
