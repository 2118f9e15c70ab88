"""Membership benchmark: control messages and bytes each node sends per protocol period at 20..400 nodes.

Why: the mesh must cost a node the same at 100 and 1,000 sites (issue 23). The real `Gossip` and
`FailureDetector` run here, one per node, over a counting in-process transport (no stores, no
sockets); every node runs `periods` protocol rounds in turn, then one node is crashed and the rounds
go on, so the figures include the suspicion traffic. Bytes are the protobuf sizes of each request
and reply as gRPC would carry them. Reported per node and per period: messages sent, bytes sent
and the largest message, and the ratio of the largest size's figures to the middle one's
(target <= 1.5).

Run: ``python -m maillage.benchmarks.membership_bench [--nodes 20,100,400] [--periods 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections import Counter
from types import SimpleNamespace
from typing import Any

from maillage.node.cluster.membership import FailureDetector, Gossip
from maillage.node.errors import PeerUnavailable
from maillage.node.replicas.transport import Heartbeat
from maillage.node.rpc import convert
from maillage.node.runtime.clock import ManualClock

__all__ = ["run", "main", "TARGET_RATIO"]

TARGET_RATIO = 1.5


class _Net:
    """Routes heartbeats to the `Gossip` of the target, counts what each node sends."""

    def __init__(self) -> None:
        self.gossips: dict[str, Gossip] = {}
        self.down: set[str] = set()
        self.messages: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.largest = 0

    def count(self, sender: str, size: int) -> None:
        self.messages[sender] += 1
        self.bytes[sender] += size
        self.largest = max(self.largest, size)


class _Transport:
    def __init__(self, net: _Net, source: str) -> None:
        self._net = net
        self._source = source

    async def heartbeat(self, node_id: str, beat: Heartbeat, *, timeout: float) -> Heartbeat:
        net = self._net
        net.count(self._source, convert.heartbeat_request_to_pb(beat).ByteSize())
        if node_id in net.down or self._source in net.down:
            raise PeerUnavailable(f"{node_id} unreachable")
        target = net.gossips[node_id]
        if getattr(beat, "probe", ""):
            reply = await target.on_ping_req(beat)
        else:
            reply = target.on_heartbeat(beat)
        net.count(node_id, convert.heartbeat_reply_to_pb(reply).ByteSize())
        return reply


def _gossips(n: int, seed: int) -> tuple[_Net, ManualClock]:
    clock = ManualClock()
    ids = [f"site-{i:04d}-node-1" for i in range(n)]
    layout: Any = SimpleNamespace(current=SimpleNamespace(version=1,
                                                          nodes=[SimpleNamespace(id=i) for i in ids]))
    access: Any = SimpleNamespace(version=1)
    net = _Net()
    rng = random.Random(seed)
    for node_id in ids:
        detector = FailureDetector(node_id, suspect_after=5, down_after=60, clock=clock)
        net.gossips[node_id] = Gossip(node_id, layout, detector, None, _Transport(net, node_id),  # type: ignore[arg-type]
                                      interval=1.0, access=access, clock=clock,
                                      rng=random.Random(rng.random()))
    return net, clock


async def _measure(n: int, periods: int, seed: int) -> dict[str, float]:
    net, clock = _gossips(n, seed)
    ids = list(net.gossips)
    for period in range(periods):
        if period == periods // 3:
            net.down.add(ids[0])   # a crash mid-run: suspicion traffic counts too
        for node_id in ids:
            if node_id not in net.down:
                await net.gossips[node_id].round()
        clock.advance(1.0)
    alive = [i for i in ids if i not in net.down]
    detected = sum(1 for i in alive if not net.gossips[i]._detector.is_up(ids[0]))
    return {"nodes": n,
            "msgs_per_node_s": sum(net.messages[i] for i in alive) / len(alive) / periods,
            "bytes_per_node_s": sum(net.bytes[i] for i in alive) / len(alive) / periods,
            "largest_message": net.largest,
            "crash_seen_by": detected / len(alive)}


def run(sizes: list[int], periods: int, seed: int = 1) -> list[dict[str, float]]:
    return [asyncio.run(_measure(n, periods, seed)) for n in sizes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="20,100,400")
    parser.add_argument("--periods", type=int, default=30)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.nodes.split(",")]
    rows = run(sizes, args.periods)
    print(f"{'nodes':>6} {'msgs/node/s':>12} {'bytes/node/s':>13} {'largest msg':>12} {'crash seen by':>14}")
    for row in rows:
        print(f"{row['nodes']:>6} {row['msgs_per_node_s']:>12.2f} {row['bytes_per_node_s']:>13.0f} "
              f"{row['largest_message']:>12} {row['crash_seen_by']:>13.0%}")
    if len(rows) >= 2:
        big, mid = rows[-1], rows[-2]
        for what in ("msgs_per_node_s", "bytes_per_node_s"):
            ratio = big[what] / mid[what]
            print(f"{what} {big['nodes']} vs {mid['nodes']}: x{ratio:.2f} (target <= {TARGET_RATIO}: "
                  f"{'ok' if ratio <= TARGET_RATIO else 'OVER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
