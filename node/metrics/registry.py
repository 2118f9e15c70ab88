"""Every metric a node exports, named and explained in one place (`SPECS`), on a registry of its own.

Each node has its own `CollectorRegistry` (never prometheus_client's global one), so an in-process
mesh of many nodes keeps their series apart. Three kinds of series:

* requests (`Requests`): counted where each door has its one boundary (the gRPC interceptor
  `rpc/measured.py`, the S3 door's `_dispatch`), by door, method and outcome;
* node state (`state.StateCollector`): read from the node's objects when Prometheus scrapes,
  nothing maintained on the data path;
* the process (prometheus_client's `ProcessCollector`: CPU, memory, file descriptors).

Labels: every series carries `node`, `site` and `region` (added at exposition, `exposition`), and
otherwise only door, method, outcome, policy, peer node id or state. **Never a bucket or key
name**: a central Prometheus may sit outside a policy's territory, and residency covers telemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

__all__ = ["SPECS", "Spec", "NodeMetrics", "Requests", "MethodMetrics", "exported_names", "spec"]

# `_created` series would double every counter's lines for a value nobody alerts on.
disable_created_metrics()


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str            # counter, gauge, histogram
    help: str
    labels: tuple[str, ...] = ()


#: The metrics of a node (besides the process_* ones of prometheus_client). Counters are named
#: without `_total`: prometheus_client appends it.
SPECS: tuple[Spec, ...] = (
    # --- requests, at each door's boundary
    Spec("maillage_requests", "counter", "Requests answered, by door (grpc, s3), method and outcome "
         "(gRPC status name or S3 HTTP status).", ("door", "method", "outcome")),
    Spec("maillage_request_duration_seconds", "histogram", "Time from a request's arrival at the door to its "
         "answer.", ("door", "method")),
    Spec("maillage_request_bytes_received", "counter", "Request bytes received (gRPC messages as on the wire, "
         "S3 bodies as read).", ("door", "method")),
    Spec("maillage_response_bytes_sent", "counter", "Response bytes sent (gRPC messages, S3 bodies).",
         ("door", "method")),
    # --- the node and its disk
    Spec("maillage_build_info", "gauge", "Always 1; the software version in a label.", ("version",)),
    Spec("maillage_clock_unix_seconds", "gauge", "The node's wall clock when scraped: compared with the "
         "scrape's own timestamp it shows the node's clock skew."),
    Spec("maillage_certificate_expiry_timestamp_seconds", "gauge", "When the node's TLS certificate stops "
         "being valid (unix seconds)."),
    Spec("maillage_disk_capacity_bytes", "gauge", "Size of the file system holding the chunks."),
    Spec("maillage_disk_free_bytes", "gauge", "Free bytes on the file system holding the chunks."),
    Spec("maillage_layout_capacity_bytes", "gauge", "The capacity the layout gives this node."),
    Spec("maillage_chunks_stored", "gauge", "Chunk frames held by this node (all policies)."),
    Spec("maillage_chunk_bytes_stored", "gauge", "Bytes of the chunk frames held by this node."),
    Spec("maillage_chunks_held", "gauge", "Chunks held for each policy, as the last repair round's walk of the "
         "holdings counted them (a chunk two policies share counts in each).", ("policy",)),
    Spec("maillage_manifests_held", "gauge", "Manifests (object versions and their tombstones) in the bucket "
         "indexes this node holds, per policy, as the last repair round's walk counted them.", ("policy",)),
    Spec("maillage_chunks_quarantined", "gauge", "Chunk frames found corrupt and set aside."),
    Spec("maillage_layout_version", "gauge", "Version of the layout this node applies."),
    Spec("maillage_access_version", "gauge", "Version of the access document this node holds."),
    # --- placement and repair
    Spec("maillage_partitions_owned", "gauge", "Partitions of a policy this node is an owner of.", ("policy",)),
    Spec("maillage_partitions_short_of_r", "gauge", "Partitions this node owns with an owner it sees not up "
         "(suspected or down): fewer than R reachable copies until the owner returns or repair replaces it.",
         ("policy",)),
    Spec("maillage_residency_violations", "gauge", "Partitions of chunks held here for a policy this node is "
         "outside of, as the last repair round found them (should be 0)."),
    Spec("maillage_repair_running", "gauge", "1 while an anti-entropy round runs."),
    Spec("maillage_repair_rounds", "counter", "Anti-entropy rounds completed since start."),
    Spec("maillage_repair_last_round_timestamp_seconds", "gauge", "When the last repair round ended (unix "
         "seconds; 0: none yet)."),
    Spec("maillage_repair_groups", "gauge", "Sync groups (chunk partitions, bucket indexes) in the current "
         "or last round."),
    Spec("maillage_repair_groups_done", "gauge", "Sync groups the current round has finished."),
    Spec("maillage_repair_groups_behind", "gauge", "Sync groups found different from a peer in the last "
         "complete round: the repair backlog."),
    Spec("maillage_repair_items_copied", "counter", "Chunks and manifests received or handed over by repair."),
    Spec("maillage_repair_bytes_copied", "counter", "Bytes copied by repair."),
    Spec("maillage_repair_rate_bytes_per_second", "gauge", "Repair copy rate over the current round."),
    Spec("maillage_repair_handoff_items", "gauge", "Items held here for another node, waiting to be handed "
         "back."),
    Spec("maillage_tombstones_removed", "counter", "Expired tombstones removed by repair."),
    Spec("maillage_scrub_frames_checked", "counter", "Chunk frames re-read and re-hashed by scrub."),
    Spec("maillage_scrub_bytes_checked", "counter", "Bytes re-read by scrub."),
    Spec("maillage_scrub_corrupt_found", "counter", "Corrupt chunk frames found by scrub."),
    Spec("maillage_scrub_passes", "counter", "Scrub passes over every frame completed."),
    Spec("maillage_gc_passes", "counter", "Chunk GC passes completed."),
    Spec("maillage_gc_chunks_removed", "counter", "Unreferenced chunks removed by GC."),
    Spec("maillage_lifecycle_actions", "counter", "What this node's lifecycle sweeps did, by action: current "
         "versions expired, noncurrent versions and lone delete markers removed, multipart uploads aborted, "
         "removals object lock refused (kept_by_lock), current versions moved to a cold storage class "
         "(transitioned).", ("action",)),
    # --- the site's energy signal and the background work it schedules (node/energy)
    Spec("maillage_energy_state", "gauge", "1 for the state of the site's energy signal as this node reads it "
         "(unknown, green, grey, shed), 0 for the others.", ("state",)),
    Spec("maillage_energy_surplus_watts", "gauge", "The site's local surplus (production minus load), when known."),
    Spec("maillage_energy_carbon_grams_per_kwh", "gauge", "The grid's carbon intensity at the site, when known."),
    Spec("maillage_background_bytes", "counter", "Bytes moved or read by background work, by kind "
         "(urgent-repair, hand-back, scrub, gc, expiry).", ("kind",)),
    Spec("maillage_background_green_bytes", "counter", "Of those, bytes moved in a green window (or with the "
         "energy unknown).", ("kind",)),
    Spec("maillage_background_energy_joules", "counter", "Estimated energy of background work by kind "
         "(the node's power model: joules per byte read, written and sent).", ("kind",)),
    Spec("maillage_background_green_energy_joules", "counter", "Of it, in green windows (or with the energy "
         "unknown).", ("kind",)),
    Spec("maillage_background_waits", "counter", "Times background work of a kind was told to wait "
         "(shed order, grey window).", ("kind",)),
    Spec("maillage_background_deferred", "gauge", "1 while background work of a kind is deferred by the "
         "site's energy state.", ("kind",)),
    # --- peers, as this node sees them
    Spec("maillage_peers", "gauge", "Other nodes of the layout by the state this node sees them in.", ("state",)),
    Spec("maillage_peer_up", "gauge", "1 when this node sees the peer up, 0 when suspected or down.", ("peer",)),
    Spec("maillage_membership_datagrams", "counter", "Membership datagrams by event: sent, acked, probes_answered, "
         "hello_sent, fell_back (a heartbeat gRPC answered after a datagram was not), dropped_<why>.", ("event",)),
    # --- refusals
    Spec("maillage_upload_budget_bytes", "gauge", "The node's budget of upload bytes in flight."),
    Spec("maillage_upload_budget_used_bytes", "gauge", "Upload bytes in flight now."),
    Spec("maillage_upload_budget_refusals", "counter", "Uploads refused Overloaded after waiting for the budget."),
    Spec("maillage_grpc_deadline_ended", "counter", "gRPC calls ended by the port's own deadlines."),
    Spec("maillage_s3_connections_open", "gauge", "Connections open on the S3 port."),
    Spec("maillage_s3_connections_refused", "counter", "S3 connections closed on arrival over a connection cap."),
)

_BY_NAME = {s.name: s for s in SPECS}


def spec(name: str) -> Spec:
    return _BY_NAME[name]


def exported_names() -> frozenset[str]:
    """Every series name a scrape may contain (suffixes included), for the tests that check the
    rules and the dashboard name only metrics that exist."""
    names: set[str] = set()
    for s in SPECS:
        if s.kind == "counter":
            names.add(s.name + "_total")
        elif s.kind == "histogram":
            names.update(s.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(s.name)
    names.update(f"process_{n}" for n in ("virtual_memory_bytes", "resident_memory_bytes", "start_time_seconds",
                                          "cpu_seconds_total", "open_fds", "max_fds"))
    return frozenset(names)


# Latency buckets from a cached small read (~1 ms) to a large upload (minutes).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class MethodMetrics:
    """The series of one (door, method), bound once: a request costs two counter increments, one
    histogram observation and, on a new outcome, one dict insert."""

    __slots__ = ("_requests", "_labels", "_outcomes", "seconds", "received", "sent")

    def __init__(self, requests: Requests, door: str, method: str) -> None:
        self._requests = requests._requests
        self._labels = (door, method)
        self._outcomes: dict[str, Callable[[], None]] = {}
        self.seconds = requests._seconds.labels(door, method)
        self.received = requests._received.labels(door, method)
        self.sent = requests._sent.labels(door, method)

    def observe(self, outcome: str, seconds: float) -> None:
        inc = self._outcomes.get(outcome)
        if inc is None:
            inc = self._outcomes[outcome] = self._requests.labels(*self._labels, outcome).inc
        inc()
        self.seconds.observe(seconds)


class Requests:
    """Requests by door, method and outcome, their latency and bytes. Method names come from each
    door's fixed vocabulary (gRPC methods the node serves, S3 operations), never from the caller."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def make(cls, name: str, **kw):  # type: ignore[no-untyped-def]
            s = _BY_NAME[name]
            return cls(s.name, s.help, s.labels, registry=registry, **kw)

        self._requests = make(Counter, "maillage_requests")
        self._seconds = make(Histogram, "maillage_request_duration_seconds", buckets=LATENCY_BUCKETS)
        self._received = make(Counter, "maillage_request_bytes_received")
        self._sent = make(Counter, "maillage_response_bytes_sent")
        self._methods: dict[tuple[str, str], MethodMetrics] = {}

    def method(self, door: str, method: str) -> MethodMetrics:
        found = self._methods.get((door, method))
        if found is None:
            found = self._methods[(door, method)] = MethodMetrics(self, door, method)
        return found


class NodeMetrics:
    """One node's registry: its requests, the collectors registered on it, the process."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.requests = Requests(self.registry)
        if process:
            ProcessCollector(registry=self.registry)
        self.labels: Callable[[], dict[str, str]] = dict  # node, site, region: set once the node is wired

    def exposition(self) -> bytes:
        """The text format of a scrape, every sample labelled with the node's own labels."""
        return generate_latest(_Labelled(self.registry, self.labels()))  # type: ignore[arg-type]


class _Labelled:
    """A registry's metrics with constant labels added to every sample (prometheus_client has no
    registry-wide constant labels)."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self._registry = registry
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        extra = self._labels
        for metric in self._registry.collect():
            metric.samples = list(_with(metric.samples, extra))
            yield metric


def _with(samples: Iterable[Sample], extra: dict[str, str]) -> Iterator[Sample]:
    for s in samples:
        yield s._replace(labels={**extra, **s.labels})
