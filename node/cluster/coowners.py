"""A node's co-owners: the nodes that hold a replica of one of its partitions, under any policy.

Why membership cares: when a node dies, its co-owners are the nodes whose reads, writes and repair
lean on it, so they are the ones that must stop counting on it first (issue 23: "suspected by all
nodes holding its partitions within 5 s"). There are few of them (R - 1 per partition held, and a
node holds about R x partitions / N of each policy's partitions), and fewer the larger the mesh, so
watching them closely costs a node nothing that grows with N.
"""

from __future__ import annotations

from maillage.placement import Layout, PlacementError, partition_table

__all__ = ["CoOwners", "co_owners"]


def co_owners(layout: Layout, node_id: str) -> frozenset[str]:
    """The other nodes holding a replica of a partition `node_id` holds, under every policy of
    `layout` (a policy it cannot place gives none); empty for a node outside the layout."""
    found: set[str] = set()
    for policy in layout.policies:
        try:
            table = partition_table(layout, policy.name)
        except PlacementError:
            continue
        for partition in table.partitions_of(node_id):
            found.update(table.replicas(partition))
    found.discard(node_id)
    return frozenset(found)


class CoOwners:
    """`co_owners` of any node under one layout, each computed once (the tables are cached by
    placement; this keeps the per-node sets), forgotten when the layout changes."""

    def __init__(self) -> None:
        self._layout: Layout | None = None
        self._known: dict[str, frozenset[str]] = {}

    def of(self, layout: Layout, node_id: str) -> frozenset[str]:
        if layout is not self._layout:
            self._layout, self._known = layout, {}
        found = self._known.get(node_id)
        if found is None:
            found = self._known[node_id] = co_owners(layout, node_id)
        return found
