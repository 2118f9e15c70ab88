"""One fault run, composed: a ``SiteMesh``, a recorded ``Workload``, faults, then the checker.

Used by the scenario tests (tests/faults/) and by ``maillage chaos``. The seed is printed at start
so a failing run can be replayed (``MAILLAGE_SEED=... pytest tests/faults`` or ``--seed``).

The default mesh: five sites in two countries, so that a France-only policy (R=2 over three
French sites) and an EU-wide one (R=2 over all five, spread by country) both keep a handoff
candidate when one site is down::

    paris eu/fr/idf   lyon eu/fr/ara   toulouse eu/fr/occitanie   munich eu/de/bayern   berlin eu/de/berlin
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from maillage.placement import Policy
from maillage.testing.checker import Report, check
from maillage.testing.cluster import SiteMesh
from maillage.testing.localmesh import SiteSpec
from maillage.testing.workload import BucketSpec, Workload

__all__ = ["Harness", "SITES", "POLICIES", "BUCKETS", "FRANCE", "GERMANY", "CHUNK_SIZE"]

SITES = (
    SiteSpec("paris", "eu/fr/idf"), SiteSpec("lyon", "eu/fr/ara"), SiteSpec("toulouse", "eu/fr/occitanie"),
    SiteSpec("munich", "eu/de/bayern"), SiteSpec("berlin", "eu/de/berlin"),
)
FRANCE = ("paris", "lyon", "toulouse")
GERMANY = ("munich", "berlin")
POLICIES = (
    Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
    Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2),
)
BUCKETS = (BucketSpec("health-fr", "france-only"), BucketSpec("city-eu", "eu-wide"))
CHUNK_SIZE = 64 * 1024   # values up to 200 kB span several chunks


def pick_seed(seed: int | None = None) -> int:
    if seed is not None:
        return seed
    env = os.environ.get("MAILLAGE_SEED")
    return int(env) if env else random.randrange(1, 1 << 31)


class Harness:
    """Mesh + workload + fault log + checker for one run; a context manager that cleans up."""

    def __init__(self, *, seed: int | None = None, mode: str = "auto", sites=SITES, policies=POLICIES,
                 buckets=BUCKETS, clients: int = 4, keys_per_bucket: int = 8, op_timeout: float = 5.0,
                 data_dirs: dict[str, Path] | None = None, clock_skew: dict[str, float] | None = None,
                 extra_args: tuple[str, ...] = (), out=sys.stdout) -> None:
        self.seed = pick_seed(seed)
        self.out = out
        self.buckets = tuple(buckets)
        self.faults: list[str] = []
        self._t0 = time.monotonic()
        self.mesh = SiteMesh(tuple(sites), tuple(policies), mode=mode, chunk_size=CHUNK_SIZE,
                             data_dirs=data_dirs, clock_skew=clock_skew, extra_args=extra_args)
        self.say(f"seed {self.seed} (replay: MAILLAGE_SEED={self.seed}); {self.mesh.describe()}")
        self.workload = Workload(self.mesh.profile, self.buckets, self.seed, clients=clients,
                                 keys_per_bucket=keys_per_bucket, op_timeout=op_timeout)

    @property
    def mode(self) -> str:
        return self.mesh.mode

    @property
    def net(self):
        """The namespace ``Mesh`` (None in loopback mode)."""
        return self.mesh.net

    def say(self, text: str) -> None:
        print(f"[harness +{time.monotonic() - self._t0:6.1f}s] {text}", file=self.out, flush=True)

    def fault(self, text: str) -> None:
        """Record a fault (or a heal) in the run's log and the report."""
        entry = f"+{time.monotonic() - self._t0:.1f}s {text}"
        self.faults.append(entry)
        self.say(f"fault: {text}")

    def __enter__(self) -> Harness:
        try:
            self.mesh.__enter__()
            self.workload.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.workload.stop()
        except Exception as e:
            self.say(f"workload stop: {e}")
        self.mesh.close()

    def heal_all(self) -> None:
        """Remove every network fault, resume paused nodes, start dead ones."""
        if self.net is not None:
            self.net.faults.reset()
        for node in self.mesh.layout.nodes:
            p = self.mesh.supervisor.procs.get(node.id)
            if p is not None and p.paused:
                self.mesh.resume(node.id)
            if not self.mesh.alive(node.id):
                self.mesh.start_node(node.id)
        self.fault("heal all")

    def check(self, *, replication_bound: float = 20.0, placed: bool = False) -> Report:
        history = self.workload.stop()
        self.say(f"workload stopped: {len(history)} operations; checking")
        report = check(self.mode, self.seed, history, self.mesh.profile, self.mesh.admin_profile, self.mesh.layout,
                       self.buckets, self.workload.keys(), faults=self.faults,
                       replication_bound=replication_bound, placed=placed)
        print(report.text(), file=self.out, flush=True)
        return report

    def node_for(self, site: str) -> str:
        return next(n.id for n in self.mesh.layout.nodes if n.site == site)

    def log_tail(self, node_id: str, lines: int = 30) -> str:
        return self.mesh.tail_log(node_id, lines)
