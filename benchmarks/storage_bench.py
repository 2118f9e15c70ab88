"""Storage micro-benchmark: chunk store and metadata store next to the raw limits of the disk.

Every figure is printed with its ratio to a raw limit measured in the same run on the same
directory, so a result means something on any machine:

* chunk put (4 MiB frames, incompressible and compressible) vs plain ``os.write`` + ``fsync`` of
  4 MiB files (+ directory fsync) - what the crash-safe path costs over the bare minimum;
* chunk get (read + full verification) vs a plain read of the same files (page cache warm for
  both: the benchmark does not drop caches, which would disturb other processes);
* frame encoding (BLAKE3 + zstd when it helps) vs BLAKE3 alone;
* ``put_manifest`` with 1 thread vs a RocksDB synced single put, and with 16 threads vs a RocksDB
  synced batch of 100 puts (the group-commit ceiling).

Throughput of compressible chunks is counted in plain bytes, so it can exceed the raw disk
limit: fewer bytes reach the disk.

Run: ``python -m maillage.benchmarks.storage_bench [--dir PATH] [--mb 256] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import blake3
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from maillage.proto.frame import chunk_digest, encode_frame
from maillage.storage import ChunkRef, ChunkStore, DataKeys, HybridClock, Manifest, MetaStore, NodeKey

__all__ = ["run", "main"]

CHUNK = 4 << 20
MB = 1 << 20


def _incompressible(n: int) -> list[bytes]:
    base = os.urandom(CHUNK)
    return [i.to_bytes(8, "big") + base[8:] for i in range(n)]


def _compressible(n: int) -> list[bytes]:
    words = [os.urandom(3).hex() for _ in range(2000)]
    import random

    rnd = random.Random(1)
    text = " ".join(rnd.choice(words) for _ in range(CHUNK // 6)).encode()[:CHUNK]
    text = text.ljust(CHUNK, b" ")
    return [i.to_bytes(8, "big") + text[8:] for i in range(n)]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _row(name: str, value: float, unit: str, limit_name: str | None = None,
         limit: float | None = None) -> dict:
    return {
        "name": name,
        "value": round(value, 1),
        "unit": unit,
        "limit_name": limit_name,
        "limit": None if limit is None else round(limit, 1),
        "ratio": None if not limit else round(value / limit, 3),
    }


def _raw_write(directory: Path, blobs: list[bytes]) -> float:
    directory.mkdir(parents=True)

    def go() -> None:
        for i, b in enumerate(blobs):
            fd = os.open(directory / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                mv = memoryview(b)
                while mv:
                    mv = mv[os.write(fd, mv):]
                os.fsync(fd)
            finally:
                os.close(fd)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    return len(blobs) * CHUNK / MB / _timed(go)


def _raw_read(directory: Path, n: int) -> float:
    def go() -> None:
        for i in range(n):
            with open(directory / f"f{i}", "rb", buffering=0) as f:
                f.read()

    return n * CHUNK / MB / _timed(go)


def _hash_all(blobs: list[bytes]) -> list[bytes]:
    return [blake3.blake3(b).digest() for b in blobs]


def _encode_all(blobs: list[bytes]) -> None:
    for b in blobs:
        encode_frame(b)  # discarded: measure encoding, not the growth of a list


def _chunk_store_rates(directory: Path, frames: list[bytes], blobs: list[bytes],
                       keys: DataKeys | None = None) -> tuple[float, float]:
    """Seconds to put every frame into a new chunk store (encrypted at rest with `keys`), then to
    get every chunk back."""
    store = ChunkStore(directory, keys=keys)
    put = _timed(lambda: [store.put(f, "bench") for f in frames])
    digests = [chunk_digest(b) for b in blobs]

    def get_all() -> None:
        for d in digests:
            store.get(d)  # read + full verification, frame discarded like a sender would

    get = _timed(get_all)
    shutil.rmtree(directory)
    return put, get


def _rocksdb_limits(path: Path, singles: int = 2000, batches: int = 200) -> tuple[float, float]:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.increase_parallelism(2)
    db = Rdict(str(path), opts)
    sync = WriteOptions()
    sync.sync = True
    value = b"x" * 150
    try:
        t = time.perf_counter()
        for i in range(singles):
            wb = WriteBatch(raw_mode=True)
            wb.put(b"single/%08d" % i, value)
            db.write(wb, sync)
        single = singles / (time.perf_counter() - t)
        t = time.perf_counter()
        for j in range(batches):
            wb = WriteBatch(raw_mode=True)
            for i in range(100):
                wb.put(b"batch/%08d/%03d" % (j, i), value)
            db.write(wb, sync)
        batch = batches * 100 / (time.perf_counter() - t)
    finally:
        db.close()
    return single, batch


def _meta_rate(meta: MetaStore, threads: int, per_thread: int, tag: str) -> float:
    clock = HybridClock()
    digest = chunk_digest(b"bench")
    def work(t: int) -> None:
        for i in range(per_thread):
            meta.put_manifest(Manifest("bench", f"{tag}/{t:02d}/{i:06d}", clock.now(), CHUNK,
                                       "etag", chunks=(ChunkRef(digest, CHUNK),), writer="bench"))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return threads * per_thread / (time.perf_counter() - t0)


def run(directory: Path | str, megabytes: int = 256) -> list[dict]:
    """Run every measurement under ``directory`` (created, then emptied) and return the rows."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="storage-bench-", dir=root))
    n = max(2, megabytes * MB // CHUNK)
    rows: list[dict] = []
    try:
        inc, comp = _incompressible(n), _compressible(n)
        total_mb = n * CHUNK / MB

        # CPU limits: hashing vs frame encoding
        hash_rate = total_mb / _timed(partial(_hash_all, inc))
        enc_inc = total_mb / _timed(partial(_encode_all, inc))
        enc_comp = total_mb / _timed(partial(_encode_all, comp))
        frames_inc = [encode_frame(b) for b in inc]
        frames_comp = [encode_frame(b) for b in comp]
        rows.append(_row("encode_frame incompressible", enc_inc, "MB/s", "blake3 one thread", hash_rate))
        rows.append(_row("encode_frame compressible", enc_comp, "MB/s", "blake3 one thread", hash_rate))

        # Disk limits, then the chunk store on the same disk
        raw_w = _raw_write(work / "raw", inc)
        raw_r = _raw_read(work / "raw", n)
        shutil.rmtree(work / "raw")
        keys_meta = MetaStore(work / "keys-meta")
        keys = DataKeys(keys_meta, NodeKey.generate())   # encryption at rest, as nodes run
        try:
            for label, frames, blobs in (("incompressible", frames_inc, inc), ("compressible", frames_comp, comp)):
                put_s, get_s = _chunk_store_rates(work / f"chunks-{label}", frames, blobs)
                rows.append(_row(f"chunk put {label}", total_mb / put_s, "MB/s", "os.write+fsync 4 MiB files",
                                 raw_w))
                rows.append(_row(f"chunk get {label}", total_mb / get_s, "MB/s", "plain read of 4 MiB files",
                                 raw_r))
                enc_put_s, enc_get_s = _chunk_store_rates(work / f"chunks-{label}-enc", frames, blobs, keys)
                rows.append(_row(f"chunk put {label} encrypted", total_mb / enc_put_s, "MB/s",
                                 f"chunk put {label}, not encrypted", total_mb / put_s))
                rows.append(_row(f"chunk get {label} encrypted", total_mb / enc_get_s, "MB/s",
                                 f"chunk get {label}, not encrypted", total_mb / get_s))
        finally:
            keys_meta.close()
        del frames, blobs, frames_inc, frames_comp, inc, comp

        # Metadata
        single, batch = _rocksdb_limits(work / "rocksdb-raw")
        meta = MetaStore(work / "meta")
        try:
            one = _meta_rate(meta, 1, 2000, "one")
            before = meta.stats()
            many = _meta_rate(meta, 16, 250, "many")
            after = meta.stats()
        finally:
            meta.close()
        per_batch = (after.requests - before.requests) / max(1, after.batches - before.batches)
        rows.append(_row("put_manifest 1 thread", one, "puts/s", "rocksdb synced single put", single))
        rows.append(_row("put_manifest 16 threads", many, "puts/s", "rocksdb synced single put", single))
        r = _row("put_manifest 16 threads (vs batch)", many, "puts/s", "rocksdb synced batch of 100", batch)
        r["puts_per_batch"] = round(per_batch, 1)
        rows.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _table(rows: list[dict]) -> str:
    lines = [f"{'measure':<38} {'value':>12}  {'limit':>12}  {'ratio':>6}  limit measured"]
    for r in rows:
        limit = "" if r["limit"] is None else f"{r['limit']:>12,.0f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:>6.2f}"
        lines.append(f"{r['name']:<38} {r['value']:>12,.0f}  {limit:>12}  {ratio:>6}  "
                     f"{r['limit_name'] or ''} ({r['unit']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.storage_bench",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None,
                        help="directory on the disk to measure (default: a temporary directory)")
    parser.add_argument("--mb", type=int, default=256, help="megabytes of chunks per case")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    args = parser.parse_args(argv)
    directory = args.dir or tempfile.gettempdir()
    rows = run(directory, megabytes=args.mb)
    print(_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"directory": str(directory), "megabytes": args.mb, "results": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
