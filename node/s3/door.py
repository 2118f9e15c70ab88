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
* **handshake deadline**: a TLS handshake not finished within `handshake_timeout` is dropped, and
  so is a closing one: when the node closes a TLS connection, asyncio waits for the client's
  close_notify (30 s by default), which an attacker never sends, so each connection closed at the
  header deadline held its file descriptor and its place under the caps 30 s longer;
* **header deadline**: aiohttp closes a connection that has no complete request line and headers
  within its keep-alive timeout of the connection's start or of the previous response
  (`S3Server` sets it to `DoorLimits.header_timeout`), slowloris included;
* **body deadline**: a request body that sends no byte for `payload.BODY_IDLE_TIMEOUT` ends the
  request (RequestTimeout);
* **concurrent requests**: more than `max_requests` handled at once are answered 503 SlowDown at
  once (`S3Server`).

Each accepted socket is counted until it is closed, whatever happens to it (handshake failure,
timeout, normal close), so the counts cannot leak. Nothing per connection outlives it, but the
memory of 512 TLS connections stays in the process: freed, it is scattered through the C heap
where glibc's trim (and `allocator.keep_large_buffers`' threshold) leaves it, and a node stayed
45 MiB above its idle level after a 40 s flood. So once the door has been half full and drains to
an eighth of its cap, it asks glibc to give free pages back (`allocator.return_free_memory`,
~50 ms in a thread, once per flood): 11 MiB above idle after the same flood.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maillage.node.runtime.allocator import return_free_memory

__all__ = ["Door", "DoorLimits"]

log = logging.getLogger(__name__)

WARN_EVERY = 10.0  # seconds between two log lines about refused connections


@dataclass(frozen=True)
class DoorLimits:
    max_connections: int = 512        # open at once; more are closed as they are accepted
    max_per_address: int = 64         # open at once from one source address
    max_requests: int = 256           # requests handled at once; more are answered 503 SlowDown
    handshake_timeout: float = 5.0    # seconds for a TLS handshake, opening or closing
    header_timeout: float = 10.0      # seconds for a request line and headers; the keep-alive idle limit


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
        self._crowded = False  # half the cap was reached since the door last gave memory back
        self._warned = -WARN_EVERY

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
                if self._warning_due():
                    log.warning("S3 port cannot accept a connection: %s", err)
                await asyncio.sleep(0.1)
                continue
            source = str(address[0])
            if self.open >= self.limits.max_connections or self._per_address[source] >= self.limits.max_per_address:
                self.refused += 1
                if self._warning_due():
                    log.warning("S3 port refusing connections: %d refused so far, %d open (cap %d), %d of them from "
                                "%s (cap %d)", self.refused, self.open, self.limits.max_connections,
                                self._per_address[source], source, self.limits.max_per_address)
                conn.close()
                continue
            self.open += 1
            self._crowded = self._crowded or self.open >= self.limits.max_connections // 2
            self._per_address[source] += 1
            task = loop.create_task(self._serve(conn, source))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(self, conn: socket.socket, source: str) -> None:
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        transport: asyncio.Transport | None = None
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                transport, _ = await loop.connect_accepted_socket(
                    lambda: _Tracked(self._factory(), closed), conn, ssl=self._ssl,
                    ssl_handshake_timeout=self.limits.handshake_timeout,
                    ssl_shutdown_timeout=self.limits.handshake_timeout)
            else:
                transport, _ = await loop.connect_accepted_socket(lambda: _Tracked(self._factory(), closed), conn)
            await closed
        except (OSError, EOFError):  # a failed or stalled handshake (TimeoutError, SSLError): nothing was served
            pass
        finally:
            if transport is None:
                conn.close()  # asyncio closes it too when a handshake fails; closing twice is harmless
            elif not closed.done():
                transport.abort()  # stop() cancelled a live connection: the transport owns the socket
            self.open -= 1
            self._per_address[source] -= 1
            if self._per_address[source] <= 0:
                del self._per_address[source]
            if self._crowded and self.open <= self.limits.max_connections // 8 and self._sock is not None:
                self._crowded = False
                loop.run_in_executor(None, return_free_memory)

    def _warning_due(self) -> bool:
        """At most one warning per `WARN_EVERY` seconds: a flood must not flood the log too."""
        now = time.monotonic()
        if now - self._warned < WARN_EVERY:
            return False
        self._warned = now
        return True
