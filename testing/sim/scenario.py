"""One simulated run: a mesh of N one-node sites through the phases the control plane must survive.

Phases, on virtual time (a node's default timings, except `down_after` and `repair_interval`,
which the run shortens so a site loss is repaired within the run):

1. buckets (without loss): a France-only and an EU-wide bucket are created, listed, headed and
   one is deleted, each through a seeded random French node, counting the nodes each operation
   contacts (fan-out); `objects` small objects are written through random French nodes.
2. idle: `seconds` of the mesh at rest (with `loss` only): messages and bytes per node per second,
   and false suspicions (a live node suspected by a peer, refuted or not).
3. news: a layout version is offered to one node, an access document to another, and a third
   node crashes, at one instant; sampled every 100 ms (so figures are upper bounds to 0.1 s): when
   each node adopts each document and starts suspecting the crashed node (first and 99th
   percentile node), and when the last of the crashed node's co-owners (the live nodes holding a
   replica of one of its partitions, under any policy) does, up to `news_cap` seconds. The crashed
   node is one that holds partitions (at 1,000 sites about one node in nine holds none).
4. stale read: one French owner of an object is cut off for 10 s while the object is rewritten
   through another node; after the heal, how long until a read through the cut-off node returns
   the new value.
5. site loss: a site holding objects crashes for good; how long until every object is again on
   R live nodes (repair), up to `down_after + 4 * repair_interval`.
"""

from __future__ import annotations

import datetime
import math
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from maillage.node.cluster.coowners import co_owners
from maillage.node.daemon.wiring import Timings
from maillage.node.errors import NodeError
from maillage.node.trust.documents import LayoutDoc
from maillage.placement import Layout, format_layout
from maillage.proto.trust.access import AccessDoc, ensure_naming_secret
from maillage.proto.trust.node_access import encode_node_access, publish
from maillage.testing.sim.loop import run_virtual
from maillage.testing.sim.mesh import SimMesh, sim_layout
from maillage.testing.sim.metrics import fan_out

__all__ = ["SimConfig", "SimResult", "simulate", "percentile"]

SAMPLE = 0.1
PHASES = ("buckets", "idle", "news", "stale", "loss")   # stale and loss need buckets


@dataclass(frozen=True)
class SimConfig:
    sites: int
    seconds: float = 60.0
    seed: int = 1
    loss: float = 0.0
    objects: int = 20
    down_after: float = 20.0
    repair_interval: float = 10.0
    news_cap: float = 30.0
    phases: tuple[str, ...] = PHASES   # a subset of PHASES, run in order
    root: Path | None = None   # where node stores go (a tmpfs is best); None: a temporary dir


@dataclass
class SimResult:
    config: SimConfig
    msgs_per_node_s: float = 0.0            # sent + received, per node per simulated second (idle)
    bytes_per_node_s: float = 0.0
    max_msgs_per_node_s: float = 0.0
    handler_ms_per_node_s: float = 0.0      # real CPU in handlers (not deterministic)
    detect_p1: float = math.inf             # seconds from the crash until a node suspects it
    detect_p99: float = math.inf
    detect_all: float = math.inf
    holders: int = 0                        # the crashed node's live co-owners
    holders_all: float = math.inf           # seconds from the crash until all of them suspect it
    layout_p1: float = math.inf
    layout_p99: float = math.inf
    layout_all: float = math.inf
    access_p99: float = math.inf
    access_all: float = math.inf
    fan_out: dict[str, int] = field(default_factory=dict)   # operation -> nodes contacted
    false_suspicions: int = 0               # idle phase: a live node suspected by a peer
    stale_window: float = math.inf          # seconds after the heal until a fresh read
    repair_convergence: float = math.inf    # seconds after the site loss until R live copies each
    simulated: float = 0.0
    wall: float = 0.0
    digest: str = ""
    per_second: list[int] = field(default_factory=list)     # messages in each simulated second
    calls: dict[str, int] = field(default_factory=dict)


