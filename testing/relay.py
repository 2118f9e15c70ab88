"""User-space latency and jitter for inter-site TCP: a transparent delaying relay.

Why it exists: this kernel has no ``netem``, so delay and jitter cannot be put
on a qdisc. They are added in user space instead, without the node knowing.

Approach (chosen): **one relay process inside each site's namespace + nft
``redirect``** of that site's *outgoing* TCP connections to the peers that have
a latency configured. ``Faults`` adds, in the site's ``nat output`` chain::

    meta mark 0x6d6c return                                # the relay's own upstream sockets
    ip daddr { <peers with latency> } meta l4proto tcp redirect to :<relay port>

The relay accepts the redirected connection, recovers the real destination with
``SO_ORIGINAL_DST`` (conntrack), opens its own connection to it (marked with
``SO_MARK`` so it is not redirected again) and pumps bytes both ways, holding
each read for the link's delay: ``up`` (this site -> peer) on the way out and
``down`` (peer -> this site) on the way back. Only the *initiating* site's
relay sees a connection, so each direction is delayed exactly once.

Why not a per-link listening address: the node would have to be told to dial a
different address per peer, i.e. the emulation would leak into the layout and
the node. With redirect the node dials the peer's real address and port.

Byte order: jitter never reorders bytes within a connection. Each chunk read at
time ``t`` is released at ``max(previous_release, t + delay + U(-jitter, +jitter))``
and written in order by a single writer per direction, so the *effective*
jitter of a busy stream is smaller than configured (as with a FIFO link).

Limits (documented, not hidden): the TCP handshake is not delayed (the client
connects to the local relay at once; the first bytes pay the delay); only TCP
is relayed (UDP is not delayed); a delay change applies at once to existing
relayed connections, but adding latency to a link that had none only affects
new connections (existing ones are not redirected retroactively by conntrack).
The relay buffers at most ``MAX_QUEUE`` chunks per direction (backpressure).

Run as a separate process (``python -m maillage.testing.relay --control PATH``),
so it lives in the site's namespace and is started/stopped by pid. It prints
``READY <port>`` and is reconfigured through a Unix socket (JSON line in, JSON
line out), which is synchronous: when ``configure`` returns, the new delays are
in force.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["RELAY_MARK", "RelayProcess", "Link", "main"]

RELAY_MARK = 0x6D6C          #: SO_MARK of the relay's upstream sockets ("ml")
SO_ORIGINAL_DST = 80
CHUNK = 64 * 1024
MAX_QUEUE = 256              #: chunks buffered per direction (<= 16 MiB)


@dataclass(frozen=True)
class Link:
    """Delay of one direction of a link, in milliseconds."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0

    def sample(self, rng: random.Random) -> float:
        """One delay draw in seconds (never negative)."""
        j = rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(0.0, self.delay_ms + j) / 1000.0


