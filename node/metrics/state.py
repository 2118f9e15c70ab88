"""The node's state as gauges and counters, read from its objects when Prometheus scrapes.

Nothing here runs on the data path: each scrape reads counters the node keeps anyway (chunk store
totals, repair progress, scrub and GC stats, the failure detector's view, the upload budget) and
one `statvfs` of the chunk store's file system. Peers are labelled by node id, policies by name:
never a bucket or a key.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from maillage.node.cluster.detector import FailureDetector, PeerState
from maillage.node.cluster.gc import ChunkCollector
from maillage.node.cluster.repair import Repairer
from maillage.node.cluster.scrub import Scrubber
from maillage.node.data.lifecycle import SweepCounts
from maillage.node.energy.scheduler import EnergyScheduler
from maillage.node.energy.signal import State
from maillage.node.metrics.registry import spec
from maillage.node.replicas.replica import LocalReplica
from maillage.node.runtime.budget import UploadBudget
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.access_state import AccessState
from maillage.node.trust.layout_state import LayoutState
from maillage.placement.layout import format_location

__all__ = ["Sources", "StateCollector", "node_labels"]


@dataclass
class Sources:
    """What the collector reads; the daemon fills in the ports' counters once they are open."""
    node_id: str
    version: str
    layout: LayoutState
    access: AccessState
    local: LocalReplica
    detector: FailureDetector
    repairer: Repairer
    scrubber: Scrubber
    collector: ChunkCollector
    budget: UploadBudget
    clock: Clock = SYSTEM_CLOCK
    certificate_expiry: float = 0.0                       # unix seconds; 0: no certificate (plaintext)
    deadline_ended: Callable[[], int] = lambda: 0         # gRPC calls ended by the port's deadlines
    s3_connections: Callable[[], tuple[int, int]] | None = field(default=None)  # (open, refused)
    energy: EnergyScheduler | None = None
    lifecycle: SweepCounts | None = None                  # the lifecycle sweeps' totals
    datagrams: Callable[[], Mapping[str, int]] = dict     # membership datagram events (node/rpc/datagrams.py)


def node_labels(layout: LayoutState, node_id: str) -> dict[str, str]:
    """node, site, region (the site's location path, e.g. eu/fr/idf) of every series."""
    current = layout.current
    try:
        site = current.node(node_id).site
        region = format_location(current.location_of(node_id))
    except (KeyError, ValueError, LookupError):
        site = region = ""
    return {"node": node_id, "site": site, "region": region}


def _gauge(name: str, value: float | None = None, **labels: str) -> GaugeMetricFamily:
    s = spec(name)
    family = GaugeMetricFamily(s.name, s.help, labels=s.labels or None)
    if value is not None:
        family.add_metric([labels[k] for k in s.labels], value)
    return family


def _counter(name: str, value: float) -> CounterMetricFamily:
    s = spec(name)
    return CounterMetricFamily(s.name, s.help, value=value)


def _labelled_counter(name: str) -> CounterMetricFamily:
    s = spec(name)
    return CounterMetricFamily(s.name, s.help, labels=s.labels)


class StateCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.s = sources

    def collect(self) -> Iterator[Metric]:
        s = self.s
        yield _gauge("maillage_build_info", 1, version=s.version)
        yield _gauge("maillage_clock_unix_seconds", s.clock.time())
        if s.certificate_expiry:
            yield _gauge("maillage_certificate_expiry_timestamp_seconds", s.certificate_expiry)
        yield from self._disk()
        yield from self._placement()
        yield from self._background()
        yield from self._energy()
        yield from self._peers()
        yield from self._refusals()

    def _disk(self) -> Iterator[Metric]:
        s = self.s
        try:
            disk = shutil.disk_usage(s.local.chunks.root)
        except OSError:
            pass
        else:
            yield _gauge("maillage_disk_capacity_bytes", disk.total)
            yield _gauge("maillage_disk_free_bytes", disk.free)
        stats = s.local.chunks.stats()
        yield _gauge("maillage_chunks_stored", stats.chunks)
        yield _gauge("maillage_chunk_bytes_stored", stats.stored_bytes)
        yield _gauge("maillage_chunks_quarantined", stats.quarantined)
        held = _gauge("maillage_chunks_held")
        for policy, count in sorted(s.local.held_chunks.items()):
            held.add_metric([policy], count)
        yield held
        manifests = _gauge("maillage_manifests_held")
        for policy, count in sorted(s.local.held_manifests.items()):
            manifests.add_metric([policy], count)
        yield manifests

    def _placement(self) -> Iterator[Metric]:
        s = self.s
        layout = s.layout.current
        yield _gauge("maillage_layout_version", layout.version)
        yield _gauge("maillage_access_version", s.access.version)
        try:
            yield _gauge("maillage_layout_capacity_bytes", layout.node(s.node_id).capacity)
        except (KeyError, LookupError):
            pass
        owned, short = _gauge("maillage_partitions_owned"), _gauge("maillage_partitions_short_of_r")
        for policy, (n_owned, n_short) in sorted(s.repairer.partition_health().items()):
            owned.add_metric([policy], n_owned)
            short.add_metric([policy], n_short)
        yield owned
        yield short
        yield _gauge("maillage_residency_violations", s.repairer.residency_violations)

    def _background(self) -> Iterator[Metric]:
        s = self.s
        pr = s.repairer.progress
        yield _gauge("maillage_repair_running", 1 if pr.running else 0)
        yield _counter("maillage_repair_rounds", pr.rounds_completed)
        yield _gauge("maillage_repair_last_round_timestamp_seconds", pr.last_round_finished_ms / 1000)
        yield _gauge("maillage_repair_groups", pr.groups_total)
        yield _gauge("maillage_repair_groups_done", pr.groups_done)
        yield _gauge("maillage_repair_groups_behind", pr.groups_behind)
        yield _counter("maillage_repair_items_copied", pr.items_copied)
        yield _counter("maillage_repair_bytes_copied", pr.bytes_copied)
        yield _gauge("maillage_repair_rate_bytes_per_second", pr.rate(s.clock.monotonic()))
        yield _gauge("maillage_repair_handoff_items", pr.handoff_items)
        yield _counter("maillage_tombstones_removed", pr.tombstones_removed)
        scrub = s.scrubber.stats
        yield _counter("maillage_scrub_frames_checked", scrub.frames_checked)
        yield _counter("maillage_scrub_bytes_checked", scrub.bytes_checked)
        yield _counter("maillage_scrub_corrupt_found", scrub.corrupt_found)
        yield _counter("maillage_scrub_passes", scrub.passes_completed)
        gc = s.collector.stats
        yield _counter("maillage_gc_passes", gc.passes_completed)
        yield _counter("maillage_gc_chunks_removed", gc.chunks_removed)
        if s.lifecycle is not None:
            actions = _labelled_counter("maillage_lifecycle_actions")
            for action, count in sorted(asdict(s.lifecycle).items()):
                actions.add_metric([action], count)
            yield actions

    def _energy(self) -> Iterator[Metric]:
        e = self.s.energy
        if e is None:
            return
        state = _gauge("maillage_energy_state")
        for st in State:
            state.add_metric([st.value], 1 if e.state is st else 0)
        yield state
        now = e.signal.now
        # unknown: the series has no sample (never a made-up 0)
        yield _gauge("maillage_energy_surplus_watts", None if now is None else now.surplus_w)
        yield _gauge("maillage_energy_carbon_grams_per_kwh", None if now is None else now.carbon)
        families = {name: _labelled_counter(name) for name in
                    ("maillage_background_bytes", "maillage_background_green_bytes", "maillage_background_waits",
                     "maillage_background_energy_joules", "maillage_background_green_energy_joules")}
        deferred = _gauge("maillage_background_deferred")
        for kind, job in sorted(e.jobs.items(), key=lambda kv: kv[0].value):
            done = job.stats
            for name, value in (("maillage_background_bytes", done.bytes),
                                ("maillage_background_green_bytes", done.green_bytes),
                                ("maillage_background_waits", done.waits),
                                ("maillage_background_energy_joules", done.joules),
                                ("maillage_background_green_energy_joules", done.green_joules)):
                families[name].add_metric([kind.value], value)
            deferred.add_metric([kind.value], 1 if done.waiting else 0)
        yield from families.values()
        yield deferred

    def _peers(self) -> Iterator[Metric]:
        s = self.s
        peers = [n.id for n in s.layout.current.nodes if n.id != s.node_id]
        counts = dict.fromkeys((state.value for state in PeerState), 0)
        up = _gauge("maillage_peer_up")
        for view in s.detector.views(peers):
            counts[view.state] = counts.get(view.state, 0) + 1
            up.add_metric([view.node_id], 1 if view.state == PeerState.UP.value else 0)
        by_state = _gauge("maillage_peers")
        for state, count in counts.items():
            by_state.add_metric([state], count)
        yield by_state
        yield up
        events = _labelled_counter("maillage_membership_datagrams")
        for event, count in sorted(s.datagrams().items()):
            events.add_metric([event], count)
        yield events

    def _refusals(self) -> Iterator[Metric]:
        s = self.s
        yield _gauge("maillage_upload_budget_bytes", s.budget.limit)
        yield _gauge("maillage_upload_budget_used_bytes", s.budget.used)
        yield _counter("maillage_upload_budget_refusals", s.budget.refused)
        yield _counter("maillage_grpc_deadline_ended", s.deadline_ended())
        if s.s3_connections is not None:
            open_, refused = s.s3_connections()
            yield _gauge("maillage_s3_connections_open", open_)
            yield _counter("maillage_s3_connections_refused", refused)
