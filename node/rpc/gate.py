"""The gate: every call is authenticated and checked against one rule table before any handler runs.

Every node port is mutual TLS, so the handshake already proved the caller holds a certificate of
the cluster's CA: a node certificate (naming a node id) or the shared client certificate. The gate
identifies the caller and applies the rule of the method's operation from the one table both doors
share (`maillage.node.service.rules`):

* a node certificate counts only for methods open to nodes, only if it carries the extended key
  usages node certificates are issued with (serverAuth, clientAuth), names a node of the current
  layout (a removed node's certificate, or one issued for a name the layout does not have, is
  refused) and, when the layout pins its nodes' certificate keys, has the key pinned for that node:
  a certificate made with a stolen CA key, or the one a rotation replaced, is refused. A layout that
  pins no key (a mesh from before pinning) admits any CA-issued certificate of a node id, as before;
  the node warns about it at start;
* otherwise the request must carry an access-key signature (`maillage.proto.trust.requestauth`) of an
  active key whose role allows the method's action (read, write or admin), made for this node and
  this request's bytes (for a client stream, its first message), and not seen before by this node
  (`maillage.node.trust.replays`).

A method missing from the table is refused (a new RPC cannot be served by accident); the test
`tests/cluster/test_trust.py` walks every method of the proto's services against it. The caller is
recorded for the handler (`tenancy.CALLER`), which applies the bucket-level rules. A refusal is
UNAUTHENTICATED (no or bad credentials) or PERMISSION_DENIED (valid credentials, not allowed), with
a clear message and the `PermissionDenied` reason; secrets never appear in it or in the log.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from maillage.node.errors import AccessDenied
from maillage.node.runtime import request_ids
from maillage.node.service.rules import Rule, admit, rule_of_method
from maillage.node.service.tenancy import CALLER, Caller
from maillage.node.trust.access_state import AccessState
from maillage.node.trust.layout_state import LayoutState
from maillage.node.trust.replays import ReplayCache
from maillage.placement import UnknownNode
from maillage.proto.reasons import ERROR_KEY, Reason
from maillage.proto.trust.access import KeyInfo
from maillage.proto.trust.identity import Peer, peer_of
from maillage.proto.trust.requestauth import DEFAULT_WINDOW, RequestAuthError, verify

__all__ = ["AuthGate", "REFUSAL_PREFIXES", "Refused", "TrustingGate"]

log = logging.getLogger(__name__)

# The raw bytes a request signature must cover (a unary request, a client stream's first message),
# set by `_admit` in the handler's own task for `_key`; None outside an admission, which refuses.
_SIGNED_BODY: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("signed_body", default=None)
# How long a client stream may take to send the first message its signature covers.
FIRST_MESSAGE_WAIT = 10.0


# Every refusal by the gate starts with one of these, so a caller (and a test) can tell it from a
# handler's own PERMISSION_DENIED (an unsigned layout document, another tenant's bucket).
REFUSAL_PREFIXES = {grpc.StatusCode.UNAUTHENTICATED: "not authenticated: ",
                    grpc.StatusCode.PERMISSION_DENIED: "not allowed: "}


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(REFUSAL_PREFIXES[code] + message)
        self.code = code


class AuthGate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The interceptor that wraps every handler with `check`."""

    def __init__(self, layout: LayoutState, access: AccessState, node_id: str,
                 replays: ReplayCache | None = None) -> None:
        self._layout = layout
        self._access = access
        self._node_id = node_id  # the target a request signature must name
        self._replays = replays or ReplayCache(DEFAULT_WINDOW)
        self._guarded: dict[str, grpc.RpcMethodHandler] = {}  # method -> its wrapped handler

    def check(self, method: str, context: grpc.aio.ServicerContext) -> Caller:
        """The caller of `method`, or `Refused` saying why not (the rule is `rules.OPERATIONS`')."""
        rule = rule_of_method(method)
        if rule is None:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"method {method[:120]} is not served to anyone")
        peer = peer_of(context.auth_context())
        if peer.role == "node":
            assert peer.node_id is not None
            caller = Caller(node_id=peer.node_id)
            self._admit_rule(method, rule, caller)
            self._check_pinned(peer)
            return caller
        if peer.role != "client":
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, peer.problem or "no certificate of this cluster")
        if rule.key is None:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"{method} is for nodes of the cluster only")
        caller = Caller(key=self._key(method, context))
        self._admit_rule(method, rule, caller)
        return caller

    def _check_pinned(self, peer: Peer) -> None:
        """The node certificate's id is in the current layout and its key is the one pinned for it."""
        layout = self._layout.current
        try:
            node = layout.node(peer.node_id or "")
        except UnknownNode:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"certificate of node {peer.node_id!r}, which is not in layout v{layout.version}") from None
        if node.cert_key is not None and node.cert_key != peer.key:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"certificate of node {node.id!r} has key {peer.key}, but layout v{layout.version} "
                          f"pins {node.cert_key} for that node (a certificate the admin did not pin, or one "
                          "a rotation replaced)")

    @staticmethod
    def _admit_rule(method: str, rule: Rule, caller: Caller) -> None:
        try:
            admit(method, rule, caller)
        except AccessDenied as denied:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, str(denied)) from None

    def _key(self, method: str, context: grpc.aio.ServicerContext) -> KeyInfo:
        body = _SIGNED_BODY.get()
        if body is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "no request body to check the signature against")
        metadata = [(k, v) for k, v in context.invocation_metadata() or ()]
        try:
            signed = verify(method, metadata, self._access.signing_key, node_id=self._node_id, body=body,
                            now=datetime.datetime.now(datetime.UTC))
        except RequestAuthError as err:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, err.message) from None
        seen = self._replays.admit(signed.signature, signed.when)
        if seen == "replayed":
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"this signature of access key {signed.key_id} was "
                                                           "already used on this node: every call is signed anew")
        if seen == "too_old":
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"request signed at {signed.when:%Y%m%dT%H%M%SZ} is "
                                                           "older than the signatures this node remembers (it "
                                                           "restarted since, or is busy): sign it again")
        key_id = signed.key_id
        key = self._access.key(key_id)
        if key is None:  # revoked between the two lookups
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"access key {key_id} is unknown or revoked")
        return key

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        guarded = self._guarded.get(method)
        if guarded is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None
            guarded = self._guarded[method] = _guarded(handler, functools.partial(self._admit, method))
        return guarded

    async def _admit(self, method: str, context: grpc.aio.ServicerContext, body: bytes) -> None:
        token = _SIGNED_BODY.set(body)
        try:
            CALLER.set(self.check(method, context))
        except Refused as refused:
            log.info("refused %s: %s", method, refused)
            context.set_trailing_metadata(((ERROR_KEY, Reason.PERMISSION_DENIED.value),))
            await context.abort(refused.code, str(refused))
        finally:
            _SIGNED_BODY.reset(token)  # the handler runs without the request bytes held twice