# ---------------------------------------------------------------- relay (child side)
class _Relay:
    def __init__(self, seed: int | None) -> None:
        self.links: dict[str, tuple[Link, Link]] = {}   # dst ip -> (up, down)
        self.rng = random.Random(seed)
        self.connections = 0

    def configure(self, cfg: Mapping) -> None:
        links = {}
        for ip, d in cfg.get("links", {}).items():
            links[ip] = (Link(*d.get("up", (0, 0))), Link(*d.get("down", (0, 0))))
        self.links = links

    def link(self, ip: str, direction: int) -> Link:
        pair = self.links.get(ip)
        return pair[direction] if pair else Link()

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        csock = cwriter.get_extra_info("socket")
        try:
            raw = csock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, packed = struct.unpack("!2xH4s8x", raw)
            dst = (socket.inet_ntoa(packed), port)
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            up.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, RELAY_MARK)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up.setblocking(False)
            await asyncio.get_running_loop().sock_connect(up, dst)
            ureader, uwriter = await asyncio.open_connection(sock=up)
        except (OSError, struct.error):
            _abort(cwriter)
            return
        csock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ip = dst[0]
        tasks = [asyncio.create_task(self.pump(creader, uwriter, ip, 0)),
                 asyncio.create_task(self.pump(ureader, cwriter, ip, 1))]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if any(t.exception() for t in done):
            for t in pending:
                t.cancel()
            _abort(cwriter)
            _abort(uwriter)
            return
        await asyncio.gather(*pending, return_exceptions=True)
        cwriter.close()
        uwriter.close()

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   ip: str, direction: int) -> None:
        """Copy reader -> writer, each chunk held until its release time (FIFO)."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(MAX_QUEUE)
        last = 0.0

        async def release() -> None:
            while True:
                when, data = await q.get()
                wait = when - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        rel = asyncio.create_task(release())
        try:
            while True:
                data = await reader.read(CHUNK)
                when = max(last, loop.time() + self.link(ip, direction).sample(self.rng))
                last = when
                put = asyncio.ensure_future(q.put((when, data or None)))
                await asyncio.wait([put, rel], return_when=asyncio.FIRST_COMPLETED)
                if rel.done() and not put.done():
                    put.cancel()
                if rel.done() or not data:
                    break
            await rel
        finally:
            if not rel.done():
                rel.cancel()

    async def control(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while line := await r.readline():
                msg = json.loads(line)
                if "links" in msg:
                    self.configure(msg)
                reply = {"ok": True, "connections": self.connections,
                         "links": sorted(self.links)}
                w.write((json.dumps(reply) + "\n").encode())
                await w.drain()
        finally:
            w.close()


def _abort(w: asyncio.StreamWriter) -> None:
    t = w.transport
    if t is not None and not t.is_closing():
        t.abort()


async def _serve(control_path: str, seed: int | None, config: str | None) -> None:
    relay = _Relay(seed)
    if config:
        relay.configure(json.loads(config))
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0, backlog=512)
    ctl = await asyncio.start_unix_server(relay.control, control_path)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server, ctl:
        await asyncio.gather(server.serve_forever(), ctl.serve_forever())


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="maillage test latency relay (run inside a site netns)")
    ap.add_argument("--control", required=True, help="Unix socket path for JSON reconfiguration")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--config", default=None, help="initial JSON config")
    a = ap.parse_args(argv)
    try:
        asyncio.run(_serve(a.control, a.seed, a.config))
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------- parent side
class RelayProcess:
    """Handle on one relay process (started by the caller, e.g. inside a netns).

    ``start`` waits for ``READY <port>``; ``configure`` is synchronous; ``stop``
    kills only this pid.
    """

    def __init__(self, popen: subprocess.Popen, control_path: str, port: int) -> None:
        self.popen = popen
        self.control_path = control_path
        self.port = port

    @property
    def pid(self) -> int:
        return self.popen.pid

    @classmethod
    def start(cls, spawn, control_path: str, *, seed: int | None = None,
              timeout: float = 10.0) -> RelayProcess:
        """``spawn(argv, **popen_kwargs) -> Popen`` decides where it runs (e.g. Mesh.run_in)."""
        argv = [sys.executable, "-m", "maillage.testing.relay", "--control", control_path]
        if seed is not None:
            argv += ["--seed", str(seed)]
        p = spawn(argv, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        os.set_blocking(p.stdout.fileno(), True)
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        line = ""
        while time.monotonic() < deadline and p.poll() is None:
            if sel.select(0.1):
                line = p.stdout.readline()
                break
        sel.close()
        if not line.startswith("READY "):
            p.kill()
            p.wait()
            raise RuntimeError(f"latency relay did not start (exit {p.returncode}, got {line!r})")
        return cls(p, control_path, int(line.split()[1]))

    def configure(self, links: Mapping[str, tuple[Link, Link]], timeout: float = 5.0) -> dict:
        """Replace the link table: ``{dst_ip: (up, down)}``. Returns the relay's reply."""
        msg = {"links": {ip: {"up": [u.delay_ms, u.jitter_ms], "down": [d.delay_ms, d.jitter_ms]}
                         for ip, (u, d) in links.items()}}
        return self._call(msg, timeout)

    def status(self, timeout: float = 5.0) -> dict:
        return self._call({}, timeout)

    def _call(self, msg: dict, timeout: float) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.control_path)
            s.sendall((json.dumps(msg) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("relay closed its control socket")
                buf += chunk
        return json.loads(buf)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(5)
        if self.popen.stdout:
            self.popen.stdout.close()
        try:
            os.unlink(self.control_path)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
