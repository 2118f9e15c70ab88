"""S3 PUT/GET throughput (boto3 over HTTP(S)) next to the native SDK, on the same mesh, in one run.

    python -m maillage.benchmarks.s3_throughput [--sizes 4K,1M,64M] [--concurrency 1,8] [--seconds 3]
                                                [--plain-http] [--json FILE]

The mesh is the throughput benchmark's (3 sites, R=2, fsync on, TLS and signed requests), with every
node also serving S3: over HTTPS with the node's certificate (as `maillage node run --s3-listen`
does by default), or plain HTTP with `--plain-http`. For each size the native cells run first
(`throughput.measure`: one AsyncClient, `concurrency` requests in flight), then the same cells
through S3: one boto3 client with its default settings (checksums, hence aws-chunked bodies with a
trailing CRC32 over HTTPS; retries; connection pool of 10) shared by `concurrency` threads, each
doing PUT or GET back to back for `seconds`. Every PUT body is unique (`throughput.UniqueBodies`),
GET reads back what that side's PUTs wrote. Rows have the same fields as the throughput benchmark's
(ops/s, MB/s, latency percentiles, CPU of the client and of every node, peak RSS), and the table
puts each S3 row next to its native row with the ratio S3 / native of ops/s.

Runs the two sides one after the other, never at the same time, so on a shared machine the ratio
holds better than either absolute figure.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from maillage.benchmarks.machine import RssSampler, cpu_seconds, process_cpu_seconds
from maillage.benchmarks.mesh import BUCKET, POLICY, bench_layout, format_size, node_pids, parse_size, with_client
from maillage.benchmarks.throughput import UniqueBodies, _row, format_row, measure, same_cells
from maillage.testing.localmesh import LocalMesh

__all__ = ["open_s3_mesh", "s3_client", "measure_s3", "compare", "format_table", "run", "main"]

READ_PIECE = 1 << 20
REGION = "us-east-1"


def open_s3_mesh(sites: int = 3, *, tls: bool = True, base_dir: Path | None = None) -> LocalMesh:
    """The throughput benchmark's mesh (not started) with S3 on every node, HTTPS unless `tls` is off."""
    return LocalMesh(bench_layout(sites), base_dir=base_dir, s3=True, s3_default_policy=POLICY, s3_tls=tls)


def s3_client(mesh: LocalMesh, node: int = 0) -> Any:
    """boto3 with its default settings against a node's front door, as tenant demo."""
    import boto3  # type: ignore[import-untyped]  # the test extra; the benchmark says so when missing

    creds = mesh.profile.credentials
    return boto3.client("s3", aws_access_key_id=creds.key_id, aws_secret_access_key=creds.secret,
                        region_name=REGION, **mesh.s3_client_kwargs(node))


