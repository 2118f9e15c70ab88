"""Profile a large PUT (default 64 MiB at concurrency 1) on a secure mesh, and its CPU budget.

    python -m maillage.benchmarks.profile_large [--size 64M] [--concurrency 1] [--seconds 20] [--native] [--idle]
    python -m maillage.benchmarks.profile_large --budget-only

Two parts:

* **the profile**: the machinery of `profile_small` (see there: CPU per process and thread, time
  spent waiting for a core, py-spy phases and top functions of every node and of the client,
  cProfile of the client) with a large object's defaults. py-spy runs on every node: the SDK
  rotates a large upload's coordinator over the eligible nodes, so each node is in turn the
  coordinator (cut, hash, frame, send) and a replica (verify, seal, write, fsync).
* **the budget**: the CPU time (thread CPU time, so other load on the machine does not inflate
  it) of each byte-touching step a 4 MiB chunk goes through on the write path, measured by
  running the same functions the data path calls (the frame codec, the data keys' AES-GCM, file
  write and fsync in the data directory's file system), then added up for one PUT of `--size`:
  16 chunks per 64 MiB, each stored on R=2 replicas. What the measured node CPU per PUT has
  beyond that sum is gRPC, TLS and the event loop. Each step also counts the copies it makes of
  the chunk's bytes and its BLAKE3 passes over them, added up per chunk at the end (issue 27;
  tests/node/test_write_path_copies.py holds the write path to the same figures).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maillage.benchmarks.mesh import format_size, parse_size
from maillage.benchmarks.profile_small import add_arguments, run_args

__all__ = ["chunk_budget", "format_budget", "main"]

CHUNK = 4 << 20
PIECE = 1 << 20  # the SDK's PutObject data message


def _measure(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call, medians over `rounds` calls; CPU is this thread's user + system."""
    cpu, wall = [], []
    for _ in range(rounds):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    cpu.sort()
    wall.sort()
    return cpu[len(cpu) // 2] * 1e3, wall[len(wall) // 2] * 1e3


def chunk_budget(directory: Path, *, rounds: int = 8, replicas: int = 2, object_size: int = 64 << 20,
                 sites: int = 3, transport: bool = True) -> dict:
    """CPU per step of one incompressible, keyed 4 MiB chunk on the write path; the sum for one PUT.

    With `transport`, gRPC over mutual TLS too (``limits.measure_grpc``: CPU per MiB of the sender and
    the receiver of a stream of 1 MiB messages): client -> coordinator once per chunk, coordinator ->
    each replica but itself (the coordinator rotates over `sites` nodes, so it is one of the R replicas
    R/sites of the time)."""
    import blake3

    from maillage.node.data.chunking import FixedChunker
    from maillage.proto import bulk
    from maillage.proto.frame import chunk_digest, encode_frame, verify_frame
    from maillage.storage import ChunkStore, DataKeys, MetaStore, NodeKey

    directory.mkdir(parents=True, exist_ok=True)
    remote = replicas - replicas / sites  # copies per chunk that leave the coordinator (and are verified)
    plain = os.urandom(CHUNK)
    pieces = [plain[i:i + PIECE] for i in range(0, CHUNK, PIECE)]
    key = os.urandom(32)
    digest = chunk_digest(plain, key)
    frame = encode_frame(plain, digest=digest, key=key)
    meta = MetaStore(directory / "meta")
    try:
        keys = DataKeys(meta, NodeKey.generate())
        key_id = keys.tenant_key("bench")
        head = b"x" * 22
        files = directory / "files"
        files.mkdir()
        counter = [0]

        received = [memoryview(p) for p in pieces]  # the gRPC door's pieces: views of the messages

        def chunker() -> bytes:  # the node's own chunker, fed as the door feeds it
            c = FixedChunker(CHUNK)
            return [chunk for p in received for chunk in c.feed(p)][0]

        def seal() -> tuple[bytes, bytes]:  # storage/chunks._sealed_file: nonce, AES-GCM(frame); written by writev
            return keys.encrypt_parts(key_id, frame, head + digest)

        sealed = b"".join((head, *seal()))  # the file's bytes, for the write steps

        def write() -> None:
            counter[0] += 1
            fd = os.open(files / f"w{counter[0]}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, sealed)
            finally:
                os.close(fd)

        def write_fsync() -> None:
            counter[0] += 1
            fd = os.open(files / f"f{counter[0]}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, sealed)
                os.fsync(fd)
            finally:
                os.close(fd)
            dfd = os.open(files, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

        def write_fsync_drop() -> None:  # what ChunkStore does (and Swift): drop the written pages after fsync
            counter[0] += 1
            fd = os.open(files / f"d{counter[0]}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, sealed)
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            dfd = os.open(files, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

        store = ChunkStore(directory / "chunks", keys=keys)
        frames = [encode_frame(bytes([i]) + plain[1:], key=key) for i in range(rounds)]
        stored = iter(frames)

        # (where, step, times per chunk, copies of the chunk's bytes, BLAKE3 passes over them, call)
        steps: list[tuple[str, str, float, int, int, Callable[[], object]]] = [
            ("client", "BLAKE3 of the body (the etag)", 1, 0, 1, lambda: blake3.blake3(plain).digest()),
            ("client", "PutObject data messages (tag + piece joined: 1 copy)", 1, 1, 0,
             lambda: [bulk.data_message(p) for p in pieces]),
            ("coordinator", "FixedChunker (views of the pieces, one join: 1 copy)", 1, 1, 0, chunker),
            ("coordinator", "BLAKE3 of the whole object (etag check)", 1, 0, 1, lambda: blake3.blake3(plain).digest()),
            ("coordinator", "keyed BLAKE3 chunk name (chunk_digest)", 1, 0, 1, lambda: chunk_digest(plain, key)),
            ("coordinator", "encode_frame (zstd samples, payload check, join: 1 copy)", 1, 1, 1,
             lambda: encode_frame(plain, digest=digest, key=key)),
            ("replica", "verify_frame (CRC, payload check; remote replicas only)", remote, 0, 1,
             lambda: verify_frame(frame)),
            ("replica", "seal: AES-GCM of the frame (its output; written by writev)", replicas, 1, 0, seal),
            ("replica", "write 4 MiB file (page cache)", replicas, 0, 0, write),
            ("replica", "write + fsync file + drop its pages + fsync dir", replicas, 0, 0, write_fsync_drop),
            ("replica", "(before) write + fsync file + fsync dir, pages kept", replicas, 0, 0, write_fsync),
            ("replica", "ChunkStore.put, all of it (verify, seal, write, fsync, link)", replicas, 0, 0,
             lambda: store.put(next(stored), "bench", "bench")),
        ]
        rows: list[dict[str, Any]] = []
        for where, label, times, copies, passes, fn in steps:
            fn()  # warm (first allocation, page faults of a fresh buffer)
            if label.startswith("ChunkStore.put"):
                stored = iter(frames[1:])
                cpu, wall = _measure(fn, rounds - 1)
            else:
                cpu, wall = _measure(fn, rounds)
            rows.append({"where": where, "step": label, "per_chunk": round(times, 2), "cpu_ms": round(cpu, 2),
                         "wall_ms": round(wall, 2), "copies": copies, "blake3_passes": passes})
    finally:
        meta.close()
        shutil.rmtree(directory, ignore_errors=True)
    if transport:
        from maillage.benchmarks.limits import measure_grpc
        grpc_tls = measure_grpc(max(64 << 20, 8 * CHUNK), 3)["grpc_tls_put"]
        mib = CHUNK / (1 << 20)
        transfers: tuple[tuple[str, str, float, float], ...] = (
                ("client", "gRPC+TLS send of the chunk's 4 MiB (PutObject stream)", 1,
                 grpc_tls["caller_cpu_ms_per_mib"]),
                ("coordinator", "gRPC+TLS receive of the 4 MiB", 1, grpc_tls["server_cpu_ms_per_mib"]),
                ("coordinator", f"gRPC+TLS send of the frame to the remote replicas (x{remote:.2f})", remote,
                 grpc_tls["caller_cpu_ms_per_mib"]),
                ("replica", "gRPC+TLS receive of the frame (remote replicas)", remote,
                 grpc_tls["server_cpu_ms_per_mib"]))
        for where, label, share, per_mib in transfers:
            rows.append({"where": where, "step": label, "per_chunk": round(share, 2),
                         "cpu_ms": round(per_mib * mib, 2), "wall_ms": None, "copies": 0, "blake3_passes": 0})
    chunks = max(1, object_size // CHUNK)
    # the steps a PUT runs (the write-only row and the whole-put row overlap the others: not summed)
    summed = [r for r in rows if not r["step"].startswith(("write 4 MiB", "ChunkStore.put", "(before)"))]
    total = sum(r["cpu_ms"] * r["per_chunk"] for r in summed) * chunks
    for r in rows:
        r["per_put_cpu_ms"] = round(r["cpu_ms"] * r["per_chunk"] * chunks, 1)
    return {"object_size": object_size, "chunk": CHUNK, "chunks": chunks, "replicas": replicas, "rows": rows,
            "per_put_cpu_ms": round(total, 1), "summed_steps": [r["step"] for r in summed]}


def format_budget(budget: dict, measured_ms: float | None = None) -> str:
    n, size = budget["chunks"], format_size(budget["object_size"])
    lines = [f"CPU budget of one {size} PUT ({n} chunks of 4 MiB, R={budget['replicas']}; thread CPU time, "
             "median; steps run in this process with the data path's functions):",
             f"  {'where':<12} {'step':<62} {'CPU ms/chunk':>12} {'wall ms':>8} {'x':>4} {'CPU ms/PUT':>11}"]
    for r in budget["rows"]:
        mark = ("" if r["step"] in budget["summed_steps"] else "  (not summed: an alternative)"
                if r["step"].startswith("(before)") else "  (not summed: overlaps)")
        wall = "-" if r["wall_ms"] is None else f"{r['wall_ms']:.2f}"
        lines.append(f"  {r['where']:<12} {r['step']:<62} {r['cpu_ms']:>12.2f} {wall:>8} "
                     f"{r['per_chunk']:>4g} {r['per_put_cpu_ms']:>11.1f}{mark}")
    lines.append(f"  sum of the summed steps: {budget['per_put_cpu_ms']:,.0f} ms of CPU per {size} PUT")
    lines.append("  per chunk, copies of its bytes / BLAKE3 passes over them (gRPC's own copies not counted; "
                 "the coordinator's own store, one of the replicas, verifies nothing: 1 / 0):")
    for where in ("client", "coordinator", "replica"):
        own = [r for r in budget["rows"] if r["where"] == where and r["step"] in budget["summed_steps"]]
        copies = sum(r["copies"] for r in own)
        passes = sum(r["blake3_passes"] for r in own)
        lines.append(f"    {where:<12} {copies} / {passes}")
    if measured_ms:
        rest = measured_ms - budget["per_put_cpu_ms"]
        lines.append(f"  measured CPU per PUT (nodes + client, under the profilers): {measured_ms:,.0f} ms; the rest, "
                     f"{rest:,.0f} ms ({rest / measured_ms:.0%}), is what the steps above leave out: the event "
                     "loop, per-message Python work, gRPC beyond raw streaming, metadata, allocation")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.profile_large",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser, op="put", size="64M", concurrency=1, seconds=20.0, out=str(Path("profile-large")))
    parser.add_argument("--budget-only", action="store_true", help="only the CPU budget (no mesh, a few seconds)")
    parser.add_argument("--rounds", type=int, default=8, help="calls per budget step, the median is kept")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="maillage-budget-") as tmp:
        budget = chunk_budget(Path(tmp) / "b", rounds=args.rounds, object_size=parse_size(args.size))
    if args.budget_only:
        print(format_budget(budget))
        return 0
    code = run_args(args)
    text = (args.out / "profile.txt").read_text()
    measured = _measured_cpu_per_op(text)
    report = format_budget(budget, measured)
    print("\n" + report)
    (args.out / "profile.txt").write_text(text + "\n" + report + "\n")
    return code


def _measured_cpu_per_op(report: str) -> float | None:
    """CPU ms per op from a profile report: the processes' CPU seconds over the op count."""
    import ast
    import re
    first = report.splitlines()[0]
    found = re.search(r": (\[.*\])$", first)
    rows = ast.literal_eval(found.group(1)) if found else []
    ops = sum(r.get("ops", 0) for r in rows)
    cpu = sum(float(m) for m in re.findall(r"^\s+\S+\s+([\d.]+) s = ", report, re.MULTILINE))
    return cpu / ops * 1e3 if ops else None


if __name__ == "__main__":
    sys.exit(main())
