"""Who is alive: a failure detector fed by gossiped heartbeats, and the gossip loop that also
spreads the layout (highest signed version wins).

Why two thresholds. A peer silent for `suspect_after` is *suspect*: reads and writes route around
it at once (handoff, inside the policy), but its data stays where it is, because most silences
are restarts and short partitions. Only past the longer `down_after` grace is it *down* ("marked
out"): repair then treats the handoff nodes as the owners and copies its partitions there. When
it speaks again it is up at once and hinted writes flow back to it.

Heartbeats spread indirectly: every message carries the sender's view (how long since it heard
from each node), so a node learns that a peer it did not ping lately is alive through a third one.
With a fanout of a few peers per interval, news reaches every node in O(log N) intervals.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from enum import Enum

import grpc

from maillage.placement import Layout, LayoutError, PlacementError, parse_layout
from maillage.proto import pb, rpc

from .auth import ClusterKey, LayoutAuthError
from .background import BackgroundLoop
from .layout_state import LayoutState
from .peers import Channels

log = logging.getLogger(__name__)

FANOUT = 3


class PeerState(str, Enum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


class FailureDetector:
    """Last time each node was heard from, directly or through a peer's view.

    `clock` is injectable (monotonic seconds) so tests can step time instead of sleeping. A node
    never heard from counts from the detector's start: a fresh node gives its peers one grace
    period before suspecting them.
    """

    def __init__(self, self_id: str, *, suspect_after: float, down_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < suspect_after <= down_after:
            raise ValueError(f"need 0 < suspect_after ({suspect_after}) <= down_after ({down_after})")
        self.self_id = self_id
        self.suspect_after = suspect_after
        self.down_after = down_after
        self._clock = clock
        self._started = clock()
        self._last: dict[str, float] = {}

    def heard(self, node_id: str, silent_for: float = 0.0) -> None:
        """`node_id` was alive `silent_for` seconds ago (0: just now)."""
        at = self._clock() - max(0.0, silent_for)
        if at > self._last.get(node_id, float("-inf")):
            self._last[node_id] = at

    def silence(self, node_id: str) -> float:
        if node_id == self.self_id:
            return 0.0
        return max(0.0, self._clock() - self._last.get(node_id, self._started))

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

    def views(self, node_ids) -> list[pb.PeerView]:
        return [pb.PeerView(node_id=n, state=self.state(n).value, silent_seconds=self.silence(n))
                for n in node_ids]

    def absorb(self, views) -> None:
        """Take a peer's view: whatever it heard more recently than we did counts."""
        for view in views:
            if view.node_id != self.self_id:
                self.heard(view.node_id, view.silent_seconds)


class SignedLayouts:
    """Check and sign layout documents with the cluster key (None: accept no change)."""

    def __init__(self, key: ClusterKey | None) -> None:
        self.key = key

    def _check(self, doc: pb.LayoutDoc) -> None:
        if self.key is None:
            raise LayoutAuthError("this node was started without the cluster secret: it accepts no "
                                  "layout change (restart it with --secret-file)")
        self.key.verify(doc.version, doc.text, doc.signature)

    def verify(self, doc: pb.LayoutDoc, *, staged_on: int | None = None) -> Layout:
        """The layout of a signed document. An applied one carries its own version; a staged
        one carries the version it was prepared against, which must still be current."""
        self._check(doc)
        layout = parse_layout(doc.text)
        if staged_on is None and layout.version != doc.version:
            raise LayoutAuthError(f"layout document says version {doc.version} but its text has "
                                  f"version {layout.version}")
        if staged_on is not None and doc.version != staged_on:
            raise LayoutError(f"staged change was prepared against layout version {doc.version}, "
                              f"but the current version is {staged_on}: prepare it again")
        return layout

    def verify_blank(self, doc: pb.LayoutDoc) -> None:
        """A signed request with no layout (clearing the staged change)."""
        self._check(doc)

    def sign(self, version: int, text: str) -> bytes:
        return self.key.sign(version, text) if self.key is not None else b""


class Gossip(BackgroundLoop):
    """Every `interval`, heartbeat a few random peers; learn views and newer layouts."""

    task_name = "gossip"

    def __init__(self, node_id: str, layout: LayoutState, detector: FailureDetector,
                 signed: SignedLayouts, *, interval: float) -> None:
        self.node_id = node_id
        self._layout = layout
        self._detector = detector
        self._signed = signed
        self._interval = interval
        self._channels = Channels(layout)
        self._fetching: set[str] = set()

    async def stop(self) -> None:
        await super().stop()
        await self._channels.close()

    def _peer_ids(self) -> list[str]:
        return [n.id for n in self._layout.current.nodes if n.id != self.node_id]

    def _stub(self, node_id: str) -> rpc.ClusterStub:
        return rpc.ClusterStub(self._channels.get(node_id))

    def request(self) -> pb.HeartbeatRequest:
        return pb.HeartbeatRequest(node_id=self.node_id, layout_version=self._layout.current.version,
                                   peers=self._detector.views(self._peer_ids()))

    def on_heartbeat(self, request: pb.HeartbeatRequest) -> pb.HeartbeatReply:
        """A peer pinged us: it is alive, and it may know a newer layout."""
        self._detector.heard(request.node_id)
        self._detector.absorb(request.peers)
        self._maybe_fetch(request.node_id, request.layout_version)
        return pb.HeartbeatReply(node_id=self.node_id, layout_version=self._layout.current.version,
                                 peers=self._detector.views(self._peer_ids()))

    async def _loop(self) -> None:
        while True:
            peers = self._peer_ids()
            # Suspects get pinged too (that is how they come back), but the fanout favours the
            # quiet ones so that a single node's silence is noticed quickly.
            targets = random.sample(peers, min(FANOUT, len(peers)))
            await asyncio.gather(*(self._ping(p) for p in targets))
            await asyncio.sleep(self._interval * random.uniform(0.8, 1.2))

    async def _ping(self, node_id: str) -> None:
        try:
            reply = await self._stub(node_id).Heartbeat(self.request(), timeout=max(1.0, self._interval * 2))
        except (grpc.RpcError, PlacementError):
            return
        self._detector.heard(node_id)
        self._detector.absorb(reply.peers)
        self._maybe_fetch(node_id, reply.layout_version)

    def _maybe_fetch(self, node_id: str, version: int) -> None:
        if version > self._layout.current.version and node_id not in self._fetching:
            self._fetching.add(node_id)
            asyncio.get_running_loop().create_task(self._fetch_layout(node_id))

    async def _fetch_layout(self, node_id: str) -> None:
        try:
            doc = await self._stub(node_id).GetLayout(pb.GetLayoutRequest(), timeout=5)
            layout = self._signed.verify(doc)
            if self._layout.offer(layout, doc.signature):
                log.info("adopted layout version %d from %s", layout.version, node_id)
        except (grpc.RpcError, LayoutAuthError, PlacementError) as err:
            log.warning("layout from %s refused: %s", node_id, err)
        finally:
            self._fetching.discard(node_id)
