"""The S3 HTTP server of a node (aiohttp, in the node's own event loop): addressing, authentication,
the one error boundary.

Addressing: path-style (`/<bucket>/<key>`) always; virtual-host-style (`<bucket>.<domain>/<key>`)
when the node is given its S3 domain (`--s3-domain`). Every request is authenticated (SigV4,
`sigv4.py`; an unsigned one is anonymous, which only a bucket's policy may let read) before
anything else, then `routes.operation` names the operation and its handler, and
the caller is admitted by the rule table both doors share. Every failure becomes S3 XML with a
request id (`x-amz-request-id`); the node's typed errors by their `Reason` (`errors.CODES`),
anything else is logged with the request id and answered InternalError without a traceback.

Connections are accepted by `door.Door`, within its caps and deadlines; requests handled at once
are capped too (503 SlowDown beyond `DoorLimits.max_requests`).

A request naming a bucket this node is outside of (the service's `route` names nodes inside its
policy, or a use case raises OutsideTerritory before the body is read) is passed on, once
authenticated and admitted here, to the S3 door of a node inside (`forward.Forwarder`). HeadBucket,
GetBucketLocation and ListBuckets are answered by any node (but an anonymous caller's, which the
bucket's policy decides on inside its territory).

TLS: the port serves HTTPS with `tls_context` (the node's certificate by default, chosen by
`bootstrap.load_s3_tls`), or plain HTTP only when the node is told `--s3-plain-http`.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from typing import TYPE_CHECKING

from aiohttp import web

from maillage.node.errors import NodeError, OutsideTerritory
from maillage.node.runtime import request_ids
from maillage.node.s3 import acl, cors, encryption, post_object, routes, sigv4, xml
from maillage.node.s3.access_log import AccessLog
from maillage.node.s3.common import Call, Services
from maillage.node.s3.door import Door, DoorLimits
from maillage.node.s3.errors import S3Error, from_exception
from maillage.node.s3.forward import FORWARDED_BY, FORWARDED_TO, REQUEST_ID_HEADER, Forwarder
from maillage.node.s3.payload import BODY_TAKEN, RAW_BODY
from maillage.node.service.rules import OPERATIONS, admit
from maillage.node.service.tenancy import Caller
from maillage.node.trust.access_state import AccessState

if TYPE_CHECKING:
    from maillage.node.metrics.registry import Requests

__all__ = ["S3Server", "tls_context"]

log = logging.getLogger(__name__)

#: Operations any node answers, inside the bucket's policy or not (they read only the record).
SERVED_ANYWHERE = frozenset({"ListBuckets", "HeadBucket", "GetBucketLocation"})
#: Key of the request's mapping: the request names a bucket this node is outside of (logs leave
#: its path out: the key name must not rest here).
OUTSIDE = web.RequestKey("outside", bool)
EXPECTED_OWNER = "x-amz-expected-bucket-owner"
KEY_ID = web.RequestKey("key_id", str)  # the access key that signed the request, for the access log
#: Key of the request's mapping: the operation its route names (the metrics' method label).
OPERATION = web.RequestKey("operation", str)
#: Operations answering with an object's state, which say it is encrypted at rest (SSE-S3).
_OBJECT_ANSWERS = frozenset({"PutObject", "CopyObject", "GetObject", "HeadObject", "CreateMultipartUpload",
                             "UploadPart", "UploadPartCopy", "CompleteMultipartUpload"})
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
#: Key of the request's mapping: the CORS headers of its answer (`s3/cors.py`).
CORS_HEADERS = web.RequestKey("cors_headers", dict)
PREFLIGHT = "PreflightCors"   # the metrics' name of a CORS preflight (an OPTIONS, outside the rule table)


def _caller(request: web.Request, verified: sigv4.Verified) -> Caller:
    """The request's caller: the key that signed it (or anonymous), with what a bucket policy's
    conditions test of its connection; for a request another door forwarded, the client's
    connection is that door's to know, not this one's: unknown (`bucket_policy.Context`)."""
    if FORWARDED_BY in request.headers:
        return Caller(key=verified.key, secure=None, source_ip=None)
    return Caller(key=verified.key, secure=request.secure, source_ip=request.remote)


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp's hook before an answer's headers go: a browser's allowed request gets CORS headers."""
    if (headers := request.get(CORS_HEADERS)) is not None:
        response.headers.update(headers)


