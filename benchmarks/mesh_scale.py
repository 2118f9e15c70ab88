"""What a mesh of N real one-node sites costs on this machine: issue 23's real-process table.

    python -m maillage.benchmarks.mesh_scale --sites 12 [--idle 20] [--settle 5] [--puts 200]

Starts N one-node sites (`LocalMesh`: real `maillage node run` processes, TLS and request
signatures on, fsync on) with one EU-wide policy (R=2), creates a bucket, lets the mesh settle,
then measures, in this order:

* start: seconds from the first launch until every node listens (`LocalMesh.start`);
* idle CPU per node: user+system CPU of each node process (``/proc/<pid>/stat``) over an idle
  window of `--idle` seconds, divided by the window: ms of CPU per second (mean and worst node);
* RSS per node: ``VmRSS`` at the end of the idle window (mean and worst), and PSS (shared library
  pages divided between the processes sharing them: what each node really adds);
* serial 4 KiB PUT then GET: `--puts` objects one after the other through one client, per second;
* `maillage status` and `maillage audit` as an operator runs them (a fresh CLI process each, the
  mesh's admin profile): wall time, exit code, and the audit's verdict line.

Each figure is printed next to its target from issue 23 (100 sites: idle CPU <= 5 ms/s, RSS <=
60 MB, start <= 30 s, status < 1 s exit 0, audit < 5 s and fully replicated, PUT >= 100/s) as a
ratio: for a ceiling, figure / target (<= 1 passes); for a floor, target / figure. Every wait is
bounded by a time that grows with N, so a 100-site run ends with figures or a clear error, never
hangs. The row is also written as JSON with `--json PATH`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from maillage.benchmarks.machine import loadavg, process_cpu_seconds, rss_bytes
from maillage.benchmarks.mesh import BUCKET, POLICY, ready_bucket
from maillage.client import AsyncClient
from maillage.placement import Layout, Policy
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout, node_env, start_timeout

__all__ = ["TARGETS", "Row", "scale_layout", "measure", "verdict_of", "ratios", "format_row", "pss_bytes", "main"]

_LOCATIONS = ("eu/fr/idf", "eu/fr/occitanie", "eu/de/bayern", "eu/fr/ara", "eu/de/berlin",
              "eu/fr/bretagne", "eu/de/hamburg", "eu/fr/grand-est")

# figure -> (target, "max" for a ceiling or "min" for a floor): issue 23's real-process goals.
TARGETS: dict[str, tuple[float, str]] = {
    "start_s": (30.0, "max"), "idle_cpu_ms_per_s": (5.0, "max"), "rss_mb": (60.0, "max"),
    "put_per_s": (100.0, "min"), "status_s": (1.0, "max"), "audit_s": (5.0, "max"),
}
BODY = 4096


@dataclass
class Row:
    sites: int
    trust_s: float = 0.0                # making the cluster's trust (CA, a certificate per node): before start
    start_s: float = 0.0
    idle_cpu_ms_per_s: float = 0.0      # mean over nodes
    idle_cpu_max_ms_per_s: float = 0.0  # the busiest node
    rss_mb: float = 0.0                 # mean over nodes
    rss_max_mb: float = 0.0
    pss_mb: float = 0.0                 # mean proportional set size: shared library pages split between nodes
    put_per_s: float = 0.0
    get_per_s: float = 0.0
    status_s: float = 0.0
    status_exit: int = -1
    audit_s: float = 0.0
    audit_exit: int = -1
    audit_verdict: str = ""
    idle_s: float = 0.0
    loadavg: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def scale_layout(sites: int, replicas: int = 2) -> Layout:
    """N one-node sites over a few regions of two countries, one EU-wide policy allowing them all."""
    specs = tuple(SiteSpec(f"site-{i:03d}", _LOCATIONS[i % len(_LOCATIONS)]) for i in range(sites))
    return make_layout(specs, (Policy(name=POLICY, allow=(("eu",),), replicas=replicas),))


def _cli(mesh: LocalMesh, *args: str, timeout: float) -> tuple[float, int, str]:
    """A `maillage` command against the mesh with its admin profile: (seconds, exit code, stdout)."""
    # node_env: bytecode kept as on an installed machine (not compiled again at every run)
    env = {**node_env(), "MAILLAGE_CONFIG_FILE": str(mesh.config_file), "MAILLAGE_PROFILE": "admin"}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "maillage.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    return time.monotonic() - began, done.returncode, done.stdout + done.stderr


def verdict_of(audit_output: str) -> str:
    """The audit's `verdict:` line (without the word), or what came out when there is none."""
    for line in audit_output.splitlines():
        if line.startswith("verdict:"):
            return line.removeprefix("verdict:").strip()
    return audit_output.strip().splitlines()[-1] if audit_output.strip() else "(no output)"


