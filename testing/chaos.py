"""Soak mode: random faults, one at a time, under the recorded workload; then heal and check.

Each round picks a fault from the list below (seeded), holds it 2-5 s, and undoes it. One fault at
a time keeps the run inside what the mesh promises (at most R-1 sites failing); the value is in
the sheer number of transitions. Network faults need namespace mode; in loopback mode only the
process, clock and disk faults are drawn.

Faults: SIGKILL + restart a node; SIGSTOP / SIGCONT a node; isolate a site; partition a region
(France | Germany) both ways or one way; random halves; 10 % packet loss on a site; 30 ms +- 10 ms
latency between two sites (user-space relay, this kernel has no netem); restart a node with its
clock 30 s off; flip a bit in a random stored frame. Disk full is not drawn (the node's data dir
must be on a tmpfs from the start: see tests/faults).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

from maillage.testing.checker import Report
from maillage.testing.disk import flip_bit
from maillage.testing.harness import FRANCE, GERMANY, Harness

__all__ = ["soak", "FAULTS"]

NETWORK = ("isolate", "region", "region-one-way", "halves", "loss", "latency")
PROCESS = ("kill", "pause", "skew", "corrupt")
FAULTS = PROCESS + NETWORK


def _one_fault(h: Harness, rng: random.Random, kind: str) -> Callable[[], None]:
    """Apply fault ``kind``; return the function that undoes it."""
    nodes = [n.id for n in h.mesh.layout.nodes]
    sites = [s.name for s in h.mesh.layout.sites]
    node = rng.choice(nodes)
    faults = h.net.faults if h.net is not None else None
    if kind == "kill":
        h.mesh.kill(node)
        h.fault(f"SIGKILL {node}")

        def restart() -> None:
            h.mesh.start_node(node)
            h.fault(f"restart {node}")
        return restart
    if kind == "pause":
        h.mesh.pause(node)
        h.fault(f"SIGSTOP {node}")

        def resume() -> None:
            h.mesh.resume(node)
            h.fault(f"SIGCONT {node}")
        return resume
    if kind == "skew":
        skew = rng.choice((-30.0, 30.0))
        h.mesh.start_node(node, clock_skew=skew)
        h.fault(f"restart {node} with clock {skew:+.0f}s")

        def unskew() -> None:
            h.mesh.start_node(node, clock_skew=None)
            h.fault(f"restart {node} with true clock")
        return unskew
    if kind == "corrupt":
        files = [p for p in (h.mesh.data_dir(node) / "chunks").glob("??/??/*") if p.is_file()]
        if not files:
            h.fault(f"corrupt: no frame on {node} yet")
            return lambda: None
        path = rng.choice(files)
        flip_bit(str(path), rng.randrange(path.stat().st_size), rng.randrange(8))
        h.fault(f"flip a bit of frame {path.name[:12]} on {node}")
        return lambda: None
    assert faults is not None
    if kind == "isolate":
        site = rng.choice(sites)
        faults.isolate(site)
        h.fault(f"isolate {site}")
    elif kind == "region":
        faults.split(FRANCE, GERMANY)
        h.fault("partition France | Germany")
    elif kind == "region-one-way":
        for a in FRANCE:
            for b in GERMANY:
                faults.partition(a, b, one_way=True)
        h.fault("one-way partition France -> Germany")
    elif kind == "halves":
        shuffled = rng.sample(sites, len(sites))
        cut = len(sites) // 2
        faults.split(shuffled[:cut], shuffled[cut:])
        h.fault(f"partition {shuffled[:cut]} | {shuffled[cut:]}")
    elif kind == "loss":
        site = rng.choice(sites)
        faults.loss(site, 10)
        h.fault(f"10% loss at {site}")
    elif kind == "latency":
        a, b = rng.sample(sites, 2)
        faults.latency(a, b, 30, 10)
        h.fault(f"latency {a}<->{b} 30+-10 ms")

    def heal() -> None:
        faults.reset()
        h.fault("heal network")
    return heal


def soak(minutes: float, *, seed: int | None = None, mode: str = "auto", out=sys.stdout,
         replication_bound: float = 30.0) -> Report:
    """Run the workload with random faults for ``minutes``, heal, check; the checker's report."""
    with Harness(seed=seed, mode=mode, out=out) as h:
        rng = random.Random(f"{h.seed}:chaos")
        kinds = FAULTS if h.net is not None else PROCESS
        if h.net is None:
            h.say("loopback mode: network faults (" + ", ".join(NETWORK) + ") are not drawn")
        h.workload.start()
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.5, 1.5))
            undo = _one_fault(h, rng, rng.choice(kinds))
            time.sleep(min(rng.uniform(2, 5), max(0.5, end - time.monotonic())))
            undo()
        h.heal_all()
        time.sleep(1)
        return h.check(replication_bound=replication_bound)
