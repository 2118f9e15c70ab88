"""Profile the small-object path (4 KiB PUT and GET at concurrency 32; any size): client and a node.

    python -m maillage.benchmarks.profile_small [--op put|get|both] [--size 4K] [--seconds 10] [--out DIR]

The client runs under cProfile (pstats file + the top functions by own time); one node (the
first) is sampled by py-spy when it is installed (`pip install py-spy`; it attaches by pid to a
process this benchmark started), written as collapsed stacks plus the top functions by own and
by total samples. "Own" is where the CPU went; "total" shows which call paths lead there.
Figures under a profiler are lower than without it: use them to compare functions, not as
throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .mesh import format_size, node_pids, open_mesh, parse_size

__all__ = ["profile", "top_of_collapsed", "main"]


def top_of_collapsed(text: str, n: int = 25) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(top by own samples, top by total samples, all samples) of py-spy's raw collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    return own.most_common(n), total.most_common(n), samples


def _format_top(title: str, rows: list[tuple[str, int]], samples: int) -> str:
    return "\n".join([title] + [f"{c / max(1, samples):7.1%}  {frame}" for frame, c in rows])


async def _load(mesh, op: str, seconds: float, concurrency: int, size: int) -> list[dict]:
    from maillage.client import AsyncClient

    from .mesh import ready_bucket
    from .throughput import UniqueBodies, _drive
    rows = []
    async with AsyncClient(profile=mesh.profile) as client:
        await ready_bucket(client)
        bodies = UniqueBodies(size)
        keys: list[str] = []
        for this in ("put", "get"):
            if op in (this, "both") or (this == "put" and not keys):
                latencies, elapsed = await _drive(client, this, bodies, concurrency,
                                                  seconds if op in (this, "both") else 1.0, keys, [])
                rows.append({"op": this, "ops_per_s": round(len(latencies) / elapsed, 1)})
    return rows


def profile(out: Path, op: str = "put", seconds: float = 10.0, concurrency: int = 32, size: int = 4096) -> str:
    out.mkdir(parents=True, exist_ok=True)
    report = []
    with open_mesh(3) as mesh:
        node_id, pid = next(iter(node_pids(mesh).items()))
        spy = None
        if shutil.which("py-spy"):
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds * 2 + 5)),
                                    "--rate", "200", "--format", "raw", "--output", str(out / f"node-{node_id}.txt"),
                                    "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
        profiler = cProfile.Profile()
        profiler.enable()
        rows = asyncio.run(_load(mesh, op, seconds, concurrency, size))
        profiler.disable()
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
    report.append(f"{format_size(size)} c={concurrency} under the profilers: {rows}")
    profiler.dump_stats(out / "client.pstats")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    report.append("client, top by own time (cProfile):\n" + text.getvalue())
    collapsed = out / f"node-{node_id}.txt"
    if collapsed.exists():
        own, total, samples = top_of_collapsed(collapsed.read_text())
        report.append(_format_top(f"node {node_id}: top by own samples ({samples} samples, py-spy)", own, samples))
        report.append(_format_top(f"node {node_id}: top by total samples", total, samples))
    else:
        report.append("node: py-spy not installed or it failed; no node profile")
    (out / "profile.txt").write_text("\n\n".join(report))
    return "\n\n".join(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.profile_small",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--op", choices=["put", "get", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--size", default="4K", help="object size (default 4K: the small-object path)")
    parser.add_argument("--out", type=Path, default=Path("bench-results") / "profile")
    args = parser.parse_args(argv)
    print(profile(args.out, args.op, args.seconds, args.concurrency, parse_size(args.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
