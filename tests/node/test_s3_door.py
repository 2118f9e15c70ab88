"""The S3 door in-process: its caps, its deadlines and what it keeps, in a second or two.

The door runs in the test's event loop in front of a trivial aiohttp handler (or the node's real
S3 server over the in-memory mesh, for the request cap); the attackers are sockets of this process
bound to different loopback addresses. `tests/cluster/test_s3_door.py` floods a real node.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from maillage.node.s3 import payload
from maillage.node.s3.common import Services
from maillage.node.s3.door import Door, DoorLimits
from maillage.node.s3.errors import STATUS, S3Error
from maillage.node.s3.server import S3Server, tls_context
from maillage.proto.trust.access import AccessDoc, add_tenant, create_key, ensure_naming_secret
from maillage.proto.trust.identity import create_cluster, issue_node_certificate
from maillage.testing.inmemory import InMemoryMesh

from .conftest import run

PARTIAL_HEADER = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01"  # a TLS record header and the start of a ClientHello


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory) -> ssl.SSLContext:
    d = tmp_path_factory.mktemp("door-tls")
    files = issue_node_certificate(create_cluster(d / "cluster", "door"), "paris-1", d / "node",
                                   sans=("localhost", "127.0.0.1"))
    return tls_context(files.cert, files.key)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def connect(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.setblocking(False)
    s.bind((source, 0))
    await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
    return s


async def closed_within(s: socket.socket, seconds: float) -> bool:
    """Whether the server closes `s` (EOF or reset) within `seconds`, reading what it sends meanwhile."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            while await loop.sock_recv(s, 4096):
                pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def slowloris(port: int, source: str) -> ssl.SSLSocket:
    """A blocking TLS client that sends half a header, then nothing: it never answers the server's
    close_notify either (call it in a thread)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    tls = context.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(PARTIAL_HEADER)
    return tls


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def test_connections_over_a_cap_are_closed_at_once_and_the_counts_come_back() -> None:
    async def scenario() -> None:
        door = Door(web.Server(hello), None, DoorLimits(max_connections=5, max_per_address=3))
        port = await door.start("127.0.0.1", 0)
        held: list[socket.socket] = []
        try:
            held += [await connect(port, "127.0.0.2") for _ in range(3)]
            over = await connect(port, "127.0.0.2")          # a fourth from one address
            assert await closed_within(over, 2)
            held += [await connect(port, "127.0.0.3") for _ in range(2)]
            total = await connect(port, "127.0.0.4")         # a sixth in all, from a fresh address
            assert await closed_within(total, 2)
            for s in held:
                assert not await closed_within(s, 0.05)
            assert (door.open, door.refused) == (5, 2)
            assert dict(door._per_address) == {"127.0.0.2": 3, "127.0.0.3": 2}
            # a connection under the caps is served as usual
            held[0].close()
            async with asyncio.timeout(2):
                while door.open > 4:
                    await asyncio.sleep(0.01)
            ok = await connect(port, "127.0.0.4")
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(ok, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await loop.sock_recv(ok, 4096)).startswith(b"HTTP/1.1 200")
            held.append(ok)
        finally:
            for s in held:
                s.close()
        async with asyncio.timeout(2):
            while door.open:
                await asyncio.sleep(0.01)
        assert not door._per_address and not door._serving  # nothing kept per address once they are gone
        await door.stop()

    run(scenario())


def test_stalled_handshakes_and_half_sent_headers_are_closed_within_the_deadlines(server_tls) -> None:
    """Handshakes that never finish (nothing sent, or half a ClientHello), and TLS connections that
    send half a header and never answer the node's close_notify, are all gone within the handshake
    deadline, the header deadline and the closing handshake's, and leave nothing behind."""
    limits = DoorLimits(max_connections=100, max_per_address=100, handshake_timeout=1.0, header_timeout=1.5)

    async def scenario() -> None:
        from asyncio.sslproto import SSLProtocol

        from aiohttp.web_protocol import RequestHandler

        server = web.Server(hello, keepalive_timeout=limits.header_timeout)
        door = Door(server, server_tls, limits)
        port = await door.start("127.0.0.1", 0)
        before = live(SSLProtocol), live(RequestHandler)
        started = time.monotonic()
        slow = await asyncio.gather(*(asyncio.to_thread(slowloris, port, "127.0.0.4") for _ in range(10)))
        silent = [await connect(port, "127.0.0.2") for _ in range(10)]
        hellos = [await connect(port, "127.0.0.3") for _ in range(10)]
        for s in hellos:
            await asyncio.get_running_loop().sock_sendall(s, PARTIAL_HELLO)
        try:
            async with asyncio.timeout(limits.handshake_timeout / 2):  # all admitted: 30 under the caps
                while door.open < 30:
                    await asyncio.sleep(0.01)
            assert all([await closed_within(s, limits.handshake_timeout + 1.5) for s in silent + hellos])
            # half a header: closed at the header deadline, plus at most the closing handshake's
            bound = limits.handshake_timeout + limits.header_timeout + limits.handshake_timeout + 1.5
            async with asyncio.timeout(bound):
                while door.open:
                    await asyncio.sleep(0.02)
            assert time.monotonic() - started < bound
        finally:
            for s in silent + hellos:
                s.close()
            for t in slow:
                t.close()
        assert not door._per_address and not door._serving and not server.connections
        assert (live(SSLProtocol), live(RequestHandler)) == before  # no TLS state, no HTTP parser survives
        await door.stop()

    run(scenario())


