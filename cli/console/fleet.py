"""What the console shows, as plain data: one observation of the mesh and the views built from it.

A fleet source (`FleetSource`: the mesh through the admin SDK, or a synthetic fleet for tests and
rehearsals) returns an `Observation`; the views below turn it into the JSON the page renders.
Nothing here holds an object key name: an observation carries sites, nodes, policies and bucket
names with their owner, and no call the sources make returns a key name.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

# The console's states of a node, best first. `unreachable`: the console got no answer, but no
# peer reports it down (a problem of the console's path, or a node that has just died).
STATES = ("up", "suspect", "unreachable", "down")
_RANK = {s: i for i, s in enumerate(STATES)}
EVENTS_KEPT = 2000          # state changes remembered, all sites together
EVENTS_PER_SITE = 50        # shown on a site's page


class Refused(Exception):
    """The mesh refused the credentials (unknown, revoked, wrong secret, not an admin key)."""


class Unavailable(Exception):
    """The mesh could not be asked now (no endpoint answered)."""


@dataclass(frozen=True)
class SiteInfo:
    name: str
    location: tuple[str, ...]


@dataclass(frozen=True)
class NodeObs:
    """One node as the console last saw it: the layout's facts and its status reply, if any."""

    id: str
    site: str
    address: str
    capacity: int
    layout_state: str = "active"          # the layout's: active | draining | out
    reachable: bool = True
    error: str = ""                       # why it did not answer (short)
    seen_as: str = "up"                   # the worst state its peers report
    stored_bytes: int = 0
    chunks: int = 0
    disk_total: int = 0
    disk_free: int = 0
    layout_version: int = 0
    peers: dict[str, int] = field(default_factory=dict)     # up / suspect / down as this node sees them
    repair: dict[str, Any] = field(default_factory=dict)
    scrub: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.seen_as in ("down", "suspect"):
            return self.seen_as
        return "up" if self.reachable else "unreachable"


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    allow: tuple[tuple[str, ...], ...]
    replicas: int
    spread: int | None = None

    def allows(self, location: tuple[str, ...]) -> bool:
        return any(location[: len(prefix)] == prefix for prefix in self.allow)


@dataclass(frozen=True)
class BucketInfo:
    name: str
    policy: str
    owner: str


@dataclass(frozen=True)
class Observation:
    layout_version: int
    sites: tuple[SiteInfo, ...]
    nodes: tuple[NodeObs, ...]
    policies: tuple[PolicyInfo, ...]
    buckets: tuple[BucketInfo, ...] | None      # None: the listing failed this time
    took: float = 0.0                           # seconds the observation took
    taken_ms: int = 0                           # unix ms when it finished


class FleetSource(Protocol):
    """Where the console's observations come from. Both calls block (the console runs them in a
    thread with a deadline) and take the logged-in operator's access key: the console holds no
    credential of its own."""

    def verify(self, key_id: str, secret: str) -> None:
        """Return if the mesh takes this key as an admin key; raise `Refused` or `Unavailable`."""

    def observe(self, key_id: str, secret: str) -> Observation:
        """One look at the whole mesh, each node asked with its own deadline; `Refused` if the key
        no longer works, `Unavailable` if no endpoint answered."""


def worst(states: Iterable[str]) -> str:
    return max(states, key=lambda s: _RANK[s], default="up")


def place(location: tuple[str, ...]) -> tuple[str, str]:
    """(country, region) of a location: its first two labels, and all of them ("eu/fr", "eu/fr/idf")."""
    return "/".join(location[:2]), "/".join(location)


# ----- events ---------------------------------------------------------------------------------

class EventLog:
    """State changes of nodes the console observed between two observations (bounded)."""

    def __init__(self, kept: int = EVENTS_KEPT) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=kept)
        self._last: dict[str, str] = {}

    def update(self, obs: Observation, now_ms: int | None = None) -> list[dict[str, Any]]:
        when = int(time.time() * 1000) if now_ms is None else now_ms
        new = []
        current = {n.id: (n.site, n.state) for n in obs.nodes}
        for node_id, (site, state) in current.items():
            was = self._last.get(node_id)
            if was is not None and was != state:
                new.append({"t": when, "site": site, "node": node_id, "was": was, "now": state})
        self._last = {k: v[1] for k, v in current.items()}
        self._events.extend(new)
        return new

    def of_site(self, site: str, limit: int = EVENTS_PER_SITE) -> list[dict[str, Any]]:
        """The site's latest events, newest first."""
        out = []
        for event in reversed(self._events):
            if event["site"] == site:
                out.append(event)
                if len(out) >= limit:
                    break
        return out

    def latest(self, limit: int = 20) -> list[dict[str, Any]]:
        return list(reversed(self._events))[:limit]


# ----- views ----------------------------------------------------------------------------------

