"""The simulated network: every call between nodes passes through `SimNetwork.deliver`.

`SimNetwork` is an `InMemoryNetwork` (the nodes, who is down, which pairs are cut) whose transports
are wrapped: `wire()` turns any node's `InMemoryTransport` into one whose every coroutine method
(heartbeat, fetch_layout, the replica calls, and any method added later, such as a SWIM ping) goes
through `deliver()` by name, so a new transport or replica method is simulated without a change
here. `deliver` applies, in order:

- a fault check: a sender or target that is down, or on another side of a partition, or a
  message lost (probability `loss`, drawn for the call and again for its answer): the caller waits
  for its timeout (the call's `timeout` argument, else `call_timeout`), then gets `PeerUnavailable`,
  as a gRPC call with a deadline does;
- a one-way latency by distance (same site < same region < same country < across countries,
  from the layout's site locations, times a seeded jitter), plus `slow[target]` for a slow node;
- the call itself (the target's real handler, its CPU time counted), then the answer's latency.

Every random draw comes from the network's own seeded `random.Random`, in the loop's
deterministic order, so one seed gives one run.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from maillage.node.daemon.wiring import Node
from maillage.node.errors import PeerUnavailable
from maillage.placement import Layout
from maillage.testing.inmemory import InMemoryNetwork, InMemoryTransport
from maillage.testing.sim.metrics import Metrics
from maillage.testing.sim.sizes import estimate

__all__ = ["Latencies", "SimNetwork"]

# Calls that are not messages: building a handle, closing connections.
_LOCAL = frozenset({"replica", "close"})


@dataclass(frozen=True)
class Latencies:
    """One-way delays in seconds by how far apart two nodes are; `jitter`: each delay is
    multiplied by a uniform draw in [1 - jitter, 1 + jitter]."""
    same_site: float = 0.0002
    same_region: float = 0.002
    same_country: float = 0.008
    across_countries: float = 0.025
    jitter: float = 0.25


class SimNetwork(InMemoryNetwork):
    def __init__(self, layout: Layout, *, seed: int, loss: float = 0.0, latencies: Latencies = Latencies(),
                 call_timeout: float = 2.0) -> None:
        super().__init__()
        self.metrics = Metrics()
        self.loss = loss
        self.latencies = latencies
        self.call_timeout = call_timeout
        self.slow: dict[str, float] = {}     # extra seconds a node takes to answer
        self._side: dict[str, int] = {}      # partition: nodes on different sides cannot talk
        self._rng = random.Random(seed)
        self._where: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.locate(layout)

    def locate(self, layout: Layout) -> None:
        """Learn each node's site and location (again after a layout change adds nodes)."""
        for n in layout.nodes:
            self._where[n.id] = (n.site, layout.location_of(n.id))

    # ----- faults ----------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the mesh: each group on a side of its own, every other node on side 0."""
        self._side = {node_id: i for i, group in enumerate(groups, start=1) for node_id in group}

    def heal(self) -> None:
        super().heal()
        self._side = {}

    def _blocked(self, source: str, target: str) -> str | None:
        if self.is_down(source) or self.is_down(target) or target not in self.nodes:
            return "down"
        if self._side.get(source, 0) != self._side.get(target, 0) or frozenset((source, target)) in self._cut:
            return "cut"
        return None

    def latency(self, source: str, target: str) -> float:
        lat = self.latencies
        (site_a, loc_a), (site_b, loc_b) = self._where[source], self._where[target]
        if site_a == site_b:
            base = lat.same_site
        elif loc_a[:3] == loc_b[:3]:
            base = lat.same_region
        elif loc_a[:2] == loc_b[:2]:
            base = lat.same_country
        else:
            base = lat.across_countries
        return base * self._rng.uniform(1 - lat.jitter, 1 + lat.jitter)

    def reach(self, source: str, target: str) -> Node:
        """As `InMemoryNetwork.reach`, without its own loss draw: losses are drawn in `deliver`
        (for the call and for its answer), once, from this network's seeded source."""
        loss, self.loss = self.loss, 0.0
        try:
            return super().reach(source, target)
        finally:
            self.loss = loss

    # ----- the one delivery point ------------------------------------------------------------

    async def deliver(self, source: str, target: str, method: str, call: Callable[[], Any],
                      request_size: int, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        wait = timeout if timeout is not None else self.call_timeout
        started = loop.time()
        metrics = self.metrics
        metrics.message(started, source, target, method, request_size)
        blocked = self._blocked(source, target)
        if blocked is None and self.loss and self._rng.random() < self.loss:
            blocked = "lost"
        if blocked is not None:
            await asyncio.sleep(wait)
            metrics.call(loop.time(), source, target, method, blocked, request_size)
            raise PeerUnavailable(f"node {target} did not answer: DEADLINE_EXCEEDED ({blocked})")
        await asyncio.sleep(self.latency(source, target) + self.slow.get(target, 0.0))
        if self._blocked(source, target) is not None:   # went down or cut while the message flew
            await asyncio.sleep(max(0.0, started + wait - loop.time()))
            metrics.call(loop.time(), source, target, method, "down", request_size)
            raise PeerUnavailable(f"node {target} did not answer: DEADLINE_EXCEEDED")
        t0 = time.perf_counter()
        outcome = "ok"
        try:
            result = call()
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            outcome = "error"
            result = None
            raise
        finally:
            metrics.handler(target, time.perf_counter() - t0)
            answer = estimate(result)
            if outcome == "ok" and self.loss and self._rng.random() < self.loss:
                outcome = "lost"
            metrics.call(loop.time(), source, target, method, outcome, request_size + answer)
            if outcome != "lost":
                metrics.message(loop.time(), target, source, method, answer)
        if outcome == "lost":
            await asyncio.sleep(max(0.0, started + wait - loop.time()))
            raise PeerUnavailable(f"node {target} did not answer: DEADLINE_EXCEEDED (answer lost)")
        await asyncio.sleep(self.latency(target, source))
        return result

    def transport(self, source: str) -> Any:
        return _Wire(InMemoryTransport(self, source), self, source, None)


class _Wire:
    """A transport (or a replica handle, `target` set) whose coroutine methods go through
    `SimNetwork.deliver`. Attributes that are not coroutine methods pass through."""

    def __init__(self, inner: Any, network: SimNetwork, source: str, target: str | None) -> None:
        self._inner = inner
        self._network = network
        self._source = source
        self._target = target
        if target is not None:
            self.node_id = target

    def replica(self, node_id: str) -> _Wire:
        return _Wire(self._inner.replica(node_id), self._network, self._source, node_id)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in _LOCAL or not inspect.iscoroutinefunction(attr):
            return attr
        network, source, fixed = self._network, self._source, self._target

        async def through_network(*args: Any, **kwargs: Any) -> Any:
            target = fixed if fixed is not None else args[0]
            body = args if fixed is not None else args[1:]
            size = sum(estimate(a) for a in body) + sum(estimate(v) for k, v in kwargs.items() if k != "timeout")
            return await network.deliver(source, target, name, lambda: attr(*args, **kwargs), size,
                                         kwargs.get("timeout"))

        return through_network
