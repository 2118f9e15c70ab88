"""The composition root: bootstrap (`bootstrap.py`), wiring (`wiring.py`), then gRPC.

`NodeServer.start()` opens the stores and loads the layout, builds the node's objects over gRPC
transports, registers the servicers and the raw-bytes handlers, and serves. `stop()` lets in-flight
requests finish, then closes the stores cleanly; `run_node()` does both around SIGTERM/SIGINT for
the `maillage node run` command.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from cryptography import x509

from maillage.node.daemon.bootstrap import (
    NodeConfig,
    Stores,
    load_access,
    load_layout,
    load_s3_tls,
    load_trust,
    open_stores,
)
from maillage.node.daemon.wiring import Node, Timings
from maillage.node.rpc.datagrams import DatagramTransport, MembershipDatagrams
from maillage.node.rpc.deadlines import Deadlines
from maillage.node.rpc.gate import AuthGate, TrustingGate
from maillage.node.rpc.grpc_transport import GrpcTransport
from maillage.node.rpc.servicers import (
    SOFTWARE_VERSION,
    BulkHandlers,
    ClusterServicer,
    ObjectsServicer,
    ReplicaServicer,
)
from maillage.node.runtime.allocator import keep_large_buffers
from maillage.node.runtime.fdlimit import grpc_connection_cap, raise_open_files_limit, s3_connection_cap
from maillage.node.trust.documents import SignedLayouts
from maillage.proto import rpc
from maillage.proto.channels import new_server
from maillage.proto.limits import max_request_message
from maillage.proto.trust.identity import IdentityError, NodeFiles
from maillage.proto.trust.pairwise import PairKeys
from maillage.storage import check_data_format

if TYPE_CHECKING:
    from maillage.node.metrics.ops import OpsServer, ScrapeToken
    from maillage.node.metrics.registry import NodeMetrics
    from maillage.node.s3.server import S3Server

__all__ = ["NodeConfig", "Timings", "NodeServer", "register", "run_node"]

log = logging.getLogger("maillage.node")


def register(server: grpc.aio.Server, node: Node) -> ClusterServicer:
    """Serve `node` on `server`: the three services and the raw-bytes methods. Returns the Cluster
    servicer (the S3 address it gives in GetInfo is set once the S3 door listens)."""
    cluster = ClusterServicer(node.local, node.layout, node.signed, node.access, node.gossip, node.detector,
                              node.repairer, node.scrubber, node.collector, node.clock, energy=node.energy,
                              lifecycle=node.lifecycle)
    rpc.add_ClusterServicer_to_server(cluster, server)
    rpc.add_ReplicaServicer_to_server(ReplicaServicer(node.plane), server)
    rpc.add_ObjectsServicer_to_server(ObjectsServicer(node.service), server)
    server.add_generic_rpc_handlers((BulkHandlers(node.local, node.service, node.plane).generic_handler(),))
    return cluster


class NodeServer:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._server: grpc.aio.Server | None = None
        self._stores: Stores | None = None
        self._node: Node | None = None
        self._s3: S3Server | None = None
        self._ops: OpsServer | None = None
        self._ready = False
        self.metrics: NodeMetrics | None = None  # with --ops-listen
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix="storage")
        self.address = ""

    async def start(self) -> None:
        cfg = self.config
        check_data_format(cfg.data_dir)  # before anything in it is opened or written
        open_files = raise_open_files_limit()
        trust = load_trust(cfg)
        s3_tls = load_s3_tls(cfg) if cfg.s3_listen else None  # a wrong certificate fails before anything starts
        token = _scrape_token(cfg) if cfg.ops_listen else None  # so does a missing scrape token
        tls = None if cfg.insecure_plaintext else trust.tls
        signed = SignedLayouts(trust.verifier)
        layout = await load_layout(cfg, signed, tls)
        access = load_access(cfg, trust)
        me = layout.current.node(cfg.node_id)
        self._stores = stores = open_stores(cfg)
        datagrams = (MembershipDatagrams(cfg.node_id, layout, PairKeys(tls))
                     if tls is not None and cfg.membership_datagrams else None)
        self._node = node = Node(cfg.node_id, layout, stores.chunks, stores.meta, signed, access, self._executor,
                                 transport_for=lambda: GrpcTransport(layout, tls), timings=cfg.timings,
                                 gossip_transport=(DatagramTransport(GrpcTransport(layout, tls), datagrams)
                                                   if datagrams is not None else None),
                                 chunk_size=cfg.chunk_size, unkeyed_names=cfg.insecure_plaintext)
        self.address = cfg.listen or me.address
        gate = TrustingGate() if cfg.insecure_plaintext else AuthGate(layout, access, cfg.node_id)
        s3_cap = s3_connection_cap(cfg.s3_limits.max_connections, open_files) if cfg.s3_listen else 0
        grpc_limits = replace(cfg.grpc_limits, max_connections=grpc_connection_cap(
            cfg.grpc_limits.max_connections, open_files, s3_cap))
        deadlines = Deadlines(grpc_limits)
        # Measured first (it counts every call, those the deadlines end or the gate refuses too), then
        # the deadlines, so their bounds cover the gate's wait for a stream's first message.
        interceptors: tuple[grpc.aio.ServerInterceptor, ...] = (deadlines, gate)
        if cfg.ops_listen:
            # Imported here: a node without an ops port never loads prometheus_client (~0.1-0.4 s, 2.5 MB).
            from maillage.node.metrics.registry import NodeMetrics
            from maillage.node.metrics.state import node_labels
            from maillage.node.rpc.measured import Measured

            self.metrics = NodeMetrics()
            self.metrics.labels = lambda: node_labels(layout, cfg.node_id)
            interceptors = (Measured(self.metrics.requests), *interceptors)
        server, _ = new_server(self.address, tls=tls, interceptors=interceptors,
                               max_receive=max_request_message(cfg.chunk_size), options=grpc_limits.server_options())
        log.info("gRPC port: %s", grpc_limits.describe())
        _warn_if_too_few_connections(grpc_limits.max_connections, len(layout.current.nodes))
        if cfg.insecure_plaintext:
            log.warning("INSECURE PLAINTEXT MODE (benchmarks only): no TLS, no authentication")
        cluster = register(server, node)
        await server.start()
        self._server = server
        if datagrams is not None:
            try:
                await datagrams.start(self.address, node.gossip)
            except OSError as err:   # the UDP port taken: probes go over gRPC alone
                log.warning("membership datagrams off: cannot listen on UDP %s (%s); probing over gRPC",
                            self.address, err)
        if cfg.s3_listen:
            # Imported here: a node without an S3 port never loads aiohttp and the S3 door (~20 MB).
            from maillage.node.s3.access_log import AccessLog
            from maillage.node.s3.common import Services
            from maillage.node.s3.forward import Forwarder
            from maillage.node.s3.server import S3Server

            services = Services(node.service, layout, self._executor,
                                default_policy=cfg.s3_default_policy, upload_expiry=cfg.timings.upload_expiry,
                                upload_budget=node.upload_budget)
            limits = replace(cfg.s3_limits, max_connections=s3_cap)
            # Requests for a bucket this node is outside of go to a node inside (over TLS checked
            # with the cluster CA: none without one).
            forwarder = Forwarder(cfg.node_id, layout, tls) if tls is not None else None
            s3 = S3Server(cfg.s3_listen, services, access, domain=cfg.s3_domain, ssl_context=s3_tls, limits=limits,
                          forwarder=forwarder, requests=self.metrics.requests if self.metrics else None,
                          access_log=AccessLog(cfg.s3_access_log) if cfg.s3_access_log else None)
            await s3.start()
            self._s3 = s3
            cluster.s3_address = s3.advertised(me.address)
        node.start_background()
        if self.metrics is not None and token is not None:
            await self._start_ops(token, deadlines, tls is not None)
        self._ready = True
        log.info("node %s (site %s) serving on %s, layout version %d",
                 me.id, me.site, self.address, layout.current.version)

    async def _start_ops(self, token: ScrapeToken, deadlines: Deadlines, tls: bool) -> None:
        from maillage.node.metrics.ops import OpsServer, ops_tls_context  # aiohttp only with --ops-listen
        from maillage.node.metrics.state import StateCollector

        cfg, node, metrics = self.config, self._node, self.metrics
        assert node is not None and metrics is not None and cfg.ops_listen is not None
        files = NodeFiles.at(cfg.trust_dir)
        sources = node.metrics_sources(SOFTWARE_VERSION)
        sources.deadline_ended = lambda: deadlines.ended
        if isinstance(node.gossip_transport, DatagramTransport):
            sources.datagrams = node.gossip_transport.datagrams.counts.copy
        if tls:
            sources.certificate_expiry = _not_after(files.cert)
        s3 = self._s3
        if s3 is not None:
            sources.s3_connections = lambda: (s3.door.open, s3.door.refused) if s3.door is not None else (0, 0)
        metrics.registry.register(StateCollector(sources))
        # The node's own certificate (Prometheus checks it with the cluster CA); plain HTTP only for a
        # node that has no TLS at all (--insecure-plaintext benchmarks).
        context = ops_tls_context(files.cert, files.key) if tls else None
        ops = OpsServer(cfg.ops_listen, token=token, scrape=metrics.exposition, ready=lambda: self._ready,
                        ssl_context=context)
        await ops.start()
        self._ops = ops

    async def stop(self, grace: float = 10.0) -> None:
        self._ready = False
        if self._ops is not None:
            await self._ops.stop()
            self._ops = None
        if self._s3 is not None:
            await self._s3.stop()
            self._s3 = None
        if self._node is not None:
            await self._node.stop_background()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._node is not None:
            await self._node.close_transports()
            self._node = None
        self._executor.shutdown(wait=True)
        if self._stores is not None:
            self._stores.close()
            self._stores = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def _scrape_token(cfg: NodeConfig) -> ScrapeToken:
    from maillage.node.metrics.ops import TOKEN_FILE, ScrapeToken

    try:
        return ScrapeToken.from_file(cfg.ops_token_file or cfg.trust_dir / TOKEN_FILE)
    except ValueError as err:
        raise IdentityError(f"--ops-listen: {err}") from None


def _not_after(cert: Path) -> float:
    return x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.timestamp()


#: Channels a node keeps to each peer (data path, gossip, repair: `wiring.Node`), each its connection.
CHANNELS_PER_PEER = 3


def _warn_if_too_few_connections(cap: int, nodes: int) -> None:
    needed = CHANNELS_PER_PEER * (nodes - 1)
    if needed >= cap // 2:
        log.warning("gRPC connections capped at %d while the %d other nodes of the layout may hold up to %d: "
                    "raise --grpc-max-connections (and the open files limit)", cap, nodes - 1, needed)


async def _run(config: NodeConfig) -> None:
    node = NodeServer(config)
    await node.start()
    # What start-up made (modules, the layout, tables) lives as long as the process: the cyclic
    # garbage collector need not walk it again at every full collection (it was over half of a
    # starting node's CPU while a 100-node mesh came up).
    gc.freeze()
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
    keep_large_buffers()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_run(config))
    else:
        uvloop.run(_run(config))
