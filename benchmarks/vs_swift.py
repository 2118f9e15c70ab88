"""maillage next to OpenStack Swift, measured one after the other on this machine (issue 16).

    maillage bench --vs-swift [--sizes 4K,1M,64M] [--concurrency 1,8] [--target-concurrency 32]
    python -m maillage.benchmarks.vs_swift [same options]

Absolute figures on a shared 2-core machine move by 2x from hour to hour; a ratio measured side by
side in one session holds. So this step runs both stores in the same session, never at the same
time, with the same object sizes and concurrency, and prints one row per (operation, size,
concurrency): Swift ops/s, maillage ops/s, the ratio maillage / Swift and the target (1.5x).

* Swift is the loopback peer of ``../shared/peers/swift`` (3 regions, 2 replicas, proxy and 9
  backend servers, fsync on): ``start.sh``, its stdlib client ``bench.py`` under Debian's
  ``/usr/bin/python3`` (Swift lives in Debian's dist-packages), then ``stop.sh`` in a ``finally``
  (it stops only the pids ``start.sh`` recorded). Each size uses a fixed object count.
* maillage is ``benchmarks.throughput.measure`` on a 3-site mesh, R=2, fsync on, as users run it:
  TLS, signed requests and encryption at rest (the nodes' default). Each cell runs for
  ``--seconds``.
* One extra row at ``--target-concurrency`` (32) for 4 KiB, on both sides, checks the absolute
  targets: at least 1,000 PUT/s and 2,500 GET/s.
* A 64 MiB PUT is also shown as a fraction of this disk's write+fsync rate divided by R (each
  byte reaches R disks of this one machine), measured in the same run (``limits.measure_disk_write``);
  the target is 0.5.

The figures go to ``vs_swift.json`` (raw results of both sides, machine, load averages before and
after), ``vs_swift.md`` and the chart ``vs_swift.png`` in the results directory. When the Swift peer
is not set up, the step says how to set it up in one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maillage.benchmarks.limits import measure_disk_write
from maillage.benchmarks.machine import loadavg, machine_facts
from maillage.benchmarks.mesh import format_size, parse_size

__all__ = ["SwiftPeer", "SwiftPeerMissing", "SwiftPeerError", "find_peer_dir", "parse_cells", "swift_count",
           "swift_cells", "maillage_cells", "compare", "format_table", "markdown", "write_chart", "run",
           "add_arguments", "command", "main", "TARGET_RATIO", "SMALL_TARGETS", "DISK_FRACTION_TARGET"]

KIB, MIB = 1 << 10, 1 << 20
TARGET_RATIO = 1.5                          # every row at least 1.5x Swift
SMALL_TARGETS = {"put": 1000, "get": 2500}  # 4 KiB ops/s at --target-concurrency
DISK_FRACTION_TARGET = 0.5                  # 64 MiB PUT >= 0.5 x disk write+fsync / R
SITES, REPLICAS = 3, 2                      # both sides: 3 sites (Swift: regions), 2 replicas
SWIFT_PYTHON = "/usr/bin/python3"           # Debian's python: Swift is in its dist-packages
DEFAULTS: dict[str, Any] = {"sizes": "4K,1M,64M", "concurrency": "1,8", "seconds": 5.0}
QUICK: dict[str, Any] = {"sizes": "4K,1M", "concurrency": "1,8", "seconds": 2.0}
# The peer's README run, but 24 objects of 64 MiB instead of 8: at c8, 8 objects are one batch
# started together, a figure of start-up more than of throughput.
SWIFT_COUNTS = {4 * KIB: 2000, MIB: 200, 64 * MIB: 24}
#: Operations each maillage worker finishes at least in a cell, whatever --seconds says (the same
#: reason: at c8 a 5-second cell of 64 MiB PUTs was one or two batches).
MIN_PER_WORKER = 3


class SwiftPeerMissing(Exception):
    """The Swift peer is not set up here: the message says how to set it up (one line)."""


class SwiftPeerError(Exception):
    """The Swift peer did not start, or its benchmark failed: the message says where to look."""


# ----- the Swift peer ------------------------------------------------------------------------

def _candidate_dirs(explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    found = []
    if os.environ.get("MAILLAGE_SWIFT_PEER"):
        found.append(Path(os.environ["MAILLAGE_SWIFT_PEER"]))
    repo = Path(__file__).resolve().parent.parent  # an editable install: the repository's root
    found += [repo.parent / "shared" / "peers" / "swift", Path.cwd().parent / "shared" / "peers" / "swift"]
    return list(dict.fromkeys(found))


def find_peer_dir(explicit: Path | None = None) -> Path:
    """The folder holding the peer's setup.sh, start.sh, stop.sh and bench.py (SwiftPeerMissing if none)."""
    candidates = _candidate_dirs(explicit)
    for d in candidates:
        if all((d / name).is_file() for name in ("setup.sh", "start.sh", "stop.sh", "bench.py")):
            return d.resolve()
    raise SwiftPeerMissing(
        "Swift peer harness not found (looked in " + ", ".join(map(str, candidates)) + "): pass --swift-dir "
        "DIR, the folder with setup.sh, start.sh, stop.sh and bench.py (../shared/peers/swift of the repository)")


