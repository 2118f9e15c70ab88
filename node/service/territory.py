"""Which nodes have authority over a policy's data: those whose location the policy allows.

A bucket bound to "France only" must stay in France against any caller, a node of another country
included: a German node holds a certificate of the cluster, but it has no business with France-only
data. So authority follows residency. A node is *inside* a policy when the admin's layout puts its
site at a location the policy allows (in any state: a draining node still hands its data back), and
only a node inside may

* coordinate a bucket of the policy (a node outside answers `OutsideTerritory`, naming nodes inside:
  the S3 door forwards the request to one, the SDK retries on one);
* write or delete the policy's records, manifests and chunks on its peers, or read them
  (`nodeplane.NodePlane` checks each node-plane call with `require_inside`).

The layout is the only source: never what a request says about where a node is.
"""

from __future__ import annotations

from collections.abc import Callable

from maillage.node.errors import AccessDenied, OutsideTerritory
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import format_location

__all__ = ["Territory"]


class Territory:
    def __init__(self, node_id: str, layout: LayoutState, is_up: Callable[[str], bool] = lambda _: True) -> None:
        self.node_id = node_id
        self._layout = layout
        self._is_up = is_up

    @property
    def partition_bits(self) -> int:
        return self._layout.current.partition_bits

    def policies(self) -> tuple[str, ...]:
        return tuple(p.name for p in self._layout.current.policies)

    def chunk_policies(self, policy: str) -> tuple[str, ...]:
        """Where chunks of a bucket of `policy` may rest: the policy and its cold one, if any."""
        cold = self._layout.current.policy(policy).cold
        return (policy, cold) if cold else (policy,)

    def inside(self, policy: str, node_id: str | None = None) -> bool:
        """Whether `node_id` (this node by default) is inside `policy` (UnknownPolicy if none)."""
        layout = self._layout.current
        node = self.node_id if node_id is None else node_id
        if not any(n.id == node for n in layout.nodes):
            return False
        return layout.policy(policy).allows(layout.location_of(node))

    def require_inside(self, caller_node: str, policy: str, what: str) -> None:
        """AccessDenied unless the calling node is inside `policy`: `what` names the data asked for."""
        if not self.inside(policy, caller_node):
            layout = self._layout.current
            where = (format_location(layout.location_of(caller_node))
                     if any(n.id == caller_node for n in layout.nodes) else "no location of the layout")
            raise AccessDenied(f"node {caller_node} at {where} is outside policy {policy!r}: it has no authority "
                               f"over {what}")

    def serve(self, policy: str, bucket: str) -> None:
        """OutsideTerritory unless this node may coordinate a bucket of `policy`."""
        if self.inside(policy):
            return
        nodes = self.nodes_inside(policy)
        raise OutsideTerritory(
            f"bucket {bucket!r} is bound to policy {policy!r}, which node {self.node_id} is outside of: it "
            f"serves none of its data; ask a node inside the policy ({', '.join(nodes[:5]) or 'none in the layout'})",
            policy=policy, nodes=nodes)

    def nodes_inside(self, policy: str) -> tuple[str, ...]:
        """The active nodes inside `policy`, those believed up first, to forward a request to."""
        nodes = [n.id for n in self._layout.current.eligible_nodes(policy)]
        return tuple(sorted(nodes, key=lambda n: not self._is_up(n)))
