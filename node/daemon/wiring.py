"""Wiring: build a node's objects from its stores, layout and transports, and nothing else.

No sockets are opened here: every call to another node goes through a `Transport` made by
`transport_for()`. `server.py` passes gRPC transports and serves the result; the in-process mesh of
`maillage.testing.inmemory` passes in-memory ones, a manual clock and a seeded random source, and
drives the very same objects from tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from maillage.node.cluster.gc import DEFAULT_INTERVAL as DEFAULT_GC_INTERVAL
from maillage.node.cluster.gc import ChunkCollector
from maillage.node.cluster.lifecycle_loop import DEFAULT_LIFECYCLE_INTERVAL, LifecycleLoop
from maillage.node.cluster.membership import FailureDetector, Gossip
from maillage.node.cluster.repair import Repairer
from maillage.node.cluster.scrub import Scrubber
from maillage.node.cluster.upload_expiry import DEFAULT_UPLOAD_EXPIRY, UploadExpiry
from maillage.node.data.bucket_records import Catalog
from maillage.node.data.bucket_settings import BucketSettings
from maillage.node.data.coordinator import Coordinator
from maillage.node.data.lifecycle import Lifecycle
from maillage.node.energy.decide import Kind
from maillage.node.energy.scheduler import EnergyScheduler
from maillage.node.energy.signal import GREEN_CARBON
from maillage.node.replicas.replica import LocalReplica
from maillage.node.replicas.transport import Peers, Transport
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.budget import DEFAULT_UPLOAD_BUDGET, DEFAULT_UPLOAD_WAIT, UploadBudget
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.service.bucket_access import BucketAccess
from maillage.node.service.nodeplane import NodePlane
from maillage.node.service.objects import ObjectService
from maillage.node.service.tenancy import Tenancy
from maillage.node.service.territory import Territory
from maillage.node.trust.access_state import AccessState
from maillage.node.trust.documents import SignedLayouts
from maillage.node.trust.layout_state import LayoutState
from maillage.placement.energy import parse_energy_source, parse_power
from maillage.proto.limits import DEFAULT_CHUNK_SIZE
from maillage.storage import ChunkStore, HybridClock, MetaStore
from maillage.storage.hlc import DEFAULT_MAX_DRIFT

if TYPE_CHECKING:
    from maillage.node.metrics.state import Sources

__all__ = ["Timings", "Node"]


@dataclass(frozen=True)
class Timings:
    """Cluster-life periods in seconds, rates in bytes/s and the node's budgets (see `maillage node
    run --help`)."""
    heartbeat_interval: float = 1.0
    suspect_after: float = 5.0
    down_after: float = 300.0
    repair_interval: float = 30.0
    repair_rate: float = 100e6
    scrub_rate: float = 8e6
    scrub_interval: float = 3600.0
    gc_grace: float = 3600.0
    gc_interval: float | None = None  # None: the smaller of 600 s and gc_grace
    max_clock_drift: float = DEFAULT_MAX_DRIFT  # how far a received version may lead this node's clock
    upload_budget: int = DEFAULT_UPLOAD_BUDGET  # bytes of uploads in flight on this node
    upload_wait: float = DEFAULT_UPLOAD_WAIT    # how long a message waits for that budget
    upload_expiry: float = DEFAULT_UPLOAD_EXPIRY  # seconds an unfinished multipart upload is kept
    lifecycle_interval: float = DEFAULT_LIFECYCLE_INTERVAL  # seconds between two lifecycle sweeps
    green_carbon: float = GREEN_CARBON  # gCO2/kWh at or under which grid power counts as green here

    @property
    def gc_period(self) -> float:
        """Pause between chunk GC passes: a pass more often than the grace finds nothing new."""
        if self.gc_interval is not None:
            return self.gc_interval
        return min(DEFAULT_GC_INTERVAL, self.gc_grace)


def _no_naming_key(_tenant: str, _policy: str) -> None:
    return None


T = TypeVar("T")


def _declared(layout: LayoutState, node_id: str, field: str, parse: Callable[[str], T]) -> Callable[[], T | None]:
    """What the node's site declares in `field` (its energy source, its power figures) in the
    layout it holds now, parsed; None when the site declares nothing."""
    def declared() -> T | None:
        current = layout.current
        spec = getattr(current.site(current.node(node_id).site), field)
        return None if spec is None else parse(spec)
    return declared


class Node:
    """One node's objects, wired: the local store, the coordinator and the background loops."""

    def __init__(self, node_id: str, layout: LayoutState, chunks: ChunkStore, meta: MetaStore,
                 signed: SignedLayouts, access: AccessState, executor: Executor, *,
                 transport_for: Callable[[], Transport], gossip_transport: Transport | None = None,
                 timings: Timings = Timings(), chunk_size: int = DEFAULT_CHUNK_SIZE,
                 clock: Clock = SYSTEM_CLOCK, rng: random.Random | None = None,
                 unkeyed_names: bool = False) -> None:
        """`unkeyed_names`: chunks named by their plain BLAKE3 whatever the access document says
        (``--insecure-plaintext``, benchmarks only: its callers are no tenant the document knows)."""
        rng = rng or random.Random()
        t = timings
        self.node_id = node_id
        self.layout = layout
        self.signed = signed
        self.access = access
        self.clock = clock
        self.local = LocalReplica(node_id, chunks, meta, layout, executor, clock)
        self.local.max_clock_drift = t.max_clock_drift
        self.upload_budget = self.local.upload_budget = UploadBudget(t.upload_budget, wait=t.upload_wait)
        self.peers = Peers(self.local, transport_for())
        self.detector = FailureDetector(node_id, suspect_after=t.suspect_after, down_after=t.down_after,
                                        clock=clock)
        self.catalog = Catalog(self.peers, layout, clock, is_up=self.detector.is_up)
        self.coordinator = Coordinator(node_id, self.peers, layout, self.catalog,
                                       HybridClock(clock.time, max_drift=t.max_clock_drift),
                                       executor, chunk_size=chunk_size, is_up=self.detector.is_up,
                                       maybe_behind=lambda _node_id: self.detector.unsettled(),
                                       chunk_key=_no_naming_key if unkeyed_names else access.chunk_key,
                                       energy_of=lambda peer: self.gossip.energy_of(peer))
        self.territory = Territory(node_id, layout, self.detector.is_up)
        self.tenancy = Tenancy(self.catalog, BucketAccess(BucketSettings(self.coordinator), self.territory,
                                                          clock=clock.monotonic, tags=self.coordinator.tags))
        self.service = ObjectService(self.coordinator, self.tenancy, self.local, self.territory,  # both doors
                                     tenants=lambda: (t.name for t in access.doc.tenants))
        self.plane = NodePlane(self.local, self.territory, self.catalog)  # what peers call
        self.gossip_transport = gossip_transport or transport_for()
        self.gossip = Gossip(node_id, layout, self.detector, signed, self.gossip_transport,
                             interval=t.heartbeat_interval, access=access, clock=clock, rng=rng,
                             energy=lambda: self.energy.told_state())
        # Repair (and the chunk GC) get a transport of their own: their bulk copies never queue
        # behind (or ahead of) client traffic on one connection, and their early failures never
        # put client connections into reconnect backoff.
        self.repair_peers = Peers(self.local, transport_for())
        # The site's energy signal and the turns of deferrable work (scrub, GC, expiry, hand-back).
        self.energy = EnergyScheduler(_declared(layout, node_id, "energy", parse_energy_source), clock=clock,
                                      green_carbon=t.green_carbon,
                                      declared_power=_declared(layout, node_id, "power", parse_power))
        self.repairer = Repairer(node_id, self.repair_peers, layout, is_up=self.detector.is_up,
                                 is_out=self.detector.is_down, interval=t.repair_interval,
                                 rate=t.repair_rate, tombstone_grace=t.gc_grace, clock=clock, rng=rng,
                                 energy=self.energy, peer_energy=self.gossip.energy_of)
        self.detector.on_recovered = self.repairer.peer_recovered
        self.energy.on_resume.append(self.repairer.trigger)  # hand-back deferred by energy goes on
        self.collector = ChunkCollector(node_id, self.repair_peers, layout, is_up=self.detector.is_up,
                                        grace=t.gc_grace, interval=t.gc_period, clock=clock,
                                        job=self.energy.job(Kind.GC))
        self.scrubber = Scrubber(self.local, rate=t.scrub_rate, interval=t.scrub_interval,
                                 on_corrupt=self.repairer.trigger, clock=clock,
                                 job=self.energy.job(Kind.SCRUB, rate=t.scrub_rate))
        self.upload_expiry = UploadExpiry(self.coordinator, self.service.uploads, t.upload_expiry, clock=clock,
                                          rng=rng, job=self.energy.job(Kind.EXPIRY))
        self.lifecycle = LifecycleLoop(
            self.coordinator, self.service.settings,
            Lifecycle(self.service.versions, self.service.uploads, self.coordinator.wall_ms),
            interval=t.lifecycle_interval, clock=clock, rng=rng, job=self.energy.job(Kind.EXPIRY),
            moves=self.energy.job(Kind.TIER_MOVE))

    def metrics_sources(self, version: str) -> Sources:
        """What the metrics collector reads of this node (`maillage.node.metrics.state`, imported
        only by a node that exports metrics)."""
        from maillage.node.metrics.state import Sources

        return Sources(self.node_id, version, self.layout, self.access, self.local, self.detector,
                       self.repairer, self.scrubber, self.collector, self.upload_budget, self.clock,
                       energy=self.energy, lifecycle=self.lifecycle.totals)

    @property
    def background(self) -> tuple[BackgroundLoop, ...]:
        return (self.energy, self.gossip, self.repairer, self.collector, self.scrubber, self.upload_expiry,
                self.lifecycle)

    def start_background(self) -> None:
        for loop in self.background:
            loop.start()

    async def stop_background(self) -> None:
        for loop in self.background:
            await loop.stop()

    async def close_transports(self) -> None:
        for peers in (self.peers, self.repair_peers):
            await peers.close()
        await self.gossip_transport.close()
