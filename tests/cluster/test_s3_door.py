"""Nobody can hold the S3 door open: floods of half-sent requests and stalled TLS handshakes against
one node's S3 port leave its gRPC port and its peers' replication working, are closed within the
door's deadlines, are capped per source address and in total, and the node's memory comes back.

The attack is what took a node down before the door had caps and deadlines: thousands of TLS
connections that send a request line and half a header, then nothing, until the process ran out of
file descriptors and its gRPC port failed with the S3 port.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path

import pytest

from maillage.client import Client
from maillage.client.admin import fetch_inventories
from maillage.testing import eventually
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import CHUNK, POLICIES, SITES

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

MAX_CONNECTIONS, PER_ADDRESS = 120, 30
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]  # 8 addresses: the total cap binds, not only the per-address one
HEADER_TIMEOUT, HANDSHAKE_TIMEOUT = 10.0, 5.0      # DoorLimits' defaults, which the nodes run with
TARGET = "paris-1"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("door"),
                  extra_args=("--chunk-size", str(CHUNK), "--s3-max-connections", str(MAX_CONNECTIONS),
                              "--s3-max-connections-per-address", str(PER_ADDRESS)),
                  s3=True, s3_default_policy="eu-wide")
    with m:
        yield m


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(port: int, source: str) -> socket.socket | None:
    """A TCP connection to the S3 port from `source`; None if the node closed it at once."""
    s = socket.socket()
    s.settimeout(5)
    s.bind((source, 0))
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


def slowloris(port: int, source: str) -> ssl.SSLSocket | None:
    """A TLS connection that sends a request line and half a header, then nothing."""
    raw = connect(port, source)
    if raw is None:
        return None
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    except OSError:  # refused over a cap: closed during the handshake
        raw.close()
        return None
    return tls


def handshake_stall(port: int, source: str) -> socket.socket | None:
    """A TCP connection that sends the first bytes of a TLS ClientHello, then nothing."""
    raw = connect(port, source)
    if raw is None:
        return None
    try:
        raw.sendall(b"\x16\x03\x01\x02\x00\x01")
    except OSError:
        raw.close()
        return None
    return raw


def silent(port: int, source: str) -> socket.socket | None:
    """A TCP connection that sends nothing at all."""
    return connect(port, source)


def closed_by_peer(s: socket.socket) -> bool:
    """Whether the node has closed this connection (EOF or reset), without blocking."""
    s.settimeout(0)
    try:
        return s.recv(1) == b""
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


def test_floods_are_capped_closed_and_leave_grpc_and_replication_working(mesh: LocalMesh) -> None:
    pid = mesh.processes[TARGET].pid
    port = mesh.s3_ports[TARGET]
    with Client(profile=mesh.profile) as c:
        c.create_bucket("door", "france-only")
        c.put_object("door", "warm-up", os.urandom(CHUNK))
    idle_rss, idle_fds = rss_mib(pid), open_fds(pid)

    held: list[socket.socket] = []
    try:
        attempts = 0
        for source in SOURCES:  # the first four fill the total cap; the others are refused outright
            for i in range(PER_ADDRESS + 10):  # over the per-address cap on every address
                s = (slowloris, handshake_stall, silent)[i % 3](port, source)
                attempts += 1
                if s is not None:
                    held.append(s)
        flood_end = time.monotonic()
        during_rss, during_fds = rss_mib(pid), open_fds(pid)
        # The caps held: never more than MAX_CONNECTIONS of the node's fds went to the flood.
        assert during_fds - idle_fds <= MAX_CONNECTIONS + 16, (idle_fds, during_fds)

        # The gRPC port still serves, through the attacked node ...
        data = os.urandom(3 * CHUNK + 5)
        with Client(mesh.address(TARGET), profile=mesh.profile) as c:
            c.put_object("door", "through-target", data)
            assert c.get_object("door", "through-target").read() == data
        # ... and its peers still replicate to it: chunks written through another node land there.
        with Client(mesh.address("lyon-1"), profile=mesh.profile) as c:
            for i in range(6):
                c.put_object("door", f"through-lyon-{i}", os.urandom(2 * CHUNK))
            names = {d for i in range(6) for d, _ in c.object_chunks("door", f"through-lyon-{i}")}
        inventories, unreachable = fetch_inventories(mesh.layout, mesh.admin_profile)
        assert TARGET not in unreachable, unreachable
        assert names & inventories[TARGET].chunks, "no chunk written through lyon-1 reached the attacked node"

        # The node closes every flood connection within its deadlines (handshake, then header), and
        # releases their fds while the attacker still holds its end and never answers the TLS
        # close_notify (a few fds more than idle: the gRPC connections opened meanwhile).
        eventually(lambda: all(closed_by_peer(s) for s in held), timeout=HEADER_TIMEOUT + HANDSHAKE_TIMEOUT + 15,
                   what="the node closed every held connection")
        eventually(lambda: open_fds(pid) <= idle_fds + 16, timeout=HANDSHAKE_TIMEOUT + 15,
                   what="the node's fds back to idle, the attacker's sockets still open")
        released = time.monotonic() - flood_end
    finally:
        for s in held:
            s.close()
    # Memory returns to within 50 MiB of its idle level.
    eventually(lambda: rss_mib(pid) <= idle_rss + 50, timeout=30,
               what=f"RSS back within 50 MiB of idle ({idle_rss:.0f} MiB; {during_rss:.0f} during the flood)")
    print(f"flood: {attempts} connections from {len(SOURCES)} addresses; node fds "
          f"{idle_fds} -> {during_fds} -> back {released:.1f} s after the flood; RSS {idle_rss:.0f} -> "
          f"{during_rss:.0f} -> {rss_mib(pid):.0f} MiB")


def test_a_connection_over_the_per_address_cap_is_closed_at_once(mesh: LocalMesh) -> None:
    port = mesh.s3_ports[TARGET]
    held = [s for s in (connect(port, "127.0.0.20") for _ in range(PER_ADDRESS)) if s is not None]
    try:
        assert len(held) == PER_ADDRESS
        over = connect(port, "127.0.0.20")
        assert over is not None  # the kernel accepted it; the door closes it before any TLS
        over.settimeout(5)
        started = time.monotonic()
        assert over.recv(1) == b""
        assert time.monotonic() - started < 2
        over.close()
        other = connect(port, "127.0.0.21")  # another address is not affected
        assert other is not None and not closed_by_peer(other)
        other.close()
    finally:
        for s in held:
            s.close()