def percentile(values: Iterable[float], p: float) -> float:
    """The value below which `p` % of `values` fall (nearest rank); inf when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.inf
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def simulate(config: SimConfig, progress: Callable[[str], None] = lambda _line: None) -> SimResult:
    """Run one simulation to its end (in its own virtual-time loop) and return its figures."""
    if config.root is not None:
        config.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maillage-sim-", dir=config.root) as root:
        started = time.perf_counter()
        result = run_virtual(_run(config, Path(root), progress))
        result.wall = time.perf_counter() - started
        return result


async def _run(config: SimConfig, root: Path, progress: Callable[[str], None]) -> SimResult:
    phases = set(config.phases)
    if not phases <= set(PHASES) or (phases & {"stale", "loss"} and "buckets" not in phases):
        raise ValueError(f"phases: a subset of {', '.join(PHASES)}; stale and loss need buckets")
    layout = sim_layout(config.sites)
    timings = Timings(down_after=config.down_after, repair_interval=config.repair_interval,
                      scrub_rate=0, repair_rate=100e6)
    mesh = SimMesh(layout, root, seed=config.seed, loss=config.loss, timings=timings)
    rng = random.Random(config.seed)
    result = SimResult(config)
    start = mesh.now()
    suspicions = _Suspicions(mesh)
    mesh.start()
    phases = set(config.phases)
    try:
        keys: list[tuple[str, str]] = []
        if "buckets" in phases:
            progress(f"{config.sites} sites: buckets and {config.objects} objects")
            mesh.sim.loss = 0.0   # fan-out and the objects to repair later, not a lost ack, are measured here
            keys = await _buckets(mesh, rng, result, config.objects)
            mesh.sim.loss = config.loss
        await mesh.run_for(3.0)
        if "idle" in phases:
            progress(f"{config.sites} sites: idle for {config.seconds:g} s")
            suspicions.counting = True
            await _idle(mesh, config.seconds, result, progress)
            result.false_suspicions = suspicions.close(mesh)
        if "news" in phases:
            progress(f"{config.sites} sites: news (layout, access document, a crash)")
            await _news(mesh, rng, result, config.news_cap)
        if "stale" in phases:
            progress(f"{config.sites} sites: stale read after a partition")
            await _stale_read(mesh, rng, result)
        if "loss" in phases:
            progress(f"{config.sites} sites: site loss and repair")
            await _site_loss(mesh, rng, result, keys, config)
    finally:
        await mesh.stop()
    result.simulated = mesh.now() - start
    result.digest = mesh.metrics.digest()
    first = int(start)
    result.per_second = [mesh.metrics.per_second[s] for s in range(first, int(mesh.now()) + 1)]
    result.calls = dict(sorted(mesh.metrics.methods.items()))
    return result


class _Suspicions:
    """False suspicions while the mesh is only lossy (the idle phase): each time a node hears
    again from a live peer it had suspected (a refuted suspicion), plus, at the end, each pair
    where a node still suspects a live peer."""

    def __init__(self, mesh: SimMesh) -> None:
        self.counting = False
        self.count = 0
        for node in mesh.nodes.values():
            if not hasattr(node.detector, "on_recovered"):   # a membership protocol without the hook
                raise RuntimeError("the failure detector has no on_recovered hook: false suspicions "
                                   "cannot be counted; adapt maillage.testing.sim.scenario._Suspicions")
            node.detector.on_recovered = self._hook(node.detector.on_recovered)

    def _hook(self, chained: Callable[[str], None]) -> Callable[[str], None]:
        def recovered(node_id: str) -> None:
            if self.counting:
                self.count += 1
            chained(node_id)
        return recovered

    def close(self, mesh: SimMesh) -> int:
        self.counting = False
        ids = sorted(mesh.nodes)
        self.count += sum(1 for a in ids for b in ids if a != b and not mesh.nodes[a].detector.is_up(b))
        return self.count


async def _buckets(mesh: SimMesh, rng: random.Random, result: SimResult, objects: int) -> list[tuple[str, str]]:
    ids = sorted(mesh.nodes)
    french = [n for n in ids if n.startswith("fr-")]
    ops: list[tuple[str, str, Callable[[str], object]]] = [
        ("create", "sim-fr", lambda via: mesh.create_bucket("sim-fr", "france-only", via=via)),
        ("create", "sim-eu", lambda via: mesh.create_bucket("sim-eu", "eu-wide", via=via)),
        ("create", "sim-tmp", lambda via: mesh.create_bucket("sim-tmp", "france-only", via=via)),
        ("head", "sim-fr", lambda via: mesh.via(via).coordinator.head_bucket("sim-fr")),
        ("list", "", lambda via: mesh.via(via).coordinator.tenant_buckets("")),  # the tenant's list (owner "")
        ("delete", "sim-tmp", lambda via: mesh.delete_bucket("sim-tmp", via=via)),
    ]
    for op, _bucket, run in ops:
        via = rng.choice(french)
        with fan_out() as contacted:
            await run(via)  # type: ignore[misc]
        result.fan_out[op] = max(result.fan_out.get(op, 0), len(contacted - {via}))
    keys = []
    for i in range(objects):
        bucket = "sim-fr" if i % 2 == 0 else "sim-eu"
        key = f"obj-{i:04d}"
        await mesh.put(bucket, key, f"{key} v1".encode() * 8, via=rng.choice(french))
        keys.append((bucket, key))
    return keys


async def _idle(mesh: SimMesh, seconds: float, result: SimResult, progress: Callable[[str], None]) -> None:
    before, t0 = mesh.metrics.snapshot(), mesh.now()
    cpu0 = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        step = min(10.0, seconds - elapsed)
        await mesh.run_for(step)
        elapsed += step
        if elapsed < seconds:
            progress(f"  {elapsed:g}/{seconds:g} simulated s ({time.perf_counter() - cpu0:.0f} s real)")
    after, span = mesh.metrics.snapshot(), mesh.now() - t0
    rates, volumes, handler = [], [], []
    for node_id in mesh.nodes:
        a, b = after.get(node_id), before.get(node_id)
        if a is None:
            continue
        sent = a.sent - (b.sent if b else 0)
        received = a.received - (b.received if b else 0)
        rates.append((sent + received) / span)
        volumes.append((a.bytes_sent + a.bytes_received - (b.bytes_sent + b.bytes_received if b else 0)) / span)
        handler.append((a.handler_seconds - (b.handler_seconds if b else 0.0)) * 1000 / span)
    n = len(mesh.nodes)
    result.msgs_per_node_s = sum(rates) / n
    result.max_msgs_per_node_s = max(rates, default=0.0)
    result.bytes_per_node_s = sum(volumes) / n
    result.handler_ms_per_node_s = sum(handler) / n


def _access_doc(mesh: SimMesh, seed: int) -> LayoutDoc:
    doc = ensure_naming_secret(AccessDoc(), random.Random(seed))
    today = datetime.datetime.fromtimestamp(mesh.base_clock.time(), datetime.UTC).date()
    text = encode_node_access(publish(doc, today=today, policies=[p.name for p in mesh.layout.policies],
                                      owners=("",)))
    return LayoutDoc(doc.version, text, mesh.signer.sign(doc.version, text, kind="access"))


async def _news(mesh: SimMesh, rng: random.Random, result: SimResult, cap: float) -> None:
    ids = sorted(mesh.nodes)
    layout_at, access_at, crashed = rng.sample(ids, 3)
    crashed = _holding(mesh.layout, ids, crashed, {layout_at, access_at})
    holders = co_owners(mesh.layout, crashed)
    layout = _next_version(mesh.layout)
    text = format_layout(layout)
    signature = mesh.signer.sign(layout.version, text, kind="layout")
    access = _access_doc(mesh, rng.randrange(1 << 30))
    t0 = mesh.now()
    mesh.metrics.note(f"{t0:.6f} news: layout {layout.version} at {layout_at}, access at {access_at}, "
                      f"crash {crashed}")
    mesh.nodes[layout_at].layout.offer(layout, signature, text)
    mesh.nodes[access_at].access.offer(access)
    mesh.layout = layout
    await mesh.crash(crashed)
    live = [n for n in ids if n != crashed]
    got_layout: dict[str, float] = {}
    got_access: dict[str, float] = {}
    suspects: dict[str, float] = {}
    # Sampled through what every membership protocol has (is_up, a version): each first time counts.
    while mesh.now() - t0 < cap:
        await mesh.run_for(SAMPLE)
        for node_id in live:
            node = mesh.nodes[node_id]
            if node_id not in got_layout and node.layout.current.version >= layout.version:
                got_layout[node_id] = mesh.now() - t0
            if node_id not in got_access and node.access.version >= access.version:
                got_access[node_id] = mesh.now() - t0
            if node_id not in suspects and not node.detector.is_up(crashed):
                suspects[node_id] = mesh.now() - t0
        if len(got_layout) == len(got_access) == len(suspects) == len(live):
            break
    detect = list(suspects.values())
    result.detect_p1, result.detect_p99 = _p(detect, live, 1), _p(detect, live, 99)
    result.detect_all = max(detect) if len(detect) == len(live) else math.inf
    result.holders = len(holders)
    if holders <= suspects.keys():
        result.holders_all = max((suspects[n] for n in holders), default=0.0)
    result.layout_p1, result.layout_p99 = _p(got_layout.values(), live, 1), _p(got_layout.values(), live, 99)
    result.layout_all = max(got_layout.values()) if len(got_layout) == len(live) else math.inf
    result.access_p99 = _p(got_access.values(), live, 99)
    result.access_all = max(got_access.values()) if len(got_access) == len(live) else math.inf
    await mesh.restart(crashed)


def _holding(layout: Layout, ids: list[str], chosen: str, taken: set[str]) -> str:
    """`chosen` if it holds a partition, else the next node in `ids` (in turn) that does: a node
    that holds none has no co-owners to tell (no random draw, so the run's other draws stay)."""
    start = ids.index(chosen)
    for node_id in ids[start:] + ids[:start]:
        if node_id not in taken and co_owners(layout, node_id):
            return node_id
    return chosen


def _p(values: Iterable[float], population: list[str], p: float) -> float:
    """The p-th percentile over every node of `population`, a node that never got there counting as inf."""
    got = list(values)
    return percentile(got + [math.inf] * (len(population) - len(got)), p)


def _next_version(layout: Layout) -> Layout:
    return Layout(version=layout.version + 1, partition_bits=layout.partition_bits, sites=layout.sites,
                  nodes=layout.nodes, policies=layout.policies)


async def _stale_read(mesh: SimMesh, rng: random.Random, result: SimResult) -> None:
    bucket, key = "sim-fr", "obj-0000"
    holders = sorted(h for h in mesh.holders(bucket, key) if mesh.network.is_down(h) is False)
    if not holders:
        return
    cut_off = rng.choice(holders)
    french = [n for n in sorted(mesh.nodes) if n.startswith("fr-") and n != cut_off]
    writer = rng.choice(french)
    mesh.metrics.note(f"{mesh.now():.6f} partition {cut_off}; rewrite via {writer}")
    mesh.sim.partition([cut_off])
    fresh = b"fresh after the partition"
    written = False
    for _ in range(5):   # a lost message can fail the write's quorum: try again, as a client would
        try:
            await mesh.put(bucket, key, fresh, via=writer)
            written = True
            break
        except NodeError:
            await mesh.run_for(1.0)
    await mesh.run_for(10.0)
    mesh.sim.heal()
    if not written:
        mesh.metrics.note("stale read: the write never reached a quorum")
        return
    healed = mesh.now()
    while mesh.now() - healed < 30.0:
        try:
            if await mesh.get(bucket, key, via=cut_off) == fresh:
                result.stale_window = mesh.now() - healed
                return
        except Exception:  # noqa: BLE001 - an error is not a fresh read; try again
            pass
        await mesh.run_for(SAMPLE)


async def _site_loss(mesh: SimMesh, rng: random.Random, result: SimResult, keys: list[tuple[str, str]],
                     config: SimConfig) -> None:
    replicas = {p.name: p.replicas for p in mesh.layout.policies}
    policy_of = {"sim-fr": "france-only", "sim-eu": "eu-wide"}
    # The site to lose: the one holding most objects that have no spare copy (else any holder).
    held = _live_holders(mesh)
    exact = Counter(n for k in keys for n in held.get(k, ()) if len(held[k]) <= replicas[policy_of[k[0]]])
    lost = max(sorted(exact), key=lambda n: exact[n]) if exact else rng.choice(sorted(held.get(keys[0], mesh.nodes)))
    await mesh.crash(lost)
    t0 = mesh.now()
    cap = config.down_after + 4 * config.repair_interval
    while mesh.now() - t0 < cap:
        await mesh.run_for(1.0)
        held = _live_holders(mesh)
        if all(len(held.get(k, ())) >= replicas[policy_of[k[0]]] for k in keys):
            result.repair_convergence = mesh.now() - t0
            return


def _live_holders(mesh: SimMesh) -> dict[tuple[str, str], set[str]]:
    """(bucket, key) -> live nodes whose index holds a live entry of it (one scan per node)."""
    held: dict[tuple[str, str], set[str]] = {}
    for node_id in mesh.up_nodes():
        for m in mesh.nodes[node_id].local.meta.iter_manifests():
            if not m.deleted:
                held.setdefault((m.bucket, m.key), set()).add(node_id)
    return held
