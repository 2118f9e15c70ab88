"""Who is alive: a failure detector fed by gossiped heartbeats, and the gossip loop that also
spreads the layout and the access document (highest signed version of each wins).

Why two thresholds. A peer silent for `suspect_after` is *suspect*: reads and writes route around
it at once (handoff, inside the policy), but its data stays where it is, because most silences
are restarts and short partitions. Only past the longer `down_after` grace is it *down* ("marked
out"): repair then treats the handoff nodes as the owners and copies its partitions there. When
it speaks again it is up at once and hinted writes flow back to it.

Heartbeats spread indirectly: every message carries the sender's view (how long since it heard
from each node), so a node learns that a peer it did not ping lately is alive through a third one.
With a fanout of a few peers per interval, news reaches every node in O(log N) intervals.

Only nodes of the current layout count: a heartbeat from (or a view of) any other node id is
ignored, and the detector forgets nodes that left the layout, so its table never holds more than
the layout's nodes however many made-up ids a caller sends.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection, Coroutine, Iterable
from enum import StrEnum
from typing import Any

from maillage.node.errors import NodeError
from maillage.node.replicas.transport import Heartbeat, PeerView, Transport
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.access_state import OFFER_ERRORS, AccessState
from maillage.node.trust.documents import LayoutAuthError, SignedLayouts
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import PlacementError
from maillage.storage import StorageError

log = logging.getLogger(__name__)

FANOUT = 3


class PeerState(StrEnum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


class FailureDetector:
    """Last time each node was heard from, directly or through a peer's view.

    `clock` is injectable (its monotonic seconds) so tests can step time instead of sleeping. A
    node never heard from counts from the detector's start: a fresh node gives its peers one grace
    period before suspecting them.
    """

    def __init__(self, self_id: str, *, suspect_after: float, down_after: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        if not 0 < suspect_after <= down_after:
            raise ValueError(f"need 0 < suspect_after ({suspect_after}) <= down_after ({down_after})")
        self.self_id = self_id
        self.suspect_after = suspect_after
        self.down_after = down_after
        self._clock = clock
        self._started = clock.monotonic()
        self._last: dict[str, float] = {}
        # Called with a node id when a suspect or down node is heard from again: hinted writes
        # for it should be handed back now, not at the next repair round (until then reads from
        # its replica set can miss them).
        self.on_recovered: Callable[[str], None] = lambda node_id: None
        self._recovered: dict[str, float] = {}   # node -> when it was last heard again after a silence

    def heard(self, node_id: str, silent_for: float = 0.0) -> None:
        """`node_id` was alive `silent_for` seconds ago (0: just now)."""
        at = self._clock.monotonic() - max(0.0, silent_for)
        if at > self._last.get(node_id, float("-inf")):
            was_up = self.is_up(node_id)
            self._last[node_id] = at
            if not was_up and self.is_up(node_id):
                self._recovered[node_id] = self._clock.monotonic()
                self.on_recovered(node_id)

    def unsettled(self, window: float = 60.0) -> bool:
        """Whether some node came back from a silence less than `window` seconds ago. Writes
        made while nodes could not reach each other went to handoff nodes and may not be handed
        back yet, and which replicas missed them depends on who could reach whom (both owners of
        a partition may have been out of the writers' reach while reachable from here), so reads
        ask the handoff nodes too until things settle."""
        now = self._clock.monotonic()
        return any(now - at < window for at in self._recovered.values())

    def silence(self, node_id: str) -> float:
        if node_id == self.self_id:
            return 0.0
        return max(0.0, self._clock.monotonic() - self._last.get(node_id, self._started))

    def state(self, node_id: str) -> PeerState:
        silent = self.silence(node_id)
        if silent >= self.down_after:
            return PeerState.DOWN
        if silent >= self.suspect_after:
            return PeerState.SUSPECT
        return PeerState.UP

    def is_up(self, node_id: str) -> bool:
        return self.state(node_id) is PeerState.UP

    def is_down(self, node_id: str) -> bool:
        return self.state(node_id) is PeerState.DOWN

    def views(self, node_ids: Iterable[str]) -> list[PeerView]:
        return [PeerView(n, self.state(n).value, self.silence(n)) for n in node_ids]

    def retain(self, node_ids: Collection[str]) -> None:
        """Forget every node not in `node_ids` (the nodes of the current layout)."""
        for gone in self._last.keys() - set(node_ids):
            del self._last[gone]

    def tracked(self) -> int:
        """How many nodes the table holds (bounded by the layout's nodes)."""
        return len(self._last)

    def absorb(self, views: Iterable[PeerView]) -> None:
        """Take a peer's view: whatever it heard more recently than we did counts."""
        for view in views:
            if view.node_id != self.self_id:
                self.heard(view.node_id, view.silent_seconds)


class Gossip(BackgroundLoop):
    """Every `interval`, heartbeat a few random peers; learn views, newer layouts and access documents."""

    task_name = "gossip"

    def __init__(self, node_id: str, layout: LayoutState, detector: FailureDetector,
                 signed: SignedLayouts, transport: Transport, *, interval: float, access: AccessState,
                 clock: Clock = SYSTEM_CLOCK, rng: random.Random | None = None) -> None:
        self.node_id = node_id
        self._layout = layout
        self._detector = detector
        self._signed = signed
        self._access = access
        self._transport = transport
        self._interval = interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._fetching: set[tuple[str, str]] = set()   # (node, "layout" | "access")
        self._fetches: set[asyncio.Task[None]] = set()

    def _peer_ids(self) -> list[str]:
        return [n.id for n in self._layout.current.nodes if n.id != self.node_id]

    def heartbeat(self) -> Heartbeat:
        """This node's heartbeat (or reply): its id, layout version and view of the others."""
        return Heartbeat(self.node_id, self._layout.current.version,
                         tuple(self._detector.views(self._peer_ids())), self._access.version)

    def _members(self) -> frozenset[str]:
        return frozenset(n.id for n in self._layout.current.nodes)

    def _learn(self, beat: Heartbeat, *, sender: str) -> None:
        """Take what a heartbeat (or reply) from `sender` says, for nodes of the layout only."""
        members = self._members()
        self._detector.retain(members)
        if sender not in members:
            return
        self._detector.heard(sender)
        self._detector.absorb(v for v in beat.peers if v.node_id in members)
        self._maybe_fetch(beat, sender)

    def on_heartbeat(self, beat: Heartbeat) -> Heartbeat:
        """A peer pinged us: it is alive, and it may know a newer layout or access document. A
        heartbeat from a node outside the layout changes nothing (it still gets our reply)."""
        self._learn(beat, sender=beat.node_id)
        return self.heartbeat()

    async def _loop(self) -> None:
        while True:
            await self.round()
            await self._clock.sleep(self._interval * self._rng.uniform(0.8, 1.2))

    async def round(self) -> None:
        """Heartbeat up to `FANOUT` random peers."""
        peers = self._peer_ids()
        # Suspects get pinged too (that is how they come back), but the fanout favours the
        # quiet ones so that a single node's silence is noticed quickly.
        targets = self._rng.sample(peers, min(FANOUT, len(peers)))
        await asyncio.gather(*(self._ping(p) for p in targets))

    async def _ping(self, node_id: str) -> None:
        try:
            reply = await self._transport.heartbeat(node_id, self.heartbeat(),
                                                    timeout=max(1.0, self._interval * 2))
        except Exception:  # unanswered, refused or failed: this ping tells nothing
            return
        self._learn(reply, sender=node_id)

    def _maybe_fetch(self, beat: Heartbeat, sender: str) -> None:
        if beat.layout_version > self._layout.current.version:
            self._start_fetch(sender, "layout", self._fetch_layout)
        if beat.access_version > self._access.version:
            self._start_fetch(sender, "access", self._fetch_access)

    def _start_fetch(self, node_id: str, kind: str, fetch: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        if (node_id, kind) in self._fetching:
            return
        self._fetching.add((node_id, kind))
        task = asyncio.get_running_loop().create_task(fetch(node_id))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)
        task.add_done_callback(lambda _: self._fetching.discard((node_id, kind)))

    async def settle(self) -> None:
        """Wait for the layout fetches started so far (tests)."""
        while self._fetches:
            await asyncio.gather(*self._fetches, return_exceptions=True)

    async def stop(self) -> None:
        await super().stop()
        for task in list(self._fetches):
            task.cancel()
        await asyncio.gather(*self._fetches, return_exceptions=True)

    async def _fetch_layout(self, node_id: str) -> None:
        try:
            doc = await self._transport.fetch_layout(node_id, timeout=5)
            layout = self._signed.verify(doc)
            if self._layout.offer(layout, doc.signature, doc.text):
                log.info("adopted layout version %d from %s", layout.version, node_id)
        except (NodeError, LayoutAuthError, PlacementError, StorageError) as err:
            log.warning("layout from %s refused: %s", node_id, err)

    async def _fetch_access(self, node_id: str) -> None:
        try:
            doc = await self._transport.fetch_access(node_id, timeout=5)
            self._access.offer(doc)
        except (NodeError, StorageError, *OFFER_ERRORS) as err:
            log.warning("access document from %s refused: %s", node_id, err)
