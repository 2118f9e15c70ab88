"""Fixtures for the network/fault emulation tests (maillage.testing).

As root (CI), a missing capability is a FAILURE with the reason, never a silent
skip: the fault harness must run with real namespaces there. Without root the
tests skip with an explicit reason (the harness then uses loopback-only mode).
"""

from __future__ import annotations

import sys
import time

import pytest

from maillage.testing import Mesh, eventually
from maillage.testing.netns import require_netns  # noqa: F401  (used by the test modules)

ECHO_PORT = 7000
SINK_PORT = 7001

# Threaded TCP echo on :7000, and a sink on :7001 that answers the byte count at EOF.
SERVERS = r"""
import socket, threading
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while d := c.recv(65536):
        c.sendall(d)
    c.close()
def sink(c):
    n = 0
    while d := c.recv(1 << 20):
        n += len(d)
    c.sendall(str(n).encode()); c.close()
def serve(port, fn):
    s = socket.create_server(("0.0.0.0", port), backlog=128)
    while True:
        c, _ = s.accept()
        threading.Thread(target=fn, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(7001, sink), daemon=True).start()
serve(7000, echo)
"""


@pytest.fixture(scope="module")
def mesh():
    """Three sites a, b, c, each running the echo + sink servers."""
    require_netns()
    with Mesh(["a", "b", "c"]) as m:
        for s in m.sites:
            m.run_in(s, [sys.executable, "-c", SERVERS])
        for s in m.sites:
            eventually(lambda s=s: m.can_connect(s, ("127.0.0.1", ECHO_PORT), 0.5), timeout=10,
                       what=f"echo server in {s} listening")
        yield m


@pytest.fixture
def net(mesh):
    """The shared mesh with every fault removed after the test."""
    yield mesh
    mesh.faults.reset()


def rtt_ms(sock, n: int = 5) -> list[float]:
    """n one-byte ping-pongs on a connected echo socket, in milliseconds."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        sock.sendall(b"x")
        assert sock.recv(16) == b"x"
        out.append((time.perf_counter() - t) * 1000)
    return out


@pytest.fixture
def rtt():
    return rtt_ms
