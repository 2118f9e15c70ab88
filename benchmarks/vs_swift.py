"""maillage next to OpenStack Swift, measured one after the other on this machine (issues 16 and 27).

    maillage bench --vs-swift [--sizes 4K,1M,64M] [--concurrency 1,8] [--target-concurrency 32]
    python -m maillage.benchmarks.vs_swift [same options]

Absolute figures on a shared 2-core machine move by 2x from hour to hour; a ratio measured side by
side in one session holds. So this step runs both stores in the same session, never at the same
time, with the same object sizes and concurrency, and prints one row per (operation, size,
concurrency): Swift ops/s plain and behind TLS, maillage ops/s, both ratios maillage / Swift and the
targets (1.2x plain Swift, 1.5x Swift behind TLS).

* Swift is the loopback peer of ``../shared/peers/swift`` (3 regions, 2 replicas, proxy and 9
  backend servers, fsync on): ``start.sh``, its stdlib client ``bench.py`` under Debian's
  ``/usr/bin/python3`` (Swift lives in Debian's dist-packages), then ``stop.sh`` in a ``finally``
  (it stops only the pids ``start.sh`` recorded). Each size uses a fixed object count.
* Swift behind TLS: the same ``bench.py`` cells through a TLS terminator at its proxy, as operators
  deploy it, size by size next to the plain ones (alternating which goes first): ``tls_front.TlsFront``,
  Debian's haproxy on a free loopback port with a self-signed ECDSA P-256 certificate, started and
  stopped by its pid. ``bench.py`` speaks plain ``http.client``; it runs unchanged, with
  ``http.client.HTTPConnection`` made an HTTPS connection that trusts that certificate (``TLS_SHIM``).
  Its server CPU then counts the terminator too.
* The S3 door (unless ``--no-s3``): the same boto3 cells (``s3_throughput.measure_s3``: one boto3
  client, `concurrency` threads, ``--seconds`` per cell) against maillage's S3 door over HTTPS and
  against Swift's S3 layer (``s3api``, set up with ``SWIFTPEER_S3API=1 bash setup.sh``), plain and
  behind the same terminator. Swift 2.30's s3api refuses aws-chunked bodies, which boto3 sends by
  default over HTTPS (a trailing CRC32), so behind TLS its client computes checksums only when
  required; everywhere else boto3 runs with its defaults.
* maillage is ``benchmarks.throughput.measure`` on a 3-site mesh, R=2, fsync on, as users run it:
  TLS, signed requests and encryption at rest (the nodes' default). Each cell runs for
  ``--seconds``.
* One extra row at ``--target-concurrency`` (32) for 4 KiB, on both sides, checks the absolute
  targets: at least 1,000 PUT/s and 2,500 GET/s.
* A 64 MiB PUT is also shown as a fraction of this disk's write+fsync rate divided by R (each
  byte reaches R disks of this one machine), measured in the same run (``limits.measure_disk_write``);
  the target is 0.75 (issue 27; Swift reached 0.76-0.94 when it was set).

The figures go to ``vs_swift.json`` (raw results of every side, machine, load averages before and
after), ``vs_swift.md`` and the chart ``vs_swift.png`` in the results directory. When the Swift peer
is not set up, the step says how to set it up in one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maillage.benchmarks.limits import measure_disk_write
from maillage.benchmarks.machine import loadavg, machine_facts
from maillage.benchmarks.mesh import format_size, parse_size
from maillage.benchmarks.tls_front import TlsFront, TlsFrontError, TlsFrontMissing, process_start_time

__all__ = ["SwiftPeer", "SwiftPeerMissing", "SwiftPeerError", "find_peer_dir", "parse_cells", "swift_count",
           "swift_cells", "maillage_cells", "compare", "ratio_table", "format_table", "markdown", "write_chart", "run",
           "add_arguments", "command", "main", "TARGET_RATIO", "TARGET_PLAIN_RATIO", "SMALL_TARGETS",
           "DISK_FRACTION_TARGET", "TLS_SHIM", "swift_s3_client"]

KIB, MIB = 1 << 10, 1 << 20
TARGET_RATIO = 1.5                          # every row at least 1.5x Swift behind TLS, every S3 row 1.5x
TARGET_PLAIN_RATIO = 1.2                    # ... and at least 1.2x Swift without TLS
SMALL_TARGETS = {"put": 1000, "get": 2500}  # 4 KiB ops/s at --target-concurrency
DISK_FRACTION_TARGET = 0.75                 # 64 MiB PUT >= 0.75 x disk write+fsync / R (issue 27)
SITES, REPLICAS = 3, 2                      # both sides: 3 sites (Swift: regions), 2 replicas
SWIFT_PYTHON = "/usr/bin/python3"           # Debian's python: Swift is in its dist-packages
SWIFT_S3_USER = ("test:tester", "testing")  # the peer's tempauth user, its S3 access key and secret
#: Runs the peer's bench.py unchanged over HTTPS: `python -c TLS_SHIM CA_FILE bench.py ARGS...`.
#: bench.py opens every connection with http.client.HTTPConnection(host, port, timeout=...); here that
#: name is an HTTPSConnection verifying the terminator's certificate with CA_FILE.
TLS_SHIM = """\
import http.client, runpy, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
class HTTPSOnly(http.client.HTTPSConnection):
    def __init__(self, host, port=None, **kwargs):
        super().__init__(host, port, context=context, **kwargs)
