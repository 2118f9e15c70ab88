"""Network namespaces for an emulated multi-site mesh on one machine.

Why: the fault harness must run every site of a maillage mesh behind its own
network stack, so that partitions, loss, bandwidth caps and latency can be
applied per site with the kernel's own tools (nftables, tc) while the node
daemon stays unaware of the emulation.

Topology (one ``Mesh``)::

    ns <prefix>-hub :  bridge br0  <- s0, s1, ... (veth ends of the sites)
                                   <- host        (optional, veth to the root ns)
    ns <prefix>-<site>: lo up, eth0 = 198.18.N.(10+i)/24, NO default route

Choices and why:

* The bridge lives in its **own namespace** (``<prefix>-hub``), not in the root
  namespace: the root namespace's firewall / br_netfilter / docker rules can
  not interfere with bridged traffic, two meshes (two pytest runs by two
  engineers) can never collide on interface names, and teardown is "delete the
  namespaces we created" (the kernel then removes every veth in them).
* Optional **host access** (default on): one veth from the root namespace into
  the bridge, with address 198.18.N.1/24, so the test process itself (SDK
  clients, the checker) can reach nodes directly. This is the only thing put in
  the root namespace; it is a connected /24 inside 198.18.0.0/15, so no test
  traffic can leave the machine. Each mesh takes a free /24 chosen under a file
  lock, so concurrent meshes do not overlap.
* Addresses only from 198.18.0.0/15 (RFC 2544 benchmarking range), and no
  default route in the site namespaces.
* Names carry a per-process, per-mesh prefix ``ml-<pid>-<n>``; teardown touches
  only what this object created, and kills only the pids it started.

``netns_available()`` is the capability probe the harness uses to decide between
namespace mode and its loopback-only fallback.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import ipaddress
import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from maillage.testing._sh import ToolError, run

__all__ = ["Mesh", "SiteNet", "netns_available", "require_netns", "in_netns", "HOST", "ToolError"]

T = TypeVar("T")

#: Pseudo-site name for the root namespace (the test process), when host access is on.
HOST = "host"

_CLONE_NEWNET = 0x40000000
_LOCK_PATH = "/run/lock/maillage-testing-net.lock"
_POOL = ipaddress.IPv4Network("198.18.0.0/15")
_counter = itertools.count()
_live: weakref.WeakSet[Mesh] = weakref.WeakSet()
_probe_cache: tuple[bool, str] | None = None


def netns_available(refresh: bool = False) -> tuple[bool, str]:
    """Can this process build namespace meshes? Returns (ok, human reason).

    Checks: running as root, ``ip``/``nft``/``tc`` present, and that a network
    namespace can really be created and an nft table loaded in it (containers
    without CAP_SYS_ADMIN/NET_ADMIN fail there, not on the uid check).
    """
    global _probe_cache
    if _probe_cache is not None and not refresh:
        return _probe_cache
    _probe_cache = _probe()
    return _probe_cache


def require_netns(what: str = "namespace emulation") -> None:
    """For tests: return if namespaces work; else FAIL as root (CI must run them), skip otherwise."""
    import pytest

    ok, why = netns_available()
    if ok:
        return
    if os.geteuid() == 0:
        pytest.fail(f"running as root but {what} is unavailable: {why}", pytrace=False)
    pytest.skip(f"{what} needs root: {why}")


def _probe() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not root: network namespaces need root (loopback-only mode)"
    missing = [t for t in ("ip", "nft", "tc") if shutil.which(t) is None]
    if missing:
        pkgs = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}
        return False, ("missing tools: " + ", ".join(missing) + " (apt-get install -y "
                       + " ".join(sorted({pkgs[m] for m in missing})) + ")")
    name = f"ml-{os.getpid()}-probe{random.randrange(1 << 30)}"
    try:
        run(["ip", "netns", "add", name])
    except (ToolError, OSError) as e:
        return False, f"cannot create a network namespace: {e}"
    try:
        run(["ip", "netns", "exec", name, "nft", "-f", "-"],
            input="table inet mlprobe { chain c { type filter hook output priority 0; }; }\n")
        run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
    except (ToolError, OSError) as e:
        return False, f"namespace created but nft/veth failed in it: {e}"
    finally:
        run(["ip", "netns", "del", name], check=False)
    return True, "network namespaces, veth, nftables and tc available"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6", use_errno=True)


def in_netns(ns: str, fn: Callable[[], T], timeout: float | None = 30.0) -> T:
    """Run ``fn()`` in a fresh thread switched into network namespace ``ns``.

    Linux network namespaces are per thread, so sockets created by ``fn`` live
    in ``ns`` and keep living there after the thread ends: this lets the test
    process itself open client sockets "from" a site (through that site's nft
    rules and latency relay) without spawning a process.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc().setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # propagated to the caller below
            box["error"] = e

    t = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"function in netns {ns} did not finish within {timeout}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass(frozen=True)
