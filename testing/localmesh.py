"""Start a mesh of real node processes on loopback: for the demo, the tests and the benchmarks.

Each node is its own `maillage node run` process with its own data directory, labelled with the
site and location the layout gives it. The mesh keeps the pid of every process it started and ends
only those (SIGTERM, then SIGKILL after a grace period), also when the caller fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from maillage.placement import Layout, Node, Policy, Site, format_layout, parse_location
from maillage.proto.signing import new_secret_file

READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class SiteSpec:
    name: str
    location: str
    nodes: int = 1
    capacity: int = 1 << 40


DEMO_SITES = (
    SiteSpec("paris-1", "eu/fr/idf"), SiteSpec("paris-2", "eu/fr/idf"),
    SiteSpec("toulouse-1", "eu/fr/occitanie"), SiteSpec("montpellier-1", "eu/fr/occitanie"),
    SiteSpec("munich-1", "eu/de/bayern"), SiteSpec("nuremberg-1", "eu/de/bayern"),
)
DEMO_POLICIES = (
    Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
    Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2),
)


def make_layout(sites: tuple[SiteSpec, ...] = DEMO_SITES, policies: tuple[Policy, ...] = DEMO_POLICIES,
                *, partition_bits: int = 8, version: int = 1) -> Layout:
    """A layout of loopback nodes on free ports, one per site unless a site asks for more."""
    nodes = []
    for spec in sites:
        for i in range(spec.nodes):
            node_id = spec.name if spec.nodes == 1 else f"{spec.name}-n{i + 1}"
            nodes.append(Node(id=node_id, address=f"127.0.0.1:{free_port()}", site=spec.name,
                              capacity=spec.capacity))
    return Layout(version=version, partition_bits=partition_bits,
                  sites=tuple(Site(s.name, parse_location(s.location)) for s in sites),
                  nodes=tuple(nodes), policies=tuple(policies))


class LocalMesh:
    """Real node processes for a layout; use as a context manager."""

    def __init__(self, layout: Layout, base_dir: Path | None = None, *, log_dir: Path | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.layout = layout
        self._own_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="maillage-mesh-")) if base_dir is None else base_dir
        self.log_dir = log_dir or self.base_dir / "logs"
        self._extra = extra_args
        self.processes: dict[str, subprocess.Popen] = {}
        self.layout_file = self.base_dir / "layout.toml"
        self.secret_file = self.base_dir / "cluster.key"

    # ----- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> LocalMesh:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.layout_file.write_text(format_layout(self.layout))
        if not self.secret_file.exists():
            new_secret_file(self.secret_file)
        for node in self.layout.nodes:
            self.start_node(node.id, wait=False)
        for node in self.layout.nodes:
            self.wait_ready(node.id)

    def data_dir(self, node_id: str) -> Path:
        return self.base_dir / "nodes" / node_id

    def address(self, node_id: str) -> str:
        return self.layout.node(node_id).address

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.layout.nodes]

    def start_node(self, node_id: str, *, wait: bool = True) -> None:
        argv = [sys.executable, "-m", "maillage.cli", "node", "run", "--id", node_id,
                "--data-dir", str(self.data_dir(node_id)), "--layout", str(self.layout_file),
                "--secret-file", str(self.secret_file), *self._extra]
        log = open(self.log_dir / f"{node_id}.log", "ab")
        self.processes[node_id] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            self.wait_ready(node_id)

    def wait_ready(self, node_id: str, timeout: float = READY_TIMEOUT) -> None:
        host, port = self.address(node_id).rsplit(":", 1)
        deadline = time.monotonic() + timeout
        proc = self.processes[node_id]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"node {node_id} exited with code {proc.returncode}; "
                                   f"log: {self.log_dir / (node_id + '.log')}\n{self.tail_log(node_id)}")
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"node {node_id} not listening on {self.address(node_id)} after {timeout} s")

    def tail_log(self, node_id: str, lines: int = 30) -> str:
        path = self.log_dir / f"{node_id}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a node this mesh started (SIGKILL by default) and reap it."""
        proc = self.processes.get(node_id)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_node(self, node_id: str) -> None:
        self.kill(node_id, signal.SIGTERM)

    def close(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_dir and not os.environ.get("MAILLAGE_KEEP_MESH"):
            shutil.rmtree(self.base_dir, ignore_errors=True)