http.client.HTTPConnection = HTTPSOnly
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
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

    def s3_enabled(self) -> bool:
        """Whether the proxy's pipeline has Swift's s3api (setup.sh run with SWIFTPEER_S3API=1)."""
        try:
            conf = (self.base / "etc" / "proxy-server.conf").read_text()
        except OSError:
            return False
        return any(line.strip().startswith("pipeline") and " s3api " in f" {line.split('=', 1)[-1]} "
                   for line in conf.splitlines())

    def server_pids(self, *extra: int) -> dict[str, int]:
        """Every process of the groups start.sh recorded (masters and the workers they forked), as
        bench.py counts server CPU, plus the processes `extra` (a TLS terminator)."""
        groups = {}
        for f in self.run_dir.glob("*.pid"):
            try:
                groups[int(f.read_text().split()[0])] = f.stem
            except (OSError, ValueError, IndexError):
                continue
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) in groups:  # pgrp
                found[f"{groups[int(fields[2])]}:{entry.name}"] = int(entry.name)
        found.update({f"tls-front:{pid}": pid for pid in extra})
        return found

    def _cpu_run_dir(self, front: TlsFront) -> Path:
        """A copy of the peer's pidfiles plus the terminator's, for bench.py to count its CPU too."""
        assert front.directory is not None and front.pid is not None
        run = front.directory / "run"
        run.mkdir(exist_ok=True)
        for f in self.run_dir.glob("*.pid"):
            shutil.copyfile(f, run / f.name)
        (run / "tls-front.pid").write_text(f"{front.pid} {process_start_time(front.pid)}\n")
        return run

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
              say: Callable[[str], None], timeout: float = 3600, front: TlsFront | None = None) -> dict:
        """bench.py once (one run per cell, objects deleted after each run): its JSON line. With a
        started `front`, through that TLS terminator (bench.py unchanged, see TLS_SHIM)."""
        if front is None:
            argv = [self.python, str(self.directory / "bench.py"), "--url", f"http://127.0.0.1:{self.port}",
                    "--run-dir", str(self.run_dir)]
        else:
            argv = [self.python, "-c", TLS_SHIM, str(front.ca_file), str(self.directory / "bench.py"),
                    "--url", front.url, "--run-dir", str(self._cpu_run_dir(front))]
        argv += ["--sizes", ",".join(f"{swift_label(s)}:{n}" for s, n in sizes),
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


def ratio_table(swift: dict[Key, dict], swift_tls: dict[Key, dict], mine: dict[Key, dict], *,
                goal_plain: float = TARGET_PLAIN_RATIO, goal_tls: float = TARGET_RATIO) -> list[dict]:
    """One row per cell any side measured (by size, then PUT before GET, then concurrency): the ops/s of
    Swift, Swift behind TLS and maillage, and both ratios maillage / Swift with their marks (None when
    a side is missing: never a fake pass). `met`: every ratio the row has meets its goal."""
    table = []
    for key in sorted(set(swift) | set(swift_tls) | set(mine), key=lambda k: (k[1], k[0] != "put", k[2])):
        s, st, m = swift.get(key), swift_tls.get(key), mine.get(key)
        ratio = m["ops_per_s"] / s["ops_per_s"] if s and m and s["ops_per_s"] else None
        ratio_tls = m["ops_per_s"] / st["ops_per_s"] if st and m and st["ops_per_s"] else None
        met_plain = ratio >= goal_plain if ratio is not None else None
        met_tls = ratio_tls >= goal_tls if ratio_tls is not None else None
        marks = [x for x in (met_plain, met_tls) if x is not None]
        table.append({"row": _row_name(key), "op": key[0], "size": key[1], "concurrency": key[2],
                      "swift_ops_per_s": s["ops_per_s"] if s else None,
                      "swift_tls_ops_per_s": st["ops_per_s"] if st else None,
                      "maillage_ops_per_s": m["ops_per_s"] if m else None,
                      "ratio": round(ratio, 3) if ratio is not None else None,
                      "ratio_tls": round(ratio_tls, 3) if ratio_tls is not None else None,
                      "goal": goal_plain, "goal_tls": goal_tls, "met_plain": met_plain, "met_tls": met_tls,
                      "met": all(marks) if marks else None,
                      "swift_cpu_ms_per_op": s.get("server_cpu_ms_per_op") if s else None,
                      "swift_tls_cpu_ms_per_op": st.get("server_cpu_ms_per_op") if st else None,
                      "maillage_cpu_ms_per_op": m.get("server_cpu_ms_per_op") if m else None,
                      "maillage_errors": m.get("errors", 0) if m else 0,
                      "swift_errors": (s or {}).get("errors", 0) + (st or {}).get("errors", 0)})
    return table


def compare(swift: dict[Key, dict], mine: dict[Key, dict], *, disk_mb_per_s: float | None,
            swift_tls: dict[Key, dict] | None = None, replicas: int = REPLICAS,
            target_concurrency: int | None = 32, s3: tuple[dict, dict, dict] | None = None) -> dict:
    """The issue's tables and targets from every side's cells.

    `table`: `ratio_table` of the native cells (goals 1.2x plain Swift, 1.5x Swift behind TLS).
    `s3_table` (when `s3` = (Swift's S3 layer, the same behind TLS, maillage's S3 door) is given): the
    same for the boto3 cells, 1.5x both. `targets`: the absolute ones: 4 KiB PUT/GET ops/s at
    `target_concurrency`, and each 64 MiB PUT's fraction of disk write+fsync / R."""
    out: dict = {"table": ratio_table(swift, swift_tls or {}, mine)}
    if s3 is not None:
        out["s3_table"] = ratio_table(*s3, goal_plain=TARGET_RATIO, goal_tls=TARGET_RATIO)
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
    out["targets"] = targets
    return out


# ----- rendering -----------------------------------------------------------------------------

def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _mark(met: bool | None) -> str:
    return "-" if met is None else ("pass" if met else "MISS")


def _ratio_lines(table: Sequence[dict], maillage_name: str = "maillage") -> list[str]:
    lines = [f"| row | Swift | Swift+TLS | {maillage_name} | ratio | ratio TLS | | "
             "server CPU ms/op Swift / Swift+TLS / maillage |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in table:
        cpu = " / ".join(_num(r[k], 2) for k in ("swift_cpu_ms_per_op", "swift_tls_cpu_ms_per_op",
                                                  "maillage_cpu_ms_per_op"))
        errors = "".join(f" ({r[k]} {who} errors)" for k, who in (("maillage_errors", "maillage"),
                                                                    ("swift_errors", "Swift")) if r.get(k))
        lines.append(f"| {r['row']} | {_num(r['swift_ops_per_s'])} | {_num(r['swift_tls_ops_per_s'])} | "
                     f"{_num(r['maillage_ops_per_s'])} | {_num(r['ratio'], 2)} | {_num(r['ratio_tls'], 2)} | "
                     f"{_mark(r['met'])}{errors} | {cpu} |")
    return lines


def format_table(comparison: dict) -> str:
    """The issue's tables (markdown, readable as is on a terminal): native, S3, then the absolute targets."""
    table = comparison["table"]
    goals = (table[0]["goal"], table[0]["goal_tls"]) if table else (TARGET_PLAIN_RATIO, TARGET_RATIO)
    lines = [f"ops/s; ratio = maillage / Swift (target >= {goals[0]}x), ratio TLS = maillage / Swift behind TLS "
             f"(target >= {goals[1]}x)", ""] + _ratio_lines(table)
    if "s3_table" in comparison:
        lines += ["", f"S3 door (boto3, same cells): maillage's over HTTPS / Swift's s3api, plain and behind TLS "
                      f"(target >= {TARGET_RATIO}x both)", ""] + _ratio_lines(comparison["s3_table"], "maillage S3")
    if comparison["targets"]:
        lines += ["", "| target | measured | | Swift |", "|---|---:|---|---:|"]
        for t in comparison["targets"]:
            if t["unit"] == "x":
                measured = f"{t['value']:.2f} ({t['mb_per_s']:,.1f} MB/s)"
                peer = _num(t.get("swift_fraction"), 2)
            else:
                measured, peer = f"{t['value']:,.1f} {t['unit']}", ""
            lines.append(f"| {t['target']} | {measured} | {_mark(t['met'])} | {peer} |")
    rows = [r for r in table + comparison.get("s3_table", []) if r["met"] is not None] + comparison["targets"]
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
             + f" objects per cell, plain and behind TLS ({result.get('tls_front') or 'haproxy'} at its proxy). "
             f"maillage: {p['mode']}, {p['seconds']:g} s per cell"
             + (f"; S3 cells (boto3, {p['seconds']:g} s each, both stores): maillage's S3 door over HTTPS, "
                "Swift's s3api plain and behind the same TLS front" if p.get("s3") else "")
             + f". Disk write+fsync {_num(disk.get('mb_per_s'))} MB/s (runs {disk.get('runs')}).", "",
             format_table(result["comparison"]), ""]
    if result.get("errors"):
        lines += ["## Steps that failed", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()] + [""]
    if result.get("chart"):
        lines += [f"![vs Swift]({result['chart']})", ""]
    return "\n".join(lines)


def write_chart(result: dict, path: Path) -> Path:
    """Two panels: ops/s of Swift, Swift behind TLS and maillage per row (log scale), and both ratios
    against their targets."""
    from maillage.benchmarks.report import pyplot
    plt = pyplot()
    table = result["comparison"]["table"]
    names = [r["row"] for r in table]
    x = list(range(len(table)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(10, 1.4 * len(table)), 4.8))
    for offset, side, label in ((-0.27, "swift_ops_per_s", "Swift"), (0.0, "swift_tls_ops_per_s", "Swift + TLS"),
                                (0.27, "maillage_ops_per_s", "maillage")):
        left.bar([i + offset for i in x], [r[side] or 0 for r in table], width=0.27, label=label)
    left.set_yscale("log")
    left.set_ylabel("ops/s")
    left.set_title("ops/s (log scale)")
    left.set_xticks(x, names, fontsize=7, rotation=35, ha="right")
    left.grid(alpha=0.3, axis="y")
    left.legend(fontsize=8)
    ratios = [r[k] for r in table for k in ("ratio", "ratio_tls") if r[k] is not None]
    for offset, key, met, goal, label, style in ((-0.2, "ratio", "met_plain", "goal", "/ Swift", "--"),
                                                 (0.2, "ratio_tls", "met_tls", "goal_tls", "/ Swift + TLS", ":")):
        right.bar([i + offset for i in x], [r[key] or 0 for r in table], width=0.4, label=label,
                  color=["tab:green" if r[met] else "tab:red" for r in table],
                  edgecolor="black", linewidth=0.4, hatch="" if key == "ratio" else "//")
        goal_value = table[0][goal] if table else TARGET_RATIO
        right.axhline(goal_value, color="grey", linestyle=style, linewidth=1, label=f"target {label} {goal_value}x")
        for i, r in zip(x, table):
            if r[key] is not None:
                right.annotate(f"{r[key]:.2f}", (i + offset, r[key]), ha="center", va="bottom", fontsize=6)
    right.axhline(1.0, color="black", linewidth=0.6)
    right.set_ylim(0, max([TARGET_RATIO * 1.15] + [v * 1.12 for v in ratios]))
    right.set_ylabel("maillage / Swift")
    right.set_title("ratios (green: meets the target; hatched: Swift behind TLS)")
    right.set_xticks(x, names, fontsize=7, rotation=35, ha="right")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=7)
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
    s3: bool = True                    # also the boto3 cells: maillage's S3 door, Swift's s3api

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
                    swift_dir=args.swift_dir, s3=not getattr(args, "no_s3", False))