def test_a_request_body_that_stops_ends_the_request() -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(3600)
        yield b"never"

    async def scenario() -> list[bytes]:
        got = []
        with pytest.raises(S3Error) as caught:
            async for piece in payload._idle_bounded(stalls(), 0.1):
                got.append(piece)
        assert caught.value.code == "RequestTimeout" and STATUS["RequestTimeout"] == 400
        return got

    assert run(scenario()) == [b"first"]


def test_requests_over_the_concurrency_cap_are_answered_slowdown(mesh: InMemoryMesh) -> None:
    """Two uploads whose bodies stall fill a cap of two requests: the third request is answered
    503 SlowDown at once, and once the uploads are gone requests are served again."""
    pytest.importorskip("botocore")
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = int(time.time() * 1000)
    doc = add_tenant(ensure_naming_secret(AccessDoc()), "hospital", now_ms=now)
    doc, key = create_key(doc, "hospital", "read-write", now_ms=now)
    mesh.push_access(doc)
    node = mesh.nodes["paris-1"]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        services = Services(node.service, node.layout, mesh._executor, default_policy="eu-wide",
                            upload_budget=node.upload_budget)
        server = S3Server("127.0.0.1:0", services, node.access, limits=DoorLimits(max_requests=2))
        await server.start()

        def signed(method: str, path: str, headers: dict[str, str]) -> bytes:
            request = AWSRequest(method=method, url=f"http://127.0.0.1:{server.port}{path}", data=b"",
                                 headers=headers)
            S3SigV4Auth(Credentials(key.key_id, key.secret), "s3", "us-east-1").add_auth(request)
            lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
            lines += [f"{k}: {v}" for k, v in request.headers.items()]
            return ("\r\n".join(lines) + "\r\n\r\n").encode()

        async def ask(raw: bytes) -> bytes:
            s = await connect(server.port, "127.0.0.1")
            try:
                await loop.sock_sendall(s, raw)
                async with asyncio.timeout(5):
                    return await loop.sock_recv(s, 4096)
            finally:
                s.close()

        uploads: list[socket.socket] = []
        try:
            assert (await ask(signed("PUT", "/scans", {"Content-Length": "0"}))).startswith(b"HTTP/1.1 200")
            for i in range(2):  # uploads announcing 1 MiB and sending 5 bytes of it
                s = await connect(server.port, "127.0.0.1")
                await loop.sock_sendall(s, signed("PUT", f"/scans/slow-{i}", {"Content-Length": str(1 << 20)}))
                await loop.sock_sendall(s, b"12345")
                uploads.append(s)
            async with asyncio.timeout(5):
                while server._in_flight < 2:
                    await asyncio.sleep(0.01)
            refused = await ask(signed("GET", "/scans", {}))
            assert refused.startswith(b"HTTP/1.1 503") and b"<Code>SlowDown</Code>" in refused
        finally:
            for s in uploads:
                s.close()
        async with asyncio.timeout(5):
            while server._in_flight:
                await asyncio.sleep(0.01)
        assert (await ask(signed("GET", "/scans", {}))).startswith(b"HTTP/1.1 200")
        await server.stop()

    run(scenario())


def test_the_open_files_limit_keeps_a_reserve_for_the_other_ports() -> None:
    from maillage.node.runtime.fdlimit import RESERVED_FDS, s3_connection_cap

    assert s3_connection_cap(512, 1 << 20) == 512
    assert s3_connection_cap(512, 1024 + RESERVED_FDS) == 512
    assert s3_connection_cap(512, 600 + RESERVED_FDS) == 512
    assert s3_connection_cap(512, 300 + RESERVED_FDS) == 300  # the S3 port never eats into the reserve

