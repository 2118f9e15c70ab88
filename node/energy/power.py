"""A node's power model: what its background work costs in energy, estimated from the bytes it moves.

The site's servers' figures when its layout entry declares them (``power = "idle_w=..,read_nj=.."``);
else rough, published orders of magnitude for a small server, not a measurement of this one: an SSD reads
at ~2 nJ/byte and writes at ~5 nJ/byte, a byte through the NIC and a switch costs ~20 nJ (far more
over a WAN: the links are not ours to count). What matters for the scheduler's effect is the split
of the same joules between green windows and grid power, which the estimate shows per kind of work
(status, metrics). Work of no bytes (a GC pass, an expiry sweep) is counted as passes, not joules.
"""

from __future__ import annotations

from dataclasses import dataclass

from maillage.node.energy.decide import Kind
from maillage.placement.energy import PowerFigures

__all__ = ["PowerModel"]

_DEFAULT = PowerFigures()


@dataclass(frozen=True)
class PowerModel:
    """The defaults, or the figures the site declares in the layout (`of`, `layout site-power`)."""
    idle_w: float = _DEFAULT.idle_w
    read_nj_per_byte: float = _DEFAULT.read_nj
    write_nj_per_byte: float = _DEFAULT.write_nj
    transfer_nj_per_byte: float = _DEFAULT.transfer_nj

    @classmethod
    def of(cls, figures: PowerFigures) -> PowerModel:
        return cls(figures.idle_w, figures.read_nj, figures.write_nj, figures.transfer_nj)

    def joules(self, kind: Kind, nbytes: int) -> float:
        """Estimated energy of `nbytes` of `kind` on this node: a scrub reads; a pull (repair,
        rebalance) receives and writes; a hand-back and a tier move read and send."""
        if kind is Kind.SCRUB:
            per_byte = self.read_nj_per_byte
        elif kind in (Kind.URGENT_REPAIR, Kind.REBALANCE):
            per_byte = self.transfer_nj_per_byte + self.write_nj_per_byte
        elif kind in (Kind.HAND_BACK, Kind.TIER_MOVE):
            per_byte = self.read_nj_per_byte + self.transfer_nj_per_byte
        else:
            per_byte = 0.0
        return nbytes * per_byte * 1e-9
