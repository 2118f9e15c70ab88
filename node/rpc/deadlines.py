"""The gRPC port's caps and deadlines: what a caller can make the node hold, and for how long.

Every node of the layout and every holder of the shared client certificate can open connections
to a node's gRPC port, and before these bounds a connection that never spoke, or a call that never
sent its request, was held for as long as its caller liked (gRPC sets no server deadline, and a
client that sets none has none). So, as the S3 door does for its port (`node/s3/door.py`):

* **connections** (gRPC core, `GrpcLimits.server_options`): at most `max_connections` open at once,
  the excess closed as it is accepted (`grpc.max_allowed_incoming_connections`); at most
  `max_streams` calls at once on one connection (`grpc.max_concurrent_streams`; a caller opening
  more waits for one to end). gRPC core has no cap per source address: a per-address limit is the
  host firewall's (`iptables ... -m connlimit`), see ARCHITECTURE.md;
* **handshake deadline**: a connection whose TLS handshake and HTTP/2 preface are not done within
  `handshake_timeout` is closed (`grpc.server_handshake_timeout_ms`; over TLS only: gRPC does not
  enforce it on a plaintext port, which only `--insecure-plaintext` benchmarks open);
* **idle and keepalive**: a connection with no call for `idle_timeout` is closed with a GOAWAY
  (pings do not count as activity); the node pings every connection every `keepalive_time` and
  drops one whose peer does not answer within `KEEPALIVE_TIMEOUT`, so a vanished peer does not hold
  a connection its calls keep busy. `keepalive_time` is above `idle_timeout` on purpose: a
  connection at rest is closed before its first ping is due. At 60 s, a node of a 100-site mesh
  pinged its ~200 connections (one each way per peer, each used by gossip every ~100 s) and answered
  as many pings: 1.0 of its 5.4 ms/s of CPU at rest (benchmarks/RESULTS.md). A client pinging more
  often than every `MIN_PING_INTERVAL` is told to go away after `MAX_PING_STRIKES` strikes; no
  connection lives longer than `max_connection_age` (+ the bulk ceiling as grace for the calls it
  carries), a bound on whatever holds a call open;
* **calls** (`Deadlines`, a server interceptor): every call has a ceiling from its start, whatever
  the client's own deadline (`call_timeout` for control calls, `bulk_timeout` for the bulk object
  methods), and a caller that stops sending is ended: the handler waits at most `message_timeout`
  for each message of the caller, a unary call's request included (a unary method is served as a
  client stream of one message, which is the same on the wire, so the wait for its request runs
  under this bound instead of inside gRPC before any handler). The time a handler spends on its own
  work (disks, peers) does not count against `message_timeout`, only its waits for the caller. A
  call over either bound is cancelled and answered DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from maillage.proto import bulk
from maillage.proto.channels import MAX_CONCURRENT_STREAMS

__all__ = ["BULK_METHODS", "Deadlines", "GrpcLimits", "KEEPALIVE_TIMEOUT", "MAX_PING_STRIKES", "MIN_PING_INTERVAL"]

log = logging.getLogger(__name__)

#: The methods that move an object's or a chunk's bytes, or copy an object: their ceiling is
#: `GrpcLimits.bulk_timeout`; every other call is a control call (`call_timeout`).
BULK_METHODS = frozenset({bulk.PUT_OBJECT, bulk.PUT_CHUNK, bulk.GET_CHUNK, bulk.PUT_SMALL_OBJECT,
                          "/maillage.v1.Objects/CopyObject"})

KEEPALIVE_TIMEOUT = 20.0   # seconds a peer has to answer the node's keepalive ping
MIN_PING_INTERVAL = 15.0   # the clients' keepalive (channels.KEEPALIVE_MS) is every 30 s
MAX_PING_STRIKES = 2       # pings too close together before the node sends GOAWAY
LOG_EVERY = 10.0           # seconds between two log lines about calls ended by a deadline


@dataclass(frozen=True)
class GrpcLimits:
    max_connections: int = 4096          # open at once; more are closed as they are accepted
    max_streams: int = MAX_CONCURRENT_STREAMS  # calls at once on one connection
    handshake_timeout: float = 5.0       # seconds for TLS and the HTTP/2 preface
    idle_timeout: float = 120.0          # seconds a connection may carry no call before it is closed
    keepalive_time: float = 300.0        # seconds between the node's pings on a connection
    max_connection_age: float = 3600.0   # seconds before a connection is asked to go (GOAWAY)
    message_timeout: float = 60.0        # seconds a call waits for each message of its caller
    call_timeout: float = 120.0          # ceiling of a control call
    bulk_timeout: float = 3600.0         # ceiling of a bulk call (BULK_METHODS)

    def server_options(self) -> tuple[tuple[str, int], ...]:
        """The gRPC core arguments of the connection bounds, for `channels.new_server`."""
        ms = lambda seconds: max(1, round(seconds * 1000))  # noqa: E731
        return (
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.max_concurrent_streams", self.max_streams),
            ("grpc.server_handshake_timeout_ms", ms(self.handshake_timeout)),
            ("grpc.max_connection_idle_ms", ms(self.idle_timeout)),
            ("grpc.max_connection_age_ms", ms(self.max_connection_age)),
            ("grpc.max_connection_age_grace_ms", ms(self.bulk_timeout)),
            ("grpc.keepalive_time_ms", ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", ms(KEEPALIVE_TIMEOUT)),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", ms(MIN_PING_INTERVAL)),
            ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
            ("grpc.keepalive_permit_without_calls", 1),
        )

    def ceiling(self, method: str) -> float:
        return self.bulk_timeout if method in BULK_METHODS else self.call_timeout

    def describe(self) -> str:
        return (f"at most {self.max_connections} connections, {self.max_streams} calls each; handshake "
                f"{self.handshake_timeout:g} s, idle {self.idle_timeout:g} s, message wait "
                f"{self.message_timeout:g} s, calls {self.call_timeout:g} s (bulk {self.bulk_timeout:g} s)")


class Deadlines(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The interceptor that bounds every call (see the module's docstring). Put it first, before
    the gate, so its bounds cover the gate's own wait for a stream's first message."""

    def __init__(self, limits: GrpcLimits) -> None:
        self.limits = limits
        self.ended = 0  # calls ended by a deadline since start
        self._logged = -LOG_EVERY
        self._logged_count = 0
        # method -> (the handler the next interceptor gave, its bounded form), rebuilt if it changes
        self._bounded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        cached = self._bounded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        bounded = _bounded(handler, _Bound(method, self.limits.ceiling(method), self.limits.message_timeout, self))
        self._bounded[method] = (handler, bounded)
        return bounded

    def _note(self, method: str, why: str) -> None:
        self.ended += 1
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY:
            since = self.ended - self._logged_count
            log.info("ended %s: %s (%d call%s ended by a deadline in the last %g s)", method, why, since,
                     "" if since == 1 else "s", LOG_EVERY)
            self._logged, self._logged_count = now, self.ended


