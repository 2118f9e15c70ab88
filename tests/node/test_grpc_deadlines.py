"""The gRPC port's call deadlines in-process (`node/rpc/deadlines.py`), with short bounds.

A gRPC server in the test's event loop serves a few raw-bytes methods behind the `Deadlines`
interceptor; the callers are channels of this process. `tests/cluster/test_grpc_port.py` checks the
connection caps and deadlines, and these bounds, on a real node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from maillage.node.rpc.deadlines import BULK_METHODS, Deadlines, GrpcLimits
from maillage.proto import bulk
from maillage.proto.channels import new_server

from .conftest import run

WAIT, CEILING, BULK = 0.4, 1.5, 3.0
LIMITS = GrpcLimits(message_timeout=WAIT, call_timeout=CEILING, bulk_timeout=BULK)
SLACK = 1.0  # what a loaded machine may add to a bound


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    context.set_trailing_metadata((("x-echo", "yes"),))
    return request


async def work(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """The handler's own work, `request` seconds of it (no wait for the caller)."""
    await asyncio.sleep(float(request))
    return b"done"


async def own_timeout(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise TimeoutError("a peer of the handler did not answer")


async def total(messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    count = 0
    async for message in messages:
        count += len(message)
    return str(count).encode()


def handlers() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler("t.T", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Work": grpc.unary_unary_rpc_method_handler(work),
        "OwnTimeout": grpc.unary_unary_rpc_method_handler(own_timeout),
        "Total": grpc.stream_unary_rpc_method_handler(total),
    })


async def serving(limits: GrpcLimits = LIMITS) -> tuple[grpc.aio.Server, grpc.aio.Channel, Deadlines]:
    deadlines = Deadlines(limits)
    server, port = new_server("127.0.0.1:0", tls=None, interceptors=(deadlines,), options=limits.server_options())
    server.add_generic_rpc_handlers((handlers(),))
    await server.start()
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{port}"), deadlines


async def never() -> AsyncIterator[bytes]:
    await asyncio.Event().wait()
    yield b""  # never reached


async def then_nothing(*messages: bytes) -> AsyncIterator[bytes]:
    for message in messages:
        yield message
    await asyncio.Event().wait()


async def trickle(every: float) -> AsyncIterator[bytes]:
    while True:
        yield b"x"
        await asyncio.sleep(every)


async def ended(call: grpc.aio.Call, within: float = BULK + SLACK) -> tuple[grpc.StatusCode, str, float]:
    """How the node ended `call` (which sets no deadline of its own): its status, details, and when.
    A call still open after `within` seconds fails the test (and is cancelled)."""
    start = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        try:
            async with asyncio.timeout(within):
                await call
        except TimeoutError:
            call.cancel()
            pytest.fail(f"the node still held the call after {within:g} s")
    return err.value.code(), err.value.details() or "", time.monotonic() - start


def test_a_unary_call_whose_request_never_comes_is_ended_and_honest_calls_pass() -> None:
    async def main() -> None:
        server, channel, deadlines = await serving()
        try:
            # The same bytes on the wire as a unary call whose client never sends its request (a
            # client without a deadline: gRPC alone would hold it forever).
            code, details, took = await ended(channel.stream_unary("/t.T/Echo")(never()))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
            assert "no message from the caller for 0.4 s" in details
            assert WAIT - 0.05 <= took <= WAIT + SLACK, took
            assert deadlines.ended == 1
            # Honest unary calls: their answer and trailing metadata as the handler made them.
            call = channel.unary_unary("/t.T/Echo")(b"hello")
            assert await call == b"hello"
            assert ("x-echo", "yes") in tuple(await call.trailing_metadata())
            # A request stream that ends without a message is no request.
            code, details, _ = await ended(channel.stream_unary("/t.T/Echo")(then_nothing_and_end()))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        finally:
            await channel.close()
            await server.stop(0)
    run(main())


async def then_nothing_and_end() -> AsyncIterator[bytes]:
    return
    yield b""


def test_a_stream_that_stops_sending_is_ended_but_the_handlers_own_work_is_not_counted() -> None:
    async def main() -> None:
        server, channel, _ = await serving()
        try:
            assert await channel.stream_unary("/t.T/Total")(then_nothing_and_end()) == b"0"

            async def three() -> AsyncIterator[bytes]:
                for piece in (b"ab", b"cde", b"f"):
                    yield piece
            assert await channel.stream_unary("/t.T/Total")(three()) == b"6"

            code, details, took = await ended(channel.stream_unary("/t.T/Total")(then_nothing(b"first", b"second")))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
            assert "no message from the caller" in details
            assert WAIT - 0.05 <= took <= WAIT + SLACK, took
            # Three times the message wait of the handler's own work, under the ceiling: served.
            assert await channel.unary_unary("/t.T/Work")(str(3 * WAIT).encode()) == b"done"
        finally:
            await channel.close()
            await server.stop(0)
    run(main())


def test_every_call_has_a_ceiling_whatever_the_client_sets() -> None:
    async def main() -> None:
        server, channel, _ = await serving()
        try:
            # A stream that keeps sending, just often enough never to stall, ends at the ceiling.
            code, details, took = await ended(channel.stream_unary("/t.T/Total")(trickle(WAIT / 4)))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
            assert "longer than its 1.5 s bound" in details
            assert CEILING - 0.05 <= took <= CEILING + SLACK, took
            # So does a handler's own work past it, with a client deadline far beyond.
            code, details, took = await ended(channel.unary_unary("/t.T/Work")(b"30", timeout=60))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
            assert CEILING - 0.05 <= took <= CEILING + SLACK, took
            # A handler's own TimeoutError is its own error, not a deadline of the port.
            code, details, _ = await ended(channel.unary_unary("/t.T/OwnTimeout")(b""))
            assert code == grpc.StatusCode.UNKNOWN, (code, details)
        finally:
            await channel.close()
            await server.stop(0)
    run(main())


def test_bulk_methods_have_the_long_ceiling() -> None:
    assert {bulk.PUT_OBJECT, bulk.PUT_CHUNK, bulk.GET_CHUNK, bulk.PUT_SMALL_OBJECT} <= BULK_METHODS
    assert LIMITS.ceiling(bulk.PUT_OBJECT) == BULK
    assert LIMITS.ceiling("/maillage.v1.Cluster/Heartbeat") == CEILING
    options = dict(GrpcLimits(max_connections=7, handshake_timeout=2.5).server_options())
    assert options["grpc.max_allowed_incoming_connections"] == 7
    assert options["grpc.server_handshake_timeout_ms"] == 2500
