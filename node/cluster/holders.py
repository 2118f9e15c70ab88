"""Which nodes hold partitions with a given node (its co-holders, under every policy of a layout).

Why membership cares: a crashed node's co-holders are the nodes whose reads and writes must route
around it first, so they probe each other more often than the round-robin would (`Gossip`'s
neighbour ring) and a node that finds one silent asks its co-holders to check at once. How many
co-holders a node has depends on the partitions it holds and the replica counts, not on N.
"""

from __future__ import annotations

from maillage.placement import Layout, PlacementError, partition_table

__all__ = ["co_holders"]


def co_holders(layout: Layout, node_id: str) -> tuple[str, ...]:
    """The other replicas of every partition `node_id` holds, sorted (empty for a layout without
    policies, or a node holding nothing). A policy the layout cannot place is skipped."""
    found: set[str] = set()
    for policy in layout.policies:
        try:
            table = partition_table(layout, policy.name)
        except PlacementError:
            continue
        for partition in table.partitions_of(node_id):
            found.update(table.replicas(partition))
    found.discard(node_id)
    return tuple(sorted(found))