def _swift_version(python: str) -> str | None:
    try:
        done = subprocess.run([python, "-c", "import swift; print(swift.__version__)"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"Swift {done.stdout.strip()}" if done.returncode == 0 and done.stdout.strip() else None


Attempt = Callable[[str, Callable[[], Any], Any], Any]  # (part, step, value if it fails) -> value


def swift_s3_client(url: str, verify: str | bool = True) -> Any:
    """boto3 against Swift's s3api as the peer's tempauth user. Over HTTPS, checksums only when
    required: Swift 2.30 answers NotImplemented to the aws-chunked bodies boto3 sends by default there."""
    import boto3  # type: ignore[import-untyped]  # the test extra
    from botocore.config import Config  # type: ignore[import-untyped]

    from maillage.benchmarks.s3_throughput import REGION
    config = Config(request_checksum_calculation="when_required") if url.startswith("https:") else None
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=SWIFT_S3_USER[0],
                        aws_secret_access_key=SWIFT_S3_USER[1], region_name=REGION, verify=verify, config=config)


def _swift_s3(peer: SwiftPeer, sizes: Sequence[int], s: Settings, log: Callable[[str], None],
              front: TlsFront | None = None) -> list[dict]:
    """The S3 cells of `sizes` against Swift's s3api (through `front` if given), in a bucket of their
    own that is emptied and removed afterwards (untimed)."""
    from maillage.benchmarks.s3_throughput import measure_s3
    from maillage.benchmarks.throughput import format_row

    if not peer.s3_enabled():
        raise SwiftPeerError(f"the Swift peer's proxy has no s3api: run `SWIFTPEER_S3API=1 bash "
                             f"{peer.directory / 'setup.sh'}` (then stop.sh/start.sh), or pass --no-s3")
    s3 = swift_s3_client(front.url, str(front.ca_file)) if front else swift_s3_client(f"http://127.0.0.1:{peer.port}")
    bucket = f"vs-s3-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    pids = peer.server_pids(*([front.pid] if front and front.pid else []))
    side = "swift s3" + (" tls" if front else "")
    try:
        return measure_s3(None, s3, sizes, s.concurrency, s.seconds,
                          done=lambda r: log(f"{side}: {format_row(r)}"), server_pids=lambda: pids, bucket=bucket,
                          min_per_worker=MIN_PER_WORKER)
    finally:
        try:
            _empty_bucket(s3, bucket)
        except Exception as exc:  # untimed clean-up: the figures stand, the leftover is said
            log(f"{side}: could not empty bucket {bucket}: {type(exc).__name__}: {exc}")


def _empty_bucket(s3: Any, bucket: str, workers: int = 8) -> None:
    """Delete every object (one request each: Swift 2.30's multi-delete wants a Content-MD5 that
    recent boto3 no longer sends), then the bucket."""
    from concurrent.futures import ThreadPoolExecutor

    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda key: s3.delete_object(Bucket=bucket, Key=key), keys))
    s3.delete_bucket(Bucket=bucket)


