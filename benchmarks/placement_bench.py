"""Placement benchmark: balance, movement, build time and lookup rate at 10..1,000 sites.

Why it is built this way: placement quality is measured, not assumed (ARCHITECTURE.md's
determinism and minimal movement). The mesh is generated from a seed so every run compares
like with like: several countries of uneven size, regions inside them, sites spread unevenly
over regions, 1-4 nodes per site and capacities varying 8x (1..8 TB). For each size the
benchmark builds one EU-wide policy table (R=2, spread over countries), then adds one site and
rebuilds. Reported:

* ``max_mean``: max over nodes of (replica slots held / capacity share of all slots);
  target <= 1.10.
* ``moved`` vs ``ideal``: fraction of replica slots whose node changed when one site is
  added, against the new site's capacity share; target ratio <= 1.25.
* ``build_s``: one uncached table build (ring + walk); target < 5 s at 1,000 sites, 2^16.
* ``lookups_per_s``: ``PartitionTable.replicas`` calls per second; target >= 200k.

Run: ``python -m maillage.benchmarks.placement_bench [--sites 10,100,1000] [--bits 16] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from maillage.placement import Layout, Node, Policy, Site, moved_partitions
from maillage.placement.table import LOAD_EPSILON, build_table

__all__ = ["run", "generate_layout", "main", "TARGETS"]

TARGETS = {"max_mean": 1.10, "moved_ratio": 1.25, "build_s": 5.0, "lookups_per_s": 200_000}

_COUNTRIES = [("fr", 0.24), ("de", 0.22), ("it", 0.14), ("es", 0.13), ("nl", 0.08),
              ("be", 0.06), ("pl", 0.06), ("pt", 0.04), ("at", 0.03)]
TB = 10**12
POLICY = "eu-wide"


def _site(rng: random.Random, index: int) -> tuple[Site, list[Node]]:
    country = rng.choices([c for c, _ in _COUNTRIES], weights=[w for _, w in _COUNTRIES])[0]
    region = f"r{min(int(rng.expovariate(0.35)), 11)}"  # a few big regions, a tail of small ones
    site = Site(name=f"site-{index:05d}", location=("eu", country, region, f"city{rng.randrange(20)}"))
    nodes = []
    for k in range(rng.randint(1, 4)):
        capacity = rng.choice([1, 2, 3, 4, 6, 8]) * TB
        nodes.append(Node(id=f"n{index:05d}-{k}", address=f"10.{index // 250}.{index % 250}.{k + 1}:7000",
                          site=site.name, capacity=capacity))
    return site, nodes


def generate_layout(sites: int, bits: int, seed: int, extra_sites: int = 0) -> Layout:
    """A seeded realistic mesh; ``extra_sites`` appends sites without changing the others."""
    rng = random.Random(seed)
    all_sites, all_nodes = [], []
    for i in range(sites + extra_sites):
        site, nodes = _site(rng, i)
        all_sites.append(site)
        all_nodes.extend(nodes)
    policies = (
        Policy(name=POLICY, allow=(("eu",),), replicas=2, spread=2),
        Policy(name="fr-only", allow=(("eu", "fr"),), replicas=2),
    )
    return Layout(version=1 + extra_sites, partition_bits=bits, sites=tuple(all_sites),
                  nodes=tuple(all_nodes), policies=policies)


def _loads(table, layout: Layout) -> float:
    nodes = layout.eligible_nodes(table.policy.name)
    total_cap = sum(n.capacity for n in nodes)
    slots = len(table) * table.policy.replicas
    counts = {n.id: 0 for n in nodes}
    for p in range(len(table)):
        for r in table.replicas(p):
            counts[r] += 1
    return max(counts[n.id] / (slots * n.capacity / total_cap) for n in nodes)


def _one(sites: int, bits: int, seed: int, epsilon: float) -> dict:
    layout = generate_layout(sites, bits, seed)
    grown = generate_layout(sites, bits, seed, extra_sites=1)
    t0 = time.perf_counter()
    old = build_table(layout, POLICY, epsilon)
    build_s = time.perf_counter() - t0
    new = build_table(grown, POLICY, epsilon)
    max_mean = _loads(old, layout)
    new_nodes = [n for n in grown.nodes if n.site == grown.sites[-1].name]
    total = sum(n.capacity for n in grown.eligible_nodes(POLICY))
    ideal = sum(n.capacity for n in new_nodes) / total
    slots = len(old) * old.policy.replicas
    moved = moved_partitions(old, new)
    moved_slots = sum(len(set(b) - set(a)) for a, b in moved.values())
    moved_frac = moved_slots / slots
    rng = random.Random(seed)
    probes = [rng.randrange(len(old)) for _ in range(200_000)]
    replicas = old.replicas
    t0 = time.perf_counter()
    for p in probes:
        replicas(p)
    lookups = len(probes) / (time.perf_counter() - t0)
    return {
        "sites": sites,
        "nodes": len(layout.eligible_nodes(POLICY)),
        "bits": bits,
        "replicas": old.policy.replicas,
        "epsilon": epsilon,
        "max_mean": round(max_mean, 4),
        "moved_fraction": round(moved_frac, 5),
        "ideal_fraction": round(ideal, 5),
        "moved_ratio": round(moved_frac / ideal, 3),
        "partitions_changed": len(moved),
        "build_s": round(build_s, 3),
        "lookups_per_s": round(lookups),
    }


def run(sites=(10, 100, 1000), bits: int = 16, seed: int = 1, epsilon: float = LOAD_EPSILON) -> list[dict]:
    """One result dict per mesh size (see the module docstring for the fields)."""
    return [_one(s, bits, seed, epsilon) for s in sites]


def _ratio(value: float, key: str) -> str:
    target = TARGETS[key]
    if key == "lookups_per_s":
        r = target / value  # below 1 is good everywhere
    else:
        r = value / target
    shown = f"{value:,.0f}" if key == "lookups_per_s" else f"{value:g}"
    return f"{shown} ({r:.2f}x target {'ok' if r <= 1 else 'MISS'})"


def format_table(results: list[dict]) -> str:
    head = "| sites | nodes | bits | max/mean (<=1.10) | moved / ideal (<=1.25) | build s (<5) | lookups/s (>=200k) |"
    lines = [head, "|" + "---|" * 7]
    for r in results:
        lines.append(
            f"| {r['sites']} | {r['nodes']} | {r['bits']} | {_ratio(r['max_mean'], 'max_mean')} | "
            f"{r['moved_fraction']:.4%} / {r['ideal_fraction']:.4%} = {_ratio(r['moved_ratio'], 'moved_ratio')} | "
            f"{_ratio(r['build_s'], 'build_s')} | {_ratio(r['lookups_per_s'], 'lookups_per_s')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.placement_bench",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sites", default="10,100,1000", help="comma-separated mesh sizes")
    parser.add_argument("--bits", type=int, default=16, help="partition bits P (2^P partitions)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epsilon", type=float, default=LOAD_EPSILON, help="load bound (1+e)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sites.split(",") if s)
    results = run(sizes, args.bits, args.seed, args.epsilon)
    print(format_table(results))
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"targets": TARGETS, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
