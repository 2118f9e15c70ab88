"""Hundreds of membership loops in one process, nothing else: the real `Gossip` and `FailureDetector`
of each node over an `InMemoryNetwork` (every call through its `reach`, so its loss, cuts and
downs apply), without stores, so 400 nodes fit in a test or a benchmark.

    net = GossipNet(200, seed=1)
    net.network.down(net.ids[0])
    await net.periods(10)
    assert net.seen_by_all(net.ids[0])

Each call's request and reply are counted per sender, in messages and in the protobuf bytes gRPC
would carry, so the cost of the protocol per node is measured, not assumed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

from maillage.node.cluster.membership import FailureDetector, Gossip
from maillage.node.replicas.transport import Heartbeat
from maillage.node.rpc import convert
from maillage.node.runtime.clock import ManualClock
from maillage.testing.inmemory import InMemoryNetwork, InMemoryTransport

__all__ = ["GossipNet"]


class _CountingTransport(InMemoryTransport):
    def __init__(self, net: GossipNet, source: str) -> None:
        super().__init__(net.network, source)
        self._net = net

    async def heartbeat(self, node_id: str, beat: Heartbeat, *, timeout: float) -> Heartbeat:
        self._net.count(self._source, convert.heartbeat_request_to_pb(beat).ByteSize())
        if beat.probe:
            self._net.ping_reqs += 1
        reply = await super().heartbeat(node_id, beat, timeout=timeout)
        self._net.count(node_id, convert.heartbeat_reply_to_pb(reply).ByteSize())
        return reply


class GossipNet:
    """`n` nodes named ``site-NNNN``, one layout (a stand-in with ids and a version), one clock."""

    def __init__(self, n: int, *, seed: int = 0, interval: float = 1.0, suspect_after: float = 5.0,
                 down_after: float = 60.0, loss: float = 0.0) -> None:
        self.clock = ManualClock()
        self.network = InMemoryNetwork()
        self.network.loss = loss
        self.network.rng = random.Random(seed)
        self.interval = interval
        self.ids = [f"site-{i:04d}" for i in range(n)]
        self.layout = cast(Any, SimpleNamespace(current=SimpleNamespace(   # no policies: no co-owners
            version=1, nodes=[SimpleNamespace(id=i) for i in self.ids], policies=())))
        self.access = cast(Any, SimpleNamespace(version=1))
        self.messages: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.largest = 0
        self.ping_reqs = 0   # heartbeats asking the receiver to probe another node
        rng = random.Random(seed)
        signed: Any = None   # the stand-in layout is never fetched
        self.gossips: dict[str, Gossip] = {}
        for node_id in self.ids:
            detector = FailureDetector(node_id, suspect_after=suspect_after, down_after=down_after,
                                       clock=self.clock)
            gossip = Gossip(node_id, self.layout, detector, signed, _CountingTransport(self, node_id),
                            interval=interval, access=self.access, clock=self.clock,
                            rng=random.Random(rng.random()))
            self.gossips[node_id] = gossip
            stand_in: Any = SimpleNamespace(node_id=node_id, gossip=gossip)
            self.network.attach(stand_in)

    def count(self, sender: str, size: int) -> None:
        self.messages[sender] += 1
        self.bytes[sender] += size
        self.largest = max(self.largest, size)

    def up(self) -> list[str]:
        return [n for n in self.ids if not self.network.is_down(n)]

    def detector(self, node_id: str) -> FailureDetector:
        return self.gossips[node_id]._detector

    async def periods(self, count: int = 1) -> None:
        """`count` protocol periods: each node that is up runs one round, then the clock moves on."""
        for _ in range(count):
            for node_id in self.up():
                await self.gossips[node_id].round()
            self.clock.advance(self.interval)

    async def periods_until(self, condition: Callable[[], bool], limit: int) -> int | None:
        """Protocol periods until `condition()` holds (None: not within `limit`)."""
        for period in range(1, limit + 1):
            await self.periods(1)
            if condition():
                return period
        return None

    def seen_by_all(self, node_id: str) -> bool:
        """Whether every other node that is up suspects `node_id`."""
        return all(not self.detector(n).is_up(node_id) for n in self.up() if n != node_id)
