"""Profile one data-path cell (default: 4 KiB PUT and GET at concurrency 32) on a secure mesh.

    python -m maillage.benchmarks.profile_small [--op put|get|both] [--size 4K] [--concurrency 32]
        [--seconds 10] [--nodes all|first] [--native] [--out DIR]
    python -m maillage.benchmarks.profile_large      # the same, for a 64 MiB PUT at c=1

The mesh is the benchmarks' own: 3 sites, R=2, fsync on, TLS, signed requests and encryption at
rest, as users run it. Three views, because each alone misleads:

* **CPU per process and per thread** over the measured load, from /proc: which process is the
  bottleneck (the coordinator of a large PUT rotates over the nodes), and how much runs in gRPC's
  C-core threads (TLS, HTTP/2 framing), which a Python profiler does not see.
* **py-spy** on every node (or the first) and on the client, by pid, out of process: collapsed
  stacks, the top functions by own and by total samples, and **phases**: each sample is given to
  the first rule of `PHASES` that one of its frames matches, from the leaf up (hashing, zstd,
  AES-GCM at rest, fsync, file writes, TLS, gRPC, protobuf, the event loop...). With `--native`
  py-spy also unwinds C frames (blake3, zstd, OpenSSL, grpc), so the phases are named by the C
  code that burns the time; without it, by the Python function that called it.
* **cProfile** of the client (function-level own time, all of its Python threads' calls from the
  event loop).

Figures under a profiler are lower than without it: use them to compare functions, not as
throughput. py-spy is `pip install py-spy` (it attaches to processes this run started).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from maillage.benchmarks.machine import loadavg, process_cpu_seconds
from maillage.benchmarks.mesh import format_size, node_pids, open_mesh, parse_size

__all__ = ["profile", "top_of_collapsed", "phases_of_collapsed", "thread_cpu", "run_queue_wait", "PHASES",
           "main"]

# (phase, pattern): a sample belongs to the phase of the first rule matched by one of its frames,
# trying the frames from the leaf up; rules are tried in this order for each frame. Python frames
# look like "encode_frame (maillage/proto/frame.py:160)"; native ones like "blake3_hash_many_avx2
# (blake3.abi3.so)" or "ZSTD_compressBlock_fast (libzstd.so)".
PHASES: tuple[tuple[str, str], ...] = (
    # waiting, not working: only in samples py-spy takes of idle threads (--idle, and --native,
    # whose samples include threads blocked in C)
    ("idle: waiting", r"epoll_wait|epoll_pwait|select\.epoll|\bselect \(selectors|_queue_SimpleQueue_get|"
                      r"PyThread_acquire_lock_timed|pthread_cond_(timed)?wait|sem_(timed)?wait|clock_nanosleep|"
                      r"\bwait \(threading\.py|_wait_for_tstate_lock"),
    ("fsync", r"\bfsync\b|fdatasync|_fsync"),
    ("BLAKE3 hashing", r"blake3|chunk_digest|_hasher\b|_payload_check"),
    ("zstd compress/decompress", r"zstd|ZSTD_|_compressor|_decompressor|compress"),
    ("AES-GCM at rest", r"aes|gcm|_sealed_file|open_chunk_file|\bencrypt\b|\bdecrypt\b|EVP_|CRYPTO_|ghash"),
    ("TLS (OpenSSL/BoringSSL)", r"ssl|SSL_|tls|bssl|boringssl"),
    ("frame codec (header, CRC, copy)", r"maillage/proto/frame\.py|proto/frame\.py|crc32|zlib"),
    ("chunk file write / read", r"_write_file|os\.write|pwrite|\bwrite\b|\bread\b|_ensure_dirs|storage/chunks\.py"),
    ("RocksDB metadata", r"rocksdict|rocksdb|storage/metadata\.py"),
    ("protobuf", r"protobuf|_pb2|upb_|SerializeToString|FromString|ParseFromString"),
    ("request signatures / gate", r"requestauth|signing\.py|gate\.py|sigv4|hmac"),
    ("gRPC", r"grpc|cygrpc|_cython|chttp2|completion_queue|_server\.py|aio/_call|sendmsg|recvmsg"),
    ("memory copy / alloc", r"memcpy|memmove|malloc|\bfree\b|bytearray|bytes\.join|_int_malloc|mmap|munmap|madvise"),
    ("event loop (other Python)", r"asyncio|uvloop|selectors|_run_once|run_forever|base_events|events\.py"),
    ("thread pool (other jobs)", r"concurrent/futures|threading\.py"),
)
# A thread-pool worker waiting for a job: its leaf frame is the worker loop itself.
IDLE_LEAF = re.compile(r"^_worker \(concurrent/futures/thread\.py")


def top_of_collapsed(text: str, n: int = 25) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(top by own samples, top by total samples, all samples) of py-spy's raw collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for frames, count in _stacks(text):
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return own.most_common(n), total.most_common(n), samples


def _stacks(text: str):
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def phases_of_collapsed(text: str, rules: tuple[tuple[str, str], ...] = PHASES) -> tuple[list[tuple[str, int]], int]:
    """Samples per phase (most first, "other" for no match) and all samples."""
    compiled = [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in rules]
    counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for frames, count in _stacks(text):
        samples += count
        phase = "other"
        if IDLE_LEAF.search(frames[-1]):
            counts[compiled[0][0]] += count
            continue
        for frame in reversed(frames):
            hit = next((name for name, rx in compiled if rx.search(frame)), None)
            if hit:
                phase = hit
                break
        counts[phase] += count
    return counts.most_common(), samples


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads by kind: "main" (the event loop), gRPC's C-core threads by
    name, and "python workers" (the other threads: thread pools, which keep the process's name)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = collections.defaultdict(float)
    try:
        with open(f"/proc/{pid}/comm") as f:
            own_name = f.read().strip()
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, _, rest = f.read().rpartition(")")
        except OSError:
            continue
        name = head.split("(", 1)[1]
        fields = rest.split()
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        kind = "main (event loop)" if tid == str(pid) else ("python workers" if name == own_name else name)
        out[kind] += cpu
    return dict(out)


def run_queue_wait(pid: int) -> float:
    """Seconds the process's live threads spent runnable but waiting for a CPU (/proc schedstat):
    high when other work on the machine takes the cores, which no profile of ours shows."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items() if v - before.get(k, 0.0) > 0.005}


