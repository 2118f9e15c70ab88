"""The one place gRPC channels and servers are configured: nodes, SDK, admin API and benchmarks.

Every connection of the mesh gets the same message limits, keepalive, reconnect backoff and
transport security from here, so a change to how maillage talks is made once. Every node port is
mutual TLS (`identity.TlsIdentity`): a channel presents its own certificate and checks that the
server's names the node it meant to reach (`peer`, a node id; None when the caller does not know
which node an endpoint is, e.g. the SDK's first call). Only the raw gRPC limits benchmark opens
plaintext channels (`tls=None`), to measure gRPC itself. Blocking channels exist for the admin
commands, which run outside an event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from maillage.proto.limits import MAX_MESSAGE
from maillage.proto.trust.identity import TlsIdentity, target_name

__all__ = ["FLOW_WINDOW", "MAX_CONCURRENT_STREAMS", "channel_options", "open_channel", "open_blocking_channel",
           "new_server", "server_options", "PeerChannels"]

KEEPALIVE_MS = 30_000

#: HTTP/2 flow-control window of every stream and connection, fixed (gRPC's BDP probing off). Why:
#: with probing on, a connection that received data sends a PING to measure the bandwidth-delay
#: product, and on a mesh connection that carries a call every few tens of seconds (gossip, repair)
#: nearly every call paid one more PING and its ack, woken on both sides: 13 % of an idle node's CPU
#: at 40 sites (6.54 -> 5.71 ms/s, benchmarks/RESULTS.md). A fixed 8 MiB window, as Go and Java
#: gRPC run with auto-tuning off, keeps a 4 MiB chunk in flight on one window and 400 MB/s per
#: stream at a 20 ms round trip; on loopback PUT/GET 1 MiB and 64 MiB were unchanged.
FLOW_WINDOW = 8 * 1024 * 1024
_FLOW_CONTROL = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", FLOW_WINDOW))


Options = tuple[tuple[str, int | str], ...]


def channel_options(*, max_receive: int = MAX_MESSAGE) -> Options:
    return (
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.enable_retries", 0),
        # A peer that refused a connection (not started yet, restarting) is retried within a second
        # or two, not after gRPC's default backoff of up to two minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        # Despite its name, gRPC core takes this as the time a connection attempt (TCP, TLS, the
        # server's SETTINGS) may take: at 200 ms, a 100-node mesh on 2 cores (load average 40) saw
        # calls to busy nodes fail at once with "timed out before receiving SETTINGS frame"
        # (`maillage status` exit 1, audit "NOT fully replicated" with 0 items short). A refused
        # connection still fails at once; a call's own deadline still bounds it.
        ("grpc.min_reconnect_backoff_ms", 5000),
        # Each channel its own connections: gRPC otherwise shares them (and their backoff) between
        # channels to one address, so gossip's or repair's failures would stall client requests.
        ("grpc.use_local_subchannel_pool", 1),
        # A WAN link that silently dropped the connection is noticed within a minute, not hours.
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", 10_000),
        *_FLOW_CONTROL,
    )


#: Streams one connection may have open at once (a caller opening more waits for one to end).
MAX_CONCURRENT_STREAMS = 64


def server_options(*, max_receive: int = MAX_MESSAGE) -> Options:
    return (
        ("grpc.max_send_message_length", MAX_MESSAGE),
        # One message holds at most one frame of a chunk (or a PutObject piece); larger is refused
        # by gRPC before the handler runs (RESOURCE_EXHAUSTED).
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        # Accept the clients' keepalive pings (the default minimum interval is 5 minutes).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
        ("grpc.keepalive_permit_without_calls", 1),
        *_FLOW_CONTROL,
    )


def _secure_options(peer: str | None, max_receive: int) -> Options:
    # The server's certificate must name this node (or be some node of the cluster when `peer` is
    # None); the CA check comes from the credentials.
    return (*channel_options(max_receive=max_receive), ("grpc.ssl_target_name_override", target_name(peer)))


def open_channel(address: str, *, tls: TlsIdentity | None, peer: str | None = None,
                 max_receive: int = MAX_MESSAGE) -> grpc.aio.Channel:
    """An asyncio channel to a node ("host:port"), mutual TLS with `tls`."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=channel_options(max_receive=max_receive))
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=_secure_options(peer, max_receive))


