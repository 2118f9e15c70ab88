"""The S3 port's door: who gets a connection, for how long, before any HTTP is parsed.

The S3 port is open to anyone on the network, key or no key, so what an unauthenticated stranger
can make the node hold must be bounded, or one client takes the node down: without these bounds
20,000 TLS connections that each sent a request line and half a header used up the process's file
descriptors, and the node's gRPC port (its peers' replication) failed with the S3 port.

The door accepts connections itself (an accept loop over the listening socket) instead of letting
asyncio's server do it, because it must know a connection's source address *before* spending a
TLS handshake on it:

* **caps**: at most `max_connections` open at once, and `max_per_address` from one source address;
  a connection over a cap is closed the moment it is accepted (nothing parsed, nothing queued);
* **handshake deadline**: a TLS handshake not finished within `handshake_timeout` is dropped;
* **header deadline**: aiohttp closes a connection that has no complete request line and headers
  within its keep-alive timeout of the connection's start or of the previous response
  (`S3Server` sets it to `DoorLimits.header_timeout`), slowloris included;
* **body deadline**: a request body that sends no byte for `payload.BODY_IDLE_TIMEOUT` ends the
  request (RequestTimeout);
* **concurrent requests**: more than `max_requests` handled at once are answered 503 SlowDown at
  once (`S3Server`).

Each accepted socket is counted until it is closed, whatever happens to it (handshake failure,
timeout, normal close), so the counts cannot leak. Nothing per connection outlives it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Door", "DoorLimits"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoorLimits:
    max_connections: int = 512
    max_per_address: int = 64
    max_requests: int = 256           # requests handled at once; more are answered 503 SlowDown
    handshake_timeout: float = 5.0
    header_timeout: float = 10.0


class _Tracked(asyncio.Protocol):
    """Passes everything to the HTTP protocol, and tells the door when the connection is gone."""

    def __init__(self, inner: asyncio.Protocol, closed: asyncio.Future[None]) -> None:
        self._inner = inner
        self._closed = closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            if not self._closed.done():
                self._closed.set_result(None)


class Door:
    """Accepts the S3 port's connections within `limits`, handing each to `protocol_factory`."""

    def __init__(self, protocol_factory: Callable[[], Any], ssl_context: ssl.SSLContext | None,
                 limits: DoorLimits) -> None:
        self._factory = protocol_factory
        self._ssl = ssl_context
        self.limits = limits
        self.open = 0
        self.refused = 0
        self._per_address: collections.Counter[str] = collections.Counter()
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._serving: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on (host, port); returns the port bound (for port 0)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=1024)
        sock.setblocking(False)
        self._sock = sock
        self._accepting = asyncio.get_running_loop().create_task(self._accept(), name="s3-door")
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for task in list(self._serving):
            task.cancel()
        if self._serving:
            await asyncio.gather(*self._serving, return_exceptions=True)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            try:
                conn, address = await loop.sock_accept(self._sock)
            except OSError as err:  # e.g. EMFILE: the fds are spent; wait a little instead of spinning
                log.warning("S3 port cannot accept a connection: %s", err)
                await asyncio.sleep(0.1)
                continue
            source = str(address[0])
            if self.open >= self.limits.max_connections or self._per_address[source] >= self.limits.max_per_address:
                self.refused += 1
                if self.refused % 1000 == 1:
                    log.warning("S3 port refused a connection from %s (open %d, from that address %d; refused %d "
                                "so far)", source, self.open, self._per_address[source], self.refused)
                conn.close()
                continue
            self.open += 1
            self._per_address[source] += 1
            task = loop.create_task(self._serve(conn, source))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(self, conn: socket.socket, source: str) -> None:
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                await loop.connect_accepted_socket(lambda: _Tracked(self._factory(), closed), conn, ssl=self._ssl,
                                                   ssl_handshake_timeout=self.limits.handshake_timeout)
            else:
                await loop.connect_accepted_socket(lambda: _Tracked(self._factory(), closed), conn)
            await closed
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, EOFError):
            pass  # a failed or stalled handshake: nothing was served
        finally:
            conn.close()
            self.open -= 1
            self._per_address[source] -= 1
            if self._per_address[source] <= 0:
                del self._per_address[source]
