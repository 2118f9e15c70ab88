"""The order in which a coordinator asks the copies of a chunk: the one to read from first.

Why this order: nodes believed up first (asking a suspect costs a timeout); then this node's own copy
(no network hop at all); then the nearest by location, counted in leading labels shared with this
node (same site, then region, then country: the layout's labels are the only measure of distance every
node has before it has timed anything, and they follow the backbone's links); then, among copies
equally near, the one whose site has energy to spare (issue 26: green before unknown before grey
before shed, so a read lands where the power is free and spares a site told to shed load); then
placement order, which keeps the choice stable and spreads reads as placement spreads copies.
Pure: the caller gives what it knows of each node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["read_order", "ENERGY_RANK"]

# A site's energy state (`maillage.node.energy.signal.State` values) as a preference for reads.
ENERGY_RANK = {"green": 0, "unknown": 1, "grey": 2, "shed": 3}


def read_order(candidates: Sequence[str], *, local: str, location_of: Callable[[str], tuple[str, ...]],
               is_up: Callable[[str], bool], energy_of: Callable[[str], str]) -> list[str]:
    """`candidates` (replicas, then stand-ins, in placement order) in the order to ask them."""
    here = location_of(local)

    def shared(node_id: str) -> int:
        there = location_of(node_id)
        n = 0
        while n < min(len(here), len(there)) and here[n] == there[n]:
            n += 1
        return n

    ranked = [(not is_up(n), n != local, -shared(n), ENERGY_RANK.get(energy_of(n), 1), i, n)
              for i, n in enumerate(candidates)]
    return [r[-1] for r in sorted(ranked)]
