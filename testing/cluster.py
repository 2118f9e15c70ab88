"""Real maillage nodes, one network namespace per site: the mesh the fault scenarios break.

Why: the harness must hit the node's real network path (partitions, loss, latency act in the
kernel of each site's namespace) and its real process life (SIGKILL, SIGSTOP, a skewed clock, a
full disk), while the test process drives clients and the checker from the host.

How: ``SiteMesh`` *is* a ``maillage.testing.localmesh.LocalMesh`` (same signed layout file, cluster
and node trust dirs, access keys and profiles, data directories, readiness wait, log tail) whose node
processes are started by a ``testing.processes.Supervisor`` instead, so every fault of
``maillage.testing`` applies to them:

* ``mode="netns"``: a ``testing.netns.Mesh`` with one namespace per site; each node listens on its
  site's 198.18.N.x address (port 7100 + its index in the site), which is what the layout says.
  The test process reaches the nodes through the mesh's host veth (198.18.N.1 on the bridge), so
  the SDK and the checker run here, unchanged.
* ``mode="loopback"``: no namespaces (not root, or asked for): the nodes listen on 127.0.0.1 free
  ports as in ``LocalMesh``. Process, disk and clock faults still work; network faults do not
  (``self.net`` is None) and scenarios needing them are skipped with the reason.
* ``mode="auto"``: namespaces when ``netns_available()``, else loopback with an explicit message.

Nodes start with short cluster-life timings (``FAST_TIMINGS``) so that suspicion, repair and
handback happen within a scenario's time budget.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

from maillage.placement import Layout, Policy
from maillage.testing.localmesh import DEMO_POLICIES, LocalMesh, SiteSpec, make_layout
from maillage.testing.netns import Mesh, netns_available
from maillage.testing.processes import Supervisor

__all__ = ["SiteMesh", "FAST_TIMINGS", "NODE_PORT", "choose_mode"]

#: Cluster-life flags of every harness node: fast suspicion and repair rounds.
FAST_TIMINGS = ("--heartbeat-interval", "0.5", "--suspect-after", "2", "--repair-interval", "1")
#: First port of the nodes of a site (netns mode: each site has its own address).
NODE_PORT = 7100


def choose_mode(mode: str = "auto") -> tuple[str, str]:
    """("netns" | "loopback", why). ``auto`` picks namespaces when this process can build them."""
    if mode not in ("auto", "netns", "loopback"):
        raise ValueError(f"mode must be auto, netns or loopback, not {mode!r}")
    ok, why = netns_available()
    if mode == "loopback":
        return "loopback", "loopback-only mode requested"
    if mode == "netns" and not ok:
        raise RuntimeError(f"namespace mode requested but unavailable: {why}")
    if ok:
        return "netns", "one network namespace per site (" + why + ")"
    return "loopback", f"LOOPBACK-ONLY MODE: {why}; network faults (partitions, loss, latency) are off"


class SiteMesh(LocalMesh):
    """Node processes of a layout, each inside its site's namespace (or on loopback).

    >>> with SiteMesh(SITES, POLICIES) as m:                       # doctest: +SKIP
    ...     m.net.faults.partition("paris-1", "munich-1")           # netns mode only
    ...     m.kill("lyon-1"); m.start_node("lyon-1")
    """

    def __init__(self, sites: tuple[SiteSpec, ...], policies: tuple[Policy, ...] = DEMO_POLICIES, *,
                 mode: str = "auto", base_dir: Path | None = None, chunk_size: int | None = None,
                 partition_bits: int = 8, extra_args: tuple[str, ...] = (),
                 data_dirs: dict[str, Path] | None = None,
                 clock_skew: dict[str, float] | None = None) -> None:
        self.mode, self.mode_reason = choose_mode(mode)
        self.net: Mesh | None = None
        if self.mode == "netns":
            self.net = Mesh([s.name for s in sites])
        try:
            layout = make_layout(sites, policies, partition_bits=partition_bits)
            if self.net is not None:
                layout = self._namespaced(layout)
            args = (*FAST_TIMINGS, *(("--chunk-size", str(chunk_size)) if chunk_size else ()), *extra_args)
            super().__init__(layout, base_dir, extra_args=args)
            self._own_base = base_dir is None
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.supervisor = Supervisor(self.net, log_dir=str(self.log_dir))
        except BaseException:
            if self.net is not None:
                self.net.close()
            raise
        self._data_dirs = dict(data_dirs or {})
        self._skew: dict[str, float | None] = dict(clock_skew or {})

    def _namespaced(self, layout: Layout) -> Layout:
        assert self.net is not None
        seen: dict[str, int] = {}
        nodes = []
        for node in layout.nodes:
            i = seen[node.site] = seen.get(node.site, -1) + 1
            nodes.append(replace(node, address=f"{self.net.address(node.site)}:{NODE_PORT + i}"))
        return replace(layout, nodes=tuple(nodes))

    # ----- what LocalMesh does with a plain Popen, done through the supervisor ------------------

    def data_dir(self, node_id: str) -> Path:
        return self._data_dirs.get(node_id) or super().data_dir(node_id)

    def site_of(self, node_id: str) -> str:
        return self.layout.node(node_id).site

    def start_node(self, node_id: str, *, wait: bool = True, extra_args: tuple[str, ...] = (),
                   clock_skew: float | None | bool = False) -> None:
        """Start (or start again) a node in its site's namespace; optionally re-skewed.

        ``extra_args``: options for this start only. ``clock_skew``: seconds of skew from now on,
        None for the true clock, False (default) to keep the node's current skew."""
        if clock_skew is not False:
            self._skew[node_id] = clock_skew
        site = self.site_of(node_id) if self.net is not None else None
        argv = self.node_argv(node_id, extra_args)
        if node_id in self.supervisor.procs:
            self.supervisor.procs[node_id].argv = argv
            proc = self.supervisor.restart(node_id, clock_skew=self._skew.get(node_id))
        else:
            proc = self.supervisor.start(node_id, argv, site=site, clock_skew=self._skew.get(node_id))
        assert proc.popen is not None
        self.processes[node_id] = proc.popen
        if wait:
            self.wait_ready(node_id)

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        """SIGKILL (default) or another signal to a node this mesh started."""
        if sig == signal.SIGKILL:
            self.supervisor.kill(node_id)
        elif sig == signal.SIGSTOP:
            self.supervisor.pause(node_id)
        elif sig == signal.SIGCONT:
            self.supervisor.resume(node_id)
        else:
            super().kill(node_id, sig)

    def pause(self, node_id: str) -> None:
        self.supervisor.pause(node_id)

    def resume(self, node_id: str) -> None:
        self.supervisor.resume(node_id)

    def alive(self, node_id: str) -> bool:
        p = self.supervisor.procs.get(node_id)
        return p is not None and p.alive()

    def describe(self) -> str:
        where = ", ".join(f"{n.id}={n.address}" for n in self.layout.nodes)
        return f"mode {self.mode}: {self.mode_reason}\nnodes: {where}"

    def close(self) -> None:
        """Stop nodes (SIGCONT+SIGTERM, then SIGKILL), then namespaces, then the temp dir."""
        errors = []
        try:
            for node_id, p in self.supervisor.procs.items():
                if p.alive():
                    self.supervisor.stop(node_id, timeout=5)
        except Exception as e:  # keep tearing down
            errors.append(f"stop: {e}")
        finally:
            self.supervisor.close()
        try:
            super().close()
        except Exception as e:
            errors.append(f"localmesh: {e}")
        if self.net is not None:
            try:
                self.net.close()
            except Exception as e:
                errors.append(f"netns: {e}")
        if self._own_base and not os.environ.get("MAILLAGE_KEEP_MESH"):
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if errors:
            raise RuntimeError("SiteMesh teardown: " + "; ".join(errors))

