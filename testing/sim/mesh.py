"""A simulated mesh: `InMemoryMesh`'s real nodes over a `SimNetwork`, on virtual time.

`sim_layout(sites)` spreads one-node sites over five countries and their regions (France holds
the most), with a France-only and an EU-wide policy. `SimMesh` must be built inside a running
`VirtualTimeLoop` (`run_virtual`). Its stores are the real ones (RocksDB `MetaStore`, `ChunkStore`),
opened under `root` with store calls run inline; put `root` on a tmpfs (/dev/shm, the default of
`maillage sim`) and a node's stores cost about 0.25 MB of RAM, so 1,000 nodes fit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from maillage.node.daemon.wiring import Node, Timings
from maillage.placement import Layout, Policy, Site
from maillage.placement import Node as LayoutNode
from maillage.testing.inmemory import InMemoryMesh
from maillage.testing.sim.loop import InlineExecutor, VirtualClock, VirtualTimeLoop
from maillage.testing.sim.metrics import Metrics
from maillage.testing.sim.network import Latencies, SimNetwork

__all__ = ["COUNTRIES", "SIM_POLICIES", "sim_layout", "SimMesh"]

# (country, share of the sites, regions)
COUNTRIES = (("fr", 0.4, 13), ("de", 0.2, 8), ("es", 0.15, 6), ("it", 0.15, 6), ("be", 0.1, 3))
SIM_POLICIES = (
    Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
    Policy(name="eu-wide", allow=(("eu",),), replicas=3, spread=2),
)


def sim_layout(sites: int, *, version: int = 1, partition_bits: int = 8) -> Layout:
    """`sites` one-node sites: site i is in the country whose share is most behind, in that
    country's regions in turn (deterministic: no random draw)."""
    placed = {c: 0 for c, _, _ in COUNTRIES}
    site_list, nodes = [], []
    for i in range(sites):
        country, _, regions = min(COUNTRIES, key=lambda c: (placed[c[0]] / c[1], -c[1]))
        region = placed[country] % regions
        placed[country] += 1
        name = f"{country}-r{region}-{placed[country]}"
        site_list.append(Site(name, ("eu", country, f"r{region}")))
        nodes.append(LayoutNode(id=name, address=f"10.{i // 250}.{i % 250}.1:7000", site=name, capacity=1 << 40))
    return Layout(version=version, partition_bits=partition_bits, sites=tuple(site_list), nodes=tuple(nodes),
                  policies=SIM_POLICIES)


class SimMesh(InMemoryMesh):
    """Real nodes, simulated network and time. `timings` defaults to the node's own defaults."""

    def __init__(self, layout: Layout, root: Path, *, seed: int, loss: float = 0.0,
                 timings: Timings | None = None, latencies: Latencies | None = None,
                 chunk_size: int = 4096) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, VirtualTimeLoop):
            raise RuntimeError("a SimMesh runs on a VirtualTimeLoop (maillage.testing.sim.run_virtual)")
        self.loop = loop
        self.sim = SimNetwork(layout, seed=seed, loss=loss, latencies=latencies or Latencies())
        self.crashed: dict[str, float] = {}   # node -> virtual time it crashed (while it is down)
        self.ever_crashed: set[str] = set()
        super().__init__(layout, root, timings=timings or Timings(), chunk_size=chunk_size, seed=seed,
                         network=self.sim, base_clock=VirtualClock(loop), executor=InlineExecutor())

    @property
    def metrics(self) -> Metrics:
        return self.sim.metrics

    def now(self) -> float:
        return self.loop.time()

    def start(self, nodes: Iterable[str] | None = None) -> None:
        """Start every node's background loops (gossip, repair, GC, scrub, upload expiry)."""
        for node_id in nodes if nodes is not None else self.nodes:
            self.nodes[node_id].start_background()

    async def run_for(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def crash(self, node_id: str) -> None:
        """The node's process dies: it answers nothing and its loops stop."""
        self.sim.metrics.note(f"{self.now():.6f} crash {node_id}")
        self.down(node_id)
        self.crashed[node_id] = self.now()
        self.ever_crashed.add(node_id)
        await self.nodes[node_id].stop_background()

    async def restart(self, node_id: str) -> Node:
        """The node starts again on its data directory: fresh memory (detector, caches), same stores."""
        self.sim.metrics.note(f"{self.now():.6f} restart {node_id}")
        old = self.nodes[node_id]
        await old.stop_background()
        old.local.meta.close()
        node = self._start_node(node_id, self.layout)
        self.up(node_id)
        self.crashed.pop(node_id, None)
        node.start_background()
        return node

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop_background() for n in self.nodes.values()))
        self.close()