def _node_states(nodes: Iterable[NodeObs]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for n in nodes:
        counts[n.state] += 1
    return counts


def fleet_view(obs: Observation, generation: int, events: EventLog) -> dict[str, Any]:
    """Every site with its group, state and sums; counts for the summary; sorted for grouping."""
    by_site: dict[str, list[NodeObs]] = {}
    for n in obs.nodes:
        by_site.setdefault(n.site, []).append(n)
    sites: list[dict[str, Any]] = []
    for s in obs.sites:
        nodes = by_site.get(s.name, [])
        country, region = place(s.location)
        reachable = [n for n in nodes if n.reachable]
        sites.append({
            "name": s.name, "country": country, "region": region,
            "state": worst(n.state for n in nodes) if nodes else "up",
            "nodes": len(nodes), "states": _node_states(nodes),
            "capacity": sum(n.capacity for n in nodes), "stored": sum(n.stored_bytes for n in reachable),
            "behind": sum(int(n.repair.get("behind", 0)) for n in reachable),
            "repairing": any(n.repair.get("running") for n in reachable),
        })
    sites.sort(key=lambda r: (r["country"], r["region"], r["name"]))
    site_states = dict.fromkeys(STATES, 0)
    for r in sites:
        site_states[r["state"]] += 1
    return {
        "generation": generation, "taken_ms": obs.taken_ms, "took_ms": round(obs.took * 1000),
        "layout_version": obs.layout_version,
        "counts": {"sites": len(sites), "nodes": len(obs.nodes), "site_states": site_states,
                   "node_states": _node_states(obs.nodes), "policies": len(obs.policies),
                   "buckets": None if obs.buckets is None else len(obs.buckets)},
        "sites": sites, "events": events.latest(),
    }


def _node_detail(n: NodeObs) -> dict[str, Any]:
    return {"id": n.id, "address": n.address, "state": n.state, "layout_state": n.layout_state,
            "reachable": n.reachable, "error": n.error[:200], "capacity": n.capacity,
            "stored": n.stored_bytes, "chunks": n.chunks, "disk_total": n.disk_total,
            "disk_free": n.disk_free, "layout_version": n.layout_version, "peers": n.peers,
            "repair": n.repair, "scrub": n.scrub}


def site_view(obs: Observation, name: str, events: EventLog) -> dict[str, Any] | None:
    site = next((s for s in obs.sites if s.name == name), None)
    if site is None:
        return None
    nodes = [n for n in obs.nodes if n.site == name]
    country, region = place(site.location)
    return {"name": site.name, "location": "/".join(site.location), "country": country, "region": region,
            "state": worst(n.state for n in nodes) if nodes else "up",
            "policies": [p.name for p in obs.policies if p.allows(site.location)],
            "nodes": [_node_detail(n) for n in nodes], "events": events.of_site(name)}


def policy_view(obs: Observation) -> list[dict[str, Any]]:
    """Per policy: where it may rest, and whether the sites up now can hold its R copies."""
    locations = {s.name: s.location for s in obs.sites}
    counts: dict[str, int] = {}
    for b in obs.buckets or ():
        counts[b.policy] = counts.get(b.policy, 0) + 1
    out = []
    for p in obs.policies:
        nodes = [n for n in obs.nodes if p.allows(locations.get(n.site, ()))]
        active = [n for n in nodes if n.layout_state == "active"]
        eligible_sites = {n.site for n in active}
        live_sites = {n.site for n in active if n.state == "up"}
        if len(eligible_sites) < p.replicas:
            verdict = "unsatisfiable"      # the layout itself has too few sites: writes refused
        elif len(live_sites) < p.replicas:
            verdict = "degraded"           # too few sites up now for R new copies
        else:
            verdict = "ok"
        out.append({
            "name": p.name, "allow": ["/".join(a) for a in p.allow], "replicas": p.replicas, "spread": p.spread,
            "sites": sorted({n.site for n in nodes}), "eligible_sites": len(eligible_sites),
            "live_sites": len(live_sites), "nodes": len(nodes), "node_states": _node_states(nodes),
            "behind": sum(int(n.repair.get("behind", 0)) for n in nodes if n.reachable),
            "buckets": counts.get(p.name, 0) if obs.buckets is not None else None, "verdict": verdict,
        })
    return out


def bucket_view(obs: Observation) -> dict[str, Any]:
    """Bucket names per tenant (names and policies only: the console never lists keys)."""
    if obs.buckets is None:
        return {"available": False, "tenants": []}
    tenants: dict[str, list[dict[str, str]]] = {}
    for b in sorted(obs.buckets, key=lambda b: (b.owner, b.name)):
        tenants.setdefault(b.owner, []).append({"name": b.name, "policy": b.policy})
    return {"available": True, "tenants": [{"tenant": t, "buckets": bs} for t, bs in tenants.items()]}