class SiteNet:
    """One emulated site: its namespace, address and interface names."""

    name: str
    ns: str            #: network namespace name (``ip netns exec <ns>``)
    address: str       #: IPv4 of the site (eth0 inside ``ns``)
    index: int
    hub_if: str        #: the veth end in the hub namespace (egress = traffic INTO the site)
    if_name: str = "eth0"  #: the site's interface (egress = traffic OUT of the site)


def _used_subnets() -> set[ipaddress.IPv4Network]:
    out = run(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    used: set[ipaddress.IPv4Network] = set()
    for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", out):
        ip = ipaddress.IPv4Address(m.group(1))
        if ip in _POOL:
            used.add(ipaddress.IPv4Network(f"{ip}/24", strict=False))
    return used


class Mesh:
    """A set of sites, each in its own network namespace, joined by a bridge.

    Use as a context manager (or call ``close()``); an atexit hook tears down
    any mesh still alive when the interpreter exits.

    >>> with Mesh(["paris", "lyon", "berlin"]) as mesh:        # doctest: +SKIP
    ...     p = mesh.run_in("paris", ["python", "-m", "http.server"])
    ...     mesh.faults.partition("paris", "lyon")
    """

    MAX_SITES = 240

    def __init__(self, sites: Iterable[str], *, host_access: bool = True,
                 prefix: str | None = None) -> None:
        names = list(sites)
        if not names or len(set(names)) != len(names) or HOST in names:
            raise ValueError(f"need distinct site names (not {HOST!r}): {names}")
        if len(names) > self.MAX_SITES:
            raise ValueError(f"at most {self.MAX_SITES} sites per mesh")
        for name in names:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
                raise ValueError(f"bad site name {name!r}")
        ok, why = netns_available()
        if not ok:
            raise ToolError(why)
        n = next(_counter)
        self.prefix = prefix or f"ml-{os.getpid()}-{n}"
        self.hub = f"{self.prefix}-hub"
        self._host_if = f"m{os.getpid()}h{n}"[:15] if host_access else None
        self.host_access = host_access
        self.sites: dict[str, SiteNet] = {}
        self._procs: list[subprocess.Popen] = []
        self._created_ns: list[str] = []
        self._closed = False
        self._faults = None
        _live.add(self)
        try:
            self._build(names)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ build
    def _build(self, names: list[str]) -> None:
        with open(_LOCK_PATH, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # subnet choice + host veth are atomic vs other meshes
            used = _used_subnets()
            free = [s for s in _POOL.subnets(new_prefix=24) if s not in used]
            if not free:
                raise ToolError("no free /24 left in 198.18.0.0/15")
            self.subnet = random.choice(free)
            hosts = list(self.subnet.hosts())
            self.host_address = str(hosts[0]) if self.host_access else None
            self._add_ns(self.hub)
            run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
            run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
            if self._host_if:
                run(["ip", "link", "add", self._host_if, "type", "veth",
                     "peer", "name", "host", "netns", self.hub])
                run(["ip", "-n", self.hub, "link", "set", "host", "master", "br0", "up"])
                run(["ip", "addr", "add", f"{self.host_address}/24", "dev", self._host_if])
                run(["ip", "link", "set", self._host_if, "up"])
        for i, name in enumerate(names):
            ns = f"{self.prefix}-{name}"
            site = SiteNet(name=name, ns=ns, address=str(hosts[9 + i]), index=i,
                           hub_if=f"s{i}")
            self._add_ns(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", self.hub, "link", "add", site.hub_if, "type", "veth",
                 "peer", "name", site.if_name, "netns", ns])
            run(["ip", "-n", self.hub, "link", "set", site.hub_if, "master", "br0", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{site.address}/24", "dev", site.if_name])
            run(["ip", "-n", ns, "link", "set", site.if_name, "up"])
            self.sites[name] = site

    def _add_ns(self, ns: str) -> None:
        run(["ip", "netns", "add", ns])
        self._created_ns.append(ns)

    # ------------------------------------------------------------------ access
    def site(self, name: str) -> SiteNet:
        try:
            return self.sites[name]
        except KeyError:
            raise KeyError(f"unknown site {name!r}; sites: {list(self.sites)}") from None

    def address(self, name: str) -> str:
        """IPv4 of a site, or of the root namespace for ``HOST``."""
        if name == HOST:
            if not self.host_address:
                raise ValueError("mesh built with host_access=False")
            return self.host_address
        return self.site(name).address

    def ns_argv(self, site: str | None, argv: Sequence[str]) -> list[str]:
        """argv prefixed so that it runs inside ``site``'s namespace (None/HOST: as is).

        ``ip netns exec`` execs the command, so the pid of the Popen is the
        command's own pid (signals reach it directly).
        """
        if site is None or site == HOST:
            return list(argv)
        return ["ip", "netns", "exec", self.site(site).ns, *argv]

    def run_in(self, site: str | None, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` inside ``site``'s namespace; killed at teardown.

        The process gets its own session (process group) unless the caller
        says otherwise, so teardown can kill it and its children by group.
        """
        popen_kwargs.setdefault("start_new_session", True)
        p = subprocess.Popen(self.ns_argv(site, argv), **popen_kwargs)
        self._procs.append(p)
        return p

    def call_in(self, site: str, fn: Callable[[], T], timeout: float | None = 30.0) -> T:
        """Run ``fn()`` in a thread inside ``site``'s namespace (see ``in_netns``)."""
        if site == HOST:
            return fn()
        return in_netns(self.site(site).ns, fn, timeout)

    def connect(self, site: str, addr: tuple[str, int], timeout: float = 5.0) -> socket.socket:
        """A TCP client socket created inside ``site`` and connected to ``addr``."""
        def go() -> socket.socket:
            s = socket.create_connection(addr, timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        return self.call_in(site, go, timeout=timeout + 5)

    def udp_socket(self, site: str) -> socket.socket:
        """An unbound UDP socket living in ``site``'s namespace."""
        return self.call_in(site, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))

    def can_connect(self, site: str, addr: tuple[str, int], timeout: float = 1.0) -> bool:
        """True if a TCP connection from ``site`` to ``addr`` succeeds within timeout."""
        try:
            self.connect(site, addr, timeout).close()
            return True
        except OSError:
            return False

    @property
    def faults(self):
        """The ``Faults`` controller of this mesh (partitions, loss, caps, latency)."""
        if self._faults is None:
            from maillage.testing.faults import Faults
            self._faults = Faults(self)
        return self._faults

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Undo everything: faults/relays, started processes, namespaces, host veth."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        if self._faults is not None:
            try:
                self._faults.close()
            except Exception as e:  # keep tearing down
                errors.append(f"faults: {e}")
        for p in self._procs:
            _kill_started(p)
        for ns in reversed(self._created_ns):
            r = run(["ip", "netns", "del", ns], check=False)
            if r.returncode != 0 and "No such file" not in r.stderr:
                errors.append(r.stderr.strip())
        if self._host_if:
            run(["ip", "link", "del", self._host_if], check=False)  # usually gone with the hub
        _live.discard(self)
        if errors:
            raise ToolError("mesh teardown incomplete: " + "; ".join(errors))

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Mesh({self.prefix}, {[(s.name, s.address) for s in self.sites.values()]})"


def _kill_started(p: subprocess.Popen) -> None:
    """SIGKILL a process we started (and its group if it leads one), then reap it."""
    if p.poll() is not None:
        return
    try:
        if os.getpgid(p.pid) == p.pid:
            os.killpg(p.pid, signal.SIGKILL)
        else:
            p.kill()
    except ProcessLookupError:
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


def reap_stale() -> list[str]:
    """Delete namespaces/host veths left by a *dead* process of this module.

    Only names this module makes (``ml-<pid>-...`` namespaces, ``m<pid>h<n>``
    root veths) whose ``<pid>`` no longer exists are touched: that happens when
    a harness was SIGKILLed and its atexit hook never ran. Processes that may
    still sit inside such a namespace are NOT killed (we did not keep their
    pids); they are listed in the returned report instead. Never called
    implicitly: call it by hand or from a CI job's setup.
    """
    def dead(pid: int) -> bool:
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False

    report = []
    for name in run(["ip", "netns", "list"], check=False).stdout.split():
        m = re.fullmatch(r"ml-(\d+)-.+", name)
        if m and dead(int(m.group(1))):
            left = run(["ip", "netns", "pids", name], check=False).stdout.split()
            run(["ip", "netns", "del", name], check=False)
            report.append(f"netns {name}" + (f" (pids still inside: {left})" if left else ""))
    for m in re.finditer(r"^\d+: (m(\d+)h\d+)[@:]", run(["ip", "-o", "link"], check=False).stdout, re.M):
        if dead(int(m.group(2))):
            run(["ip", "link", "del", m.group(1)], check=False)
            report.append(f"link {m.group(1)}")
    return report


@atexit.register
def _teardown_all() -> None:
    for mesh in list(_live):
        try:
            mesh.close()
        except Exception:
            pass
