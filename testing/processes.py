"""A small supervisor for the processes of a test (nodes, relays, clients).

Why: fault scenarios kill, pause and restart nodes, and a failed test must
never leave a stray daemon behind. The supervisor keeps the ``Popen`` of every
process it started and signals only those pids (by their own process group,
created with ``start_new_session``), never by name.

Each process may run inside a site's namespace (``ip netns exec`` execs, so
the pid is the program's own), optionally with a skewed clock, with its
output in a log file whose tail the harness can print on failure.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from maillage.testing.clock import with_skew

if TYPE_CHECKING:
    from maillage.testing.netns import Mesh

__all__ = ["Supervisor", "Proc"]

_live: weakref.WeakSet[Supervisor] = weakref.WeakSet()


@dataclass
class Proc:
    """One supervised process and how to start it again."""

    name: str
    argv: list[str]
    site: str | None
    env: dict[str, str] | None
    cwd: str | None
    clock_skew: float | None
    log_path: str
    popen: subprocess.Popen | None = None
    starts: int = 0
    paused: bool = False
    history: list[tuple[float, str]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except FileNotFoundError:
            return ""


class Supervisor:
    """Start/kill/pause/restart processes; ``close()`` kills every pid it started."""

    def __init__(self, mesh: Mesh | None = None, log_dir: str | None = None) -> None:
        self.mesh = mesh
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="ml-procs-")
        self.procs: dict[str, Proc] = {}
        self._closed = False
        _live.add(self)

    def start(self, name: str, argv: Sequence[str], *, site: str | None = None,
              env: Mapping[str, str] | None = None, cwd: str | None = None,
              clock_skew: float | None = None) -> Proc:
        """Start ``argv`` (in ``site``'s namespace when given) under ``name``."""
        if name in self.procs and self.procs[name].alive():
            raise ValueError(f"process {name!r} is already running (pid {self.procs[name].pid})")
        if site is not None and self.mesh is None:
            raise ValueError("site given but the supervisor has no mesh")
        p = Proc(name, list(argv), site, dict(env) if env is not None else None, cwd,
                 clock_skew, os.path.join(self.log_dir, f"{name}.log"))
        self.procs[name] = p
        self._spawn(p)
        return p

    def _spawn(self, p: Proc) -> None:
        argv = p.argv if p.clock_skew is None else with_skew(p.argv, p.clock_skew)
        if p.site is not None:
            assert self.mesh is not None  # start() refuses a site without a mesh
            argv = self.mesh.ns_argv(p.site, argv)
        env = None if p.env is None else {**os.environ, **p.env}
        log = open(p.log_path, "ab")
        try:
            log.write(f"--- start #{p.starts + 1}: {argv}\n".encode())
            log.flush()
            p.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, cwd=p.cwd,
                                       start_new_session=True)
        finally:
            log.close()
        p.starts += 1
        p.paused = False
        p.history.append((time.time(), f"start pid={p.popen.pid}"))

    def get(self, name: str) -> Proc:
        return self.procs[name]

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to the process group of ``name`` (only if still ours and alive)."""
        p = self.procs[name]
        if not p.alive():
            return
        try:
            os.killpg(p.pid, sig)  # pgid == pid: start_new_session
        except ProcessLookupError:
            pass
        p.history.append((time.time(), f"signal {signal.Signals(sig).name}"))

    def kill(self, name: str, timeout: float = 5.0) -> int | None:
        """SIGKILL (crash, no cleanup) and reap. Returns the exit code."""
        p = self.procs[name]
        self.signal(name, signal.SIGKILL)
        if p.popen is not None:
            try:
                p.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{name} (pid {p.pid}) survived SIGKILL for {timeout}s") from None
        p.paused = False
        return p.returncode

    def stop(self, name: str, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``. Returns the exit code."""
        p = self.procs[name]
        if p.paused:
            self.resume(name)
        self.signal(name, signal.SIGTERM)
        try:
            if p.popen is not None:
                p.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill(name)
        return p.returncode

    def pause(self, name: str, timeout: float = 5.0) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing (a hung node).

        Synchronous: returns once every thread of the process is stopped, so
        the caller's next action really happens while the node is frozen.
        """
        self.signal(name, signal.SIGSTOP)
        self.procs[name].paused = True
        self._wait_threads(name, stopped=True, timeout=timeout)

    def resume(self, name: str, timeout: float = 5.0) -> None:
        """SIGCONT, and wait until no thread is stopped any more."""
        self.signal(name, signal.SIGCONT)
        self.procs[name].paused = False
        self._wait_threads(name, stopped=False, timeout=timeout)

    def _wait_threads(self, name: str, stopped: bool, timeout: float) -> None:
        p = self.procs[name]
        deadline = time.monotonic() + timeout
        while p.alive():
            states = _thread_states(p.pid)
            if states and all((s in "tT") == stopped for s in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} (pid {p.pid}) threads not {'stopped' if stopped else 'running'}"
                                   f" after {timeout}s: states {states}")
            time.sleep(0.005)

    def restart(self, name: str, *, clock_skew: float | None | bool = False) -> Proc:
        """Kill if alive, start again with the same argv/site/env (optionally a new skew)."""
        p = self.procs[name]
        if p.alive():
            self.kill(name)
        if clock_skew is not False:
            p.clock_skew = clock_skew  # type: ignore[assignment]
        self._spawn(p)
        return p

    def wait_port(self, port: int, host: str | None = None, *, site: str | None = None,
                  timeout: float = 15.0, name: str | None = None) -> None:
        """Wait until a TCP connect to host:port succeeds, from ``site``'s namespace
        (or from here). ``host`` defaults to the site's address, else 127.0.0.1.
        If ``name`` is given, fail early when that process exits."""
        if host is None:
            host = self.mesh.address(site) if (site and self.mesh) else "127.0.0.1"
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if name is not None and not self.procs[name].alive():
                raise RuntimeError(f"{name} exited ({self.procs[name].returncode}) before "
                                   f"{host}:{port} opened:\n{self.procs[name].log_tail()}")
            try:
                if site is not None and self.mesh is not None:
                    self.mesh.connect(site, (host, port), timeout=0.5).close()
                else:
                    socket.create_connection((host, port), timeout=0.5).close()
                return
            except OSError as e:
                last = e
                time.sleep(0.05)
        raise TimeoutError(f"{host}:{port} (from {site or 'here'}) not open after {timeout}s: {last}")

    def close(self) -> None:
        """Kill every process this supervisor started that is still alive."""
        if self._closed:
            return
        self._closed = True
        for name, p in self.procs.items():
            if p.alive():
                if p.paused:
                    self.signal(name, signal.SIGCONT)
                self.signal(name, signal.SIGKILL)
            if p.popen is not None:
                try:
                    p.popen.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        if self._own_log_dir and not os.environ.get("MAILLAGE_KEEP_MESH"):
            shutil.rmtree(self.log_dir, ignore_errors=True)  # logs of a temp dir we made: gone with us
        _live.discard(self)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _thread_states(pid: int) -> list[str]:
    """One-letter scheduler state of every thread of ``pid`` (R, S, D, T, t, Z...)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    out.append(f.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return out


@atexit.register
def _close_all() -> None:
    for s in list(_live):
        try:
            s.close()
        except Exception:
            pass