_END = object()  # the caller's stream ended


@dataclass(frozen=True)
class _Bound:
    method: str
    ceiling: float
    message_wait: float
    owner: Deadlines

    async def ended(self, watch: _Watch, context: grpc.aio.ServicerContext) -> None:
        """Answer a call `watch` ended: DEADLINE_EXCEEDED, saying which bound."""
        if watch.stalled:
            why = f"no message from the caller for {self.message_wait:g} s"
        else:
            why = f"the call took longer than its {self.ceiling:g} s bound on this node"
        self.owner._note(self.method, why)
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"{why}: ended")


class _Watch:
    """One call's deadlines on one lazy timer: the call's task is cancelled at its ceiling, or once
    it has waited `message_wait` for a message of the caller. The timer is armed for the earliest
    moment either could pass and re-armed when it fires early (a wait that begins at t cannot pass
    before t + message_wait), so a call costs one timer, not two per message."""

    __slots__ = ("bound", "loop", "task", "end", "waiting_since", "handle", "expired", "stalled")

    def __init__(self, bound: _Bound) -> None:
        self.bound = bound
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        now = self.loop.time()
        self.end = now + bound.ceiling
        self.waiting_since: float | None = None  # when the handler began waiting for the caller
        self.expired = self.stalled = False
        self.handle = self.loop.call_at(min(self.end, now + bound.message_wait), self._check)

    def _check(self) -> None:
        now = self.loop.time()
        since = self.waiting_since
        stalled = since is not None and now - since >= self.bound.message_wait
        if stalled or now >= self.end:
            self.expired, self.stalled = True, stalled
            self.task.cancel()
            return
        nearest = now if since is None else since
        self.handle = self.loop.call_at(min(self.end, nearest + self.bound.message_wait), self._check)

    async def next(self, messages: AsyncIterator[Any]) -> Any:
        """The caller's next message, or _END."""
        self.waiting_since = self.loop.time()
        try:
            return await anext(messages, _END)
        finally:
            self.waiting_since = None

    def ours(self) -> bool:
        """After a CancelledError: whether this watch sent it (the call is then answered), not the
        caller going away or the server stopping (which propagate)."""
        self.handle.cancel()
        if self.expired:
            self.task.uncancel()
        return self.expired


def _bounded(handler: grpc.RpcMethodHandler, bound: _Bound) -> grpc.RpcMethodHandler:
    """The same handler under `bound`; a unary one served as a client stream of one message."""
    if handler.unary_unary is not None:
        inner: Callable[..., Awaitable[Any]] = handler.unary_unary  # async under grpc.aio

        async def unary(messages: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            watch = _Watch(bound)
            try:
                request = await watch.next(messages)
                if request is _END:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call sent no request message")
                return await inner(request, context)
            except asyncio.CancelledError:
                if not watch.ours():
                    raise
            finally:
                watch.handle.cancel()
            await bound.ended(watch, context)

        return grpc.stream_unary_rpc_method_handler(unary, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)
    if handler.stream_unary is not None:
        inner_stream: Callable[..., Awaitable[Any]] = handler.stream_unary

        async def stream(messages: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            watch = _Watch(bound)

            async def bounded() -> AsyncIterator[Any]:
                while (message := await watch.next(messages)) is not _END:
                    yield message
            try:
                return await inner_stream(bounded(), context)
            except asyncio.CancelledError:
                if not watch.ours():
                    raise
            finally:
                watch.handle.cancel()
            await bound.ended(watch, context)

        return grpc.stream_unary_rpc_method_handler(stream, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)
    raise TypeError(f"no deadlines for {handler!r} yet: teach deadlines._bounded its kind")