def _bench_list(peer: SwiftPeer, cells: Sequence[tuple[int, int]], concurrency: Sequence[int],
                log: Callable[[str], None], front: TlsFront | None) -> list[dict]:
    return [peer.bench(cells, concurrency, log, front=front)]


def _run_swift(peer: SwiftPeer, s: Settings, log: Callable[[str], None], attempt: Attempt) -> dict:
    """start.sh and the TLS front; then size by size bench.py plain and through the front (the order
    alternating from one size to the next), so that both sides of a ratio are measured minutes apart
    at most on a shared machine; then the S3 cells the same way; the front and stop.sh in any case.
    A part that fails keeps the others' figures (its error is recorded)."""
    out: dict = {"plain": [], "tls": [], "s3": [], "s3_tls": []}
    log("swift: start.sh")
    try:
        peer.start()
        front = TlsFront(peer.port, tmp_root=s.tmp_root)
        try:
            up = attempt("swift-tls-front", front.start, None) is not None
            if up:
                out["tls_front"] = front.version()
                log(f"swift: TLS front {out['tls_front']} at {front.url} (pid {front.pid}) -> :{peer.port}")
            sides = [("swift", "plain", None)] + ([("swift-tls", "tls", front)] if up else [])
            steps = [([cell], s.concurrency) for cell in s.cells]
            if s.extra_row:
                steps.append(([(4 * KIB, s.small_count)], [s.target_concurrency]))
            for i, (cells, concurrency) in enumerate(steps):
                for part, key, via in sides if i % 2 == 0 else sides[::-1]:
                    log(f"swift: {format_size(cells[0][0])}" + (" behind TLS" if via else ""))
                    out[key] += attempt(part, functools.partial(_bench_list, peer, cells, concurrency, log, via), [])
            if s.s3:
                s3_sides = [("swift-s3", "s3", None)] + ([("swift-s3-tls", "s3_tls", front)] if up else [])
                for i, (size, _) in enumerate(s.cells):
                    for part, key, via in s3_sides if i % 2 == 0 else s3_sides[::-1]:
                        log(f"swift: S3 cells {format_size(size)} (boto3 against s3api"
                            + (", behind TLS)" if via else ")"))
                        out[key] += attempt(part, functools.partial(_swift_s3, peer, [size], s, log, via), [])
        finally:
            front.stop()
    finally:
        said = peer.stop().splitlines()
        log(f"swift: stop.sh: {sum(1 for x in said if x.startswith('stopped'))} processes stopped"
            + "".join(f"; {x}" for x in said if not x.startswith("stopped")))
    return out


