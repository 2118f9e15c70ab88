"""The simulator's parts: virtual time, the one delivery point and its faults, message sizes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from maillage.node.errors import PeerUnavailable
from maillage.node.rpc.convert import heartbeat_reply_to_pb, heartbeat_request_to_pb
from maillage.testing.inmemory import InMemoryTransport
from maillage.testing.sim import SimMesh, Stalled, VirtualTimeLoop, run_virtual, sim_layout
from maillage.testing.sim.network import Latencies


def test_virtual_time_jumps_to_the_next_timer() -> None:
    async def main() -> tuple[float, list[int]]:
        loop = asyncio.get_running_loop()
        start, order = loop.time(), []

        async def wake(i: int) -> None:
            await asyncio.sleep(3600 - i)
            order.append(i)

        await asyncio.gather(*(wake(i) for i in range(3)))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.Event().wait()
        return loop.time() - start, order

    real = time.perf_counter()
    elapsed, order = run_virtual(main())
    assert elapsed == pytest.approx(3630)
    assert order == [2, 1, 0]
    assert time.perf_counter() - real < 2   # an hour and a half-minute of timers, no real wait


def test_a_run_where_everything_waits_forever_stalls() -> None:
    with pytest.raises(Stalled):
        run_virtual(asyncio.Event().wait())


def test_heartbeat_bytes_are_the_grpc_messages_sizes(tmp_path: Path) -> None:
    async def body(mesh: SimMesh) -> None:
        a, b = sorted(mesh.nodes)[:2]
        beat = mesh.nodes[a].gossip.heartbeat()
        reply = await mesh.network.transport(a).heartbeat(b, beat, timeout=2.0)
        sent = heartbeat_request_to_pb(beat).ByteSize()
        answered = heartbeat_reply_to_pb(reply).ByteSize()
        assert sent > 0 and answered > 0
        assert mesh.metrics.nodes[a].bytes_sent == sent and mesh.metrics.nodes[b].bytes_sent == answered
        assert mesh.metrics.method_bytes["heartbeat"] == sent + answered

    _in_sim(tmp_path, body)


def _in_sim(tmp_path: Path, body, *, sites: int = 12, loss: float = 0.0):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        mesh = SimMesh(sim_layout(sites), tmp_path, seed=7, loss=loss,
                       latencies=Latencies(same_site=0.001, same_region=0.01, same_country=0.05,
                                           across_countries=0.2, jitter=0.0))
        try:
            return await body(mesh)
        finally:
            await mesh.stop()
    return run_virtual(main())


async def _round_trip(mesh: SimMesh, source: str, target: str) -> float:
    transport = mesh.network.transport(source)
    start = mesh.now()
    await transport.heartbeat(target, mesh.nodes[source].gossip.heartbeat(), timeout=2.0)
    return mesh.now() - start


def test_latency_grows_with_distance(tmp_path: Path) -> None:
    async def body(mesh: SimMesh) -> dict[str, float]:
        ids = sorted(mesh.nodes)
        loc = {n: mesh.layout.location_of(n) for n in ids}
        a = next(n for n in ids if n.startswith("fr-r0"))
        same_country = next(n for n in ids if loc[n][:2] == loc[a][:2] and loc[n] != loc[a])
        abroad = next(n for n in ids if loc[n][1] != "fr")
        return {"country": await _round_trip(mesh, a, same_country), "abroad": await _round_trip(mesh, a, abroad)}

    trips = _in_sim(tmp_path, body)
    assert trips["country"] == pytest.approx(0.1)
    assert trips["abroad"] == pytest.approx(0.4)


def test_partitions_crashes_loss_and_slow_nodes_at_the_one_delivery_point(tmp_path: Path) -> None:
    async def body(mesh: SimMesh) -> None:
        a, b, c = sorted(mesh.nodes)[:3]
        mesh.sim.partition([a])
        start = mesh.now()
        with pytest.raises(PeerUnavailable):
            await _round_trip(mesh, a, b)
        assert mesh.now() - start == pytest.approx(2.0)   # the caller waited for its deadline
        await _round_trip(mesh, b, c)                     # the others still talk
        mesh.sim.heal()
        await _round_trip(mesh, a, b)
        await mesh.crash(c)
        with pytest.raises(PeerUnavailable):
            await _round_trip(mesh, a, c)
        await mesh.restart(c)
        fast = await _round_trip(mesh, a, c)
        mesh.sim.slow[c] = 1.5
        assert await _round_trip(mesh, a, c) == pytest.approx(fast + 1.5)
        mesh.sim.loss = 1.0
        with pytest.raises(PeerUnavailable):
            await _round_trip(mesh, a, b)
        assert mesh.metrics.outcomes["cut"] == 1 and mesh.metrics.outcomes["down"] == 1
        assert mesh.metrics.outcomes["lost"] >= 1   # (and any call a handler started since)

    _in_sim(tmp_path, body)


def test_a_method_added_to_the_transport_later_is_simulated_too(tmp_path: Path, monkeypatch) -> None:
    """SWIM's ping (another branch) or any new call goes through the delivery point by its name."""
    async def ping(self: InMemoryTransport, node_id: str, nonce: int, *, timeout: float) -> int:
        return nonce + len(self._network.reach(self._source, node_id).node_id)

    monkeypatch.setattr(InMemoryTransport, "ping", ping, raising=False)

    async def body(mesh: SimMesh) -> None:
        a, b = sorted(mesh.nodes)[:2]
        transport = mesh.network.transport(a)
        start = mesh.now()
        assert await transport.ping(b, 1, timeout=1.0) == 1 + len(b)
        assert mesh.now() > start
        assert mesh.metrics.methods["ping"] == 1
        mesh.sim.partition([b])
        with pytest.raises(PeerUnavailable):
            await transport.ping(b, 1, timeout=1.0)
        assert mesh.metrics.outcomes["cut"] == 1

    _in_sim(tmp_path, body)


def test_a_sim_mesh_needs_virtual_time(tmp_path: Path) -> None:
    async def main() -> None:
        SimMesh(sim_layout(3), tmp_path, seed=1)

    with pytest.raises(RuntimeError, match="VirtualTimeLoop"):
        asyncio.run(main())
    assert issubclass(VirtualTimeLoop, asyncio.AbstractEventLoop)
