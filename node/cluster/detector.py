"""Who is alive, as this node has seen for itself: the state table the SWIM loop (`membership.Gossip`) feeds.

Why two thresholds. A peer this node has suspected (its own probe, direct and through k others,
got no answer) is *suspect*: reads and writes route around it at once (handoff, inside the
policy), but its data stays where it is, because most silences are restarts and short partitions.
Only once the suspicion has stood unrefuted for the longer `down_after` grace (and at least the
Lifeguard suspicion timeout below) is it *down* ("marked out"): repair then treats the handoff
nodes as the owners and copies its partitions there. When it speaks again it is up at once and
hinted writes flow back to it.

Why only first-hand evidence. A node is suspected only on its own failed probe and cleared only
when the node itself answers or calls (`heard`): what third nodes claim is a reason to probe, never
a verdict (see `membership`), so one lying node can neither keep a dead node up nor get a live one
marked down.

Every table is keyed by nodes of the current layout (`retain` forgets the others), so it never
holds more than the layout's nodes however many made-up ids a caller sends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from maillage.node.replicas.transport import PeerView
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock

__all__ = ["PeerState", "FailureDetector", "EXPECTED_CONFIRMATIONS", "TIMEOUT_SPREAD"]

EXPECTED_CONFIRMATIONS = 3   # Lifeguard's K: independent suspicions that bring the timeout to its floor
TIMEOUT_SPREAD = 3.0         # Lifeguard's beta: an unconfirmed suspicion waits this many times the floor


class PeerState(StrEnum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


@dataclass
class _Suspicion:
    since: float
    confirmers: set[str] = field(default_factory=set)


class FailureDetector:
    """This node's suspicions, the incarnations it heard from each node itself, and when.

    `clock` is injectable (its monotonic seconds) so tests step time instead of sleeping.
    `cluster_size` (set by the gossip loop from the layout) scales the suspicion timeout with log N.
    """

    def __init__(self, self_id: str, *, suspect_after: float, down_after: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        if not 0 < suspect_after <= down_after:
            raise ValueError(f"need 0 < suspect_after ({suspect_after}) <= down_after ({down_after})")
        self.self_id = self_id
        self.suspect_after = suspect_after
        self.down_after = down_after
        self.cluster_size = 1
        self._clock = clock
        self._suspected: dict[str, _Suspicion] = {}
        self._incarnation: dict[str, int] = {}
        self._heard: dict[str, float] = {}
        # Called with a node id when a suspect or down node is heard from again: hinted writes
        # for it should be handed back now, not at the next repair round (until then reads from
        # its replica set can miss them).
        self.on_recovered: Callable[[str], None] = lambda node_id: None
        self._last_recovery = float("-inf")

    # ----- evidence -----------------------------------------------------------------------

    def heard(self, node_id: str, incarnation: int | None = None) -> None:
        """`node_id` itself answered our probe or called us (an authenticated peer): it is up here,
        whatever anyone said about it."""
        if node_id == self.self_id:
            return
        now = self._clock.monotonic()
        self._heard[node_id] = now
        if incarnation is not None and incarnation > self._incarnation.get(node_id, -1):
            self._incarnation[node_id] = incarnation
        if self._suspected.pop(node_id, None) is not None:
            self._last_recovery = now
            self.on_recovered(node_id)

    def suspect(self, node_id: str) -> bool:
        """Our own probe of `node_id`, direct and indirect, got no answer. True if newly suspected."""
        if node_id == self.self_id or node_id in self._suspected:
            return False
        self._suspected[node_id] = _Suspicion(self._clock.monotonic())
        return True

    def confirm(self, node_id: str, by: str) -> None:
        """Another node says it suspects `node_id` too (Lifeguard: shortens the timeout)."""
        suspicion = self._suspected.get(node_id)
        if suspicion is not None and by not in (self.self_id, node_id) \
                and len(suspicion.confirmers) < EXPECTED_CONFIRMATIONS:
            suspicion.confirmers.add(by)

    def incarnation(self, node_id: str) -> int:
        """The highest incarnation `node_id` itself told us (0: none yet)."""
        return self._incarnation.get(node_id, 0)

    def ever_heard(self, node_id: str) -> bool:
        """Whether `node_id` itself has answered or called this node since it started."""
        return node_id in self._heard

    def heard_within(self, node_id: str, seconds: float) -> bool:
        return self._clock.monotonic() - self._heard.get(node_id, float("-inf")) <= seconds

    # ----- state --------------------------------------------------------------------------

    def suspicion_timeout(self, node_id: str) -> float:
        """Lifeguard: the floor `suspect_after` x log10 N, up to `TIMEOUT_SPREAD` times that while
        no other node confirms, shrinking with each independent confirmation."""
        low = self.suspect_after * max(1.0, math.log10(max(self.cluster_size, 1)))
        high = TIMEOUT_SPREAD * low
        suspicion = self._suspected.get(node_id)
        confirmed = len(suspicion.confirmers) if suspicion is not None else 0
        return max(low, high - (high - low) * math.log(confirmed + 1) / math.log(EXPECTED_CONFIRMATIONS + 1))

    def unsettled(self, window: float = 60.0) -> bool:
        """Whether some node came back from a suspicion less than `window` seconds ago. Writes
        made while nodes could not reach each other went to handoff nodes and may not be handed
        back yet, and which replicas missed them depends on who could reach whom (both owners of
        a partition may have been out of the writers' reach while reachable from here), so reads
        ask the handoff nodes too until things settle."""
        return self._clock.monotonic() - self._last_recovery < window

    def silence(self, node_id: str) -> float:
        """How long this node has suspected `node_id` (0 when it does not)."""
        suspicion = self._suspected.get(node_id)
        return 0.0 if suspicion is None else max(0.0, self._clock.monotonic() - suspicion.since)

    def state(self, node_id: str) -> PeerState:
        suspicion = self._suspected.get(node_id)
        if suspicion is None:
            return PeerState.UP
        age = self._clock.monotonic() - suspicion.since
        if age >= max(self.down_after, self.suspicion_timeout(node_id)):
            return PeerState.DOWN
        return PeerState.SUSPECT

    def is_up(self, node_id: str) -> bool:
        return node_id not in self._suspected

    def is_down(self, node_id: str) -> bool:
        return self.state(node_id) is PeerState.DOWN

    def suspects(self) -> list[str]:
        return list(self._suspected)

    def views(self, node_ids: Iterable[str]) -> list[PeerView]:
        return [PeerView(n, self.state(n).value, self.silence(n)) for n in node_ids]

    # ----- bounds -------------------------------------------------------------------------

    def retain(self, node_ids: Collection[str]) -> None:
        """Forget every node not in `node_ids` (the nodes of the current layout)."""
        keep = set(node_ids)
        for table in (self._suspected, self._incarnation, self._heard):
            for gone in table.keys() - keep:
                del table[gone]

    def tracked(self) -> int:
        """How many nodes the tables hold (bounded by the layout's nodes)."""
        return len(self._suspected.keys() | self._incarnation.keys() | self._heard.keys())
