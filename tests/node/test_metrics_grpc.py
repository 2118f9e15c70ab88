"""The gRPC door's measuring point (`node/rpc/measured.py`) in-process: every call counted once by
method and status, bytes as on the wire, calls the deadlines end or a handler aborts included,
methods the node does not serve not counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from maillage.node.metrics.registry import NodeMetrics
from maillage.node.rpc.deadlines import Deadlines, GrpcLimits
from maillage.node.rpc.measured import Measured
from maillage.proto.channels import new_server

from .conftest import run

LIMITS = GrpcLimits(message_timeout=0.3, call_timeout=1.0, bulk_timeout=1.0)


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request * 2


async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
    return b""


async def total(messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    count = 0
    async for message in messages:
        count += len(message)
    return str(count).encode()


def test_calls_are_counted_by_method_and_status_with_their_bytes():
    metrics = NodeMetrics(process=False)

    async def main():
        server, port = new_server("127.0.0.1:0", tls=None, interceptors=(Measured(metrics.requests),
                                                                          Deadlines(LIMITS)))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("maillage.v1.T", {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
            "Total": grpc.stream_unary_rpc_method_handler(total),
        }),))
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for _ in range(3):
                    assert await channel.unary_unary("/maillage.v1.T/Echo")(b"abcd", timeout=5) == b"abcdabcd"
                try:
                    await channel.unary_unary("/maillage.v1.T/Refuse")(b"x", timeout=5)
                except grpc.aio.AioRpcError as err:
                    assert err.code() is grpc.StatusCode.PERMISSION_DENIED

                async def parts():
                    yield b"12345"
                    yield b"678"
                assert await channel.stream_unary("/maillage.v1.T/Total")(parts(), timeout=5) == b"8"

                async def stalls():
                    yield b"1"
                    await asyncio.Event().wait()
                try:
                    await channel.stream_unary("/maillage.v1.T/Total")(stalls(), timeout=5)
                except grpc.aio.AioRpcError as err:
                    assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                try:
                    await channel.unary_unary("/maillage.v1.T/zq-made-up-name")(b"x", timeout=5)
                except grpc.aio.AioRpcError as err:
                    assert err.code() is grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(None)
    run(main())
    text = metrics.exposition().decode()
    assert 'maillage_requests_total{door="grpc",method="T/Echo",outcome="OK"} 3.0' in text
    assert 'maillage_request_bytes_received_total{door="grpc",method="T/Echo"} 12.0' in text
    assert 'maillage_response_bytes_sent_total{door="grpc",method="T/Echo"} 24.0' in text
    assert 'maillage_requests_total{door="grpc",method="T/Refuse",outcome="PERMISSION_DENIED"} 1.0' in text
    assert 'maillage_requests_total{door="grpc",method="T/Total",outcome="OK"} 1.0' in text
    assert 'maillage_requests_total{door="grpc",method="T/Total",outcome="DEADLINE_EXCEEDED"} 1.0' in text
    assert 'maillage_request_bytes_received_total{door="grpc",method="T/Total"} 9.0' in text
    assert 'maillage_request_duration_seconds_count{door="grpc",method="T/Echo"} 3.0' in text
    assert "zq-made-up-name" not in text