class TrustingGate(AuthGate):
    """`maillage node run --insecure-plaintext` (benchmarks only): every caller is trusted as an
    admin of one tenant, so the same handlers run without TLS or request signatures."""

    CALLER = Caller(key=KeyInfo(key_id="PLAINTEXT", tenant="plaintext", role="admin", buckets=(), revoked=False,
                                created_ms=0))

    def __init__(self) -> None:
        self._guarded = {}

    def check(self, method: str, context: grpc.aio.ServicerContext) -> Caller:
        if rule_of_method(method) is None:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"method {method[:120]} is not served to anyone")
        return self.CALLER


def _guarded(handler: grpc.RpcMethodHandler,
             admit: Callable[[grpc.aio.ServicerContext, bytes], Awaitable[None]]) -> grpc.RpcMethodHandler:
    """The same handler with `admit` run first, in the handler's own task (so the caller it records
    is visible to the handler and to nothing else), given the raw bytes a request signature covers
    (the request, or a client stream's first message), and the request parsed only after that: a
    stranger's bytes are never parsed, and a request that does not parse is INVALID_ARGUMENT with
    one log line (gRPC's own parsing would answer UNKNOWN and log a traceback)."""
    parse = handler.request_deserializer or (lambda raw: raw)
    if handler.unary_unary is not None:
        inner: Callable[..., Any] = handler.unary_unary  # an async callable under grpc.aio

        async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            _adopt_request_id(context)
            await admit(context, raw)
            return await inner(await _parsed(parse, raw, context), context)

        return grpc.unary_unary_rpc_method_handler(unary, response_serializer=handler.response_serializer)
    if handler.stream_unary is not None:
        inner_stream: Callable[..., Any] = handler.stream_unary

        async def stream(messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
            _adopt_request_id(context)
            first = await _first(messages, context)
            await admit(context, b"" if first is None else first)

            async def parsed() -> AsyncIterator[Any]:
                if first is not None:
                    yield await _parsed(parse, first, context)
                async for raw in messages:
                    yield await _parsed(parse, raw, context)
            return await inner_stream(parsed(), context)

        return grpc.stream_unary_rpc_method_handler(stream, response_serializer=handler.response_serializer)
    raise TypeError(f"the gate does not guard {handler!r} yet: teach _guarded its kind")


def _adopt_request_id(context: grpc.aio.ServicerContext) -> None:
    """The caller's request id (a peer passing on its request's, or an SDK's), or a new one."""
    for key, value in context.invocation_metadata() or ():
        if key == request_ids.METADATA_KEY:
            request_ids.adopt(value)
            return
    request_ids.adopt(None)


async def _first(messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes | None:
    """A client stream's first message (None: the stream is empty), which its signature covers;
    UNAUTHENTICATED when it takes longer than FIRST_MESSAGE_WAIT (no caller holds a stream unproven)."""
    try:
        async with asyncio.timeout(FIRST_MESSAGE_WAIT):
            return await anext(messages)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        context.set_trailing_metadata(((ERROR_KEY, Reason.PERMISSION_DENIED.value),))
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            f"{REFUSAL_PREFIXES[grpc.StatusCode.UNAUTHENTICATED]}no first message within "
                            f"{FIRST_MESSAGE_WAIT:.0f} s (the request signature covers it)")
        raise  # abort raises; this line is for the type checker


async def _parsed(parse: Callable[[bytes], Any], raw: bytes, context: grpc.aio.ServicerContext) -> Any:
    try:
        return parse(raw)
    except DecodeError as err:
        log.info("malformed request refused: %s", str(err)[:200])
        context.set_trailing_metadata(((ERROR_KEY, Reason.INVALID_REQUEST.value),))
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {str(err)[:200]}")
