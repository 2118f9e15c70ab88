"""Membership by SWIM with Lifeguard's refinements, and the spreading of the layout and access
document versions (highest signed version of each wins).

Each protocol period (`interval`, stretched by Lifeguard's local health: a node that misses acks
slows down) a node probes ONE peer, taken in a shuffled round-robin over the layout's nodes, ONE
co-holder (a node sharing a partition with it, `holders.co_holders`) in a shuffled ring of its
own, and at most `CHECKS_PER_ROUND` nodes it still suspects. A probe that gets no ack within the
probe timeout (half a period, at least `MIN_PROBE_TIMEOUT`) goes through `INDIRECT` other nodes
(ping-req, twice that timeout) before the node suspects the target (`FailureDetector.suspect`:
routed around at once, down after the longer grace).

Why it is fast at 1,000 nodes while every node still decides on its own evidence:
- a helper whose relayed probe of the target got no ack has itself failed to reach it: it runs
  its own ping-reqs at once (`_verify_soon`), whose helpers do the same, so the verification floods
  the mesh in O(log N) probe timeouts, each node probing the target once; a live target answers
  nearly every relay, so under loss the flood dies at once (a few % of relays fail);
- a node that finds a peer silent on one of its own scheduled probes, once one helper confirms,
  asks the peer's co-holders (at most `MAX_ALERTS`) to probe it: they are the nodes that must
  route around it first, and they each learn it first-hand a second later;
- a suspicion heard from another node is checked at once (at most once per `suspect_after` per
  node, `MAX_VERIFYING` checks at a time), not at the next period.

What a message carries is bounded, whatever N: the sender's id, its own incarnation, its layout
and access versions, and at most `MAX_NEWS` suspicions from a bounded buffer (each sent about
`RETRANSMIT_MULT` x log10 N times). A node that sees a newer document version pulls it from that
sender once (`fetch_layout` / `fetch_access`; a second pull from another sender only once the
first has gone unanswered for `PULL_PATIENCE`): the same version from the same node again only
after `PULL_AGAIN_AFTER` seconds, when that pull failed or was refused.

Lying nodes. A suspicion received from another node is a reason to probe the node ourselves, never
a verdict, and only our own probe's failure makes us suspect it; only the node itself (its ack, or
its own call: authenticated channels) clears a suspicion. So a liar saying "X is dead" costs each
listener one probe of X per `suspect_after`, a liar's ping-req one probe (and a flood only if X
really does not answer), and a liar saying "X is alive" (or answering a ping-req falsely) cannot
clear anyone's suspicion of a dead X: it can only delay one listener's first suspicion by one
period while the listener picks it among the `INDIRECT` helpers. A node told that it is suspected
at its current incarnation raises its incarnation (SWIM's refutation), which every later message
of its own carries, so stale suspicions stop spreading.

Only nodes of the current layout count: messages from, or suspicions of, any other id are ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

from maillage.node.cluster.broadcasts import Broadcasts
from maillage.node.cluster.detector import FailureDetector, PeerState
from maillage.node.cluster.holders import co_holders
from maillage.node.errors import NodeError
from maillage.node.replicas.transport import MAX_NEWS, Heartbeat, Suspicion, Transport
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.access_state import OFFER_ERRORS, AccessState
from maillage.node.trust.documents import LayoutAuthError, SignedLayouts
from maillage.node.trust.layout_state import LayoutState
from maillage.placement import Layout, PlacementError
from maillage.storage import StorageError

__all__ = ["FailureDetector", "PeerState", "Gossip", "INDIRECT", "CHECKS_PER_ROUND", "MAX_VERIFYING", "MAX_ALERTS",
           "MAX_NEWS"]

log = logging.getLogger(__name__)

INDIRECT = 3            # k: peers asked to probe a node that did not ack before suspecting it
CHECKS_PER_ROUND = 3    # extra probes per period for nodes to check (suspects, hearsay beyond the cap)
MAX_VERIFYING = 8       # nodes this node verifies at once between periods (hearsay, failed relays)
MAX_ALERTS = 32         # co-holders of a silent node asked to probe it
MIN_PROBE_TIMEOUT = 0.5  # seconds: a direct probe waits max(this, interval / 2), a ping-req twice that
RETRANSMIT_MULT = 3     # lambda: each suspicion is sent about lambda x log10(N + 1) times
MAX_AWARENESS = 8       # Lifeguard: probe period and timeouts stretch up to (1 + this) times
MAX_RELAYS = 8          # targets this node probes at once for others' ping-reqs; more are answered "no"
PULL_AGAIN_AFTER = 30.0  # seconds before a document version that failed is pulled from that node again
PULL_PATIENCE = 1.0     # seconds a pull goes unanswered before one from another node may start
MAX_PULLS = 2           # pulls of one kind of document in flight at once


class Gossip(BackgroundLoop):
    """The SWIM loop: probe, ping-req, suspect, piggyback; learn newer layouts and access documents."""

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
        # Wall-clock milliseconds at start: a restarted node begins above any incarnation it used
        # before (it raises its own only by one per refutation).
        self.incarnation = int(clock.time() * 1000)
        self.awareness = 0      # Lifeguard's local health: 0 healthy .. MAX_AWARENESS
        self._news = Broadcasts()
        self._checks: dict[str, None] = {}   # nodes to probe ourselves soon, oldest first
        self._order: list[str] = []          # this sweep's shuffled round-robin
        self._cursor = 0
        self._ring: list[str] = []           # this node's co-holders, shuffled: one probed per period
        self._ring_cursor = 0
        self._seen: tuple[Layout, frozenset[str]] | None = None
        self._relays: dict[str, asyncio.Future[bool]] = {}   # target -> the probe relayed for ping-reqs now
        self._verifying: dict[str, asyncio.Task[None]] = {}  # target -> its verification between periods
        self._heard_of: dict[str, float] = {}  # target -> when hearsay last made us check it
        self._alerts: set[asyncio.Task[Any]] = set()
        self._tried: dict[tuple[str, str], tuple[int, float]] = {}   # (node, kind) -> version pulled, when
        self._fetching: dict[str, list[float]] = {}    # kind -> when each pull in flight began
        self._fetches: set[asyncio.Task[None]] = set()

    # ----- the layout's nodes -------------------------------------------------------------

    def _members(self) -> frozenset[str]:
        """The layout's node ids; on a layout change every table forgets nodes that left."""
        layout = self._layout.current
        if self._seen is not None and self._seen[0] is layout:
            return self._seen[1]
        members = frozenset(n.id for n in layout.nodes)
        self._seen = (layout, members)
        self._detector.retain(members)
        self._detector.cluster_size = len(members)
        self._news.retain(members)
        self._checks = {n: None for n in self._checks if n in members}
        self._heard_of = {n: t for n, t in self._heard_of.items() if n in members}
        self._tried = {k: v for k, v in self._tried.items() if k[0] in members}
        self._ring = [n for n in co_holders(layout, self.node_id) if n in members]
        self._rng.shuffle(self._ring)
        self._ring_cursor = 0
        return members

    def _still_suspected(self, node_id: str) -> bool:
        return not self._detector.is_up(node_id)

    def _retransmit_limit(self) -> int:
        return max(1, RETRANSMIT_MULT * math.ceil(math.log10(len(self._members()) + 1)))

    def _probe_timeout(self) -> float:
        return max(MIN_PROBE_TIMEOUT, self._interval / 2) * (1 + self.awareness)

    # ----- messages -----------------------------------------------------------------------

    def heartbeat(self, probe: str = "", *, news: bool = True) -> Heartbeat:
        """This node's probe (or ack): its id, versions, incarnation and a few suspicions (none
        when `news` is false: a probe of a node we suspect would likely waste them)."""
        suspects = self._news.take(MAX_NEWS, self._retransmit_limit(), self._still_suspected) if news else ()
        return Heartbeat(self.node_id, self._layout.current.version, self._access.version, self.incarnation,
                         suspects, probe=probe)

    def _learn(self, beat: Heartbeat, *, sender: str) -> bool:
        """Take what a message from `sender` (an authenticated peer) says. False if not a member."""
        members = self._members()
        if sender not in members or sender == self.node_id:
            return False
        self._detector.heard(sender, beat.incarnation)
        self._news.drop(sender, up_to=self._detector.incarnation(sender))
        self._checks.pop(sender, None)
        for suspicion in beat.suspects[:MAX_NEWS]:
            self._consider(suspicion, sender, members)
        self._maybe_fetch(beat, sender)
        return True

    def _consider(self, suspicion: Suspicion, sender: str, members: frozenset[str]) -> None:
        """`sender` says it suspects a node: refute it if it is us, else check it ourselves."""
        target = suspicion.node_id
        if target not in members or target == sender:
            return
        if target == self.node_id:
            if suspicion.incarnation == self.incarnation:
                # Refute: every later message of ours carries it. (Lifeguard also raises its
                # awareness here; not done, since any liar could then slow any node down.)
                self.incarnation += 1
            return
        if 0 < suspicion.incarnation < self._detector.incarnation(target):
            return   # it refuted that suspicion since: stale (0: the suspecter never heard it)
        if not self._detector.is_up(target):
            self._detector.confirm(target, sender)
            return
        now = self._clock.monotonic()
        if now - self._heard_of.get(target, -math.inf) >= self._detector.suspect_after:
            # A liar repeating "X is dead" makes each node probe X at most once per suspect_after.
            self._heard_of[target] = now
            self._verify_soon(target, direct_failed=False)

    def on_heartbeat(self, beat: Heartbeat) -> Heartbeat:
        """A peer probed us: it is alive, and it may know a newer layout or access document. A
        heartbeat from a node outside the layout changes nothing (it still gets our ack)."""
        self._learn(beat, sender=beat.node_id)
        return self.heartbeat()

    async def on_ping_req(self, beat: Heartbeat) -> Heartbeat:
        """A peer asks us to probe `beat.probe` for it (SWIM's ping-req). Only for a member asking
        about another member, one probe per target however many ask at once, at most `MAX_RELAYS`
        targets at once: a stranger cannot make us probe. A relayed probe without ack is our own
        failure to reach the target: we verify it ourselves at once (the flood that spreads a
        crash in O(log N) probe timeouts)."""
        target = beat.probe
        acked = False
        if (self._learn(beat, sender=beat.node_id) and target in self._members()
                and target not in (self.node_id, beat.node_id)
                and self._detector.is_up(target) and target not in self._verifying):
            # (A node we suspect, or are verifying, failed our own probe just now: "no" without
            # probing it again; each period re-probes our suspects.)
            relay = self._relays.get(target)
            if relay is not None:
                acked = await asyncio.shield(relay)
            elif len(self._relays) < MAX_RELAYS:
                relay = self._relays[target] = asyncio.get_running_loop().create_future()
                try:
                    reply = await self._ping(target, self._probe_timeout())
                    acked = reply is not None and self._learn(reply, sender=target)
                finally:
                    del self._relays[target]
                    relay.set_result(acked)
                if not acked:
                    self._verify_soon(target, direct_failed=True)
        return dataclasses.replace(self.heartbeat(), acked=acked)

    def pending_checks(self) -> list[str]:
        """Nodes this node will probe itself soon (suspects, and nodes others said they suspect)."""
        return list(self._checks) + [n for n in self._verifying if n not in self._checks]

    # ----- the protocol period ------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await self.round()
            await self._clock.sleep(self._interval * (1 + self.awareness) * self._rng.uniform(0.9, 1.1))

    async def round(self) -> None:
        """One protocol period: probe the next node of the round-robin, the next co-holder of the
        ring and up to `CHECKS_PER_ROUND` nodes to check (none being verified already), and wait
        for the verifications in flight."""
        members = self._members()
        scheduled: list[str] = []
        for nxt in (self._next_target(members), self._next_neighbour(members)):
            if nxt is not None and nxt not in scheduled and nxt not in self._verifying:
                scheduled.append(nxt)
        checks: list[str] = []
        for node_id in list(self._checks):
            if len(checks) >= CHECKS_PER_ROUND:
                break
            if node_id not in scheduled and node_id not in self._verifying:
                checks.append(node_id)
        # The verifications in flight end within the period too (a node verifying does not start
        # the next period's probes on top of them).
        await asyncio.gather(*(self._probe(t, alert=True) for t in scheduled),
                             *(self._probe(t, alert=False) for t in checks),
                             *(asyncio.shield(task) for task in list(self._verifying.values())))

    def _next_target(self, members: frozenset[str]) -> str | None:
        for _ in range(2):
            while self._cursor < len(self._order):
                node_id = self._order[self._cursor]
                self._cursor += 1
                if node_id in members:
                    return node_id
            self._order = sorted(members - {self.node_id})
            self._rng.shuffle(self._order)
            self._cursor = 0
        return None

    def _next_neighbour(self, members: frozenset[str]) -> str | None:
        """The next co-holder of the ring (None: this node holds nothing with anyone)."""
        if not self._ring:
            return None
        node_id = self._ring[self._ring_cursor % len(self._ring)]
        self._ring_cursor += 1
        return node_id

    def _helpers(self, target: str) -> list[str]:
        """Up to `INDIRECT` random peers other than `target` that we think are up (O(k) draws)."""
        pool = self._order
        chosen: list[str] = []
        for _ in range(4 * INDIRECT):
            if len(chosen) == INDIRECT or not pool:
                break
            node_id = pool[self._rng.randrange(len(pool))]
            if node_id != target and node_id not in chosen and self._detector.is_up(node_id) \
                    and node_id in self._members():
                chosen.append(node_id)
        return chosen

    def _spawn(self, coro: Coroutine[Any, Any, Any], into: set[asyncio.Task[Any]]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        into.add(task)
        task.add_done_callback(into.discard)
        return task

    def _verify_soon(self, target: str, *, direct_failed: bool) -> None:
        """Verify `target` now, between periods: probe it (unless `direct_failed`: we just did),
        then through `INDIRECT` others. At most `MAX_VERIFYING` at once; beyond that it waits for
        a period's checks. Nothing to do for a node we suspect already (each period re-probes it)."""
        if target in self._verifying or not self._detector.is_up(target) or target not in self._members():
            return
        if len(self._verifying) >= MAX_VERIFYING:
            self._checks[target] = None
            return
        self._checks.pop(target, None)
        task = asyncio.get_running_loop().create_task(self._probe(target, alert=False, direct_failed=direct_failed))
        self._verifying[target] = task
        task.add_done_callback(lambda _: self._verifying.pop(target, None))

    async def _probe(self, target: str, *, alert: bool, direct_failed: bool = False) -> None:
        """Probe `target` directly, then through others; suspect it if no one got an ack. `alert`
        (a probe of our own schedule): once a helper confirms the silence, ask its co-holders."""
        self._checks.pop(target, None)
        if target not in self._members():
            return
        timeout = self._probe_timeout()
        if not direct_failed:
            reply = await self._ping(target, timeout)
            if reply is not None and self._learn(reply, sender=target):
                self.awareness = max(0, self.awareness - 1)
                return
        if not self._detector.is_up(target):   # already suspected: only its own ack clears that
            self._checks[target] = None
            return
        helpers = self._helpers(target)
        alerted = not alert

        async def ask(helper: str) -> bool | None:
            nonlocal alerted
            answer = await self._ping_req(helper, target, 2 * timeout)
            if answer is False and not alerted:   # two of us failed to reach it: tell its co-holders
                alerted = True
                self._alert(target, 2 * timeout)
            return answer

        answers = await asyncio.gather(*(ask(h) for h in helpers))
        if any(answers):   # reachable through others: no suspicion this time
            return
        if helpers and all(a is None for a in answers):
            self.awareness = min(MAX_AWARENESS, self.awareness + 1)   # nobody answers us: maybe we are slow
        if self._detector.suspect(target):
            log.info("suspecting %s: no ack, directly or through %d peers", target, len(helpers))
            self._news.add(Suspicion(target, self._detector.incarnation(target)))
        self._checks[target] = None

    def _alert(self, target: str, timeout: float) -> None:
        """Ask `target`'s co-holders (at most `MAX_ALERTS`, ones we think are up) to probe it: a
        ping-req, whose failure makes each verify it at once."""
        holders = [h for h in co_holders(self._layout.current, target)
                   if h != self.node_id and self._detector.is_up(h)]
        if len(holders) > MAX_ALERTS:
            holders = self._rng.sample(holders, MAX_ALERTS)
        for holder in holders:
            self._spawn(self._ping_req(holder, target, timeout), self._alerts)

    async def _ping(self, node_id: str, timeout: float, probe: str = "") -> Heartbeat | None:
        try:
            beat = self.heartbeat(probe, news=self._detector.is_up(node_id))
            return await self._transport.heartbeat(node_id, beat, timeout=timeout)
        except Exception:  # unanswered, refused or failed: this probe tells nothing more
            return None

    async def _ping_req(self, helper: str, target: str, timeout: float) -> bool | None:
        """True/False: `helper` answered that `target` did / did not ack; None: no answer."""
        reply = await self._ping(helper, timeout, probe=target)
        if reply is None or not self._learn(reply, sender=helper):
            return None
        return reply.acked

    # ----- documents ----------------------------------------------------------------------

    def _maybe_fetch(self, beat: Heartbeat, sender: str) -> None:
        if beat.layout_version > self._layout.current.version:
            self._start_fetch(sender, "layout", beat.layout_version, self._fetch_layout)
        if beat.access_version > self._access.version:
            self._start_fetch(sender, "access", beat.access_version, self._fetch_access)

    def _start_fetch(self, node_id: str, kind: str, version: int,
                     fetch: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        """Pull once: one pull of a kind at a time (a second from another node only once the first
        has gone `PULL_PATIENCE` seconds unanswered: a lost message would otherwise hold the
        version back for the whole timeout), the same version from the same node again only
        after `PULL_AGAIN_AFTER` (it failed or was refused: not every period)."""
        now = self._clock.monotonic()
        tried, when = self._tried.get((node_id, kind), (-1, 0.0))
        if tried >= version and now - when < PULL_AGAIN_AFTER:
            return
        pulling = self._fetching.get(kind, [])
        if len(pulling) >= MAX_PULLS or (pulling and now - pulling[-1] < PULL_PATIENCE):
            return
        self._tried[(node_id, kind)] = (version, now)
        self._fetching.setdefault(kind, []).append(now)
        task = self._spawn(fetch(node_id), self._fetches)
        task.add_done_callback(lambda _: self._pulled(kind, now))

    def _pulled(self, kind: str, started: float) -> None:
        pulling = self._fetching[kind]
        pulling.remove(started)
        if not pulling:
            del self._fetching[kind]

    def busy(self) -> bool:
        """Whether a document pull, a verification or an alert is in flight."""
        return bool(self._fetches or self._verifying or self._alerts)

    async def settle(self) -> None:
        """Wait for the document pulls, verifications and alerts started so far, and those they
        start (tests)."""
        while self.busy():
            await asyncio.gather(*self._fetches, *self._verifying.values(), *self._alerts,
                                 return_exceptions=True)

    async def stop(self) -> None:
        await super().stop()
        tasks = [*self._fetches, *self._verifying.values(), *self._alerts]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
