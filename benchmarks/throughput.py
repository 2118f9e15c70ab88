"""PUT/GET throughput on a local 3-site mesh (R=2): ops/s, MB/s and latency percentiles.

    python -m maillage.benchmarks.throughput [--sizes 4K,1M,64M] [--concurrency 1,8] [--seconds 3]

A first brick of the benchmark harness: it starts its own mesh of real node processes in a temp
dir (fsync on), drives it with the AsyncClient, and prints one row per (operation, size,
concurrency) plus JSON with --json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from maillage.cli.localmesh import LocalMesh, SiteSpec, make_layout
from maillage.client import AsyncClient

SITES = (SiteSpec("site-a", "eu/fr/idf"), SiteSpec("site-b", "eu/fr/occitanie"),
         SiteSpec("site-c", "eu/de/bayern"))
UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def parse_size(text: str) -> int:
    text = text.strip().upper().rstrip("B").rstrip("I")
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


async def _drive(client: AsyncClient, op: str, size: int, concurrency: int, seconds: float,
                 payload: bytes, keys: list[str]) -> dict:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    counter = iter(range(10 ** 9))

    async def worker() -> None:
        while time.monotonic() < deadline or not latencies:
            i = next(counter)
            began = time.monotonic()
            if op == "put":
                key = f"bench/{size}/{i}"
                await client.put_object("bench", key, payload)
                keys.append(key)
            else:
                body = await client.get_object("bench", keys[i % len(keys)])
                async for _ in body.iter_chunks():
                    pass
            latencies.append(time.monotonic() - began)

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    latencies.sort()
    return {"op": op, "size": size, "concurrency": concurrency, "ops": len(latencies),
            "ops_per_s": len(latencies) / elapsed, "mb_per_s": len(latencies) * size / elapsed / 1e6,
            "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3}


async def _run(mesh: LocalMesh, sizes, concurrencies, seconds) -> list[dict]:
    rows = []
    async with AsyncClient(mesh.addresses) as client:
        await client.create_bucket("bench", "eu-wide")
        for size in sizes:
            payload = os.urandom(size)
            keys: list[str] = []
            for concurrency in concurrencies:
                for op in ("put", "get"):
                    rows.append(await _drive(client, op, size, concurrency, seconds, payload, keys))
                    print(_format(rows[-1]), flush=True)
    return rows


def _format(r: dict) -> str:
    return (f"{r['op']:>3} {r['size']:>10,d} B  c={r['concurrency']:<3} {r['ops_per_s']:>9.1f} ops/s "
            f"{r['mb_per_s']:>8.1f} MB/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms")


def run(sizes=(4096, 1 << 20, 64 << 20), concurrencies=(1, 8), seconds: float = 3.0) -> list[dict]:
    with LocalMesh(make_layout(SITES)) as mesh:
        return asyncio.run(_run(mesh, sizes, concurrencies, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4K,1M,64M", help="object sizes, e.g. 4K,1M,64M")
    parser.add_argument("--concurrency", default="1,8", help="requests in flight, e.g. 1,8,32")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    rows = run(tuple(parse_size(s) for s in args.sizes.split(",")),
               tuple(int(c) for c in args.concurrency.split(",")), args.seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
