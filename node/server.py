"""The composition root: the one place that builds a node's concrete objects and wires them.

`NodeServer.start()` opens the stores, loads the layout (from a file or a seed peer), checks that
this node is in it, and serves gRPC. `stop()` lets in-flight requests finish, then closes the stores
cleanly; `run_node()` does both around SIGTERM/SIGINT for the `maillage node run` command.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from maillage.placement import Layout, PlacementError, format_layout
from maillage.proto import pb, rpc
from maillage.proto.channels import new_server, open_channel
from maillage.storage import ChunkStore, HybridClock, MetaStore

from .auth import ClusterKey, LayoutAuthError
from .catalog import Catalog
from .coordinator import Coordinator
from .layout_state import LayoutState
from .membership import FailureDetector, Gossip, SignedLayouts
from .peers import Peers
from .repair import Repairer
from .replica import LocalReplica
from .scrub import Scrubber
from .servicers import BulkHandlers, ClusterServicer, ObjectsServicer, ReplicaServicer

log = logging.getLogger("maillage.node")


@dataclass(frozen=True)
class Timings:
    """Cluster-life periods in seconds and rates in bytes/s (see `maillage node run --help`)."""
    heartbeat_interval: float = 1.0
    suspect_after: float = 5.0
    down_after: float = 300.0
    repair_interval: float = 30.0
    repair_rate: float = 100e6
    scrub_rate: float = 8e6
    scrub_interval: float = 3600.0
    gc_grace: float = 3600.0


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    data_dir: Path
    layout: Layout | None = None          # initial layout; else the stored one, else from seeds
    seeds: tuple[str, ...] = ()
    listen: str | None = None             # default: this node's address in the layout
    fsync: bool = True
    chunk_size: int = 4 * 1024 * 1024
    workers: int = 8
    secret_file: Path | None = None
    timings: Timings = Timings()


async def fetch_layout(seeds: tuple[str, ...], signed: SignedLayouts) -> tuple[Layout, pb.LayoutDoc]:
    """The newest correctly signed layout any seed answers with."""
    best: tuple[Layout, pb.LayoutDoc] | None = None
    errors = []
    for address in seeds:
        try:
            async with open_channel(address) as channel:
                doc = await rpc.ClusterStub(channel).GetLayout(pb.GetLayoutRequest(), timeout=5)
            layout = signed.verify(doc)
            if best is None or layout.version > best[0].version:
                best = (layout, doc)
        except grpc.RpcError as err:
            errors.append(f"{address}: {err.code().name}")
        except (LayoutAuthError, PlacementError) as err:
            errors.append(f"{address}: {err}")
    if best is None:
        raise ConnectionError(f"no seed answered with a valid layout ({'; '.join(errors) or 'no seeds given'})")
    return best


class NodeServer:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._server: grpc.aio.Server | None = None
        self._meta: MetaStore | None = None
        self._peers: Peers | None = None
        self._repair_peers: Peers | None = None
        self._gossip: Gossip | None = None
        self._repairer: Repairer | None = None
        self._scrubber: Scrubber | None = None
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix="storage")
        self.address = ""

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        layout_path = cfg.data_dir / "layout.toml"
        signed = SignedLayouts(ClusterKey.from_file(cfg.secret_file) if cfg.secret_file else None)
        if cfg.layout is not None:  # the operator's own file: trusted, signed here
            layout = LayoutState(layout_path, cfg.layout,
                                 signed.sign(cfg.layout.version, format_layout(cfg.layout)))
        elif not layout_path.exists():
            fetched, doc = await fetch_layout(cfg.seeds, signed)
            layout = LayoutState(layout_path, fetched, doc.signature, doc.text)
        else:
            layout = LayoutState(layout_path)
        node = layout.current.node(cfg.node_id)  # UnknownNode: refuse to start outside the layout
        chunks = ChunkStore(cfg.data_dir / "chunks", fsync=cfg.fsync)
        self._meta = MetaStore(cfg.data_dir / "meta")
        local = LocalReplica(cfg.node_id, chunks, self._meta, layout, self._executor)
        self._peers = Peers(local, layout)
        t = cfg.timings
        detector = FailureDetector(cfg.node_id, suspect_after=t.suspect_after, down_after=t.down_after)
        catalog = Catalog(self._peers, layout)
        coordinator = Coordinator(cfg.node_id, self._peers, layout, catalog, HybridClock(),
                                  self._executor, chunk_size=cfg.chunk_size, is_up=detector.is_up)
        self._gossip = Gossip(cfg.node_id, layout, detector, signed, interval=t.heartbeat_interval)
        # Repair gets channels of its own: its bulk copies never queue behind (or ahead of) client
        # traffic on one HTTP/2 connection, and its early failures never put client channels
        # into reconnect backoff.
        self._repair_peers = Peers(local, layout)
        self._repairer = Repairer(cfg.node_id, self._repair_peers, layout, is_up=detector.is_up,
                                  is_out=detector.is_down, interval=t.repair_interval,
                                  rate=t.repair_rate, tombstone_grace=t.gc_grace)
        self._scrubber = Scrubber(local, rate=t.scrub_rate, interval=t.scrub_interval, on_corrupt=self._repairer.trigger)

        self.address = cfg.listen or node.address
        server, _ = new_server(self.address)
        rpc.add_ClusterServicer_to_server(ClusterServicer(
            local, layout, signed, self._gossip, detector, self._repairer, self._scrubber), server)
        rpc.add_ReplicaServicer_to_server(ReplicaServicer(local), server)
        rpc.add_ObjectsServicer_to_server(ObjectsServicer(coordinator), server)
        server.add_generic_rpc_handlers((BulkHandlers(local, coordinator).generic_handler(),))
        await server.start()
        self._server = server
        for task in (self._gossip, self._repairer, self._scrubber):
            task.start()
        log.info("node %s (site %s) serving on %s, layout version %d",
                 node.id, node.site, self.address, layout.current.version)

    async def stop(self, grace: float = 10.0) -> None:
        for task in (self._gossip, self._repairer, self._scrubber):
            if task is not None:
                await task.stop()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        for peers in (self._peers, self._repair_peers):
            if peers is not None:
                await peers.close()
        self._executor.shutdown(wait=True)
        if self._meta is not None:
            self._meta.close()
            self._meta = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def _run(config: NodeConfig) -> None:
    node = NodeServer(config)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"maillage node {config.node_id} ready on {node.address}", flush=True)
    await stop.wait()
    log.info("stopping: letting in-flight requests finish")
    await node.stop()


def run_node(config: NodeConfig) -> None:
    """Serve until SIGTERM or SIGINT (uvloop when it is installed)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_run(config))
    else:
        uvloop.run(_run(config))