@dataclass(frozen=True)
class SwiftPeer:
    """The loopback Swift deployment of the peer harness in `directory`, its state under `base`."""

    directory: Path
    # the same variables (and defaults) as the harness's scripts
    base: Path = field(default_factory=lambda: Path(os.environ.get("SWIFTPEER_BASE", "/tmp/swiftpeer")))
    port: int = field(default_factory=lambda: int(os.environ.get("SWIFTPEER_PROXY_PORT", "18080")))
    python: str = SWIFT_PYTHON

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    def check(self) -> None:
        """SwiftPeerMissing with the fix when setup.sh has not been run (or Swift is not installed)."""
        env = "" if str(self.base) == "/tmp/swiftpeer" else f"SWIFTPEER_BASE={self.base} "
        how = f"run `{env}bash {self.directory / 'setup.sh'}` once as root (apt-installs Debian's swift packages " \
              f"and configures a loopback deployment under {self.base}), then retry"
        if not Path(self.python).is_file():
            raise SwiftPeerMissing(f"the Swift peer needs Debian's {self.python}, missing here: {how}")
        missing = [name for name in ("proxy-server.conf", "object.ring.gz", "container.ring.gz", "account.ring.gz")
                   if not (self.base / "etc" / name).is_file()]
        if missing:
            raise SwiftPeerMissing(f"the Swift peer is not set up ({self.base / 'etc' / missing[0]} missing): {how}")
        probe = subprocess.run([self.python, "-c", "import swift, eventlet"], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=60)
        if probe.returncode != 0:
            raise SwiftPeerMissing(f"OpenStack Swift is not importable by {self.python}: {how}")

    def running(self) -> list[str]:
        """Names whose pidfile names a live process (pid and /proc start time match, as stop.sh checks)."""
        alive = []
        for f in sorted(self.run_dir.glob("*.pid")):
            try:
                pid, start = f.read_text().split()[:2]
                with open(f"/proc/{int(pid)}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[19] == start:
                        alive.append(f.stem)
            except (OSError, ValueError, IndexError):
                continue
        return alive

    def _script(self, name: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.directory / name)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def start(self) -> None:
        done = self._script("start.sh", 180)
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise SwiftPeerError(f"start.sh failed ({done.returncode}): {tail}; logs in {self.base / 'log'}")

    def stop(self) -> str:
        done = self._script("stop.sh", 300)
        return (done.stdout + done.stderr).strip()

    def bench(self, sizes: Sequence[tuple[int, int]], concurrency: Sequence[int],
              say: Callable[[str], None], timeout: float = 3600) -> dict:
        """bench.py once (one run per cell, objects deleted after each run): its JSON line."""
        argv = [self.python, str(self.directory / "bench.py"), "--url", f"http://127.0.0.1:{self.port}",
                "--run-dir", str(self.run_dir), "--sizes", ",".join(f"{swift_label(s)}:{n}" for s, n in sizes),
                "--conc", ",".join(map(str, concurrency)), "--runs", "1", "--delete"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        tail: list[str] = []

        def forward() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                tail[:] = (tail + [line.rstrip()])[-5:]
                say(f"swift: {line.rstrip()}")

        reader = threading.Thread(target=forward, daemon=True)
        reader.start()
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            proc.kill()

        killer = threading.Timer(timeout, kill)  # not communicate(): it would read stderr too
        killer.start()
        try:
            assert proc.stdout is not None
            out = proc.stdout.read()
            proc.wait()
        finally:
            killer.cancel()
        reader.join(timeout=10)
        if expired.is_set():
            raise SwiftPeerError(f"bench.py did not finish within {timeout:.0f} s")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise SwiftPeerError(f"bench.py failed ({proc.returncode}): {' | '.join(tail) or 'no output'}")
        return json.loads(lines[-1])


def swift_label(size: int) -> str:
    """A size as bench.py parses it: 4KiB, 1MiB, or bytes."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", KIB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


# ----- cells ---------------------------------------------------------------------------------

def swift_count(size: int) -> int:
    """Objects per Swift cell: the peer README's counts, else about 200 MiB per cell (8 to 2,000)."""
    return SWIFT_COUNTS.get(size, max(8, min(2000, (200 * MIB) // max(1, size))))


def parse_cells(text: str, quick: bool = False) -> list[tuple[int, int]]:
    """'4K,1M:100,64M' -> [(size, Swift object count)]; a count not given is `swift_count` (a quarter in quick)."""
    cells = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        label, _, count = part.partition(":")
        size = parse_size(label)
        if size <= 0:
            raise ValueError(f"not a positive size: {part!r}")
        n = int(count) if count else (max(8, swift_count(size) // 4) if quick else swift_count(size))
        cells.append((size, n))
    if not cells:
        raise ValueError("no sizes given")
    return cells


Key = tuple[str, int, int]  # (op "put"|"get", size in bytes, concurrency)


def swift_cells(results: Sequence[dict]) -> dict[Key, dict]:
    """bench.py's JSON results (one per invocation) as cells: ops/s, MB/s (10^6) and server CPU per op."""
    cells: dict[Key, dict] = {}
    for result in results:
        for row in result.get("summary", []):
            size = parse_size(row["size"])
            ops = float(row["ops_s"])
            cells[(row["op"].lower(), size, int(row["conc"]))] = {
                "ops_per_s": ops, "mb_per_s": round(float(row["mib_s"]) * MIB / 1e6, 2),
                "server_cpu_ms_per_op": round(row["server_cores"] / ops * 1e3, 3) if ops and "server_cores" in row
                else None,
                "p50_ms": row.get("p50_ms"), "p99_ms": row.get("p99_ms"), "objects": row.get("objects")}
    return cells


def maillage_cells(rows: Sequence[dict]) -> dict[Key, dict]:
    """throughput.measure's rows as cells: ops/s, MB/s and node CPU per op (all nodes)."""
    cells: dict[Key, dict] = {}
    for row in rows:
        ops = float(row["ops_per_s"])
        node_cpu = sum((row.get("node_cpu_s") or {}).values())
        cells[(row["op"], row["size"], row["concurrency"])] = {
            "ops_per_s": ops, "mb_per_s": row["mb_per_s"],
            "server_cpu_ms_per_op": round(node_cpu / row["ops"] * 1e3, 3) if row.get("ops") else None,
            "p50_ms": row.get("p50_ms"), "p99_ms": row.get("p99_ms"), "ops": row.get("ops"),
            "errors": row.get("errors", 0), "first_error": row.get("first_error")}
    return cells


def _row_name(key: Key) -> str:
    op, size, c = key
    return f"{op.upper()} {format_size(size)} c{c}"


def compare(swift: dict[Key, dict], mine: dict[Key, dict], *, disk_mb_per_s: float | None,
            replicas: int = REPLICAS, target_concurrency: int | None = 32) -> dict:
    """The issue's table and targets from both sides' cells.

    `table`: one row per cell either side measured (by size, then PUT before GET, then concurrency):
    both ops/s, ratio maillage / Swift (None when a side is missing) and whether it meets 1.5x.
    `targets`: the absolute ones: 4 KiB PUT/GET ops/s at `target_concurrency`, and each 64 MiB PUT's
    fraction of disk write+fsync / R."""
    table = []
    for key in sorted(set(swift) | set(mine), key=lambda k: (k[1], k[0] != "put", k[2])):
        s, m = swift.get(key), mine.get(key)
        ratio = m["ops_per_s"] / s["ops_per_s"] if s and m and s["ops_per_s"] else None
        table.append({"row": _row_name(key), "op": key[0], "size": key[1], "concurrency": key[2],
                      "swift_ops_per_s": s["ops_per_s"] if s else None,
                      "maillage_ops_per_s": m["ops_per_s"] if m else None,
                      "ratio": round(ratio, 3) if ratio is not None else None, "goal": TARGET_RATIO,
                      "met": ratio >= TARGET_RATIO if ratio is not None else None,
                      "swift_cpu_ms_per_op": s.get("server_cpu_ms_per_op") if s else None,
                      "maillage_cpu_ms_per_op": m.get("server_cpu_ms_per_op") if m else None,
                      "maillage_errors": m.get("errors", 0) if m else 0})
    targets = []
    if target_concurrency:
        for op, goal in SMALL_TARGETS.items():
            m = mine.get((op, 4 * KIB, target_concurrency))
            if m:
                targets.append({"target": f"4 KiB {op.upper()} c{target_concurrency} >= {goal:,} ops/s",
                                "value": m["ops_per_s"], "goal": goal, "unit": "ops/s",
                                "met": m["ops_per_s"] >= goal})
    bound = disk_mb_per_s / replicas if disk_mb_per_s else None
    for key in sorted(k for k in mine if k[0] == "put" and k[1] == 64 * MIB):
        m, s = mine[key], swift.get(key)
        if bound:
            fraction = m["mb_per_s"] / bound
            targets.append({"target": f"64 MiB PUT c{key[2]} >= {DISK_FRACTION_TARGET} x disk write+fsync / R "
                                      f"({bound:,.0f} MB/s)",
                            "value": round(fraction, 3), "goal": DISK_FRACTION_TARGET, "unit": "x",
                            "mb_per_s": m["mb_per_s"], "bound_mb_per_s": round(bound, 1),
                            "swift_fraction": round(s["mb_per_s"] / bound, 3) if s else None,
                            "met": fraction >= DISK_FRACTION_TARGET})
    return {"table": table, "targets": targets}


# ----- rendering -----------------------------------------------------------------------------

def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _mark(met: bool | None) -> str:
    return "-" if met is None else ("pass" if met else "MISS")


def format_table(comparison: dict) -> str:
    """The issue's table (markdown, readable as is on a terminal), then the absolute targets."""
    lines = ["| row | Swift ops/s | maillage ops/s | ratio | target | | server CPU ms/op Swift / maillage |",
             "|---|---:|---:|---:|---|---|---|"]
    for r in comparison["table"]:
        cpu = f"{_num(r['swift_cpu_ms_per_op'], 2)} / {_num(r['maillage_cpu_ms_per_op'], 2)}"
        errors = f" ({r['maillage_errors']} maillage errors)" if r["maillage_errors"] else ""
        lines.append(f"| {r['row']} | {_num(r['swift_ops_per_s'])} | {_num(r['maillage_ops_per_s'])} | "
                     f"{_num(r['ratio'], 2)} | >= {r['goal']}x | {_mark(r['met'])}{errors} | {cpu} |")
    if comparison["targets"]:
        lines += ["", "| target | measured | | Swift |", "|---|---:|---|---:|"]
        for t in comparison["targets"]:
            if t["unit"] == "x":
                measured = f"{t['value']:.2f} ({t['mb_per_s']:,.1f} MB/s)"
                peer = _num(t.get("swift_fraction"), 2)
            else:
                measured, peer = f"{t['value']:,.1f} {t['unit']}", ""
            lines.append(f"| {t['target']} | {measured} | {_mark(t['met'])} | {peer} |")
    rows = [r for r in comparison["table"] if r["met"] is not None] + comparison["targets"]
    met = sum(1 for r in rows if r["met"])
    lines += ["", f"{met} of {len(rows)} targets met"]
    return "\n".join(lines)


def markdown(result: dict) -> str:
    m, p = result["machine"], result["params"]
    disk = result.get("disk") or {}
    lines = [f"# maillage vs OpenStack Swift, {result['started']}", "",
             f"{m['cores']} cores ({m.get('cpu')}), kernel {m['kernel']}; data dir {m.get('data_fs', '?')}. "
             f"Load average before {result['loadavg_before']}, after {result.get('loadavg_after')}.", "",
             f"Both: {SITES} sites, R={REPLICAS}, fsync on, loopback, run one after the other. Swift: "
             f"{result.get('swift_version') or 'Debian package'}, bench.py with "
             + ", ".join(f"{format_size(s)} x {n}" for s, n in p["cells"])
             + f" objects per cell. maillage: {p['mode']}, {p['seconds']:g} s per cell. Disk write+fsync "
             f"{_num(disk.get('mb_per_s'))} MB/s (runs {disk.get('runs')}).", "",
             format_table(result["comparison"]), ""]
    if result.get("errors"):
        lines += ["## Steps that failed", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()] + [""]
    if result.get("chart"):
        lines += [f"![vs Swift]({result['chart']})", ""]
    return "\n".join(lines)


def write_chart(result: dict, path: Path) -> Path:
    """Two panels: ops/s of both stores per row (log scale), and the ratio against the 1.5x target."""
    from maillage.benchmarks.report import pyplot
    plt = pyplot()
    table = result["comparison"]["table"]
    names = [r["row"] for r in table]
    x = list(range(len(table)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(10, 1.4 * len(table)), 4.8))
    for offset, side, label in ((-0.2, "swift_ops_per_s", "Swift"), (0.2, "maillage_ops_per_s", "maillage")):
        left.bar([i + offset for i in x], [r[side] or 0 for r in table], width=0.4, label=label)
    left.set_yscale("log")
    left.set_ylabel("ops/s")
    left.set_title("ops/s (log scale)")
    left.set_xticks(x, names, fontsize=7, rotation=35, ha="right")
    left.grid(alpha=0.3, axis="y")
    left.legend(fontsize=8)
    colors = ["tab:green" if r["met"] else "tab:red" for r in table]
    right.bar(x, [r["ratio"] or 0 for r in table], color=colors)
    right.axhline(TARGET_RATIO, color="grey", linestyle="--", linewidth=1, label=f"target {TARGET_RATIO}x")
    right.axhline(1.0, color="black", linewidth=0.6)
    right.set_ylim(0, max([TARGET_RATIO * 1.15] + [r["ratio"] * 1.12 for r in table if r["ratio"] is not None]))
    for i, r in zip(x, table):
        if r["ratio"] is not None:
            right.annotate(f"{r['ratio']:.2f}", (i, r["ratio"]), ha="center", va="bottom", fontsize=7)
    right.set_ylabel("maillage / Swift")
    right.set_title("ratio (green: meets the target)")
    right.set_xticks(x, names, fontsize=7, rotation=35, ha="right")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    fig.suptitle(f"maillage vs Swift, {result['started']} (load {result['loadavg_before']} -> "
                 f"{result.get('loadavg_after')})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----- the run -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    cells: list[tuple[int, int]]       # (size, Swift objects per cell)
    concurrency: list[int]
    target_concurrency: int            # 0: no extra 4 KiB row
    seconds: float
    out: Path
    tmp_root: Path
    charts: bool = True
    swift_dir: Path | None = None

    @property
    def extra_row(self) -> bool:
        """Whether the 4 KiB row at target_concurrency is measured apart (not already a cell)."""
        return bool(self.target_concurrency) and not (
            self.target_concurrency in self.concurrency and any(size == 4 * KIB for size, _ in self.cells))

    @property
    def small_count(self) -> int:
        """Swift objects for the extra 4 KiB row: the 4 KiB cell's count when there is one."""
        return next((n for size, n in self.cells if size == 4 * KIB), swift_count(4 * KIB))


def settings_of(args: argparse.Namespace) -> Settings:
    base = QUICK if getattr(args, "quick", False) else DEFAULTS
    try:
        cells = parse_cells(args.sizes or base["sizes"], quick=getattr(args, "quick", False))
        concurrency = [int(c) for c in (args.concurrency or base["concurrency"]).split(",") if c.strip()]
    except (ValueError, KeyError) as exc:
        raise SystemExit(f"vs-swift: bad --sizes or --concurrency: {exc}") from None
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Settings(cells=cells, concurrency=concurrency, target_concurrency=args.target_concurrency,
                    seconds=float(args.seconds if args.seconds is not None else base["seconds"]),
                    out=args.out or Path("bench-results") / f"vs-swift-{started}",
                    tmp_root=args.tmp_dir or Path(tempfile.gettempdir()), charts=not args.no_charts,
                    swift_dir=args.swift_dir)


def _swift_version(python: str) -> str | None:
    try:
        done = subprocess.run([python, "-c", "import swift; print(swift.__version__)"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"Swift {done.stdout.strip()}" if done.returncode == 0 and done.stdout.strip() else None


def _run_swift(peer: SwiftPeer, s: Settings, log: Callable[[str], None]) -> list[dict]:
    log("swift: start.sh")
    try:
        peer.start()
        results = [peer.bench(s.cells, s.concurrency, log)]
        if s.extra_row:
            results.append(peer.bench([(4 * KIB, s.small_count)], [s.target_concurrency], log))
        return results
    finally:
        said = peer.stop().splitlines()
        log(f"swift: stop.sh: {sum(1 for x in said if x.startswith('stopped'))} processes stopped"
            + "".join(f"; {x}" for x in said if not x.startswith("stopped")))


def _run_maillage(s: Settings, log: Callable[[str], None]) -> dict:
    from maillage.benchmarks.mesh import open_mesh
    from maillage.benchmarks.throughput import measure

    def done(r: dict) -> None:
        log(f"  -> {r['ops_per_s']:,.1f} ops/s, {r['mb_per_s']:,.1f} MB/s, p50 {r['p50_ms']:.1f} ms"
            + (f", {r['errors']} errors (first: {r['first_error']})" if r["errors"] else ""))

    mesh_dir = Path(tempfile.mkdtemp(prefix="maillage-bench-", dir=s.tmp_root))
    try:
        log(f"maillage: start a {SITES}-site mesh (R={REPLICAS}, fsync on, TLS, signed requests, encryption at rest)")
        with open_mesh(SITES, mesh_dir / "mesh") as mesh:
            sizes = [size for size, _ in s.cells]
            result = asyncio.run(measure(mesh, sizes, s.concurrency, s.seconds,
                                         step=lambda t: log(f"maillage: {t}"), done=done,
                                         min_per_worker=MIN_PER_WORKER))
            if s.extra_row:
                extra = asyncio.run(measure(mesh, [4 * KIB], [s.target_concurrency], s.seconds,
                                            step=lambda t: log(f"maillage: {t}"), done=done))
                result["rows"] += extra["rows"]
            return result
    finally:
        if not os.environ.get("MAILLAGE_KEEP_MESH"):
            shutil.rmtree(mesh_dir, ignore_errors=True)


def run(s: Settings, log: Callable[[str], None]) -> tuple[dict, Path]:
    """Check the peer (SwiftPeerMissing before anything is measured), then disk, Swift, maillage; write files."""
    peer = SwiftPeer(find_peer_dir(s.swift_dir))
    peer.check()
    began = time.monotonic()
    s.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"schema": 1, "kind": "vs-swift", "started": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": machine_facts(str(s.tmp_root)), "loadavg_before": loadavg(),
                    "params": {"cells": s.cells, "concurrency": s.concurrency,
                               "target_concurrency": s.target_concurrency, "seconds": s.seconds,
                               "sites": SITES, "replicas": REPLICAS, "swift_dir": str(peer.directory),
                               "mode": "TLS, signed requests, encryption at rest"},
                    "swift_version": _swift_version(peer.python), "errors": {}, "durations_s": {}}
    log(f"results in {s.out}; load average {result['loadavg_before']}")

    def timed(part: str, fn: Callable[[], object]) -> object:
        t = time.monotonic()
        try:
            return fn()
        finally:
            result["durations_s"][part] = round(time.monotonic() - t, 1)

    log("disk: write+fsync rate (512 MiB in 4 MiB blocks, median of 3)")
    result["disk"] = timed("disk", lambda: measure_disk_write(s.tmp_root / f"maillage-disk-{os.getpid()}",
                                                             512 << 20, 3))
    shutil.rmtree(s.tmp_root / f"maillage-disk-{os.getpid()}", ignore_errors=True)
    log(f"  -> {result['disk']['mb_per_s']:,.1f} MB/s")
    busy = peer.running()
    if busy:  # before anything runs: never measure next to another user of the peer, never stop theirs
        raise SwiftPeerError(f"the Swift peer is already running ({', '.join(busy)}; pidfiles in {peer.run_dir}): "
                             f"someone may be measuring with it. Stop it with `bash {peer.directory / 'stop.sh'}` "
                             "and retry")

    def attempt(part: str, fn: Callable[[], object], empty: object) -> object:
        try:
            return timed(part, fn)
        except Exception as exc:  # one side failing keeps the other side's figures
            result["errors"][part] = f"{type(exc).__name__}: {exc}"
            log(f"{part} FAILED: {exc}")
            if not isinstance(exc, SwiftPeerError):
                traceback.print_exc(file=sys.stderr)
            return empty

    result["swift"] = attempt("swift", lambda: _run_swift(peer, s, log), [])
    result["maillage"] = attempt("maillage", lambda: _run_maillage(s, log), {"rows": []})
    result["loadavg_after"] = loadavg()
    result["comparison"] = compare(swift_cells(result["swift"]), maillage_cells(result["maillage"]["rows"]),
                                   disk_mb_per_s=result["disk"]["mb_per_s"], replicas=REPLICAS,
                                   target_concurrency=s.target_concurrency)
    if s.charts:
        try:
            result["chart"] = write_chart(result, s.out / "vs_swift.png").name
        except Exception as exc:  # the figures are kept whatever happens to the chart; the failure is shown
            result["errors"]["chart"] = f"{type(exc).__name__}: {exc}"
            log(f"chart FAILED: {exc}")
    result["total_s"] = round(time.monotonic() - began, 1)
    (s.out / "vs_swift.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (s.out / "vs_swift.md").write_text(markdown(result))
    return result, s.out


# ----- command line --------------------------------------------------------------------------

def add_arguments(parser: argparse._ActionsContainer, *, standalone: bool = True) -> None:
    """The options of this step; `standalone` adds those the harness already has (sizes, out, ...)."""
    if standalone:
        parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK['sizes']}, a quarter of the "
                                                                 f"Swift objects, {QUICK['seconds']:g} s cells")
        parser.add_argument("--sizes", help=f"object sizes, each optionally with its Swift object count "
                                            f"(default {DEFAULTS['sizes']} = 4K:2000,1M:200,64M:24)")
        parser.add_argument("--concurrency", help=f"requests in flight (default {DEFAULTS['concurrency']})")
        parser.add_argument("--seconds", type=float,
                            help=f"maillage seconds per cell (default {DEFAULTS['seconds']:g})")
        parser.add_argument("--out", type=Path, help="results directory (default ./bench-results/vs-swift-<UTC time>)")
        parser.add_argument("--tmp-dir", type=Path, help="where the mesh and the disk probe write (default: temp dir)")
        parser.add_argument("--no-charts", action="store_true", help="skip the PNG chart")
    parser.add_argument("--target-concurrency", type=int, default=32, metavar="N",
                        help="concurrency of the extra 4 KiB row on both sides that checks the absolute targets "
                             "(1,000 PUT/s, 2,500 GET/s; default 32, 0 skips it)")
    parser.add_argument("--swift-dir", type=Path, metavar="DIR",
                        help="the Swift peer harness (setup.sh, start.sh, stop.sh, bench.py; default "
                             "$MAILLAGE_SWIFT_PEER, else ../shared/peers/swift of the repository)")


def command(args: argparse.Namespace, stream=None) -> int:
    """Run, print the table; SwiftPeerMissing/SwiftPeerError propagate for the caller to print in one line."""
    out_stream = stream or sys.stdout

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    result, out = run(settings_of(args), log)
    print(format_table(result["comparison"]), file=out_stream)
    print(f"load average before {result['loadavg_before']}, after {result['loadavg_after']}; "
          f"disk write+fsync {result['disk']['mb_per_s']:,.1f} MB/s", file=out_stream)
    chart = f", {out / result['chart']}" if result.get("chart") else ""
    print(f"results: {out / 'vs_swift.json'}, {out / 'vs_swift.md'}{chart}", file=out_stream)
    if result["errors"]:
        print("failed: " + "; ".join(f"{k}: {v}" for k, v in result["errors"].items()), file=out_stream)
    return 1 if result["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.vs_swift",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return command(args)
    except (SwiftPeerMissing, SwiftPeerError) as exc:
        print(f"vs-swift: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SwiftPeerMissing) else 1


if __name__ == "__main__":
    sys.exit(main())