def tls_context(cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str], *,
                node: tuple[str, str | os.PathLike[str], str | os.PathLike[str]] | None = None) -> ssl.SSLContext:
    """The server TLS context of the S3 port: the PEM certificate (chain) and its key, TLS 1.2 at
    least, no client certificate asked (S3 clients authenticate with SigV4). Raises ValueError
    naming the files when they cannot be used.

    `node` = (TLS name, certificate, key) of the node's own certificate, for a port serving another
    one (`--s3-tls-cert`, e.g. a public CA's): a connection asking for that name (SNI
    `<id>.node.maillage`, as a peer forwarding a request does: `forward.py`) gets the node's
    certificate, which the peer checks with the cluster CA; every other one gets `cert_file`."""
    context = _server_context(cert_file, key_file)
    if node is not None:
        name, node_cert, node_key = node
        own = _server_context(node_cert, node_key)

        def choose(connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
            if server_name == name:
                connection.context = own

        context.sni_callback = choose  # type: ignore[assignment]  # typeshed: SSLSocket only
    return context


def _server_context(cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_NONE
    try:
        context.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
    except (OSError, ssl.SSLError) as err:
        raise ValueError(f"S3 TLS certificate {cert_file} / key {key_file}: cannot be used "
                         f"({getattr(err, 'strerror', None) or err})") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


class S3Server:
    def __init__(self, address: str, services: Services, access: AccessState, *, domain: str = "",
                 ssl_context: ssl.SSLContext | None = None, limits: DoorLimits | None = None,
                 forwarder: Forwarder | None = None, requests: Requests | None = None,
                 access_log: AccessLog | None = None) -> None:
        self.address = address
        self.requests = requests  # None: not measured
        self.access_log = access_log
        self.forwarder = forwarder  # None: requests for buckets this node is outside of are refused (503)
        self.limits = limits or DoorLimits()
        self.door: Door | None = None
        self._in_flight = 0
        self._services = services
        self._access = access
        self._domain = domain.lower().strip(".")
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self._cors = cors.CorsCache()
        self.port = 0

    async def start(self) -> None:
        host, _, port = self.address.rpartition(":")
        # Bodies are streamed by the handlers (request.content); this bounds only what aiohttp
        # itself would buffer (request.read()/post()), which no handler uses for uploads.
        app = web.Application(client_max_size=xml.MAX_XML_BODY)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        app.on_response_prepare.append(_add_cors_headers)
        # keepalive_timeout is also aiohttp's deadline for a connection's first request line and
        # headers (and the next ones'): the header deadline of `door.py`.
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=self.limits.header_timeout)
        await runner.setup()
        self._runner = runner
        assert runner.server is not None
        self.door = Door(runner.server, self._ssl, self.limits)
        self.port = await self.door.start(host.strip("[]") or "0.0.0.0", int(port))
        log.info("S3 front door on %s (%s; at most %d connections, %d per address, %d requests at once)",
                 self.address, "TLS" if self._ssl else "plain HTTP", self.limits.max_connections,
                 self.limits.max_per_address, self.limits.max_requests)

    def advertised(self, node_address: str) -> str:
        """HOST:PORT where peers reach this door once started ("" for plain HTTP, which is never
        forwarded to): the listen host, or the host of the node's gRPC address when it listens on
        every interface."""
        if self._ssl is None or not self.port:
            return ""
        host = self.address.rpartition(":")[0]
        if host in _WILDCARD_HOSTS:
            host = node_address.rpartition(":")[0]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    async def stop(self) -> None:
        if self.door is not None:
            await self.door.stop()
            self.door = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.access_log is not None:
            self.access_log.close()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        # A door that forwarded this request named it: one id across both doors' logs.
        request_id = request_ids.adopt(request.headers.get(REQUEST_ID_HEADER) if FORWARDED_BY in request.headers
                                       else None)
        self._in_flight += 1
        try:
            if self._in_flight > self.limits.max_requests:
                raise S3Error("SlowDown", f"this node is handling {self.limits.max_requests} S3 requests "
                                          "already; retry later")
            response = await self._handle(request)
        except Exception as exc:  # the one error boundary: every failure becomes an S3 error document
            error = from_exception(exc)
            if error is None:
                if request.get(OUTSIDE):  # no path, and no error text or traceback, which may quote it
                    log.error("S3 %s for a bucket this node is outside of failed: %s (request %s)", request.method,
                              type(exc).__name__, request_id)
                else:
                    log.exception("S3 %s %s failed (request %s)", request.method, request.path, request_id)
                error = S3Error("InternalError", "the node failed to handle this request; see its log "
                                                 f"(request {request_id})")
            response = self._error_response(request, error, request_id)
        finally:
            self._in_flight -= 1
        if not response.prepared:
            response.headers["x-amz-request-id"] = request_id
            if response.status < 300 and request.get(OPERATION) in _OBJECT_ANSWERS \
                    and encryption.CUSTOMER_ALGORITHM not in response.headers:
                response.headers[encryption.HEADER] = encryption.AT_REST  # every object is, at rest
        if self.requests is not None:
            self._measure(request, response, started)
        if self.access_log is not None:
            await self._log_access(request, response, request_id, started)
        return response

    def _measure(self, request: web.Request, response: web.StreamResponse, started: float) -> None:
        """The door's one measuring point: the operation (from the rule table's vocabulary, "none"
        when refused before it was known), the HTTP status, time and the body bytes read and sent
        (an unprepared response is written after this, its size known from its body)."""
        assert self.requests is not None
        m = self.requests.method("s3", request.get(OPERATION, "none"))
        m.observe(str(response.status), time.perf_counter() - started)
        received = request.content.total_bytes  # the body as read (aws-chunked and chunked uploads have no length)
        if received:
            m.received.inc(received)
        sent = response.body_length if response.prepared else (response.content_length or 0)
        if sent:
            m.sent.inc(sent)

    async def _log_access(self, request: web.Request, response: web.StreamResponse, request_id: str,
                          started: float) -> None:
        bucket, key = self.address_of(request)
        names = None
        if bucket and not request.get(OUTSIDE) and await self._services.service.names_rest_here(bucket):
            names = (bucket, key)
        assert self.access_log is not None
        self.access_log.write(request_id=request_id, remote=request.remote, method=request.method,
                              key_id=request.get(KEY_ID, ""), status=response.status,
                              bytes_in=request.content.total_bytes,
                              bytes_out=response.body_length if response.prepared else response.content_length,
                              started=started, forwarded_to=response.headers.get(FORWARDED_TO), names=names)

    async def _preflight(self, request: web.Request) -> web.StreamResponse:
        """A browser's CORS preflight, which carries no signature (browsers send none): answered
        from the bucket's rules by a node inside its policy (forwarded there from elsewhere)."""
        request[OPERATION] = PREFLIGHT
        bucket, _ = self.address_of(request)
        if not bucket:
            raise S3Error("InvalidRequest", "a CORS preflight names a bucket")
        if targets := await self._forward_to(request, bucket):
            assert self.forwarder is not None
            return await self.forwarder.forward(request, targets)
        rules = cors.decode(await self._services.service.cors_rules(bucket))
        return web.Response(status=200, headers=cors.preflight_headers(rules, request.headers))

    async def _forward_to(self, request: web.Request, bucket: str) -> tuple[str, ...]:
        """Nodes inside the bucket's policy when this node is outside it and may forward (a request
        read before the usual forwarding: a preflight, a form upload); () to serve it here."""
        if self.forwarder is None or FORWARDED_BY in request.headers:
            return ()
        targets = await self._services.service.route(bucket)
        if targets:
            request[OUTSIDE] = True
        return targets

    async def _cors_answer(self, request: web.Request, bucket: str) -> None:
        """The Access-Control-* headers of the answer to a browser's request the bucket's rules
        allow (added as it is sent, `_add_cors_headers`); none when its rules cannot be read."""
        try:
            rules = await self._cors.rules(self._services, bucket)
        except NodeError:
            return
        rule = cors.match(rules, request.headers["Origin"], request.method)
        if rule is not None:
            request[CORS_HEADERS] = cors.answer_headers(rule, request.headers["Origin"])

    async def _check_owner(self, caller: Caller, bucket: str, expected: str) -> None:
        """`x-amz-expected-bucket-owner`: the request goes on only if the bucket's owner (its
        tenant, the ID a listing shows) is the one the client names; else 403, as S3 answers."""
        record = await self._services.service.head_bucket(caller, bucket, "GetBucketLocation")
        if record.owner != expected:
            raise S3Error("AccessDenied", "the bucket's owner is not the one x-amz-expected-bucket-owner names")

    @staticmethod
    def _error_response(request: web.Request, error: S3Error, request_id: str) -> web.Response:
        if error.status == 304:
            return web.Response(status=304, headers=error.headers)
        body = b"" if request.method == "HEAD" else xml.error_document(
            error.code, error.message, request.path, request_id)
        response = web.Response(status=error.status, body=body, content_type="application/xml",
                                headers=error.headers)
        if request.method == "HEAD":
            response.headers["x-amz-error-code"] = error.code
        return response

    def address_of(self, request: web.Request) -> tuple[str, str]:
        """(bucket, key) of a request, path-style or virtual-host-style."""
        path = request.path  # already percent-decoded by aiohttp
        host = request.host.rsplit(":", 1)[0].lower() if request.host else ""
        if self._domain and host.endswith("." + self._domain):
            return host[:-len(self._domain) - 1], path[1:]
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, key

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return await self._preflight(request)
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        # The raw (still percent-encoded) query: SigV4 decodes each parameter once itself.
        verified = sigv4.verify(request.method, request.path, request.rel_url.raw_query_string, headers,
                                self._access)
        bucket, key = self.address_of(request)
        route = routes.operation(request.method, bucket, key, request.query, request.headers)
        request[OPERATION] = route.operation
        if route.operation == "PostObject":  # signed by its form's policy: read here, by a node inside
            if targets := await self._forward_to(request, bucket):
                assert self.forwarder is not None
                return await self.forwarder.forward(request, targets)
            verified = await post_object.authenticate(request, self._access, bucket)
        if route.operation in _OBJECT_ANSWERS or route.operation in encryption.TAKES_CUSTOMER_KEY:
            # SSE-KMS, SSE-C where not served or over plain HTTP: refused before anything moves
            encryption.check_request(request.headers, route.operation, secure=request.secure)
        caller = _caller(request, verified)
        request[KEY_ID] = verified.key.key_id if verified.key is not None else ""
        admit(route.operation, OPERATIONS[route.operation], caller)  # the rule table both doors share
        if route.operation in acl.TAKES_ACL:
            acl.check_request(request.headers)  # public-read and grants: refused, never ignored
        call = Call(request=request, caller=caller, bucket=bucket, key=key, auth=verified)
        if bucket and EXPECTED_OWNER in request.headers:
            await self._check_owner(caller, bucket, request.headers[EXPECTED_OWNER])
        # A request another door forwarded is never forwarded again: if this node is outside the
        # bucket's policy too, the service's OutsideTerritory answers it (503), no loop.
        # An anonymous caller's HeadBucket too: only nodes inside read the policy deciding on it.
        forwarding = (self.forwarder is not None and bool(bucket) and FORWARDED_BY not in request.headers
                      and (route.operation not in SERVED_ANYWHERE or caller.anonymous))
        if forwarding:
            targets = await self._services.service.route(bucket)
            if targets:
                request[OUTSIDE] = True
                assert self.forwarder is not None
                return await self.forwarder.forward(request, targets)
        if bucket and "Origin" in request.headers:
            await self._cors_answer(request, bucket)
        try:
            return await route.handler(self._services, call)
        except OutsideTerritory as exc:
            request[OUTSIDE] = True
            raw = request.get(RAW_BODY)
            if not forwarding or (raw is None and request.get(BODY_TAKEN)):
                raise  # answered 503 ServiceUnavailable with the service's words
            assert self.forwarder is not None
            return await self.forwarder.forward(request, exc.nodes, policy=exc.policy, body=raw)
