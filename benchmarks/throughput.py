"""PUT/GET throughput on a local mesh (3 sites, R=2): ops/s, MB/s, latency, CPU and memory.

    python -m maillage.benchmarks.throughput [--sizes 4K,1M,64M] [--concurrency 1,8,32] [--seconds 3]

For each object size, and each concurrency (requests in flight from one AsyncClient), PUT runs
for `seconds`, then GET reads back the objects just written, round robin. Every PUT body is
unique: each 64 KiB of the object carries a counter, so no chunk is ever deduplicated and every
byte really reaches two disks (a benchmark that rewrote one payload would measure dedup). Each
row also has the CPU seconds of the client and of every node over the measurement (from
`os.times` and /proc), and every process's peak RSS during it (sampled, plus VmHWM).

`python -m maillage.benchmarks` runs this inside the whole harness, next to the machine's limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from collections.abc import Callable, Sequence

from maillage.benchmarks.machine import RssSampler, cpu_seconds, process_cpu_seconds, rss_bytes, snapshot_rss
from maillage.benchmarks.mesh import BUCKET, format_size, node_pids, open_mesh, parse_size, ready_bucket, with_client
from maillage.client import AsyncClient, MaillageError
from maillage.testing.localmesh import LocalMesh

__all__ = ["measure", "run", "percentile", "main", "UniqueBodies", "STAMP_EVERY"]

STAMP_EVERY = 64 * 1024  # one counter per 64 KiB: unique chunks for any chunk size >= 64 KiB


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


class UniqueBodies:
    """Unique bodies of one size without generating random bytes per operation.

    One random base; each worker owns a copy and stamps a fresh counter every 64 KiB before
    each PUT (a few thousand small slice writes, no big allocation on the hot path).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.base = os.urandom(size)
        self._serial = 0

    def buffer(self) -> bytearray:
        return bytearray(self.base)

    def stamp(self, buf: bytearray) -> int:
        """Write a fresh serial into `buf` (in place); return it."""
        self._serial += 1
        tag = struct.pack(">Q", self._serial)
        for offset in range(0, max(1, len(buf) - 7), STAMP_EVERY):
            buf[offset:offset + 8] = tag
        return self._serial


async def _drive(client: AsyncClient, op: str, bodies: UniqueBodies, concurrency: int, seconds: float,
                 keys: list[str], errors: list[str], min_per_worker: int = 1) -> tuple[list[float], float]:
    """Run `op` from `concurrency` workers for `seconds`, and until every worker has finished at
    least `min_per_worker` operations (so a cell of large objects at high concurrency is not one
    batch started together). The PUT bodies are made before the clock starts."""
    size = bodies.size
    latencies: list[float] = []
    counter = iter(range(10 ** 12))
    buffers = [bodies.buffer() if op == "put" else None for _ in range(concurrency)]

    async def worker(buf: bytearray | None) -> None:
        finished = 0
        while time.monotonic() < deadline or finished < min_per_worker:
            began = time.monotonic()
            try:
                if buf is not None:  # op == "put"
                    key = f"{size}/{bodies.stamp(buf)}"
                    began = time.monotonic()
                    await client.put_object(BUCKET, key, buf)
                    keys.append(key)
                else:
                    obj = await client.get_object(BUCKET, keys[next(counter) % len(keys)])
                    async for _ in obj.iter_chunks():
                        pass
            except MaillageError as exc:  # counted and shown, not fatal: a figure with its errors
                errors.append(f"{type(exc).__name__}: {exc}")
                if len(errors) > max(20, len(latencies)):
                    raise
                continue
            latencies.append(time.monotonic() - began)
            finished += 1

    began = time.monotonic()
    deadline = began + seconds
    await asyncio.gather(*(worker(buf) for buf in buffers))
    return latencies, time.monotonic() - began


def _row(op: str, size: int, concurrency: int, latencies: list[float], elapsed: float,
         client_cpu: float, node_cpu: dict[str, float], peak: dict[str, int], errors: list[str]) -> dict:
    latencies.sort()
    ms = [x * 1e3 for x in latencies]
    n = len(latencies)
    return {
        "op": op, "size": size, "concurrency": concurrency, "ops": n, "seconds": round(elapsed, 3),
        "ops_per_s": round(n / elapsed, 1), "mb_per_s": round(n * size / elapsed / 1e6, 2),
        "p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3), "max_ms": round(ms[-1], 3) if ms else 0.0,
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_per_op_ms": round(client_cpu / n * 1e3, 3) if n else None,
        "node_cpu_s": {k: round(v, 3) for k, v in node_cpu.items()},
        "cpu_util_of_machine": round((client_cpu + sum(node_cpu.values())) / elapsed / (os.cpu_count() or 1), 3),
        "peak_rss": peak, "errors": len(errors), "first_error": errors[0] if errors else None,
    }


