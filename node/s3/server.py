"""The S3 HTTP server of a node (aiohttp, in the node's own event loop): routing, authentication, errors.

Path-style addressing: `/` is the service, `/<bucket>` a bucket, `/<bucket>/<key>` an object.
Every request is authenticated (SigV4, `sigv4.py`) before anything else; errors are S3 XML with a
request id (`x-amz-request-id`), the node's typed errors mapped by `errors.TABLE`.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor

from aiohttp import web

from ..access_state import AccessState
from ..coordinator import Coordinator
from ..layout_state import LayoutState
from ..tenancy import Caller, Tenancy
from . import sigv4, xml
from .errors import S3Error, from_exception, new_request_id
from .handlers import Handlers

__all__ = ["S3Server"]

log = logging.getLogger(__name__)

# Sub-resources of phase 1; any other query sub-resource (acl, uploads, tagging...) is NotImplemented.
_KNOWN_QUERY = {"location", "list-type", "prefix", "delimiter", "continuation-token", "max-keys", "start-after",
                "encoding-type", "fetch-owner", "x-id"}


class S3Server:
    def __init__(self, address: str, coordinator: Coordinator, tenancy: Tenancy, layout: LayoutState,
                 access: AccessState, executor: Executor, *, default_policy: str = "") -> None:
        self.address = address
        self._access = access
        self._handlers = Handlers(coordinator, tenancy, layout, executor, default_policy)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, _, port = self.address.rpartition(":")
        app = web.Application(client_max_size=xml.MAX_XML_BODY)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host.strip("[]") or "0.0.0.0", int(port))
        await site.start()
        self._runner = runner
        log.info("S3 front door on %s", self.address)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()
        try:
            response = await self._route(request)
        except Exception as exc:  # every failure becomes an S3 error document
            error = from_exception(exc)
            if error is None:
                log.exception("S3 %s %s failed (request %s)", request.method, request.path, request_id)
                error = S3Error("InternalError", "the node failed to handle this request; see its log "
                                                 f"(request {request_id})")
            body = b"" if request.method == "HEAD" else xml.error_document(
                error.code, error.message, request.path, request_id)
            response = web.Response(status=error.status, body=body, content_type="application/xml")
            if request.method == "HEAD":
                response.headers["x-amz-error-code"] = error.code
        if not response.prepared:
            response.headers["x-amz-request-id"] = request_id
        return response

    async def _route(self, request: web.Request) -> web.StreamResponse:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        verified = sigv4.verify(request.method, request.path, request.query_string, headers, self._access.key)
        caller = Caller(key=verified.key)
        h = self._handlers
        unknown = set(request.query) - _KNOWN_QUERY
        if unknown:
            raise S3Error("NotImplemented", f"sub-resource(s) {', '.join(sorted(unknown))} not supported yet")
        bucket, _, key = request.path.lstrip("/").partition("/")
        method = request.method
        if not bucket:
            if method == "GET":
                return await h.list_buckets(request, caller)
        elif not key:
            if method == "PUT":
                return await h.create_bucket(request, caller, bucket, verified.payload_sha256)
            if method == "HEAD":
                return await h.head_bucket(request, caller, bucket)
            if method == "DELETE":
                return await h.delete_bucket(request, caller, bucket)
            if method == "GET" and "location" in request.query:
                return await h.get_bucket_location(request, caller, bucket)
            if method == "GET" and request.query.get("list-type") == "2":
                return await h.list_objects_v2(request, caller, bucket)
            if method == "GET":
                raise S3Error("NotImplemented", "ListObjects (V1) is not supported yet: use ListObjectsV2")
        else:
            if method == "PUT":
                return await h.put_object(request, caller, bucket, key, verified.payload_sha256)
            if method == "GET":
                return await h.get_object(request, caller, bucket, key)
            if method == "HEAD":
                return await h.head_object(request, caller, bucket, key)
            if method == "DELETE":
                return await h.delete_object(request, caller, bucket, key)
        raise S3Error("MethodNotAllowed", f"{method} is not allowed on {request.path}")