#: Seconds the calls still on a channel put aside (it could not connect, or its node moved) get
#: before it is closed: as long as a node's longest call to a peer (a chunk's, 60 s).
CLOSE_GRACE = 60.0


class PeerChannels:
    """A node's channels to its peers: one per peer node, opened on first use, reopened when the
    node's address changes, and closed as soon as it cannot connect.

    Why close. gRPC retries a channel's connection every 0.2-2 s (the reconnect backoff) for as
    long as the channel lives, and each attempt costs about 0.6 ms of CPU here even when it is
    refused at once: 50 stopped peers cost a node 18 ms/s of CPU, most of an idle node's budget,
    and a 100-node mesh starting up (half its nodes not listening yet) saturated two cores. So a
    call that failed UNAVAILABLE on a channel in TRANSIENT_FAILURE puts that channel aside (`failed`),
    and the next call to that peer opens a fresh one, which tries at once: a peer is tried as often
    as something wants to reach it (the gossip's probes), and a restarted peer is reached without
    waiting out a backoff."""

    def __init__(self, address_of: Callable[[str], str], tls: TlsIdentity | None) -> None:
        self._address_of = address_of
        self._tls = tls
        self._open: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, node_id: str) -> grpc.aio.Channel:
        """The channel to `node_id` (mutual TLS, the server's certificate must name that node)."""
        address = self._address_of(node_id)
        entry = self._open.get(node_id)
        if entry is None or entry[0] != address:
            if entry is not None:
                self._put_aside(entry[1])
            entry = self._open[node_id] = (address, open_channel(address, tls=self._tls, peer=node_id))
        return entry[1]

    def failed(self, node_id: str, channel: grpc.aio.Channel, code: grpc.StatusCode | None) -> None:
        """A call on `channel` to `node_id` failed with `code`: if the channel cannot connect, put
        it aside and close it (at once: a channel that cannot connect has no call left to wait for)."""
        entry = self._open.get(node_id)
        if (code is grpc.StatusCode.UNAVAILABLE and entry is not None and entry[1] is channel
                and channel.get_state(try_to_connect=False) is grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            del self._open[node_id]
            self._put_aside(channel)

    def _put_aside(self, channel: grpc.aio.Channel) -> None:
        closing = asyncio.get_running_loop().create_task(channel.close(CLOSE_GRACE))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def __len__(self) -> int:
        return len(self._open)

    async def close(self) -> None:
        for _, channel in self._open.values():
            await channel.close(None)
        self._open.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)


def open_blocking_channel(address: str, *, tls: TlsIdentity | None, peer: str | None = None,
                          max_receive: int = MAX_MESSAGE) -> grpc.Channel:
    """A blocking channel (thread-safe) to a node, for code outside an event loop."""
    if tls is None:
        return grpc.insecure_channel(address, options=channel_options(max_receive=max_receive))
    return grpc.secure_channel(address, tls.channel_credentials(), options=_secure_options(peer, max_receive))


def new_server(address: str, *, tls: TlsIdentity | None,
               interceptors: tuple[grpc.aio.ServerInterceptor[Any, Any], ...] = (),
               max_receive: int = MAX_MESSAGE, options: Options = ()) -> tuple[grpc.aio.Server, int]:
    """An asyncio server listening on `address` (not started yet), and the port it bound. With
    `tls`, only clients presenting a certificate of the cluster's CA complete the handshake;
    `max_receive` bounds what one message of a caller may make the server hold; `options` add to
    (or replace, by name) `server_options`, e.g. a node's connection caps and deadlines."""
    merged = dict(server_options(max_receive=max_receive))
    merged.update(options)
    server = grpc.aio.server(options=tuple(merged.items()), interceptors=interceptors)
    port = (server.add_insecure_port(address) if tls is None
            else server.add_secure_port(address, tls.server_credentials()))
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port
