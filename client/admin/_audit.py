"""The audit: ask every node what it stores and prove, item by item, that every copy sits
inside its policy.

Placement says where data *should* be; the audit never trusts it. It reads the layout from one
node, asks every node of that layout for its inventory (`Replica.Inventory`: manifest keys per
bucket, the chunks those manifests reference that are stored there, and every chunk digest on the
disk), and judges each copy against the rules of the admin's layout:

* Manifests. A key of bucket B (its manifest: the key name, and the bytes of an inline object) may
  rest only on a node whose location B's policy allows.
* Chunks. Dedup is scoped by policy, so identical bytes may legitimately sit in Germany for an
  EU-wide bucket while a France-only bucket references the same digest. A chunk on a node is a
  violation only when NO bucket referencing that digest has a policy allowing the node. Which
  buckets reference a digest is learnt from the inventories (manifests and chunks held together)
  and from the newest manifest of every live chunked key (`Replica.GetManifest`), because a chunk
  is placed by its digest and usually does not sit next to the manifests that reference it. A
  digest that no known manifest references (an orphan waiting for GC after a delete) is counted,
  not judged.
* Replication. An item is under-replicated when fewer than R distinct sites inside its policy hold
  it: a manifest counts the sites holding the key; a chunk counts, for each policy referencing it,
  the sites inside that policy whose inventory lists it (a referenced chunk found nowhere counts).
  A node that does not answer proves nothing, so its copies do not count.

Besides the sentences printed to the admin (which name keys and buckets), the judgement records
each violation as a `Finding` (kind, policies, nodes, a chunk name's prefix: never a key or bucket
name) and one `PolicyTally` per policy: what a residency report, a document that leaves the
territory, may carry (`_report.py`).

The audit needs an admin access key (it reads every tenant's data) and writes nothing.
`collect_audit` is the public entry point (the command, the benchmarks and the fault harness call
it); `evaluate` is the pure judgement, given the facts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from maillage.client._profile import Profile
from maillage.client.admin._connect import Channels, fetch_layout, parallel, using_channels, why
from maillage.placement import (
    BACKBONE,
    Layout,
    PlacementError,
    Policy,
    UnknownPolicy,
    format_layout,
    format_location,
)
from maillage.proto import pb
from maillage.proto.limits import INLINE_MAX
from maillage.proto.storage_class import CHUNK_POLICY_ATTRIBUTE

__all__ = ["AuditReport", "Finding", "Inventory", "PolicyTally", "collect_audit", "evaluate", "fetch_inventories",
           "record_findings"]

LIST_PAGE = 1000


# ----- facts: what the nodes say ---------------------------------------------------------------

@dataclass
class Inventory:
    node_id: str
    keys: dict[str, set[str]]          # bucket -> manifest keys stored on this node (tombstones too)
    chunks: set[bytes]                 # every chunk digest on this node's disk
    refs: dict[str, set[bytes]] = field(default_factory=dict)  # bucket -> digests its manifests here reference


def fetch_inventories(layout: Layout, profile: Profile, *, timeout: float = 15.0,
                      channels: Channels | None = None) -> tuple[dict[str, Inventory], dict[str, str]]:
    """Ask every node of the layout, in parallel, for its inventory: (inventories, {node: why unreachable}).
    Needs an admin key in `profile`."""

    def one(chans: Channels, node_id: str) -> Inventory | str:
        try:
            reply = chans.call("Replica", "Inventory", pb.InventoryRequest(), address=layout.node(node_id).address,
                               peer=node_id, timeout=timeout)
        except grpc.RpcError as err:
            return why(err)
        return Inventory(node_id, {b.bucket: set(b.keys) for b in reply.buckets}, set(reply.all_chunks),
                         {b.bucket: set(b.chunks) for b in reply.buckets})

    ids = [n.id for n in layout.nodes]
    with using_channels(profile, channels) as chans:
        results = dict(zip(ids, parallel(lambda n: one(chans, n), ids)))
    found = {n: r for n, r in results.items() if isinstance(r, Inventory)}
    missing = {n: r for n, r in results.items() if isinstance(r, str)}
    return found, missing


BucketRecords = dict[str, dict[str, tuple[str, str]]]   # node -> bucket -> (policy, generation)


def fetch_bucket_records(layout: Layout, chans: Channels, timeout: float,
                         unreachable: dict[str, str]) -> BucketRecords:
    """Each node's OWN live bucket records (a generation it holds a tombstone of is not live),
    asked of every node in parallel: the audit never takes one node's word for a bucket's policy."""
    def records(node_id: str) -> dict[str, tuple[str, str]] | str:
        try:
            reply = chans.call("Replica", "ListBucketRecords", pb.ListBucketRecordsRequest(tombstones=True),
                               address=layout.node(node_id).address, peer=node_id, timeout=timeout)
        except grpc.RpcError as err:
            return why(err)
        dead = {(t.name, t.generation) for t in reply.tombstones}
        return {b.name: (b.policy, b.generation) for b in reply.buckets if (b.name, b.generation) not in dead}

    ids = [n.id for n in layout.nodes]
    found: BucketRecords = {}
    for node_id, result in zip(ids, parallel(records, ids)):
        if isinstance(result, str):
            unreachable.setdefault(node_id, f"ListBucketRecords: {result}")
        else:
            found[node_id] = result
    return found


def reconcile(records: BucketRecords) -> tuple[dict[str, str], list[str]]:
    """bucket -> the policy most nodes record for it, and one sentence per bucket whose nodes
    disagree on its policy or generation (a forged rebind, a stale record spread again): pure."""
    seen: dict[str, dict[tuple[str, str], list[str]]] = {}
    for node_id, buckets in sorted(records.items()):
        for bucket, record in buckets.items():
            seen.setdefault(bucket, {}).setdefault(record, []).append(node_id)
    policies: dict[str, str] = {}
    disagreements: list[str] = []
    for bucket, versions in sorted(seen.items()):
        ranked = sorted(versions.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        policies[bucket] = ranked[0][0][0]
        if len(ranked) > 1:
            told = "; ".join(f"{', '.join(nodes)}: policy {policy} generation {generation or '(none)'}"
                             for (policy, generation), nodes in ranked)
            disagreements.append(f"bucket {bucket}: nodes disagree on its record ({told})")
    return policies, disagreements


def record_findings(records: BucketRecords) -> list[Finding]:
    """The disagreements of `reconcile` without the bucket's name: the policies the nodes name and
    the nodes whose record is not the majority's (pure)."""
    seen: dict[str, dict[tuple[str, str], list[str]]] = {}
    for node_id, buckets in sorted(records.items()):
        for bucket, record in buckets.items():
            seen.setdefault(bucket, {}).setdefault(record, []).append(node_id)
    found = []
    for _, versions in sorted(seen.items()):
        if len(versions) > 1:
            ranked = sorted(versions.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            found.append(Finding("record", tuple(sorted({policy for (policy, _), _ in ranked})),
                                 tuple(sorted(n for _, nodes in ranked[1:] for n in nodes))))
    return found


@dataclass(frozen=True)
class _Entry:
    version: tuple[int, str]
    deleted: bool
    size: int
    node: str                          # a node holding this newest version


def _newest_entries(layout: Layout, inventories: Mapping[str, Inventory], chans: Channels,
                    timeout: float, unreachable: dict[str, str]) -> dict[tuple[str, str], _Entry]:
    """(bucket, key) -> newest index entry over every node holding keys of the bucket."""

    jobs = [(node, bucket) for node, inv in inventories.items() for bucket, keys in inv.keys.items() if keys]

    def listing(job: tuple[str, str]) -> list[pb.Manifest] | str:
        node, bucket = job
        entries, cursor = [], ""
        while True:
            try:
                reply = chans.call("Replica", "ListIndex",
                                   pb.ListIndexRequest(bucket=bucket, start_after=cursor, limit=LIST_PAGE),
                                   address=layout.node(node).address, peer=node, timeout=timeout)
            except grpc.RpcError as err:
                return why(err)
            entries.extend(reply.entries)
            if not reply.truncated or not reply.entries:
                return entries
            cursor = reply.entries[-1].key

    newest: dict[tuple[str, str], _Entry] = {}
    for (node, bucket), result in zip(jobs, parallel(listing, jobs)):
        if isinstance(result, str):
            unreachable.setdefault(node, f"ListIndex {bucket}: {result}")
            continue
        for m in result:
            entry = _Entry((m.version, m.writer), m.deleted, m.size, node)
            held = newest.get((bucket, m.key))
            if held is None or entry.version > held.version:
                newest[(bucket, m.key)] = entry
    return newest


Rests = dict[bytes, set[tuple[str, str]]]   # digest -> (bucket, policy its manifest names it under)


def _manifest_refs(layout: Layout, newest: Mapping[tuple[str, str], _Entry], chans: Channels,
                   timeout: float) -> tuple[dict[bytes, set[str]], Rests]:
    """digest -> buckets, from the newest manifest of every live chunked key; and digest -> (bucket,
    policy) for those a lifecycle transition moved under another policy (their `chunk-policy`)."""

    wanted = [(bk, e) for bk, e in newest.items() if not e.deleted and e.size > INLINE_MAX]

    def chunks_of(item: tuple[tuple[str, str], _Entry]) -> tuple[list[bytes], str]:
        (bucket, key), entry = item
        try:
            reply = chans.call("Replica", "GetManifest", pb.GetManifestRequest(bucket=bucket, key=key),
                               address=layout.node(entry.node).address, peer=entry.node, timeout=timeout)
        except grpc.RpcError:
            return [], ""              # the node went away meanwhile: its inventory refs still count
        if not reply.found:
            return [], ""
        return [c.digest for c in reply.manifest.chunks], reply.manifest.attributes.get(CHUNK_POLICY_ATTRIBUTE, "")

    refs: dict[bytes, set[str]] = {}
    rests: Rests = {}
    for ((bucket, _), _), (digests, rests_under) in zip(wanted, parallel(chunks_of, wanted)):
        for d in digests:
            refs.setdefault(d, set()).add(bucket)
            if rests_under:
                rests.setdefault(d, set()).add((bucket, rests_under))
    return refs, rests


# ----- judgement: pure -------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One violation, named by what may leave the territory: kind ("key": a manifest copy, "chunk",
    "record": nodes disagreeing on a bucket's record), the policies concerned, the nodes holding the
    copy (or the dissenting record), and for a chunk the first 16 hex digits of its name."""

    kind: str
    policies: tuple[str, ...]
    nodes: tuple[str, ...]
    digest: str = ""


@dataclass
class PolicyTally:
    """One policy's share of an audit. A chunk referenced by buckets of two policies counts in both
    (so per-policy chunks, copies and under-replicated items may add up to more than the totals)."""

    policy: str
    allow: list[str]                   # the locations it allows; empty for a policy unknown to the layout
    replicas: int                      # R (0 when unknown)
    buckets: int = 0
    objects: int = 0                   # live keys (when the caller gave them per bucket)
    manifests: int = 0
    chunks: int = 0                    # distinct chunks stored somewhere that a bucket of the policy references
    copies: int = 0                    # manifest copies and chunk frames, over every node that answered
    sites: int = 0                     # distinct sites holding a copy
    under_replicated: int = 0
    violations: int = 0
    in_layout: bool = True             # False: a name only nodes' bucket records give (unsigned)


@dataclass(frozen=True)
class AuditReport:
    """What an audit proved. ``violations`` are sentences naming item, bucket, policy, node, place."""

    layout_version: int
    nodes: int                         # nodes in the layout (all were asked)
    buckets: int
    objects: int                       # live keys
    manifests: int                     # distinct keys with a manifest anywhere (tombstones too)
    chunks: int                        # distinct chunk digests stored anywhere
    copies: int                        # manifest copies + chunk frames, over every node that answered
    sites: int                         # distinct sites holding at least one copy
    violations: list[str]
    under_replicated: int              # manifests + chunks with fewer than R sites inside their policy,
                                       # or fewer than its backbone copies on backbone sites (off_tier)
    unreachable: list[str]             # node ids that did not answer
    unreferenced_chunks: int = 0       # digests no known manifest references (awaiting GC)
    unknown_buckets: list[str] = field(default_factory=list)  # keys of buckets with no record
    missing_chunks: list[str] = field(default_factory=list)   # chunks a live manifest names, on no node
    layout_digest: str = ""            # "sha256:<hex>" of the layout's canonical text (format_layout)
    places: dict[str, tuple[str, str]] = field(default_factory=dict)  # node -> (site, location), every node
    tallies: list[PolicyTally] = field(default_factory=list)          # one per policy, by name
    findings: list[Finding] = field(default_factory=list)             # the violations, without names
    off_tier: int = 0                  # of under_replicated: enough sites, too few of them backbone

    @property
    def ok(self) -> bool:
        """No copy outside its policy."""
        return not self.violations

    @property
    def fully_replicated(self) -> bool:
        return self.ok and self.under_replicated == 0 and not self.unreachable and not self.missing_chunks

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(ok=self.ok, fully_replicated=self.fully_replicated)
        return doc

    def to_json(self) -> str:
        """The report as a JSON document (text), with ``ok`` and ``fully_replicated``."""
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def _allow_text(policy: Policy) -> str:
    return ", ".join(format_location(a) for a in policy.allow)


def evaluate(layout: Layout, inventories: Mapping[str, Inventory], unreachable: Iterable[str],
             bucket_policies: Mapping[str, str], live_keys: int,
             manifest_refs: Mapping[bytes, Iterable[str]] = {}, *, disagreements: Iterable[str] = (),
             missing_chunks: Iterable[str] = (), record_findings: Iterable[Finding] = (),
             live_per_bucket: Mapping[str, int] = {},
             rests: Mapping[bytes, Iterable[tuple[str, str]]] = {}) -> AuditReport:
    """Judge the facts: every copy against the policies of the buckets it belongs to, and a chunk a
    lifecycle transition moved (`rests`) against the policy it rests under too (e.g. every copy on
    the backbone). Nodes that disagree on a bucket's record are violations too (`reconcile`;
    `record_findings` the same without names)."""
    policies: dict[str, Policy | None] = {}
    for bucket, name in bucket_policies.items():
        try:
            policies[bucket] = layout.policy(name)
        except UnknownPolicy:
            policies[bucket] = None    # a policy gone from the layout allows nothing: every copy is unproven

    def describe(bucket: str) -> str:
        policy = policies[bucket]
        name = bucket_policies[bucket]
        return f"bucket {bucket} (policy {name}{'' if policy else f', unknown to layout v{layout.version}'})"

    refs: dict[bytes, set[str]] = {d: set(bs) for d, bs in manifest_refs.items()}
    key_sites: dict[tuple[str, str], set[str]] = {}
    chunk_nodes: dict[bytes, list[str]] = {}
    for node_id, inv in inventories.items():
        for bucket, digests in inv.refs.items():
            for d in digests:
                refs.setdefault(d, set()).add(bucket)
        for bucket, keys in inv.keys.items():
            for key in keys:
                key_sites.setdefault((bucket, key), set())
        for d in inv.chunks:
            chunk_nodes.setdefault(d, []).append(node_id)

    tallies = {p.name: PolicyTally(p.name, [format_location(a) for a in p.allow], p.replicas) for p in layout.policies}
    for bucket, name in bucket_policies.items():
        tally = tallies.setdefault(name, PolicyTally(name, [], 0, in_layout=False))
        tally.buckets += 1
        tally.objects += live_per_bucket.get(bucket, 0)
    for (bucket, _) in key_sites:
        if bucket in policies:
            tallies[bucket_policies[bucket]].manifests += 1
    policy_sites: dict[str, set[str]] = {}
    findings = list(record_findings)

    violations: list[str] = []
    unknown = sorted({b for inv in inventories.values() for b in inv.keys if b not in policies})
    copies = 0
    holding_sites: set[str] = set()
    for node_id in sorted(inventories):
        inv = inventories[node_id]
        node = layout.node(node_id)
        location = layout.location_of(node_id)
        where = f"{node_id} at {format_location(location)}"
        held = sum(len(k) for k in inv.keys.values()) + len(inv.chunks)
        copies += held
        if held:
            holding_sites.add(node.site)
        for bucket in sorted(inv.keys):
            policy = policies.get(bucket)
            if bucket not in policies:
                continue
            allowed = policy is not None and policy.allows(location)
            name = bucket_policies[bucket]
            if inv.keys[bucket]:
                tallies[name].copies += len(inv.keys[bucket])
                policy_sites.setdefault(name, set()).add(node.site)
            for key in sorted(inv.keys[bucket]):
                if allowed:
                    key_sites[(bucket, key)].add(node.site)
                else:
                    outside = f"outside {_allow_text(policy)}" if policy is not None else "with no policy allowing it"
                    violations.append(f"key {key} of {describe(bucket)} is on {where}, {outside}")
                    findings.append(Finding("key", (name,), (node_id,)))
        for d in sorted(inv.chunks):
            buckets = sorted(b for b in refs.get(d, ()) if b in policies)
            if not buckets:
                continue
            names = sorted({bucket_policies[b] for b in buckets})
            for name in names:
                tallies[name].copies += 1
                policy_sites.setdefault(name, set()).add(node.site)
            their = [p for p in (policies[b] for b in buckets) if p is not None]
            if any(p.allows(location) for p in their):
                continue
            allowed_somewhere = sorted({_allow_text(p) for p in their})
            outside = f"outside {'; '.join(allowed_somewhere)}" if allowed_somewhere else "with no policy allowing it"
            whose = " and ".join(describe(b) for b in buckets)
            violations.append(f"chunk {d.hex()[:16]}.. of {whose} is on {where}, {outside}")
            findings.append(Finding("chunk", tuple(names), (node_id,), d.hex()[:16]))

    under = off_tier = 0

    def short(policy: Policy, sites: set[str]) -> bool:
        """Fewer than R sites inside the policy hold it, or fewer than its backbone copies are on
        backbone sites (counted in `off_tier` too)."""
        nonlocal off_tier
        if len(sites) < policy.replicas:
            return True
        if sum(layout.site(s).tier == BACKBONE for s in sites) < policy.backbone:
            off_tier += 1
            return True
        return False

    for (bucket, _), sites in key_sites.items():
        policy = policies.get(bucket)
        if policy is not None and short(policy, sites):
            under += 1
            tallies[policy.name].under_replicated += 1
    unreferenced = 0
    for d in set(chunk_nodes) | set(refs):
        buckets = [b for b in refs.get(d, ()) if b in policies]
        if not buckets:
            unreferenced += 1
            continue
        if d in chunk_nodes:
            for name in {bucket_policies[b] for b in buckets}:
                tallies[name].chunks += 1
        holders = chunk_nodes.get(d, ())
        chunk_short = False
        rules = {p for p in (policies[b] for b in buckets) if p is not None}
        for bucket, named in sorted(rests.get(d, ())):
            bound = policies.get(bucket)
            if bound is None:
                continue
            try:
                rules.add(layout.policy(layout.chunk_policy(bound.name, named)))
            except PlacementError as exc:   # a manifest naming a policy wider than its bucket's, or none
                violations.append(f"chunk {d.hex()[:16]}.. of {describe(bucket)}: {exc}")
                findings.append(Finding("chunk", (bound.name,), (), d.hex()[:16]))
        for held_for in rules:
            sites = {layout.node(n).site for n in holders if held_for.allows(layout.location_of(n))}
            if short(held_for, sites):
                chunk_short = True
                tallies[held_for.name].under_replicated += 1
        under += chunk_short
    for finding in findings:
        for name in finding.policies:
            tallies.setdefault(name, PolicyTally(name, [], 0, in_layout=False)).violations += 1
    for name, holders_sites in policy_sites.items():
        tallies[name].sites = len(holders_sites)

    return AuditReport(
        layout_version=layout.version, nodes=len(layout.nodes), buckets=len(bucket_policies),
        objects=live_keys, manifests=len(key_sites),
        chunks=len(chunk_nodes), copies=copies, sites=len(holding_sites),
        violations=[*disagreements, *violations], under_replicated=under, unreachable=sorted(set(unreachable)),
        unreferenced_chunks=unreferenced, unknown_buckets=unknown, missing_chunks=list(missing_chunks),
        layout_digest="sha256:" + hashlib.sha256(format_layout(layout).encode("utf-8")).hexdigest(),
        places={n.id: (n.site, format_location(layout.location_of(n.id))) for n in layout.nodes},
        tallies=[tallies[name] for name in sorted(tallies)], findings=findings, off_tier=off_tier)


# ----- the public entry point ------------------------------------------------------------------

def collect_audit(profile: Profile, *, timeout: float = 10.0) -> AuditReport:
    """Audit the mesh of ``profile`` (its endpoints; an admin key: the audit reads every tenant's
    buckets and every node's inventory).

    Synchronous. Reads the layout from the endpoint, asks every node of it for its own bucket
    records and its inventory in parallel, and the nodes holding each bucket's index for the newest
    manifests, whose chunk lists are checked against what the nodes hold. Raises ``AuditError``
    when no layout can be had; a node that does not answer is listed in ``unreachable``, not raised."""
    with using_channels(profile) as chans:
        layout, _ = fetch_layout(profile, timeout=timeout, channels=chans)
        # Inventories and bucket records asked of every node at once (each fan-out bounded).
        record_errors: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=1) as side:
            asked = side.submit(fetch_bucket_records, layout, chans, timeout, record_errors)
            inventories, missing = fetch_inventories(layout, profile, timeout=timeout, channels=chans)
            records = asked.result()
        unreachable = dict(missing)
        for node_id, error in record_errors.items():
            unreachable.setdefault(node_id, error)
        bucket_policies, disagreements = reconcile(records)
        dissent = record_findings(records)
        newest = _newest_entries(layout, inventories, chans, timeout, unreachable)
        refs, rests = _manifest_refs(layout, newest, chans, timeout)
    # a node that answered its inventory but not a listing left the audit incomplete: unreachable too
    live_per_bucket: dict[str, int] = {}
    for (bucket, _), e in newest.items():
        if not e.deleted and bucket in bucket_policies:
            live_per_bucket[bucket] = live_per_bucket.get(bucket, 0) + 1
    live = sum(live_per_bucket.values())
    held = set().union(*(inv.chunks for inv in inventories.values())) if inventories else set()
    lost = [] if unreachable else [
        f"chunk {d.hex()[:16]}.. of {' and '.join(sorted(buckets))} is on no node"
        for d, buckets in sorted(refs.items()) if d not in held]
    return evaluate(layout, inventories, unreachable, bucket_policies, live, refs,
                    disagreements=disagreements, missing_chunks=lost, record_findings=dissent,
                    live_per_bucket=live_per_bucket, rests=rests)


