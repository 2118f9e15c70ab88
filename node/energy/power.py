"""A node's power model: what its background work costs in energy, estimated from the bytes it moves.

Rough, published orders of magnitude for a small server, not a measurement of this one: an SSD reads
at ~2 nJ/byte and writes at ~5 nJ/byte, a byte through the NIC and a switch costs ~20 nJ (far more
over a WAN: the links are not ours to count). What matters for the scheduler's effect is the split
of the same joules between green windows and grid power, which the estimate shows per kind of work
(status, metrics). Work of no bytes (a GC pass, an expiry sweep) is counted as passes, not joules.
"""

from __future__ import annotations

from dataclasses import dataclass

from maillage.node.energy.decide import Kind

__all__ = ["PowerModel"]


@dataclass(frozen=True)
class PowerModel:
    idle_w: float = 40.0
    read_nj_per_byte: float = 2.0
    write_nj_per_byte: float = 5.0
    transfer_nj_per_byte: float = 20.0

    def joules(self, kind: Kind, nbytes: int) -> float:
        """Estimated energy of `nbytes` of `kind` on this node: a scrub reads; a pull (repair,
        rebalance) receives and writes; a hand-back reads and sends."""
        if kind is Kind.SCRUB:
            per_byte = self.read_nj_per_byte
        elif kind in (Kind.URGENT_REPAIR, Kind.REBALANCE):
            per_byte = self.transfer_nj_per_byte + self.write_nj_per_byte
        elif kind is Kind.HAND_BACK:
            per_byte = self.read_nj_per_byte + self.transfer_nj_per_byte
        else:
            per_byte = 0.0
        return nbytes * per_byte * 1e-9
