"""Prove where an object's bytes rest, from what every node says it stores (Replica.Inventory).

Placement says where data *should* be; this module asks each node of the layout for its inventory
(manifest keys per bucket and every chunk digest on its disk) and reports where the data *is*:
the manifest of a key (holding the key name, and the bytes of small inline objects) and each chunk
of its content. Every copy on a node whose location is outside the bucket's policy is a violation.

A chunk digest found on an outside node counts as a violation even if another bucket with a wider
policy stored identical bytes there (dedup is scoped by policy, so this cannot happen by design;
when it shows up, it deserves a look).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc

from maillage.client._exceptions import NoSuchKey
from maillage.client._profile import Profile
from maillage.client.admin._audit import Inventory
from maillage.client.admin._connect import AdminError, Channels, parallel, using_channels, why
from maillage.placement import Layout, Policy, bucket_partition, format_location, partition_table
from maillage.proto import pb

__all__ = ["Holding", "ObjectResidency", "bucket_violations", "fetch_manifest", "sites_of", "survey"]


def fetch_manifest(layout: Layout, policy: str, bucket: str, key: str, profile: Profile, *,
                   timeout: float = 15.0, channels: Channels | None = None) -> pb.Manifest:
    """The object's newest manifest with its chunk list, read with Replica.GetManifest (an admin
    key) from the owners of the bucket's index (and its handoffs) in parallel; `NoSuchKey` when
    the newest version any of them holds is a tombstone or none holds one."""
    table = partition_table(layout, policy)
    p = bucket_partition(bucket, table.bits)
    owners = list(dict.fromkeys((*table.replicas(p), *table.handoffs(p))))
    with using_channels(profile, channels) as chans:
        def ask(node_id: str) -> pb.GetManifestReply | str:
            try:
                reply: pb.GetManifestReply = chans.call(
                    "Replica", "GetManifest", pb.GetManifestRequest(bucket=bucket, key=key),
                    address=layout.node(node_id).address, peer=node_id, timeout=timeout)
                return reply
            except grpc.RpcError as err:
                return why(err)

        replies = dict(zip(owners, parallel(ask, owners)))
    problems = [f"{n}: {r}" for n, r in replies.items() if isinstance(r, str)]
    found = [r.manifest for r in replies.values() if not isinstance(r, str) and r.found]
    if len(problems) == len(owners):
        raise AdminError(f"no owner of the index of bucket {bucket!r} (policy {policy!r}) answered for "
                         f"{bucket}/{key} ({'; '.join(problems)})")
    if not found:
        raise NoSuchKey(f"no object {bucket}/{key}")
    newest = max(found, key=lambda m: (m.version, m.writer))
    if newest.deleted:
        raise NoSuchKey(f"no object {bucket}/{key} (deleted)")
    return newest


@dataclass
class Holding:
    node: str
    site: str
    location: str
    manifest: bool
    chunks: int                        # how many of the object's distinct chunks this node stores
    allowed: bool


@dataclass
class ObjectResidency:
    bucket: str
    key: str
    policy: Policy
    size: int
    chunk_count: int                   # distinct chunks (0: inline in the manifest)
    holdings: list[Holding]
    copies: int                        # fewest distinct sites holding any one piece
    violations: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def allow_text(self) -> str:
        return ", ".join(format_location(a) for a in self.policy.allow)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unreachable and self.copies >= self.policy.replicas

    def verdict(self) -> str:
        if self.violations:
            n = len(self.violations)
            return f"RESIDENCY VIOLATION: {n} cop{'y' if n == 1 else 'ies'} outside {self.allow_text}"
        if self.unreachable:
            return f"UNPROVEN: {len(self.unreachable)} node(s) did not answer ({', '.join(sorted(self.unreachable))})"
        if self.copies < self.policy.replicas:
            return f"UNDER-REPLICATED: only {self.copies} of {self.policy.replicas} copies, all in {self.allow_text}"
        return f"all {self.copies} copies in {self.allow_text}: OK"


def survey(layout: Layout, inventories: dict[str, Inventory], unreachable: dict[str, str],
           policy: Policy, manifest: pb.Manifest) -> ObjectResidency:
    bucket, key = manifest.bucket, manifest.key
    digests = list(dict.fromkeys(c.digest for c in manifest.chunks))
    pieces: dict[str, set[str]] = {"manifest": set()}      # piece -> sites holding it
    pieces.update({d.hex(): set() for d in digests})
    holdings, violations = [], []
    for node in layout.nodes:
        inv = inventories.get(node.id)
        if inv is None:
            continue
        has_manifest = key in inv.keys.get(bucket, ())
        held = [d for d in digests if d in inv.chunks]
        if not has_manifest and not held:
            continue
        location = layout.location_of(node.id)
        allowed = policy.allows(location)
        holdings.append(Holding(node.id, node.site, format_location(location), has_manifest, len(held), allowed))
        if has_manifest:
            pieces["manifest"].add(node.site)
        for d in held:
            pieces[d.hex()].add(node.site)
        if not allowed:
            where = f"{node.id} ({node.site}, {format_location(location)})"
            if has_manifest:
                violations.append(f"manifest of {bucket}/{key} on {where}")
            violations.extend(f"chunk {d.hex()[:16]} of {bucket}/{key} on {where}" for d in held)
    copies = min((len(sites) for sites in pieces.values()), default=0)
    return ObjectResidency(bucket, key, policy, manifest.size, len(digests), holdings, copies,
                           violations, dict(unreachable))


def bucket_violations(layout: Layout, inventories: dict[str, Inventory], bucket: str,
                      policy: Policy) -> list[str]:
    """Every key of `bucket` (any object, not only the ones surveyed) on a node outside its policy."""
    found = []
    for node_id, inv in inventories.items():
        location = layout.location_of(node_id)
        if policy.allows(location):
            continue
        for key in sorted(inv.keys.get(bucket, ())):
            found.append(f"key {bucket}/{key} on {node_id} ({format_location(location)})")
    return found


def sites_of(r: ObjectResidency) -> Iterable[str]:
    return sorted({h.site for h in r.holdings})
