"""The ops port (`--ops-listen`): `/metrics` for Prometheus, `/livez` and `/readyz` for probes.

Over TLS with the node's own certificate (Prometheus checks it with the cluster CA). `/metrics`
asks for a bearer token, the scrape token (`ScrapeToken`: a file the operator gives every node and
Prometheus, compared in constant time); `/livez` (the process answers) and `/readyz` (the node has
its layout, its stores are open and it serves) answer anyone, a word and nothing else. Every other
path or method gets a short 4xx; a request's head is bounded by aiohttp's limits, its body refused,
its handling bounded in time and in number at once, the connections open at once by
`MAX_CONNECTIONS`, the TLS handshake by `HANDSHAKE_TIMEOUT`.

Prometheus (see deploy/prometheus/scrape.yml):

    scrape_configs:
      - job_name: maillage
        scheme: https
        authorization: {type: Bearer, credentials_file: /etc/prometheus/maillage-metrics.token}
        tls_config: {ca_file: /etc/prometheus/maillage-ca.pem}
        static_configs: [{targets: ["node-1.example:9440"]}]
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

__all__ = ["MIN_TOKEN_LENGTH", "OpsServer", "ScrapeToken", "TOKEN_FILE", "ops_tls_context"]

log = logging.getLogger(__name__)

TOKEN_FILE = "metrics.token"   # default place: <trust dir>/metrics.token
MIN_TOKEN_LENGTH = 32          # characters (`openssl rand -hex 32` gives 64)
HANDSHAKE_TIMEOUT = 5.0        # seconds for a connection's TLS handshake
HEADER_TIMEOUT = 10.0          # seconds for a request's head, and a connection's idle time
HANDLE_TIMEOUT = 10.0          # seconds to answer one request
MAX_AT_ONCE = 8                # requests handled at once; more are answered 503
MAX_CONNECTIONS = 64           # connections open at once; more are closed as they are accepted
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ScrapeToken:
    """The bearer token `/metrics` asks for, read once from its file."""

    def __init__(self, token: str) -> None:
        if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError(f"a scrape token is at least {MIN_TOKEN_LENGTH} printable ASCII characters "
                             "without spaces (e.g. `openssl rand -hex 32`)")
        self._expected = f"Bearer {token}".encode()

    @classmethod
    def from_file(cls, path: Path) -> ScrapeToken:
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"scrape token {path}: cannot be read ({getattr(err, 'strerror', None) or err}); "
                             f"write one with `openssl rand -hex 32 > {path}`") from None
        try:
            return cls(text)
        except ValueError as err:
            raise ValueError(f"scrape token {path}: {err}") from None

    def admits(self, authorization: str | None) -> bool:
        given = (authorization or "").encode("latin-1", "replace")
        return hmac.compare_digest(given, self._expected)


def ops_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_NONE  # the token authenticates Prometheus; probes need none
    context.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


class OpsServer:
    def __init__(self, address: str, *, token: ScrapeToken, scrape: Callable[[], bytes],
                 ready: Callable[[], bool], ssl_context: ssl.SSLContext | None) -> None:
        self.address = address
        self._token = token
        self._scrape = scrape
        self._ready = ready
        self._ssl = ssl_context
        self._at_once = 0
        self.refused = 0  # connections closed over MAX_CONNECTIONS
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=1024)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=HEADER_TIMEOUT,
                               max_line_size=4096, max_field_size=4096)
        await runner.setup()
        self._runner = runner
        assert runner.server is not None
        serve = runner.server

        def accept() -> asyncio.BaseProtocol:
            if len(serve.connections) >= MAX_CONNECTIONS:
                self.refused += 1
                return _Closed()
            return serve()
        host, _, port = self.address.rpartition(":")
        self._server = await asyncio.get_running_loop().create_server(
            accept, host.strip("[]") or None, int(port), ssl=self._ssl, backlog=64,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if self._ssl else None)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("ops port on %s (%s): /metrics with the scrape token, /livez, /readyz", self.address,
                 "TLS" if self._ssl else "plain HTTP")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed\n", {"Allow": "GET, HEAD"})
        if request.content_length or request.body_exists:
            return _text(413, "no body expected\n")
        if self._at_once >= MAX_AT_ONCE:
            return _text(503, "busy\n")
        self._at_once += 1
        try:
            async with asyncio.timeout(HANDLE_TIMEOUT):
                return await self._answer(request)
        except TimeoutError:
            return _text(503, "timed out\n")
        except Exception:  # never a traceback to the caller
            log.exception("ops port: %s failed", request.path[:64])
            return _text(500, "internal error\n")
        finally:
            self._at_once -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/livez":
            return _text(200, "ok\n")
        if path == "/readyz":
            return _text(200, "ready\n") if self._ready() else _text(503, "not ready\n")
        if path == "/metrics":
            if not self._token.admits(request.headers.get("Authorization")):
                return _text(401, "unauthorized\n", {"WWW-Authenticate": 'Bearer realm="maillage"'})
            return web.Response(status=200, body=self._scrape(), headers={"Content-Type": CONTENT_TYPE})
        return _text(404, "not found\n")


class _Closed(asyncio.Protocol):
    """A connection over the cap: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, headers=headers)
