"""Membership benchmark: control messages and bytes each node sends per protocol period at 20..400 nodes.

Why: the mesh must cost a node the same at 100 and 1,000 sites (issue 23). The real `Gossip` and
`FailureDetector` run here, one per node, over `maillage.testing.gossip_net` (the in-memory network,
no stores, no sockets); every node runs one protocol round per period, and a third of the way in
one node crashes, so the figures include the suspicion traffic and the periods until every other
node suspects it. Bytes are the protobuf sizes of each request
and reply as gRPC would carry them. Reported per node and per period: messages sent, bytes sent
and the largest message, and the ratio of the largest size's figures to the middle one's
(target <= 1.5).

Run: ``python -m maillage.benchmarks.membership_bench [--nodes 20,100,400] [--periods 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from maillage.testing.gossip_net import GossipNet

__all__ = ["run", "main", "TARGET_RATIO"]

TARGET_RATIO = 1.5


async def _measure(n: int, periods: int, seed: int) -> dict[str, float]:
    net = GossipNet(n, seed=seed)
    crashed = net.ids[0]
    detected_after = float("nan")
    for period in range(periods):
        if period == periods // 3:
            net.network.down(crashed)   # a crash mid-run: suspicion traffic counts too
        await net.periods(1)
        if period >= periods // 3 and detected_after != detected_after and net.seen_by_all(crashed):
            detected_after = period + 1 - periods // 3
    alive = net.up()
    return {"nodes": n,
            "msgs_per_node_s": sum(net.messages[i] for i in alive) / len(alive) / periods,
            "bytes_per_node_s": sum(net.bytes[i] for i in alive) / len(alive) / periods,
            "largest_message": net.largest,
            "detected_by_all_after": detected_after}


def run(sizes: list[int], periods: int, seed: int = 1) -> list[dict[str, float]]:
    return [asyncio.run(_measure(n, periods, seed)) for n in sizes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="20,100,400")
    parser.add_argument("--periods", type=int, default=30)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.nodes.split(",")]
    rows = run(sizes, args.periods)
    print(f"{'nodes':>6} {'msgs/node/s':>12} {'bytes/node/s':>13} {'largest msg':>12} {'crash seen by all after':>24}")
    for row in rows:
        print(f"{row['nodes']:>6} {row['msgs_per_node_s']:>12.2f} {row['bytes_per_node_s']:>13.0f} "
              f"{row['largest_message']:>12} {row['detected_by_all_after']:>16} periods")
    if len(rows) >= 2:
        big, mid = rows[-1], rows[-2]
        for what in ("msgs_per_node_s", "bytes_per_node_s"):
            ratio = big[what] / mid[what]
            print(f"{what} {big['nodes']} vs {mid['nodes']}: x{ratio:.2f} (target <= {TARGET_RATIO}: "
                  f"{'ok' if ratio <= TARGET_RATIO else 'OVER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
