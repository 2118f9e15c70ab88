"""maillage.testing: network and fault emulation for the multi-site fault harness.

Small modules, one job each:

* ``netns``     - ``Mesh``: one network namespace per site on a bridge (198.18.0.0/15,
                  no default route), ``run_in``, ``connect``, ``netns_available()``.
* ``faults``    - ``mesh.faults``: partition / split / isolate / heal, loss, tbf
                  bandwidth caps, latency + jitter (via ``relay``).
* ``relay``     - user-space delaying TCP relay (this kernel has no netem).
* ``processes`` - ``Supervisor``: start (in a site), SIGKILL, SIGSTOP/SIGCONT,
                  restart, wait for a port; kills only the pids it started.
* ``disk``      - ``Tmpfs`` to fill a node's disk; bit flip / truncate helpers.
* ``clock``     - clock skew for one process with libfaketime.

* ``localmesh`` - ``LocalMesh``: real node processes on loopback for the demo, tests and benchmarks.
* ``inmemory``  - ``InMemoryMesh``: a whole mesh in one process over real stores, for in-process tests.
* ``waiting``   - ``eventually``: wait for a condition with a bound, never a fixed sleep.

On top of them, the fault harness (these import the SDK and ``localmesh``, never the node's logic):

* ``cluster``   - ``SiteMesh``: real node processes, one namespace per site (loopback fallback).
* ``workload``  - seeded concurrent put/get/delete/list recording ok / fail / unknown.
* ``checker``   - lost writes, resurrection, invented bytes, residency, time to full replication.
* ``harness``   - ``Harness``: mesh + workload + fault log + checker for one run.
* ``chaos``     - soak mode behind ``maillage chaos``.
"""

# Lazy re-exports (PEP 562): ``python -m maillage.testing.relay`` must not have
# imported the relay module already through this package.
_EXPORTS = {
    "HOST": "netns", "Mesh": "netns", "SiteNet": "netns", "netns_available": "netns",
    "reap_stale": "netns", "Faults": "faults", "Link": "relay", "Supervisor": "processes",
    "Proc": "processes", "Tmpfs": "disk", "fill": "disk", "flip_bit": "disk",
    "truncate": "disk", "faketime_available": "clock", "with_skew": "clock",
    "LocalMesh": "localmesh", "SiteSpec": "localmesh", "make_layout": "localmesh",
    "SiteMesh": "cluster", "Workload": "workload", "Harness": "harness", "require_netns": "netns",
    "eventually": "waiting", "eventually_async": "waiting",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
