"""A synthetic fleet source: N simulated sites, for tests and for rehearsing the console at scale.

Deterministic from a seed: sites spread over countries and regions, one to three nodes each, a few
nodes suspect, down or unreachable. `set_state` changes a node between observations, as a real
failure would. It accepts one access key, given at construction (`Refused` for any other).
"""

from __future__ import annotations

import hmac
import random
import time
from dataclasses import replace

from maillage.cli.console.fleet import BucketInfo, NodeObs, Observation, PolicyInfo, Refused, SiteInfo

COUNTRIES = ("fr", "de", "it", "es", "pt", "be", "nl", "at", "pl", "se", "dk", "fi", "ie", "cz", "gr")
REGIONS_PER_COUNTRY = 6
TIB = 1 << 40


class SyntheticSource:
    def __init__(self, sites: int, *, key_id: str, secret: str, seed: int = 1,
                 extra_site_names: tuple[str, ...] = ()) -> None:
        self.key = (key_id, secret)
        rng = random.Random(seed)
        names = [f"{COUNTRIES[i % len(COUNTRIES)]}-site-{i:04d}" for i in range(sites - len(extra_site_names))]
        names += list(extra_site_names)
        self.sites: list[SiteInfo] = []
        self.nodes: dict[str, NodeObs] = {}
        for i, name in enumerate(names):
            country = COUNTRIES[i % len(COUNTRIES)]
            region = f"{country}-r{rng.randrange(REGIONS_PER_COUNTRY)}"
            self.sites.append(SiteInfo(name, ("eu", country, region)))
            for j in range(rng.choice((1, 1, 2, 3))):
                node_id = f"{name}-n{j + 1}"
                capacity = rng.choice((2, 4, 8)) * TIB
                roll = rng.random()
                reachable, seen_as = True, "up"
                if roll < 0.01:
                    reachable, seen_as = False, "down"
                elif roll < 0.02:
                    seen_as = "suspect"
                elif roll < 0.025:
                    reachable = False
                self.nodes[node_id] = NodeObs(
                    id=node_id, site=name, address=f"10.{i // 250}.{i % 250}.{j + 1}:7000", capacity=capacity,
                    stored_bytes=int(capacity * rng.uniform(0.05, 0.9)), chunks=rng.randrange(10_000, 5_000_000),
                    disk_total=capacity, disk_free=int(capacity * rng.uniform(0.1, 0.9)), layout_version=7,
                    peers={"up": 5, "suspect": 0, "down": 0},
                    repair={"running": rng.random() < 0.1, "rounds": rng.randrange(1, 500), "groups_total": 512,
                            "groups_done": rng.randrange(0, 513), "behind": rng.choice((0, 0, 0, 2)),
                            "bytes_copied": rng.randrange(0, 1 << 34), "rate_bytes_per_s": 0.0,
                            "eta_seconds": 0.0, "handoff_items": 0},
                    scrub={"frames_checked": rng.randrange(0, 1 << 24), "corrupt_found": 0,
                           "passes": rng.randrange(0, 40)},
                    reachable=reachable, seen_as=seen_as)
        self.policies = (PolicyInfo("eu-wide", (("eu",),), 2, 2), PolicyInfo("france-only", (("eu", "fr"),), 2, 3),
                         PolicyInfo("germany-only", (("eu", "de"),), 3))
        self.buckets = tuple(BucketInfo(f"bucket-{i:03d}", self.policies[i % 3].name, f"tenant-{i % 7}")
                             for i in range(40))

    def set_state(self, node_id: str, *, reachable: bool, seen_as: str = "up") -> None:
        self.nodes[node_id] = replace(self.nodes[node_id], reachable=reachable, seen_as=seen_as)

    def _check(self, key_id: str, secret: str) -> None:
        ok_id = hmac.compare_digest(key_id.encode(), self.key[0].encode())
        if not (hmac.compare_digest(secret.encode(), self.key[1].encode()) and ok_id):
            raise Refused("unknown key or wrong secret")

    def verify(self, key_id: str, secret: str) -> None:
        self._check(key_id, secret)

    def observe(self, key_id: str, secret: str) -> Observation:
        self._check(key_id, secret)
        return Observation(layout_version=7, sites=tuple(self.sites), nodes=tuple(self.nodes.values()),
                           policies=self.policies, buckets=self.buckets, took=0.0,
                           taken_ms=int(time.time() * 1000))
