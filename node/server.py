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

from maillage.placement import Layout, parse_layout
from maillage.proto import pb, rpc
from maillage.storage import ChunkStore, HybridClock, MetaStore

from .catalog import Catalog
from .coordinator import Coordinator
from .layout_state import LayoutState
from .peers import CHANNEL_OPTIONS, Peers
from .replica import LocalReplica
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


async def fetch_layout(seeds: tuple[str, ...]) -> Layout:
    """The newest layout any seed answers with."""
    best: Layout | None = None
    errors = []
    for address in seeds:
        try:
            async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
                doc = await rpc.ClusterStub(channel).GetLayout(pb.GetLayoutRequest(), timeout=5)
            layout = parse_layout(doc.text)
            if best is None or layout.version > best.version:
                best = layout
        except grpc.RpcError as err:
            errors.append(f"{address}: {err.code().name}")
    if best is None:
        raise ConnectionError(f"no seed answered with a layout ({'; '.join(errors) or 'no seeds given'})")
    return best


class NodeServer:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._server: grpc.aio.Server | None = None
        self._meta: MetaStore | None = None
        self._peers: Peers | None = None
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix="storage")
        self.address = ""

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        layout_path = cfg.data_dir / "layout.toml"
        initial = cfg.layout
        if initial is None and not layout_path.exists():
            initial = await fetch_layout(cfg.seeds)
        layout = LayoutState(layout_path, initial)
        node = layout.current.node(cfg.node_id)  # UnknownNode: refuse to start outside the layout
        chunks = ChunkStore(cfg.data_dir / "chunks", fsync=cfg.fsync)
        self._meta = MetaStore(cfg.data_dir / "meta")
        local = LocalReplica(cfg.node_id, chunks, self._meta, layout, self._executor)
        self._peers = Peers(local, layout)
        catalog = Catalog(self._peers, layout)
        coordinator = Coordinator(cfg.node_id, self._peers, layout, catalog, HybridClock(),
                                  self._executor, chunk_size=cfg.chunk_size)

        server = grpc.aio.server(options=CHANNEL_OPTIONS)
        rpc.add_ClusterServicer_to_server(ClusterServicer(local, layout), server)
        rpc.add_ReplicaServicer_to_server(ReplicaServicer(local), server)
        rpc.add_ObjectsServicer_to_server(ObjectsServicer(coordinator), server)
        server.add_generic_rpc_handlers((BulkHandlers(local, coordinator).generic_handler(),))
        self.address = cfg.listen or node.address
        if server.add_insecure_port(self.address) == 0:
            raise OSError(f"cannot listen on {self.address}")
        await server.start()
        self._server = server
        log.info("node %s (site %s) serving on %s, layout version %d",
                 node.id, node.site, self.address, layout.current.version)

    async def stop(self, grace: float = 10.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._peers is not None:
            await self._peers.close()
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