def _format_top(title: str, rows: list[tuple[str, int]], samples: int) -> str:
    return "\n".join([title] + [f"{c / max(1, samples):7.1%}  {frame}" for frame, c in rows])


async def _load(mesh, op: str, seconds: float, concurrency: int, size: int, ready, measured) -> list[dict]:
    """Warm up (bucket, connections, objects to read), call `ready()`, run the measured ops, call `measured()`."""
    from maillage.benchmarks.mesh import ready_bucket
    from maillage.benchmarks.throughput import UniqueBodies, _drive
    from maillage.client import AsyncClient
    rows = []
    async with AsyncClient(profile=mesh.profile) as client:
        await ready_bucket(client)
        bodies = UniqueBodies(size)
        keys: list[str] = []
        await _drive(client, "put", bodies, min(concurrency, 4), 0.2, keys, [])  # connections; objects for GET
        ready()
        for this in ("put", "get"):
            if op in (this, "both"):
                errors: list[str] = []
                latencies, elapsed = await _drive(client, this, bodies, concurrency, seconds, keys, errors)
                rows.append({"op": this, "ops": len(latencies), "ops_per_s": round(len(latencies) / elapsed, 2),
                             "mb_per_s": round(len(latencies) * size / elapsed / 1e6, 1), "errors": len(errors)})
        measured()
    return rows


class _Spy:
    """py-spy recording one process until stopped (SIGINT: it writes what it has)."""

    def __init__(self, pid: int, path: Path, seconds: float, native: bool, rate: int, idle: bool = False) -> None:
        self.path = path
        argv = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
                "--format", "raw", "--output", str(path)]
        # --native needs py-spy to pause the process for each sample; otherwise it reads without pausing
        argv.append("--native" if native else "--nonblocking")
        if idle:
            argv.append("--idle")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace").strip().splitlines()[-1] if err and err.strip() else ""


