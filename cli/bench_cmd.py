"""`maillage bench`: run the benchmark harness (see maillage.benchmarks.harness)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from maillage.benchmarks.harness import add_arguments

    p = sub.add_parser(
        "bench", help="benchmark a local mesh against this machine's limits",
        description="Start local meshes of real node processes and measure PUT/GET throughput, the "
                    "repair time of a wiped node and placement quality, next to this machine's own "
                    "limits (disk, hashing, compression, loopback). Writes JSON, markdown and PNG "
                    "charts to a results directory. --vs-swift instead measures OpenStack Swift (the "
                    "loopback peer of ../shared/peers/swift) and maillage one after the other and prints "
                    "the ratios. --energy instead simulates a week of background work on 24 sites with "
                    "solar panels (no mesh, seconds), scheduled by the node's energy scheduler next to fixed "
                    "intervals, and prints the green share, deadlines, urgent repair time and energy (issue 26).")
    add_arguments(p)
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from maillage.benchmarks.harness import command
    return command(args)
