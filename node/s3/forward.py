"""Forwarding: a request for a bucket this node is outside of, served by a node inside its policy.

A node outside a bucket's residency policy (a German node, a France-only bucket) serves none of the
bucket's data: its peers refuse it as coordinator, and nothing of the bucket may rest on it, not
even a key name in a log line. An S3 client does not know the mesh's layout, so the door it reached
passes the request on, as it is, to the S3 door of a node inside the policy, and passes the answer
back:

* only after the request is authenticated here (SigV4 verified and admitted by the rule table, in
  `server.S3Server`), so a stranger cannot use a node as a relay;
* as it is: method, path and query (still percent-encoded), every end-to-end header (Host and
  Authorization included, so the target verifies the same SigV4 itself), the body streamed without
  being held whole; the answer's status, headers and body streamed back the same way;
* over TLS to the target's S3 door, verified with the cluster CA and the target's node name
  (`<id>.node.maillage`, which the node certificate holds: a door serving another certificate
  presents its node's to a connection asking for that name, `server.tls_context`); where that door
  listens comes from the target itself (GetInfo's `s3_address`, over the node's mutual-TLS gRPC
  channel, kept `ADDRESS_TTL` seconds);
* to the first target that takes the connection, in the order given (nodes believed up first),
  the first `TAKING_TURNS` taking turns so the load spreads; a target that failed is tried last
  for `FAILED_FOR` seconds, and the next one is tried only while no byte of the body was sent.
  When none answers: 503 ServiceUnavailable saying so;
* once: a forwarded request carries `FORWARDED_BY` (the forwarding node's id), and a door never
  forwards such a request again; a node that is outside too answers it 503 instead of looping. The
  answer carries `FORWARDED_TO`, the node that served it;
* bounded: at most `ForwardLimits.per_target` connections to one target (under the target door's
  per-address cap) and `total` in all; a connection (pool wait, TCP and TLS) within
  `connect_timeout`, a client body silent for `payload.BODY_IDLE_TIMEOUT` ends the request, an
  answer silent for `response_idle` too.

Nothing here logs a path, a query or an error's text (aiohttp's errors can quote the URL): the
forwarding node is outside the policy, so the key name must not rest there, logs included.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp
import grpc
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from maillage.node.runtime import request_ids
from maillage.node.s3.errors import S3Error
from maillage.node.s3.payload import BODY_IDLE_TIMEOUT
from maillage.node.trust.layout_state import LayoutState
from maillage.proto import pb, rpc
from maillage.proto.channels import PeerChannels
from maillage.proto.trust.identity import TlsIdentity, target_name

__all__ = ["FORWARDED_BY", "FORWARDED_TO", "REQUEST_ID_HEADER", "ForwardLimits", "Forwarder"]

log = logging.getLogger(__name__)

#: The header a forwarded request carries: the id of the node that forwarded it. A door never
#: forwards a request that has it (so two nodes can never pass a request back and forth).
FORWARDED_BY = "X-Maillage-Forwarded-By"

#: The header of a forwarded answer: the id of the node that served it (so a client, or a test,
#: can tell a forwarded answer from one of the door it reached).
FORWARDED_TO = "X-Maillage-Forwarded-To"
# The forwarding door's request id, which the serving door adopts (one id in both nodes' logs).
REQUEST_ID_HEADER = "X-Maillage-Request-Id"

#: Headers of one connection, never passed on (RFC 9110 7.6.1), in either direction.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})

ADDRESS_TTL = 10.0     # seconds a target's S3 address (from its GetInfo) is kept
INFO_TIMEOUT = 5.0     # seconds for a target's GetInfo
FAILED_FOR = 5.0       # seconds a target that failed is tried after the others
READ_PIECE = 256 * 1024
TAKING_TURNS = 3       # the first targets given, which take turns (the rest only when they fail)


@dataclass(frozen=True)
class ForwardLimits:
    per_target: int = 32            # connections to one target's door (its per-address cap is 64)
    total: int = 256                # connections to all targets (the door handles 256 requests at once)
    connect_timeout: float = 10.0   # seconds for a pooled connection, or a new one's TCP and TLS handshakes
    response_idle: float = 60.0     # seconds the target's answer may send nothing (its own deadlines are 30 s)


class _Body:
    """The request's body as sent to one target after the other: `started` once a byte of it was
    taken from the client, after which it cannot be sent again."""

    def __init__(self, request: web.Request, buffered: bytes | None) -> None:
        self._request = request
        self._buffered = buffered
        self.started = False
        self.error: Exception | None = None  # the client's side failed (its body stopped or broke)

    def data(self) -> bytes | AsyncIterator[bytes] | None:
        if self._buffered is not None:
            return self._buffered
        if not self._request.body_exists:
            return None
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        self.started = True
        content = self._request.content
        while True:
            try:
                async with asyncio.timeout(BODY_IDLE_TIMEOUT):
                    piece = await content.readany()
            except TimeoutError:
                self.error = S3Error("RequestTimeout", f"no byte of the request body arrived for "
                                                       f"{BODY_IDLE_TIMEOUT:g} s; it was not passed on whole")
                raise self.error from None
            except Exception as exc:  # the client went away
                self.error = exc
                raise
            if not piece:
                return
            yield piece

    @property
    def retryable(self) -> bool:
        return self._buffered is not None or not self.started


class Forwarder:
    """Passes requests on to the S3 doors of other nodes (see the module's docstring)."""

    def __init__(self, node_id: str, layout: LayoutState, tls: TlsIdentity,
                 limits: ForwardLimits | None = None) -> None:
        self.node_id = node_id
        self.limits = limits or ForwardLimits()
        self._client_tls = ssl.create_default_context(cadata=tls.ca_pem.decode())
        self._client_tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._session: aiohttp.ClientSession | None = None
        self._channels = PeerChannels(lambda node_id: layout.current.node(node_id).address, tls)
        self._addresses: dict[str, tuple[float, str]] = {}  # node id -> (until, S3 address or "")
        self._failed: dict[str, float] = {}                  # node id -> failed until
        self._turn = itertools.count()
        self.forwarded = 0  # requests passed on (for tests and status)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            limits = self.limits
            connector = aiohttp.TCPConnector(limit=limits.total, limit_per_host=limits.per_target,
                                             ssl=self._client_tls, keepalive_timeout=15.0)
            # No total deadline (a large object streams for as long as it takes); the idle ones bound it.
            timeout = aiohttp.ClientTimeout(total=None, connect=limits.connect_timeout,
                                            sock_read=limits.response_idle)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                                  cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._channels.close()

    # ----- where the targets' doors are ----------------------------------------------------------

    async def s3_address(self, node_id: str) -> str:
        """The S3 address node `node_id` gives in its GetInfo ("" when it serves no S3 or does not
        answer), kept ADDRESS_TTL seconds."""
        now = time.monotonic()
        known = self._addresses.get(node_id)
        if known is not None and known[0] > now:
            return known[1]
        address = ""
        try:
            channel = self._channels.get(node_id)
            try:
                info = await rpc.ClusterStub(channel).GetInfo(pb.GetInfoRequest(), timeout=INFO_TIMEOUT)
            except grpc.RpcError as err:
                self._channels.failed(node_id, channel, err.code())
                raise
            address = info.s3_address
        except grpc.RpcError as err:
            log.warning("S3 forwarding: node %s did not say where its S3 door is (%s)", node_id, err.code().name)
        except Exception as err:  # e.g. a node the layout no longer has: the next target is tried
            log.warning("S3 forwarding: node %s did not say where its S3 door is (%s)", node_id, type(err).__name__)
        # An answer is kept ADDRESS_TTL; no answer, FAILED_FOR (a down node is not asked per request).
        self._addresses[node_id] = (now + (ADDRESS_TTL if address else FAILED_FOR), address)
        return address

    def _order(self, targets: Sequence[str]) -> list[str]:
        """The targets in the order given (believed up first), the first `TAKING_TURNS` of them
        rotated by one per request (the load spreads), those that failed lately last."""
        targets = [t for t in dict.fromkeys(targets) if t != self.node_id]
        head, rest = targets[:TAKING_TURNS], targets[TAKING_TURNS:]
        if head:
            start = next(self._turn) % len(head)
            head = head[start:] + head[:start]
        now = time.monotonic()
        return sorted(head + rest, key=lambda t: self._failed.get(t, 0.0) > now)

    # ----- passing a request on ------------------------------------------------------------------

    async def forward(self, request: web.Request, targets: Sequence[str], *, policy: str = "",
                      body: bytes | None = None) -> web.StreamResponse:
        """Send `request` to the S3 door of the first of `targets` that takes it, and stream its
        answer back. `body`: the request's body when a handler already read it (CreateBucket's
        LocationConstraint); otherwise it is streamed from the client. 503 when no target answers."""
        source = _Body(request, body)
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        headers.popall(FORWARDED_BY, None)
        headers[FORWARDED_BY] = self.node_id
        headers.popall(REQUEST_ID_HEADER, None)
        if request_ids.current():
            headers[REQUEST_ID_HEADER] = request_ids.current()
        problems: list[str] = []
        for node_id in self._order(targets):
            address = await self.s3_address(node_id)
            if not address:
                problems.append(f"{node_id}: no S3 door known")
                continue
            try:
                upstream = await self._client().request(
                    request.method, URL(f"https://{address}{request.raw_path}", encoded=True), headers=headers,
                    data=source.data(), server_hostname=target_name(node_id), allow_redirects=False,
                    skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))
            except (aiohttp.ClientError, OSError, TimeoutError, S3Error) as exc:
                if source.error is not None:  # the client's side, not the target's (aiohttp wraps it)
                    raise source.error from None
                self._failed[node_id] = time.monotonic() + FAILED_FOR
                problems.append(f"{node_id}: {_describe(exc)}")
                log.warning("S3 forwarding: %s request for policy %s to node %s at %s failed: %s",
                            request.method, policy or "?", node_id, address, _describe(exc))
                if not source.retryable:
                    break
                continue
            self._failed.pop(node_id, None)
            self.forwarded += 1
            try:
                return await self._relay(request, upstream, node_id)
            finally:
                upstream.release()
        sent = "" if source.retryable else "; part of the body was sent: some of it may have been written"
        raise S3Error("ServiceUnavailable",
                      f"node {self.node_id} is outside this bucket's residency policy {policy or ''} and forwards "
                      f"its requests to a node inside it, but none answered ({'; '.join(problems) or 'no node'}"
                      f"{sent}); retry later or use a door of a node inside the policy")

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse, node_id: str) -> web.StreamResponse:
        """The target's answer, streamed to the client as it comes. A target that stops half way
        through its body: the client's connection is closed (its length falls short, as it would
        had the target closed it), and no error document can follow the bytes already sent."""
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        response.headers[FORWARDED_TO] = node_id
        await response.prepare(request)
        try:
            async for piece in upstream.content.iter_chunked(READ_PIECE):
                await response.write(piece)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("S3 forwarding: node %s stopped answering a %s request half way (%s)", node_id,
                        request.method, _describe(exc))
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response


def _describe(exc: BaseException) -> str:
    """An error in words without its text, which for aiohttp's can quote the request's URL (its
    key): "Can not write request body for https://.../bucket/key" is an OSError's strerror."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "its certificate is not the node's (cluster CA and node name)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({_os_error(exc.os_error)})"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return _os_error(exc)
    return type(exc).__name__


def _os_error(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__
