"""Backbone and edge tiers: which of a policy's copies rest on which kind of site.

Why it is built this way: a policy with ``backbone = k`` keeps exactly k of its R copies on backbone
sites (the operator's 24/7 datacenters) and the other R - k on edge sites, all inside its territory.
The two groups of sites are disjoint, so a table of k replicas over the backbone nodes and one of
R - k over the edge nodes, joined row by row, keeps every rule the walk keeps (R distinct sites,
bounded loads within each tier) with no change to the placement algorithms. A policy without
``backbone`` is one group of every eligible node, as before tiers existed: its table is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from maillage.placement.layout import BACKBONE, EDGE, Layout, Node, Policy, format_location

__all__ = ["TierGroup", "tier_groups", "unmet"]


@dataclass(frozen=True)
class TierGroup:
    """``replicas`` copies of every partition placed among ``nodes`` (``tier`` None: any site)."""

    tier: str | None
    nodes: tuple[Node, ...]
    replicas: int


def tier_groups(layout: Layout, policy: Policy, nodes: tuple[Node, ...]) -> list[TierGroup]:
    """The groups a table of ``policy`` is built from, over its eligible ``nodes``; edge first (the
    first replica is the preferred coordinator: the proximity site), groups of 0 replicas left out."""
    if not policy.backbone:
        return [TierGroup(None, nodes, policy.replicas)]
    groups = [TierGroup(tier, tuple(n for n in nodes if layout.site(n.site).tier == tier), count)
              for tier, count in ((EDGE, policy.replicas - policy.backbone), (BACKBONE, policy.backbone))]
    return [g for g in groups if g.replicas]


def unmet(layout: Layout, policy: Policy, *, change: bool = False) -> str:
    """Why the layout cannot place ``policy`` (its eligible nodes: ACTIVE, inside it), "" when it can;
    ``change``: the layout is one an edit would make (the sites that "would remain")."""
    eligible = "would remain eligible" if change else "eligible"
    allow = ", ".join(format_location(a) for a in policy.allow)
    for group in tier_groups(layout, policy, layout.eligible_nodes(policy.name)):
        sites = sorted({n.site for n in group.nodes})
        if len(sites) >= group.replicas:
            continue
        if group.tier is None:
            return (f"policy {policy.name!r} needs {group.replicas} replicas on distinct sites inside {allow}, "
                f"only {len(sites)} {eligible} ({', '.join(sites) or 'none'})")
        return (f"policy {policy.name!r} needs {group.replicas} of its {policy.replicas} copies on distinct "
                f"{group.tier} sites inside {allow}, only {len(sites)} {eligible} "
                f"({', '.join(sites) or 'none'}): refused rather than placed on another tier")
    return ""