async def measure(mesh: LocalMesh, sizes: Sequence[int], concurrencies: Sequence[int], seconds: float,
                  step: Callable[[str], None] | None = None, done: Callable[[dict], None] | None = None,
                  min_per_worker: int = 1) -> dict:
    """Run every (size, concurrency, op) cell on a started mesh; returns idle RSS and the rows.
    `min_per_worker`: operations each worker finishes at least, whatever `seconds` says."""
    say = step or (lambda text: None)
    rows: list[dict] = []
    async with AsyncClient(profile=mesh.profile, insecure_plaintext=mesh.insecure_plaintext) as client:
        await ready_bucket(client)
        warm = UniqueBodies(4096)
        warm_buf = warm.buffer()
        for i in range(8):  # connect to every node, load the layout, before anything is timed
            warm.stamp(warm_buf)
            await client.put_object(BUCKET, f"warmup/{i}", warm_buf)
            await (await client.get_object(BUCKET, f"warmup/{i}")).read()
        await asyncio.sleep(0.5)
        idle = snapshot_rss(with_client(node_pids(mesh)))
        for size in sizes:
            bodies = UniqueBodies(size)
            keys: list[str] = []
            for concurrency in concurrencies:
                for op in ("put", "get"):
                    say(f"{op.upper()} {format_size(size)} c={concurrency}")
                    pids = node_pids(mesh)
                    cpu0, nodes0 = cpu_seconds(), {k: process_cpu_seconds(p) or 0.0 for k, p in pids.items()}
                    with RssSampler(lambda: with_client(node_pids(mesh))) as sampler:
                        errors: list[str] = []
                        latencies, elapsed = await _drive(client, op, bodies, concurrency, seconds, keys, errors,
                                                          min_per_worker)
                    node_cpu = {k: (process_cpu_seconds(p) or 0.0) - nodes0[k] for k, p in pids.items()}
                    rows.append(_row(op, size, concurrency, latencies, elapsed, cpu_seconds() - cpu0,
                                     node_cpu, sampler.peak, errors))
                    if done:
                        done(rows[-1])
    return {"idle_rss": idle, "rss_after": snapshot_rss(with_client(node_pids(mesh))), "rows": rows,
            "client_rss_end": rss_bytes(os.getpid())}


def format_row(r: dict) -> str:
    return (f"{r['op']:>3} {format_size(r['size']):>7} c={r['concurrency']:<3} {r['ops_per_s']:>9,.1f} ops/s "
            f"{r['mb_per_s']:>8,.1f} MB/s  p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  "
            f"client cpu {r['client_cpu_per_op_ms'] or 0:.2f} ms/op")


def run(sizes=(4096, 1 << 20, 64 << 20), concurrencies=(1, 8, 32), seconds: float = 3.0,
        sites: int = 3, compare_plaintext: bool = True, ops: bool = False) -> dict:
    """Measure as users run it (TLS and request signatures on); with `compare_plaintext`, measure
    the same cells on a second mesh without them and report each row's ratio secure / plaintext."""
    with open_mesh(sites, ops=ops) as mesh:
        result = asyncio.run(measure(mesh, sizes, concurrencies, seconds,
                                     done=lambda row: print(format_row(row), flush=True)))
    if compare_plaintext:
        print("plaintext mesh (no TLS, no authentication: benchmark only):", flush=True)
        with open_mesh(sites, insecure_plaintext=True) as mesh:
            plain = asyncio.run(measure(mesh, sizes, concurrencies, seconds,
                                        done=lambda row: print(format_row(row), flush=True)))
        result["plaintext"] = plain
        result["security_cost"] = security_cost(result["rows"], plain["rows"])
        print("cost of TLS and authentication (secure / plaintext ops/s):", flush=True)
        for row in result["security_cost"]:
            print(f"{row['op']:>3} {format_size(row['size']):>7} c={row['concurrency']:<3} "
                  f"{row['secure_ops_per_s']:>9,.1f} vs {row['plaintext_ops_per_s']:>9,.1f} ops/s  "
                  f"ratio {row['ratio']:.2f}", flush=True)
    return result


def same_cells(rows: Sequence[dict], others: Sequence[dict]) -> list[tuple[dict, dict]]:
    """The rows of two runs paired by cell (op, size, concurrency), in the order of `rows`; a cell
    only one run measured is left out."""
    by_cell = {(r["op"], r["size"], r["concurrency"]): r for r in others}
    pairs = [(r, by_cell.get((r["op"], r["size"], r["concurrency"]))) for r in rows]
    return [(r, o) for r, o in pairs if o is not None]


def security_cost(secure: Sequence[dict], plaintext: Sequence[dict]) -> list[dict]:
    """Per cell (op, size, concurrency): ops/s with TLS and signatures, without, and their ratio."""
    out = []
    for r, p in same_cells(secure, plaintext):
        ratio = r["ops_per_s"] / p["ops_per_s"] if p["ops_per_s"] else 0.0
        out.append({"op": r["op"], "size": r["size"], "concurrency": r["concurrency"],
                    "secure_ops_per_s": r["ops_per_s"], "plaintext_ops_per_s": p["ops_per_s"],
                    "ratio": round(ratio, 4)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.throughput",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4K,1M,64M", help="object sizes, e.g. 4K,1M,64M")
    parser.add_argument("--concurrency", default="1,8,32", help="requests in flight, e.g. 1,8,32")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--ops", action="store_true",
                        help="nodes serve their ops port (--ops-listen): requests are measured for Prometheus")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--no-plaintext", action="store_true",
                        help="skip the second run without TLS and authentication (the cost comparison)")
    args = parser.parse_args(argv)
    result = run(tuple(parse_size(s) for s in args.sizes.split(",")),
                 tuple(int(c) for c in args.concurrency.split(",")), args.seconds,
                 compare_plaintext=not args.no_plaintext, ops=args.ops)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
