"""The gRPC door's one measuring point: a server interceptor, first of all, around every call.

It sees every call the node serves, refused by the gate or ended by a deadline included: its
outcome (the gRPC status name), its time from arrival to answer, and the bytes of its messages as
they cross the wire (counted in the handler's (de)serializers, so nothing is parsed twice). Calls
to methods the node does not serve are not counted (gRPC answers UNIMPLEMENTED; a caller could
otherwise make up a series per name). The method label is `Service/Method` from the node's own
registry of handlers, never text of the caller's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from maillage.node.metrics.registry import MethodMetrics, Requests

__all__ = ["Measured"]

_PREFIX = "/maillage.v1."


class Measured(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, requests: Requests) -> None:
        self._requests = requests
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        name = method[len(_PREFIX):] if method.startswith(_PREFIX) else method.lstrip("/")
        wrapped = _measured(handler, self._requests.method("grpc", name))
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _outcome(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if code is None:
        return "UNKNOWN"
    return getattr(code, "name", None) or str(code)


def _measured(handler: grpc.RpcMethodHandler, m: MethodMetrics) -> grpc.RpcMethodHandler:
    """The same handler, timed and counted. The handlers below (deadlines, gate) serve every method
    as a client stream of raw messages; a unary handler is measured the same way."""
    received, sent = m.received.inc, m.sent.inc
    parse = handler.request_deserializer
    render = handler.response_serializer

    def deserialize(raw: bytes) -> Any:
        received(len(raw))
        return raw if parse is None else parse(raw)

    def serialize(response: Any) -> bytes:
        data = response if render is None else render(response)
        sent(len(data))
        return data

    async def timed(call: Awaitable[Any], context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            response = await call
        except asyncio.CancelledError:
            m.observe("CANCELLED", time.perf_counter() - started)
            raise
        except BaseException:
            m.observe(_outcome(context), time.perf_counter() - started)
            raise
        m.observe("OK", time.perf_counter() - started)
        return response

    if handler.stream_unary is not None:
        inner: Callable[..., Awaitable[Any]] = handler.stream_unary

        async def stream(messages: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            return await timed(inner(messages, context), context)

        return grpc.stream_unary_rpc_method_handler(stream, request_deserializer=deserialize,
                                                    response_serializer=serialize)
    if handler.unary_unary is not None:
        inner_unary: Callable[..., Awaitable[Any]] = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await timed(inner_unary(request, context), context)

        return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=deserialize,
                                                   response_serializer=serialize)
    raise TypeError(f"cannot measure {handler!r} yet: teach measured._measured its kind")
