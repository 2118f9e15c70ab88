"""The one place gRPC channels and servers are configured: nodes, SDK, admin API and benchmarks.

Every connection of the mesh gets the same message limits, keepalive and reconnect backoff from
here, and (with `credentials`) the same transport security, so a change to how maillage talks is
made once. Blocking channels exist for the admin commands, which run outside an event loop.
"""

from __future__ import annotations

import grpc
import grpc.aio

from .limits import MAX_MESSAGE

__all__ = ["channel_options", "open_channel", "open_blocking_channel", "new_server", "server_options"]

KEEPALIVE_MS = 30_000


def channel_options(*, max_receive: int = MAX_MESSAGE) -> tuple[tuple[str, int], ...]:
    return (
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.enable_retries", 0),
        # A peer that refused a connection (not started yet, restarting) is retried within a second
        # or two, not after gRPC's default backoff of up to two minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        # Each channel its own connections: gRPC otherwise shares them (and their backoff) between
        # channels to one address, so gossip's or repair's failures would stall client requests.
        ("grpc.use_local_subchannel_pool", 1),
        # A WAN link that silently dropped the connection is noticed within a minute, not hours.
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", 10_000),
    )


def server_options() -> tuple[tuple[str, int], ...]:
    return (
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        # Accept the clients' keepalive pings (the default minimum interval is 5 minutes).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
        ("grpc.keepalive_permit_without_calls", 1),
    )


def open_channel(address: str, *, credentials: grpc.ChannelCredentials | None = None,
                 max_receive: int = MAX_MESSAGE) -> grpc.aio.Channel:
    """An asyncio channel to a node ("host:port")."""
    options = channel_options(max_receive=max_receive)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


def open_blocking_channel(address: str, *, credentials: grpc.ChannelCredentials | None = None,
                          max_receive: int = MAX_MESSAGE) -> grpc.Channel:
    """A blocking channel (thread-safe) to a node, for code outside an event loop."""
    options = channel_options(max_receive=max_receive)
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)


def new_server(address: str, *, credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.aio.Server, int]:
    """An asyncio server listening on `address` (not started yet), and the port it bound."""
    server = grpc.aio.server(options=server_options())
    port = (server.add_insecure_port(address) if credentials is None
            else server.add_secure_port(address, credentials))
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port
