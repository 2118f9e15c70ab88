"""A node's channels to its peers (`proto.channels.PeerChannels`), against real gRPC servers of
this process: a channel that cannot connect is closed, not left retrying its connection every
two seconds for ever, and the next call reaches a peer that came back at once."""

from __future__ import annotations

import grpc
import grpc.aio

from maillage.proto.channels import PeerChannels, new_server
from maillage.testing.ports import free_port

from .conftest import run


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "busy")
    return b""


def handlers() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler("t.T", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
    })


async def serve(port: int) -> grpc.aio.Server:
    server, _ = new_server(f"127.0.0.1:{port}", tls=None)
    server.add_generic_rpc_handlers((handlers(),))
    await server.start()
    return server


async def call(channels: PeerChannels, node_id: str, method: str = "Echo") -> grpc.StatusCode:
    """One call to `node_id` through `channels`, reporting its failure as `GrpcTransport` does."""
    channel = channels.get(node_id)
    try:
        await channel.unary_unary(f"/t.T/{method}")(b"hi", timeout=2)
    except grpc.aio.AioRpcError as err:
        channels.failed(node_id, channel, err.code())
        return err.code()
    return grpc.StatusCode.OK


def test_a_channel_that_cannot_connect_is_closed_and_the_next_call_reaches_the_peer_once_back():
    async def go() -> None:
        port = free_port()
        channels = PeerChannels(lambda node_id: f"127.0.0.1:{port}", tls=None)
        first = channels.get("b")
        assert await call(channels, "b") is grpc.StatusCode.UNAVAILABLE   # nothing listens yet
        assert len(channels) == 0                                         # put aside, not retrying
        server = await serve(port)
        try:
            second = channels.get("b")
            assert second is not first
            assert await call(channels, "b") is grpc.StatusCode.OK        # at once, no backoff to wait out
            assert channels.get("b") is second                            # a working channel is kept
        finally:
            await server.stop(None)
            await channels.close()

    run(go())


def test_a_peer_answering_unavailable_keeps_its_channel():
    async def go() -> None:
        port = free_port()
        server = await serve(port)
        channels = PeerChannels(lambda node_id: f"127.0.0.1:{port}", tls=None)
        try:
            channel = channels.get("b")
            assert await call(channels, "b", "Refuse") is grpc.StatusCode.UNAVAILABLE   # its answer, not the link
            assert channels.get("b") is channel and len(channels) == 1
        finally:
            await server.stop(None)
            await channels.close()

    run(go())


def test_a_node_given_a_new_address_gets_a_new_channel():
    async def go() -> None:
        addresses = {"b": "127.0.0.1:1"}
        channels = PeerChannels(addresses.__getitem__, tls=None)
        old = channels.get("b")
        addresses["b"] = "127.0.0.1:2"
        assert channels.get("b") is not old and len(channels) == 1
        await channels.close()

    run(go())