def _run_maillage(s: Settings, log: Callable[[str], None], attempt: Attempt | None = None) -> dict:
    """throughput.measure's cells on a 3-site mesh; with `s.s3`, the mesh serves S3 over HTTPS too
    and the same boto3 cells as Swift's follow (`s3_rows`)."""
    from maillage.benchmarks.mesh import open_mesh
    from maillage.benchmarks.s3_throughput import measure_s3, open_s3_mesh, s3_client
    from maillage.benchmarks.throughput import format_row, measure

    def done(r: dict) -> None:
        log(f"  -> {r['ops_per_s']:,.1f} ops/s, {r['mb_per_s']:,.1f} MB/s, p50 {r['p50_ms']:.1f} ms"
            + (f", {r['errors']} errors (first: {r['first_error']})" if r["errors"] else ""))

    mesh_dir = Path(tempfile.mkdtemp(prefix="maillage-bench-", dir=s.tmp_root))
    try:
        log(f"maillage: start a {SITES}-site mesh (R={REPLICAS}, fsync on, TLS, signed requests, encryption at rest"
            + (", S3 over HTTPS)" if s.s3 else ")"))
        mesh_of = (lambda: open_s3_mesh(SITES, tls=True, base_dir=mesh_dir / "mesh")) if s.s3 else \
            (lambda: open_mesh(SITES, mesh_dir / "mesh"))
        with mesh_of() as mesh:
            sizes = [size for size, _ in s.cells]
            result = asyncio.run(measure(mesh, sizes, s.concurrency, s.seconds,
                                         step=lambda t: log(f"maillage: {t}"), done=done,
                                         min_per_worker=MIN_PER_WORKER))
            if s.extra_row:
                extra = asyncio.run(measure(mesh, [4 * KIB], [s.target_concurrency], s.seconds,
                                            step=lambda t: log(f"maillage: {t}"), done=done))
                result["rows"] += extra["rows"]
            if s.s3:
                log("maillage: S3 cells (boto3 against the S3 door, HTTPS)")
                step = lambda: measure_s3(mesh, s3_client(mesh), sizes, s.concurrency, s.seconds,  # noqa: E731
                                          done=lambda r: log(f"maillage s3: {format_row(r)}"),
                                          min_per_worker=MIN_PER_WORKER)
                result["s3_rows"] = attempt("maillage-s3", step, []) if attempt else step()
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
                               "mode": "TLS, signed requests, encryption at rest", "s3": s.s3},
                    "swift_version": _swift_version(peer.python), "errors": {}, "durations_s": {}}
    log(f"results in {s.out}; load average {result['loadavg_before']}")

    def timed(part: str, fn: Callable[[], object]) -> object:
        t = time.monotonic()
        try:
            return fn()
        finally:
            result["durations_s"][part] = round(result["durations_s"].get(part, 0) + time.monotonic() - t, 1)

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

    def attempt(part: str, fn: Callable[[], Any], empty: Any) -> Any:
        try:
            return timed(part, fn)
        except Exception as exc:  # one side failing keeps the other side's figures
            result["errors"][part] = f"{type(exc).__name__}: {exc}"
            log(f"{part} FAILED: {exc}")
            if not isinstance(exc, (SwiftPeerError, TlsFrontMissing, TlsFrontError)):
                traceback.print_exc(file=sys.stderr)
            return empty

    swift = attempt("swift-peer", lambda: _run_swift(peer, s, log, attempt), {})
    result["swift"], result["swift_tls"] = swift.get("plain", []), swift.get("tls", [])
    result["swift_s3"], result["swift_s3_tls"] = swift.get("s3", []), swift.get("s3_tls", [])
    result["tls_front"] = swift.get("tls_front")
    result["maillage"] = attempt("maillage", lambda: _run_maillage(s, log, attempt), {"rows": []})
    result["loadavg_after"] = loadavg()
    s3 = (maillage_cells(result["swift_s3"]), maillage_cells(result["swift_s3_tls"]),
          maillage_cells(result["maillage"].get("s3_rows", []))) if s.s3 else None
    result["comparison"] = compare(swift_cells(result["swift"]), maillage_cells(result["maillage"]["rows"]),
                                   swift_tls=swift_cells(result["swift_tls"]),
                                   disk_mb_per_s=result["disk"]["mb_per_s"], replicas=REPLICAS,
                                   target_concurrency=s.target_concurrency, s3=s3)
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
    parser.add_argument("--no-s3", action="store_true",
                        help="skip the S3 cells (boto3 against maillage's S3 door and Swift's s3api)")
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
