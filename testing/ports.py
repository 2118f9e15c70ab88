"""Loopback ports for local meshes that no other mesh, node or connection can be handed.

Asking the kernel for a free port (bind to port 0, close, use it later) is racy twice over: the
port is free only until it is closed, and the kernel takes such ports from the ephemeral range,
the very range it also draws the source port of every outgoing connection from. A mesh of a
hundred nodes opens thousands of connections while its nodes start, so a node could find its port
taken by a peer's client socket; and two meshes started at once (parallel tests, several
worktrees) could be given the same port. gRPC servers bind with SO_REUSEPORT, so such a clash
would not even fail: two nodes would share one port and the kernel would split calls between them.

So ports are chosen *outside* the ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``),
checked free by binding without SO_REUSEADDR (a port with lingering connections is skipped too),
and *reserved* in a small registry file shared by every process of this machine's user (under
an exclusive ``flock``): an entry names the pid that reserved it and lapses only when that process
ends, so a test may stop a mesh and start another on the same layout without losing its ports.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import socket
import tempfile
from pathlib import Path

__all__ = ["reserve_ports", "free_port", "free_ports", "port_range"]

LOWEST = 10000  # below: well-known and registered services people run on their machines


def _registry() -> Path:
    return Path(os.environ.get("MAILLAGE_PORT_REGISTRY") or
                Path(tempfile.gettempdir()) / f"maillage-ports-{os.getuid()}.json")


def port_range() -> range:
    """Ports a mesh may take: from LOWEST to below the kernel's ephemeral range (or above it, when
    that leaves more)."""
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    below, above = range(LOWEST, max(LOWEST, low)), range(min(high + 1, 65536), 65536)
    return below if len(below) >= len(above) else above


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as s:  # a node may also listen on the wildcard address
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _edit(change) -> list[int]:
    """Run change(entries) -> ports under the registry's lock; entries of ended processes dropped."""
    path = _registry()
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        try:
            entries = {int(p): int(pid) for p, pid in json.loads(f.read() or "{}").items()}
        except (ValueError, AttributeError):
            entries = {}
        entries = {p: pid for p, pid in entries.items() if _alive(pid)}
        ports = change(entries)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({str(p): pid for p, pid in sorted(entries.items())}))
        f.flush()
        return ports


def reserve_ports(count: int, *, rng: random.Random | None = None) -> list[int]:
    """`count` distinct loopback ports, free now and reserved for this process (see the module)."""
    choose = rng or random.SystemRandom()
    span = port_range()

    def take(entries: dict[int, int]) -> list[int]:
        chosen: list[int] = []
        tries = 0
        while len(chosen) < count:
            tries += 1
            if tries > 20 * count + 1000:
                raise RuntimeError(f"cannot find {count} free ports in {span.start}-{span.stop - 1}")
            port = choose.randrange(span.start, span.stop)
            if port in entries or port in chosen or not _bindable(port):
                continue
            chosen.append(port)
        for port in chosen:
            entries[port] = os.getpid()
        return chosen
    return _edit(take)


def free_ports(count: int) -> list[int]:
    """`count` distinct reserved free ports (`reserve_ports`)."""
    return reserve_ports(count)


def free_port() -> int:
    """One reserved free port: an address nothing listens on (nor will while this process lives)."""
    return reserve_ports(1)[0]
