"""The benchmark harness: `maillage bench` and `python -m maillage.benchmarks`.

One run measures, on this machine and in this order: the machine's limits (disk, hashing,
compression, loopback, gRPC), PUT/GET throughput on a local 3-site mesh (R=2) of real node
processes, the repair time of a wiped node at one or more mesh sizes, and the placement figures.
Each result is written as JSON (with the machine facts, versions and parameters), a markdown
report and PNG charts in a results directory, and summarised on the terminal. The limits run
first so every later figure can be printed as a ratio to its ceiling.

Progress goes to stderr, one line per step with the elapsed time: readable in a terminal and in
a CI log alike. A step that fails is recorded in the JSON (`errors`) and the run goes on, so one
broken part does not hide the others' figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maillage.benchmarks import limits as limits_mod
from maillage.benchmarks import placement_bench, report
from maillage.benchmarks.machine import loadavg, machine_facts
from maillage.benchmarks.mesh import open_mesh, parse_size
from maillage.benchmarks.repair import REPAIR_RATE

__all__ = ["add_arguments", "run", "command", "main", "PARTS"]

PARTS = ("limits", "throughput", "repair", "placement")

FULL = {"sizes": "4K,1M,64M", "concurrency": "1,8,32", "seconds": 3.0, "data": "1GiB", "repair_sites": "3,5",
        "repair_timeout": 240.0, "placement_sites": "10,100,1000", "disk": "512MiB", "repeat": 3}
QUICK = {"sizes": "4K,1M", "concurrency": "1,8", "seconds": 1.0, "data": "64MiB", "repair_sites": "3",
         "repair_timeout": 30.0, "placement_sites": "10,100", "disk": "64MiB", "repeat": 1}


class StepLog:
    """Prints `[  12.3 s] text` lines to stderr; `done` lines are indented under their step."""

    def __init__(self, stream=None, quiet: bool = False) -> None:
        self.began = time.monotonic()
        self.stream = stream or sys.stderr
        self.quiet = quiet

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.elapsed():7.1f} s] {text}", file=self.stream, flush=True)

    def result(self, text: str) -> None:
        self(f"  -> {text}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and data, short steps: under 2 minutes on 2 cores")
    parser.add_argument("--out", type=Path,
                        help="results directory (default ./bench-results/<UTC timestamp>)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all)")
    parser.add_argument("--sizes", help=f"object sizes (default {FULL['sizes']}; quick {QUICK['sizes']})")
    parser.add_argument("--concurrency", help=f"requests in flight (default {FULL['concurrency']}; "
                                              f"quick {QUICK['concurrency']})")
    parser.add_argument("--seconds", type=float, help=f"duration of each throughput step (default "
                                                      f"{FULL['seconds']:g}; quick {QUICK['seconds']:g})")
    parser.add_argument("--data", help=f"bytes loaded before the repair (default {FULL['data']}; "
                                       f"quick {QUICK['data']})")
    parser.add_argument("--repair-sites", help=f"mesh sizes for the repair (default {FULL['repair_sites']}; "
                                               f"quick {QUICK['repair_sites']})")
    parser.add_argument("--repair-timeout", type=float,
                        help=f"seconds to wait for a repair (default {FULL['repair_timeout']:g}; "
                             f"quick {QUICK['repair_timeout']:g})")
    parser.add_argument("--repair-rate", type=float, default=REPAIR_RATE,
                        help=f"node --repair-rate in MB/s (default {REPAIR_RATE:g}: above the disk, so the figure "
                             "is the repair, not the cap)")
    parser.add_argument("--repair-interval", type=float, default=1.0,
                        help="node --repair-interval in seconds (default 1)")
    parser.add_argument("--placement-sites", help=f"mesh sizes for placement (default {FULL['placement_sites']}; "
                                                  f"quick {QUICK['placement_sites']})")
    parser.add_argument("--placement-bits", type=int, default=16, help="partition bits for placement (default 16)")
    parser.add_argument("--disk", help=f"bytes for the disk limits (default {FULL['disk']}; quick {QUICK['disk']})")
    parser.add_argument("--repeat", type=int, help="runs per limit, the median is kept (default 3; quick 1)")
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    parser.add_argument("--tmp-dir", type=Path, help="where the meshes keep their data (default: the system temp dir)")
    vs = parser.add_argument_group(
        "side by side with OpenStack Swift",
        "--vs-swift runs only this comparison (not the parts above): the Swift peer of ../shared/peers/swift, "
        "plain and behind TLS (haproxy at its proxy), then maillage (TLS, signed requests, encryption at rest), "
        "one after the other, same sizes and concurrency (defaults here: --sizes 4K,1M,64M --concurrency 1,8 "
        "--seconds 5; a size may carry its Swift object count, e.g. 4K:2000), and the same boto3 cells against "
        "maillage's S3 door and Swift's s3api; prints both ratio columns and writes vs_swift.json/.md/.png.")
    vs.add_argument("--vs-swift", action="store_true", help="run the side-by-side comparison with Swift")
    from maillage.benchmarks.vs_swift import add_arguments as add_vs_swift_arguments
    add_vs_swift_arguments(vs, standalone=False)
    energy = parser.add_argument_group(
        "energy-aware background work (issue 26)",
        "--energy runs only this simulation (no mesh, a few seconds): a week of background work on simulated "
        "sites with PV panels, decided by the node's own energy scheduler, next to the same week with fixed "
        "intervals; prints the green share, the deadlines, urgent repair and the energy, and one site's day.")
    energy.add_argument("--energy", action="store_true", help="run the energy-aware scheduling simulation")
    from maillage.benchmarks.energy import add_arguments as add_energy_arguments
    add_energy_arguments(energy)


def _settings(args: argparse.Namespace) -> dict:
    base = QUICK if args.quick else FULL
    # each setting as given on the command line (str, float or int as argparse parsed it) or its default
    pick: dict[str, Any] = {k: (getattr(args, k) if getattr(args, k, None) is not None else v)
                            for k, v in base.items()}
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(only) - set(PARTS)
    if unknown:
        raise SystemExit(f"--only: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    return {
        "quick": args.quick, "only": only, "sites": 3, "replicas": 2,
        "sizes": [parse_size(s) for s in pick["sizes"].split(",")],
        "concurrency": [int(c) for c in pick["concurrency"].split(",")],
        "seconds": float(pick["seconds"]), "data_bytes": parse_size(pick["data"]),
        "repair_sites": [int(s) for s in pick["repair_sites"].split(",")],
        "repair_timeout": float(pick["repair_timeout"]), "repair_rate_mb_s": args.repair_rate,
        "repair_interval_s": args.repair_interval,
        "placement_sites": [int(s) for s in pick["placement_sites"].split(",")],
        "placement_bits": args.placement_bits, "disk_bytes": parse_size(pick["disk"]),
        "repeat": int(pick["repeat"]),
    }


def run(args: argparse.Namespace, log: StepLog | None = None) -> tuple[dict, Path]:
    """Run the selected parts; write JSON, markdown and charts; return (result, results dir)."""
    log = log or StepLog()
    p = _settings(args)
    started = datetime.now(UTC)
    out = args.out or Path("bench-results") / started.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    tmp_root = args.tmp_dir or Path(tempfile.gettempdir())
    result: dict = {"schema": 1, "started": started.isoformat(timespec="seconds"),
                    "machine": machine_facts(str(tmp_root)), "params": p, "errors": {}}
    log(f"results in {out}; {'quick' if p['quick'] else 'full'} run of {', '.join(p['only'])}")

    def attempt(part: str, fn) -> None:
        began = time.monotonic()
        try:
            result[part] = fn()
        except Exception as exc:  # one broken part must not hide the others' figures
            result["errors"][part] = f"{type(exc).__name__}: {exc}"
            log(f"{part} FAILED: {exc}")
            traceback.print_exc(file=sys.stderr)
        result.setdefault("durations_s", {})[part] = round(time.monotonic() - began, 1)

    if "limits" in p["only"]:
        def limits() -> dict:
            with tempfile.TemporaryDirectory(prefix="maillage-limits-", dir=tmp_root) as tmp:
                found = limits_mod.measure_limits(Path(tmp), disk_bytes=p["disk_bytes"], repeat=p["repeat"],
                                                  cpu_bytes=(16 << 20) if p["quick"] else (64 << 20),
                                                  net_bytes=(128 << 20) if p["quick"] else (512 << 20),
                                                  step=lambda name: log(f"limits: {name}"))
            log.result(", ".join(f"{k} {v['mb_per_s']:,.0f} MB/s" for k, v in found.items() if v.get("mb_per_s")))
            return found
        attempt("limits", limits)

    if "throughput" in p["only"]:
        def throughput() -> dict:
            from maillage.benchmarks.throughput import measure, security_cost

            def one(plaintext: bool) -> dict:
                what = "plaintext (no TLS, no authentication)" if plaintext else "TLS and authentication on"
                log(f"throughput: start a {p['sites']}-site mesh (R={p['replicas']}, fsync on, {what})")
                mesh_dir = Path(tempfile.mkdtemp(prefix="maillage-bench-", dir=tmp_root))
                try:  # the mesh's nodes are stopped (end of `with`) before their directories go
                    with open_mesh(p["sites"], mesh_dir / "mesh", insecure_plaintext=plaintext) as mesh:
                        return asyncio.run(measure(
                            mesh, p["sizes"], p["concurrency"], p["seconds"],
                            step=lambda t: log(f"throughput{' plaintext' if plaintext else ''}: {t}"),
                            done=lambda r: log.result(f"{r['ops_per_s']:,.1f} ops/s, {r['mb_per_s']:,.1f} MB/s, "
                                                      f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms")))
                finally:
                    _cleanup(mesh_dir)

            secure = one(False)
            plain = one(True)
            secure["plaintext"] = plain
            secure["security_cost"] = security_cost(secure["rows"], plain["rows"])
            return secure
        attempt("throughput", throughput)

    if "repair" in p["only"]:
        def repair() -> list[dict]:
            from maillage.benchmarks.repair import format_result, measure_repair
            runs = []
            for n in p["repair_sites"]:
                mesh_dir = Path(tempfile.mkdtemp(prefix="maillage-bench-", dir=tmp_root))
                try:
                    runs.append(asyncio.run(measure_repair(
                        n, p["data_bytes"], repair_rate=p["repair_rate_mb_s"], repair_interval=p["repair_interval_s"],
                        timeout=p["repair_timeout"], base_dir=mesh_dir / "mesh",
                        object_size=min(4 << 20, max(1 << 20, p["data_bytes"] // 16)),
                        step=lambda t: log(t))))
                finally:
                    _cleanup(mesh_dir)
                log.result(format_result(runs[-1]))
            return runs
        attempt("repair", repair)

    if "placement" in p["only"]:
        def placement() -> list[dict]:
            rows = []
            for n in p["placement_sites"]:
                log(f"placement: {n} sites, 2^{p['placement_bits']} partitions")
                rows += placement_bench.run((n,), p["placement_bits"])
                r = rows[-1]
                log.result(f"max/mean {r['max_mean']}, moved/ideal {r['moved_ratio']}, build {r['build_s']} s, "
                           f"{r['lookups_per_s']:,} lookups/s")
            return rows
        attempt("placement", placement)

    result["loadavg_at_end"] = loadavg()
    result["total_s"] = round(log.elapsed(), 1)
    report.add_ratios(result)
    result["targets"] = report.check_targets(result)
    if not args.no_charts:
        try:
            result["charts"] = [Path(c).name for c in report.write_charts(result, out)]
        except Exception as exc:  # a chart is a view of the figures, never a reason to lose them
            result["errors"]["charts"] = f"{type(exc).__name__}: {exc}"
            log(f"charts FAILED: {exc}")
    report.write_json(result, out / "results.json")
    (out / "results.md").write_text(report.markdown(result))
    if args.no_charts:
        charts = ", no charts (--no-charts)"
    elif "charts" in result["errors"]:
        charts = ", charts FAILED (see errors)"
    else:
        charts = f", {len(result.get('charts', []))} charts"
    log(f"done in {result['total_s']:.0f} s: {out / 'results.json'}, {out / 'results.md'}{charts}")
    return result, out


def _cleanup(path: Path) -> None:
    if not os.environ.get("MAILLAGE_KEEP_MESH"):
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks",
                                     description="Benchmark a local maillage mesh against this machine's limits.")
    add_arguments(parser)
    return command(parser.parse_args(argv))


def command(args: argparse.Namespace) -> int:
    """Run and print the summary; exit 1 if a part failed (missed targets are figures, not failures).

    With --vs-swift, the comparison with Swift alone; a Swift peer that is not set up is one line on
    stderr and exit 2. With --energy, the simulation of energy-aware background work alone (exit 1 if a
    goal is missed)."""
    if getattr(args, "energy", False):
        from maillage.benchmarks.energy import command as energy_command
        return energy_command(args)
    if getattr(args, "vs_swift", False):
        from maillage.benchmarks.vs_swift import SwiftPeerError, SwiftPeerMissing
        from maillage.benchmarks.vs_swift import command as vs_swift_command
        try:
            return vs_swift_command(args)
        except (SwiftPeerMissing, SwiftPeerError) as exc:
            print(f"maillage bench --vs-swift: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, SwiftPeerMissing) else 1
    result, out = run(args)
    print(report.summary(result))
    print(f"results: {out}")
    return 1 if result["errors"] else 0