def profile(out: Path, op: str = "put", seconds: float = 10.0, concurrency: int = 32, size: int = 4096,
            *, nodes: str = "all", native: bool = False, rate: int = 100, client_spy: bool = True,
            idle: bool = False) -> str:
    """Profile on a fresh secure mesh; writes every file to `out` and returns the report (also profile.txt)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.txt"):
        stale.unlink()
    have_spy = shutil.which("py-spy") is not None
    report: list[str] = []
    cpu: dict[str, dict] = {}
    spies: dict[str, _Spy] = {}
    said: dict[str, str] = {}
    profiler = cProfile.Profile()
    with open_mesh(3) as mesh:
        pids = node_pids(mesh)
        if nodes == "first":
            pids = dict(list(pids.items())[:1])
        elif nodes != "all":
            wanted = [n.strip() for n in nodes.split(",")]
            unknown = [n for n in wanted if n not in pids]
            if unknown:
                raise SystemExit(f"--nodes: no node {', '.join(unknown)} (nodes: {', '.join(pids)})")
            pids = {n: pids[n] for n in wanted}
        watched = {**pids, "client": os.getpid()}
        before: dict[str, tuple[float, dict[str, float], float]] = {}
        began = [0.0]

        def ready() -> None:  # after the warm-up, right before the measured load
            if have_spy:
                for name, pid in watched.items():
                    if name == "client" and not client_spy:
                        continue
                    spies[name] = _Spy(pid, out / f"{name}.txt", seconds * 3 + 30, native, rate, idle)
                time.sleep(1.0)  # py-spy attaches
            for name, pid in watched.items():
                before[name] = (process_cpu_seconds(pid) or 0.0, thread_cpu(pid), run_queue_wait(pid))
            began[0] = time.monotonic()
            profiler.enable()

        def measured() -> None:
            profiler.disable()
            wall = time.monotonic() - began[0]
            for name, pid in watched.items():
                total0, threads0, waited0 = before[name]
                used = (process_cpu_seconds(pid) or 0.0) - total0
                cpu[name] = {"cpu_s": round(used, 2), "cores": round(used / wall, 2),
                             "run_queue_wait_s": round(run_queue_wait(pid) - waited0, 2),
                             "threads": _delta(thread_cpu(pid), threads0)}
            cpu["_wall_s"] = {"cpu_s": round(wall, 2)}
            for name, spy in spies.items():
                said[name] = spy.stop()

        rows = asyncio.run(_load(mesh, op, seconds, concurrency, size, ready, measured))
    wall = cpu.pop("_wall_s")["cpu_s"]
    report.append(f"{format_size(size)} {op.upper()} c={concurrency}, {wall:.1f} s under the profilers "
                  f"(secure mesh: TLS, signed requests, encryption at rest): {rows}")
    lines = [f"CPU over the measured load ({os.cpu_count()} cores; cores = CPU s / wall s; waited = runnable "
             "but waiting for a core, summed over threads: the mesh's own processes compete too; load average "
             f"{loadavg()}):"]
    for name, c in sorted(cpu.items(), key=lambda kv: -kv[1]["cpu_s"]):
        threads = ", ".join(f"{k} {v:.2f}" for k, v in sorted(c["threads"].items(), key=lambda kv: -kv[1]))
        lines.append(f"  {name:<8} {c['cpu_s']:7.2f} s = {c['cores']:.2f} cores, waited {c['run_queue_wait_s']:.2f} s"
                     f"   threads: {threads}")
    report.append("\n".join(lines))
    profiler.dump_stats(out / "client.pstats")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
    report.append("client, top by own time (cProfile, event-loop thread):\n" + text.getvalue().strip())
    if not have_spy:
        report.append("py-spy is not installed (`pip install py-spy`): no node profiles")
    for name in sorted(spies, key=lambda n: -cpu.get(n, {}).get("cpu_s", 0.0)):
        collapsed = out / f"{name}.txt"
        if not collapsed.exists():
            report.append(f"{name}: py-spy wrote nothing ({said.get(name) or 'no message'})")
            continue
        data = collapsed.read_text()
        phases, samples = phases_of_collapsed(data)
        own, total, _ = top_of_collapsed(data, 20)
        mode = "".join(flag for flag, on in ((" --native", native), (" --idle", idle)) if on)
        report.append(_format_top(f"{name}: phases ({samples} samples, py-spy{mode}; "
                                  f"{cpu.get(name, {}).get('cpu_s', 0):.2f} CPU s)", phases, samples))
        report.append(_format_top(f"{name}: top by own samples", own, samples))
        report.append(_format_top(f"{name}: top by total samples", total, samples))
    text_report = "\n\n".join(report)
    (out / "profile.txt").write_text(text_report + "\n")
    return text_report


def add_arguments(parser: argparse.ArgumentParser, *, op: str, size: str, concurrency: int, seconds: float,
                  out: str) -> None:
    parser.add_argument("--op", choices=["put", "get", "both"], default=op)
    parser.add_argument("--size", default=size, help=f"object size (default {size})")
    parser.add_argument("--concurrency", type=int, default=concurrency, help=f"default {concurrency}")
    parser.add_argument("--seconds", type=float, default=seconds, help=f"measured load per op (default {seconds:g})")
    parser.add_argument("--nodes", default="all", metavar="all|first|ID[,ID]",
                        help="py-spy on every node (default; a large PUT's coordinator rotates), the first, or "
                             "the nodes named (site-a, site-b, site-c)")
    parser.add_argument("--native", action="store_true",
                        help="py-spy --native: C frames too (blake3, zstd, ssl); it pauses each process per sample")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument("--idle", action="store_true",
                        help="py-spy --idle: wall-clock view, idle threads' samples too (phase 'idle: waiting')")
    parser.add_argument("--no-client-spy", action="store_true", help="no py-spy on the client (cProfile only)")
    parser.add_argument("--out", type=Path, default=Path("bench-results") / out)


def run_args(args: argparse.Namespace) -> int:
    print(profile(args.out, args.op, args.seconds, args.concurrency, parse_size(args.size), nodes=args.nodes,
                  native=args.native, rate=args.rate, client_spy=not args.no_client_spy, idle=args.idle))
    print(f"\nfiles: {args.out}/ (profile.txt, <process>.txt collapsed stacks, client.pstats)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.profile_small",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser, op="both", size="4K", concurrency=32, seconds=10.0, out="profile")
    return run_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