def _drive_s3(s3: Any, op: str, bodies: UniqueBodies, concurrency: int, seconds: float, keys: list[str],
              errors: list[str], bucket: str = BUCKET, min_per_worker: int = 0) -> tuple[list[float], float]:
    """`concurrency` threads doing `op` back to back until `seconds` have passed (at least one
    operation in all, and `min_per_worker` in each thread)."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(10 ** 12))

    def worker() -> None:
        buf = bodies.buffer() if op == "put" else None
        finished = 0
        while time.monotonic() < deadline or not latencies or finished < min_per_worker:
            finished += 1
            try:
                if buf is not None:  # op == "put"
                    with lock:
                        key = f"s3/{bodies.size}/{bodies.stamp(buf)}"
                    began = time.monotonic()
                    s3.put_object(Bucket=bucket, Key=key, Body=buf)
                    keys.append(key)
                else:
                    with lock:
                        key = keys[next(counter) % len(keys)]
                    began = time.monotonic()
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
                    for _ in body.iter_chunks(READ_PIECE):
                        pass
            except (BotoCoreError, ClientError) as exc:  # counted and shown, as the native side does
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) > max(20, len(latencies)):
                        raise
                continue
            took = time.monotonic() - began
            with lock:
                latencies.append(took)

    began = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return latencies, time.monotonic() - began


def measure_s3(mesh: LocalMesh | None, s3: Any, sizes: Sequence[int], concurrencies: Sequence[int], seconds: float,
               done: Callable[[dict], None] | None = None, *, server_pids: Callable[[], dict[str, int]] | None = None,
               bucket: str = BUCKET, min_per_worker: int = 0) -> list[dict]:
    """Every (size, concurrency, op) cell through S3, rows as `throughput.measure` makes them. The
    bucket must exist (on a mesh, the native side creates it). `server_pids`: the processes whose
    CPU is the rows' `node_cpu_s` (default: the mesh's nodes), so another store can be measured
    with the same cells; `min_per_worker`: operations each thread finishes whatever `seconds` says."""
    if server_pids is None:
        assert mesh is not None, "measure_s3 needs a mesh or server_pids"
        server_pids = functools.partial(node_pids, mesh)
    warm = UniqueBodies(4096)
    buf = warm.buffer()
    for i in range(8):  # connections and TLS sessions before anything is timed
        warm.stamp(buf)
        s3.put_object(Bucket=bucket, Key=f"s3-warmup/{i}", Body=buf)
        s3.get_object(Bucket=bucket, Key=f"s3-warmup/{i}")["Body"].read()
    rows: list[dict] = []
    for size in sizes:
        bodies = UniqueBodies(size)
        keys: list[str] = []
        for concurrency in concurrencies:
            for op in ("put", "get"):
                pids = server_pids()
                cpu0, nodes0 = cpu_seconds(), {k: process_cpu_seconds(p) or 0.0 for k, p in pids.items()}
                errors: list[str] = []
                with RssSampler(lambda: with_client(server_pids())) as sampler:
                    latencies, elapsed = _drive_s3(s3, op, bodies, concurrency, seconds, keys, errors, bucket,
                                                   min_per_worker)
                node_cpu = {k: (process_cpu_seconds(p) or 0.0) - nodes0[k] for k, p in pids.items()}
                rows.append(_row(op, size, concurrency, latencies, elapsed, cpu_seconds() - cpu0, node_cpu,
                                 sampler.peak, errors))
                if done:
                    done(rows[-1])
    return rows


def compare(native: Sequence[dict], s3: Sequence[dict]) -> list[dict]:
    """Per cell (op, size, concurrency): native and S3 ops/s, MB/s, p50, and the ratio S3 / native."""
    out = []
    for r, n in same_cells(s3, native):
        out.append({"op": r["op"], "size": r["size"], "concurrency": r["concurrency"],
                    "native_ops_per_s": n["ops_per_s"], "native_mb_per_s": n["mb_per_s"],
                    "native_p50_ms": n["p50_ms"], "s3_ops_per_s": r["ops_per_s"], "s3_mb_per_s": r["mb_per_s"],
                    "s3_p50_ms": r["p50_ms"], "s3_errors": r["errors"], "native_errors": n["errors"],
                    "ratio": round(r["ops_per_s"] / n["ops_per_s"], 3) if n["ops_per_s"] else 0.0})
    return out


def format_table(rows: Sequence[dict], scheme: str) -> str:
    header = (f"{'op':<3} {'size':>7} {'c':>2}  {'native ops/s':>12} {'MB/s':>7} {'p50 ms':>8}   "
              f"{'S3 ops/s':>9} {'MB/s':>7} {'p50 ms':>8}   {'S3/native':>9}")
    lines = [f"S3 ({scheme}, boto3 defaults) next to the native SDK, same mesh, same run:", header,
             "-" * len(header)]
    for r in rows:
        errors = "" if not (r["s3_errors"] or r["native_errors"]) else \
            f"  errors: S3 {r['s3_errors']}, native {r['native_errors']}"
        lines.append(f"{r['op']:<3} {format_size(r['size']):>7} {r['concurrency']:>2}  "
                     f"{r['native_ops_per_s']:>12,.1f} {r['native_mb_per_s']:>7,.1f} {r['native_p50_ms']:>8.2f}   "
                     f"{r['s3_ops_per_s']:>9,.1f} {r['s3_mb_per_s']:>7,.1f} {r['s3_p50_ms']:>8.2f}   "
                     f"{r['ratio']:>9.2f}{errors}")
    return "\n".join(lines)


def run(sizes: Sequence[int] = (4096, 1 << 20, 64 << 20), concurrencies: Sequence[int] = (1, 8),
        seconds: float = 3.0, sites: int = 3, *, tls: bool = True,
        progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> dict:
    """Native then S3 for each size on one mesh; returns both sides' rows and the comparison."""
    native: list[dict] = []
    s3_rows: list[dict] = []
    with open_s3_mesh(sites, tls=tls) as mesh:
        s3 = s3_client(mesh)
        for size in sizes:  # size by size, so both sides of a cell are measured close in time
            result = asyncio.run(measure(mesh, (size,), concurrencies, seconds,
                                         done=lambda row: progress("native " + format_row(row))))
            native += result["rows"]
            s3_rows += measure_s3(mesh, s3, (size,), concurrencies, seconds,
                                  done=lambda row: progress("S3     " + format_row(row)))
        scheme = "https" if mesh.s3_tls else "http"
    return {"scheme": scheme, "native": native, "s3": s3_rows, "comparison": compare(native, s3_rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.s3_throughput",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="4K,1M,64M", help="object sizes, e.g. 4K,1M,64M")
    parser.add_argument("--concurrency", default="1,8", help="requests in flight, e.g. 1,8")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--sites", type=int, default=3, help="sites of the mesh, one node each (R=2)")
    parser.add_argument("--plain-http", action="store_true", help="S3 over plain HTTP instead of HTTPS")
    parser.add_argument("--json", help="also write both sides' rows and the comparison as JSON to this file")
    args = parser.parse_args(argv)
    try:
        import boto3  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        print("s3_throughput: boto3 is missing: python3 -m pip install -e '.[test]'", file=sys.stderr)
        return 2
    result = run(tuple(parse_size(s) for s in args.sizes.split(",")),
                 tuple(int(c) for c in args.concurrency.split(",")), args.seconds, args.sites,
                 tls=not args.plain_http)
    print(format_table(result["comparison"], result["scheme"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
