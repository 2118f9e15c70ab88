"""Memory while streaming one large object: PUT from a generator, then GET with `iter_chunks`.

The claim to check: a PUT or GET of any size holds only a few chunks in memory on every process.
So the figure is the peak RSS growth over idle of each node and of the client, at two object sizes:
if memory is flat, the growth does not follow the size. Run alone:

    python -m maillage.benchmarks.streaming --sizes 256MiB,2GiB     # 10GiB for the full claim
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence

from maillage.benchmarks.machine import RssSampler, snapshot_rss
from maillage.benchmarks.mesh import BUCKET, format_size, node_pids, open_mesh, parse_size, ready_bucket, with_client
from maillage.client import AsyncClient, Profile

PIECE = 1 << 20


async def _pieces(size: int):
    block = os.urandom(PIECE)  # one random block, varied per piece so nothing deduplicates
    sent = 0
    while sent < size:
        n = min(PIECE, size - sent)
        yield sent.to_bytes(8, "big") + block[8:n] if n > 8 else block[:n]
        sent += n


async def _measure(profile: Profile, pids: dict[str, int], size: int) -> dict:
    idle = snapshot_rss(pids)
    key = f"stream/{size}"
    async with AsyncClient(profile=profile) as client:
        await ready_bucket(client)
        began = time.monotonic()
        with RssSampler(lambda: pids) as put_rss:
            await client.put_object(BUCKET, key, _pieces(size))
        put_s = time.monotonic() - began
        began = time.monotonic()
        got = 0
        with RssSampler(lambda: pids) as get_rss:
            body = await client.get_object(BUCKET, key)
            async for piece in body.iter_chunks():
                got += len(piece)
        get_s = time.monotonic() - began
    if got != size:
        raise RuntimeError(f"read back {got} bytes of {size}")
    growth = {name: max(put_rss.peak.get(name, 0), get_rss.peak.get(name, 0)) - (idle.get(name) or 0)
              for name in pids}
    return {"size": size, "put_mb_per_s": size / put_s / 1e6, "get_mb_per_s": size / get_s / 1e6,
            "idle_rss": idle, "peak_growth": growth, "max_growth": max(growth.values())}


def run(sizes: Sequence[int], sites: int = 3) -> dict:
    """Peak RSS growth per process at each size, and whether it stayed flat."""
    with open_mesh(sites) as mesh:
        pids = with_client(node_pids(mesh))
        rows = [asyncio.run(_measure(mesh.profile, pids, size)) for size in sorted(sizes)]
    small, large = rows[0], rows[-1]
    ratio = large["max_growth"] / max(small["max_growth"], 1) if len(rows) > 1 else 1.0
    return {"rows": rows, "growth_ratio": ratio, "size_ratio": large["size"] / small["size"],
            "flat": len(rows) > 1 and ratio < 2.0}


def format_result(result: dict) -> str:
    lines = []
    for r in result["rows"]:
        lines.append(f"stream {format_size(r['size']):>8}: PUT {r['put_mb_per_s']:6.1f} MB/s, GET "
                     f"{r['get_mb_per_s']:6.1f} MB/s, peak RSS growth over idle: "
                     + ", ".join(f"{n} {g / 1e6:.0f} MB" for n, g in sorted(r["peak_growth"].items())))
    lines.append(f"object {result['size_ratio']:.0f}x larger -> peak growth x{result['growth_ratio']:.2f} "
                 f"({'flat' if result['flat'] else 'NOT flat'}; flat means under x2)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.streaming", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256MiB,2GiB", help="object sizes, smallest first (default 256MiB,2GiB)")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    result = run([parse_size(s) for s in args.sizes.split(",")])
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
