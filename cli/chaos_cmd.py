"""`maillage chaos`: soak a throwaway five-site mesh with random faults, then check the history."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chaos", help="soak a throwaway mesh with random faults, then check nothing was lost",
        description="Start five sites (one network namespace each when run as root, else loopback), "
                    "run a recorded put/get/delete/list workload on a France-only and an EU-wide bucket, "
                    "inject random faults one at a time (kill, pause, partitions, loss, latency, clock "
                    "skew, bit flips), heal, then check: no acknowledged write lost, no invented bytes, "
                    "no resurrection, zero residency violations, full replication within a bound. "
                    "Exits 1 on any anomaly.")
    p.add_argument("--minutes", type=float, default=5.0, help="how long to inject faults (default 5)")
    p.add_argument("--seed", type=int, help="replay a run (the seed is printed at start)")
    p.add_argument("--loopback", action="store_true",
                   help="no namespaces: nodes on 127.0.0.1, process/clock/disk faults only")
    p.add_argument("--replication-bound", type=float, default=30.0, metavar="SECONDS",
                   help="time allowed after healing to reach full replication (default 30)")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from maillage.testing.chaos import soak

    report = soak(args.minutes, seed=args.seed, mode="loopback" if args.loopback else "auto",
                  replication_bound=args.replication_bound)
    print("chaos: OK" if report.ok else f"chaos: {len(report.anomalies)} ANOMALIES (seed {report.seed})")
    return 0 if report.ok else 1
