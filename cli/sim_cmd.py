"""`maillage sim`: the deterministic simulator of the mesh, at one or more mesh sizes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = """\
Run the real node code (membership and gossip, layout and access document spread, bucket catalog,
the coordinator's metadata path, repair) for N one-node sites in this one process, on virtual
time, over a simulated network: latency by distance (same site < region < country < across
countries), message loss, a partition, crashes. One seed gives one run exactly (the trace digest
printed at the end is the same).

Each size runs: bucket operations (fan-out: nodes contacted by create/head/list/delete bucket),
`--seconds` at rest (messages and bytes per node per second, false suspicions under --loss), a
layout version, an access document and a crash at one instant (time until each node has them:
1st and 99th percentile node), a partition healed (stale-read window), a site lost (time until
every object is again on R live nodes, repair); --phases runs a subset ("-" in the table for a
phase not run; "never" for a figure not reached). Times are sampled every 0.1 s. A run costs the
real CPU of the node code: with SWIM membership, every phase at 1,000 sites takes about two
minutes here. Node stores go to --store-dir (RAM by default: ~1 MB per simulated node in all).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="simulate a mesh of hundreds to 1,000 sites in one process",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sites", default="100,300", help="mesh sizes to run, comma-separated (default 100,300)")
    p.add_argument("--seconds", type=float, default=60.0, help="simulated seconds at rest (default 60)")
    p.add_argument("--seed", type=int, default=1, help="the run's seed (default 1)")
    p.add_argument("--loss", type=float, default=0.01, help="probability a message is lost (default 0.01)")
    p.add_argument("--objects", type=int, default=20, help="objects written before the faults (default 20)")
    p.add_argument("--down-after", type=float, default=20.0,
                   help="seconds of silence before a node is down and repaired around (default 20; nodes: 300)")
    p.add_argument("--repair-interval", type=float, default=10.0, help="seconds between repair rounds (default 10)")
    p.add_argument("--phases", default="buckets,idle,news,stale,loss",
                   help="phases to run, in this order (default all; e.g. 'idle' alone for 1,000 sites)")
    p.add_argument("--store-dir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                   help="where the simulated nodes' stores go (default /dev/shm: RAM, ~0.3 MB per node)")
    p.add_argument("--out", type=Path, help="also write the chart as an SVG file here")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import logging

    from maillage.testing.sim.report import chart, svg, table
    from maillage.testing.sim.scenario import SimConfig, simulate

    sizes = [int(s) for s in args.sites.split(",") if s.strip()]
    # The nodes' warnings (a fetch refused after a lost message, ...) are the simulation working as
    # intended; at hundreds of nodes they would bury the table.
    logging.getLogger("maillage.node").setLevel(logging.ERROR)
    results = []
    for sites in sizes:
        config = SimConfig(sites=sites, seconds=args.seconds, seed=args.seed, loss=args.loss, objects=args.objects,
                           down_after=args.down_after, repair_interval=args.repair_interval, root=args.store_dir,
                           phases=tuple(p.strip() for p in args.phases.split(",") if p.strip()))
        result = simulate(config, progress=lambda line: print(line, file=sys.stderr, flush=True))
        print(f"{sites} sites: {result.simulated:.0f} simulated s in {result.wall:.1f} s, "
              f"trace {result.digest}", file=sys.stderr, flush=True)
        results.append(result)
    print(table(results))
    print()
    print(chart(results))
    print()
    print(f"seed {args.seed}, loss {args.loss:g}, {args.seconds:g} s at rest; trace digests: "
          + ", ".join(f"{r.config.sites}={r.digest}" for r in results))
    if args.out:
        args.out.write_text(svg(results))
        print(f"chart written to {args.out}")
    return 0
