"""When deferrable background work may run, and how fast: a pure function of the site's energy state,
the work's deadline and what is left of it.

The rule, after "Let's Wait Awhile" (Wiesner et al., 2021) and the Carbon Aware SDK's windows:

- **urgent** work (a partition short of its policy's R or of two copies) runs at full pace whatever
  the energy, shed included: durability is never traded for watts;
- a **shed** order stops every deferrable kind (pace 0);
- in a **green** window (surplus or low-carbon grid), or when the signal is **unknown** (no source,
  a broken or stale one: as before energy was known), deferrable work runs at full pace;
- work exchanged with another site runs under the state of both (`shared`);
- in a **grey** window, when the site's forecast has a green window early enough for the work to
  start there at full pace and still keep its shed reserve, it waits for that window;
- otherwise, in a **grey** window it waits while its slack (time to the deadline, less the time the work left
  takes at full pace, less `SHED_RESERVE` kept for shed orders) is at least `need + SHED_RESERVE`,
  then runs faster and faster, reaching full pace when the slack is gone.

Why the deadline always holds (the property tests check it over simulated weeks): the slack only
falls while the work runs below full pace; at zero slack the pace is full, so the slack stays at
zero except during shed orders; sheds totalling at most `SHED_RESERVE` inside a deadline's window
therefore leave the work finished on time, provided it fitted (need + reserve <= window) to begin.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from maillage.node.energy.signal import State

__all__ = ["Kind", "DEADLINES", "SHED_RESERVE", "STEP", "Backlog", "pace", "shared"]

SHED_RESERVE = 6 * 3600.0   # seconds of shed orders a deadline's window is planned to absorb
STEP = 60.0                 # seconds of slack kept for the granularity of the checks


class Kind(enum.Enum):
    """Background work by what it is. Only URGENT_REPAIR never waits."""
    URGENT_REPAIR = "urgent-repair"
    REBALANCE = "rebalance"
    HAND_BACK = "hand-back"
    SCRUB = "scrub"
    GC = "gc"
    EXPIRY = "expiry"
    TIER_MOVE = "tier-move"   # a lifecycle Transition's copy of a version to its policy's cold policy


DEADLINES = {  # seconds from when the work becomes due to when it must be done
    Kind.REBALANCE: 24 * 3600.0,
    Kind.HAND_BACK: 24 * 3600.0,
    Kind.SCRUB: 14 * 24 * 3600.0,   # every stored frame re-read at least every 14 days
    Kind.GC: 24 * 3600.0,
    Kind.EXPIRY: 24 * 3600.0,
    Kind.TIER_MOVE: 24 * 3600.0,
}


@dataclass(frozen=True)
class Backlog:
    """What is left of one piece of deferrable work: its deadline (unix s), bytes left, full-pace rate
    (bytes/s; 0: its duration is negligible, e.g. a GC pass)."""
    due: float
    bytes_left: int = 0
    rate: float = 0.0

    def need(self) -> float:
        """Seconds the rest takes at full pace, plus one check step."""
        return (self.bytes_left / self.rate if self.rate > 0 else 0.0) + STEP


def shared(own: State, peer: str) -> State:
    """The state a transfer between this site and a peer's runs under (issue 26: "two sites
    exchanging a copy pick the window that suits both"): this site's, made grey when it is green or
    unknown and the peer said its own site is grey or shed. Grey, not shed: the peer's word may delay
    the transfer only while its deadline leaves slack, so a peer that lies about its energy holds a
    rebalance or a hand-back back by at most its slack, and never holds up urgent work."""
    if own in (State.GREEN, State.UNKNOWN) and peer in (State.GREY.value, State.SHED.value):
        return State.GREY
    return own


def pace(kind: Kind, state: State, backlog: Backlog | None, now: float, next_green: float | None = None) -> float:
    """The share of its full rate (0..1) `kind` may use now. `backlog` None: no deadline known.
    `next_green`: when the site's forecast has its next green reading (None: none forecast)."""
    if kind is Kind.URGENT_REPAIR:
        return 1.0
    if state is State.SHED:
        return 0.0
    if state in (State.GREEN, State.UNKNOWN) or backlog is None:
        return 1.0 if state is not State.GREY else 0.0
    need = backlog.need()
    slack = backlog.due - now - need - SHED_RESERVE
    if slack <= 0:
        return 1.0
    if _green_in_time(next_green, now, slack):
        return 0.0
    ramp = need + SHED_RESERVE
    return 0.0 if slack >= ramp else 1.0 - slack / ramp


def _green_in_time(next_green: float | None, now: float, slack: float) -> bool:
    """A green window is forecast after now and early enough that the work, started then at full
    pace, still keeps its shed reserve: wait for it rather than ramp up in grey. Never true at zero
    slack, so the deadline argument above holds whatever the forecast says."""
    return next_green is not None and 0 < next_green - now <= slack


def wait_hint(kind: Kind, state: State, backlog: Backlog | None, now: float,
              next_green: float | None = None) -> float | None:
    """Seconds until `pace` turns positive if the state stays as it is (None: not before it changes)."""
    if pace(kind, state, backlog, now, next_green) > 0:
        return 0.0
    if state is not State.GREY or backlog is None:
        return None
    need = backlog.need()
    slack = backlog.due - now - need - SHED_RESERVE
    if _green_in_time(next_green, now, slack):
        assert next_green is not None
        return next_green - now
    return max(0.0, backlog.due - now - 2 * (need + SHED_RESERVE))