async def _serial(mesh: LocalMesh, count: int) -> tuple[float, float]:
    """Serial 4 KiB PUTs then GETs of the same keys: (PUT/s, GET/s)."""
    async with AsyncClient(profile=mesh.profile) as client:
        body = os.urandom(BODY)
        began = time.monotonic()
        for i in range(count):
            await client.put_object(BUCKET, f"scale/{i}", body)
        put_s = time.monotonic() - began
        began = time.monotonic()
        for i in range(count):
            if await (await client.get_object(BUCKET, f"scale/{i}")).read() != body:
                raise AssertionError(f"scale/{i} came back different")
        get_s = time.monotonic() - began
    return count / put_s, count / get_s


async def _create_bucket(mesh: LocalMesh, preload: int = 0) -> None:
    """The bench bucket, once every coordinator takes writes; then `preload` 4 KiB objects in it
    (the idle window then shows what the data at rest costs: repair rounds walk it)."""
    async with AsyncClient(profile=mesh.profile) as client:
        await ready_bucket(client, timeout=30.0 + 0.5 * len(mesh.layout.nodes))
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                await client.put_object(BUCKET, f"preload/{i}", os.urandom(BODY))
        await asyncio.gather(*(one(i) for i in range(preload)))


def pss_bytes(pid: int) -> int | None:
    """Proportional set size (``/proc/<pid>/smaps_rollup``): resident pages, each shared one
    divided by the processes sharing it. N nodes share one copy of gRPC's, RocksDB's and
    cryptography's libraries, which VmRSS counts whole in each."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {n: c for n, pid in pids.items() if (c := process_cpu_seconds(pid)) is not None}


def measure(sites: int, *, idle: float = 20.0, settle: float = 5.0, puts: int = 200, preload: int = 0,
            node_args: tuple[str, ...] = (), log=lambda text: print(text, file=sys.stderr, flush=True)) -> Row:
    """One row of the table for an N-site mesh (see the module's docstring); `node_args` go to
    every `maillage node run` (to see what a setting costs)."""
    row = Row(sites)
    began = time.monotonic()
    mesh = LocalMesh(scale_layout(sites), extra_args=node_args)
    row.trust_s = time.monotonic() - began
    try:
        log(f"starting {sites} nodes (bounded by {start_timeout(sites):.0f} s)")
        began = time.monotonic()
        mesh.start()
        row.start_s = time.monotonic() - began
        log(f"  started in {row.start_s:.1f} s; creating the bucket")
        asyncio.run(_create_bucket(mesh, preload))
        log(f"  settling {settle:g} s, then idle for {idle:g} s")
        time.sleep(settle)
        pids = {n: p.pid for n, p in mesh.processes.items() if p.poll() is None}
        before, t0 = _cpu(pids), time.monotonic()
        time.sleep(idle)
        after, row.idle_s = _cpu(pids), time.monotonic() - t0
        per_node = [(after[n] - before[n]) * 1000 / row.idle_s for n in before if n in after]
        row.idle_cpu_ms_per_s = sum(per_node) / len(per_node)
        row.idle_cpu_max_ms_per_s = max(per_node)
        rss = [r / 1e6 for pid in pids.values() if (r := rss_bytes(pid)) is not None]
        row.rss_mb, row.rss_max_mb = sum(rss) / len(rss), max(rss)
        pss = [p / 1e6 for pid in pids.values() if (p := pss_bytes(pid)) is not None]
        row.pss_mb = sum(pss) / len(pss) if pss else 0.0
        row.loadavg = loadavg()
        log(f"  idle {row.idle_cpu_ms_per_s:.1f} ms/s per node, RSS {row.rss_mb:.0f} MB; {puts} serial PUTs")
        row.put_per_s, row.get_per_s = asyncio.run(_serial(mesh, puts))
        log("  maillage status")
        row.status_s, row.status_exit, _ = _cli(mesh, "status", timeout=30 + 0.5 * sites)
        log("  maillage audit")
        row.audit_s, row.audit_exit, out = _cli(mesh, "audit", timeout=60 + 1.0 * sites)
        row.audit_verdict = verdict_of(out)
    except Exception as exc:  # a figure missing is reported, with why
        row.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        mesh.close()
    return row


def ratios(row: Row) -> dict[str, float]:
    """figure -> its ratio to the target (<= 1 meets it), for the figures measured."""
    out = {}
    for name, (target, kind) in TARGETS.items():
        value = getattr(row, name)
        if value > 0:
            out[name] = value / target if kind == "max" else target / value
    return out


def format_row(row: Row) -> str:
    """The issue's table row, then each figure's ratio to its target."""
    header = "| sites | start | idle CPU per node | RSS per node | PUT 4 KiB serial | status | audit |\n" \
             "|---|---|---|---|---|---|---|"
    line = (f"| {row.sites} | {row.start_s:.1f} s | {row.idle_cpu_ms_per_s:.1f} ms/s "
            f"(max {row.idle_cpu_max_ms_per_s:.1f})"
            f" | {row.rss_mb:.0f} MB (max {row.rss_max_mb:.0f}) | {row.put_per_s:.0f}/s (GET {row.get_per_s:.0f}/s)"
            f" | {row.status_s:.2f} s, exit {row.status_exit} | {row.audit_s:.2f} s, {row.audit_verdict} |")
    checks = []
    for name, ratio in ratios(row).items():
        target, kind = TARGETS[name]
        checks.append(f"  {name:<18} {getattr(row, name):9.2f}  target {'<=' if kind == 'max' else '>='} "
                      f"{target:g}: ratio {ratio:.2f} {'ok' if ratio <= 1 else 'MISSED'}")
    extra = [f"  status exit {row.status_exit} {'ok' if row.status_exit == 0 else 'MISSED'}; audit "
             f"{'ok' if 'fully replicated' in row.audit_verdict and 'NOT' not in row.audit_verdict else 'MISSED'}",
             f"  trust made in {row.trust_s:.1f} s before the start (a certificate per node)",
             f"  PSS per node {row.pss_mb:.0f} MB (shared libraries split between the nodes)",
             f"  idle window {row.idle_s:.1f} s, load average {row.loadavg}"]
    errors = [f"  error: {e}" for e in row.errors]
    return "\n".join([header, line, *checks, *extra, *errors])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m maillage.benchmarks.mesh_scale", description=__doc__.split("\n")[0])
    p.add_argument("--sites", type=int, default=12, help="one-node sites to start (default 12)")
    p.add_argument("--idle", type=float, default=20.0, help="idle window measured, seconds (default 20)")
    p.add_argument("--settle", type=float, default=5.0, help="wait before the idle window, seconds (default 5)")
    p.add_argument("--puts", type=int, default=200, help="serial 4 KiB PUTs (and GETs) (default 200)")
    p.add_argument("--preload", type=int, default=0,
                   help="4 KiB objects written before the idle window (default 0)")
    p.add_argument("--json", metavar="PATH", help="also write the row as JSON here")
    p.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                   help="an argument for every node (repeatable; e.g. --node-arg=--repair-interval=5)")
    args = p.parse_args(argv)
    row = measure(args.sites, idle=args.idle, settle=args.settle, puts=args.puts, preload=args.preload,
                  node_args=tuple(args.node_arg))
    print(format_row(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**asdict(row), "ratios": ratios(row)}, f, indent=2)
    return 1 if row.errors else 0


if __name__ == "__main__":
    sys.exit(main())
