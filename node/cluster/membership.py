"""Membership by SWIM with Lifeguard's refinements, and the spreading of the layout and access
document versions (highest signed version of each wins).

Each protocol period (`interval`, stretched by Lifeguard's local health: a node that misses acks
slows down) a node probes ONE peer, taken in a shuffled round-robin over the layout's nodes, plus
at most `CHECKS_PER_ROUND` nodes it has reason to check (ones it suspects, ones others said they
suspect). A probe that gets no ack goes through `INDIRECT` other nodes (ping-req) before the node
suspects the target (`FailureDetector.suspect`: routed around at once, down after the longer
grace); a target others suspect and it never heard from is suspected on its direct probe alone.

What a message carries is bounded, whatever N: the sender's id, its own incarnation, its layout
and access versions, and at most `MAX_NEWS` suspicions from a bounded buffer (each sent about
`RETRANSMIT_MULT` x log10 N times). A node told of a suspect probes it at once (`_check_now`), and
passes the word on once its own direct probe has failed too: a crash's news moves one hop per probe
timeout, a lie about a live node stops at the first hop. A node that sees a newer document version pulls it from that
sender once (`fetch_layout` / `fetch_access`): the same version from the same node again only
after `PULL_AGAIN_AFTER` seconds, when that pull failed or was refused. A node whose first layout
is not version 1 (it joined in a change) pulls once the layouts a peer applied before it
(`_fetch_history`): bucket lookups ask the owners under them until repair has moved a record.

Co-owners first. The nodes holding a replica of one of a dead node's partitions (its co-owners,
`coowners.py`) are the ones whose reads, writes and repair lean on it, and the epidemic reaches a
given node only after ~log N hops. So a node that suspects X on its own probe, in a settled mesh
(`_isolated_failure`: not while it starts), tells up to `ALERT_FANOUT` of X's co-owners directly,
at most once per `suspect_after`; each probes X itself, as any told node does (a liar still
costs each listener one probe, and nothing else).

Lying nodes. A suspicion received from another node is a reason to probe the node ourselves
(`_checks`), never a verdict, and only our own probe's failure makes us suspect it; only the node
itself (its ack, or its own call: authenticated channels) clears a suspicion. So a liar saying "X
is dead" costs each listener one probe of X, and a liar saying "X is alive" (or answering a
ping-req falsely) cannot clear anyone's suspicion of a dead X: it can only delay one listener's
first suspicion by one period while the listener picks it among the `INDIRECT` helpers. A node
told that it is suspected at its current incarnation raises its incarnation (SWIM's refutation),
which every later message of its own carries, so stale suspicions stop spreading.

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
from maillage.node.cluster.coowners import CoOwners
from maillage.node.cluster.detector import FailureDetector, PeerState
from maillage.node.energy.signal import State
from maillage.node.errors import NodeError
from maillage.node.replicas.transport import MAX_NEWS, Heartbeat, Suspicion, Transport
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.trust.access_state import OFFER_ERRORS, AccessState
from maillage.node.trust.documents import LayoutAuthError, SignedLayouts
from maillage.node.trust.layout_state import HISTORY, LayoutState
from maillage.placement import Layout, PlacementError
from maillage.storage import StorageError

__all__ = ["FailureDetector", "PeerState", "Gossip", "INDIRECT", "CHECKS_PER_ROUND", "MAX_NEWS"]

log = logging.getLogger(__name__)

INDIRECT = 3            # k: peers asked to probe a node that did not ack before suspecting it
CHECKS_PER_ROUND = 3    # extra probes per period for nodes to check (suspects, hearsay)
RETRANSMIT_MULT = 3     # lambda: each suspicion is sent about lambda x log10(N + 1) times
MAX_AWARENESS = 8       # Lifeguard: probe period and timeouts stretch up to (1 + this) times
MAX_RELAYS = 8          # ping-reqs this node carries out at once for others; more are answered "no"
ENERGY_STATES = frozenset(s.value for s in State if s is not State.UNKNOWN)  # a peer's word on its site
ENERGY_FRESH = 600.0    # seconds a peer's word on its site's energy state counts
PULL_AGAIN_AFTER = 30.0  # seconds before a document version that failed is pulled from that node again
HISTORY_ASKS = 3        # peers a node that joined in a layout change asks for the layouts before it
ALERT_QUIET = 50        # co-owners are told only while at most one node in this many is suspected
ALERT_FANOUT = 32       # co-owners of a node told at once when our direct probe of it fails


class Gossip(BackgroundLoop):
    """The SWIM loop: probe, ping-req, suspect, piggyback; learn newer layouts and access documents."""

    task_name = "gossip"

    def __init__(self, node_id: str, layout: LayoutState, detector: FailureDetector,
                 signed: SignedLayouts, transport: Transport, *, interval: float, access: AccessState,
                 clock: Clock = SYSTEM_CLOCK, rng: random.Random | None = None,
                 energy: Callable[[], str] = lambda: "") -> None:
        """`energy`: this node's site's energy state now ("": unknown), told to every peer it
        talks to, which keep the last one each node told them (`energy_of`)."""
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
        self._seen: tuple[Layout, frozenset[str]] | None = None
        self._relaying = 0
        self._tried: dict[tuple[str, str], tuple[int, float]] = {}   # (node, kind) -> version pulled, when
        self._fetching: set[str] = set()               # kinds being pulled now
        self._fetches: set[asyncio.Task[None]] = set()
        self._checking: dict[str, asyncio.Task[None]] = {}   # told targets probed now, off the period
        self._co = CoOwners()
        self._alerted: dict[str, float] = {}   # node -> when we last told its co-owners
        self._alerts: set[asyncio.Task[None]] = set()
        self._own_energy = energy
        self._energy: dict[str, tuple[str, float]] = {}  # node -> the energy state it last told us, when
        self._history_asks = 0  # peers asked for the layouts before ours (a node that joined in a change)

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
        self._tried = {k: v for k, v in self._tried.items() if k[0] in members}
        self._alerted = {k: v for k, v in self._alerted.items() if k in members}
        self._energy = {k: v for k, v in self._energy.items() if k in members}
        return members

    def _co_owners(self, node_id: str) -> frozenset[str]:
        return self._co.of(self._layout.current, node_id)

    def _still_suspected(self, node_id: str) -> bool:
        return not self._detector.is_up(node_id)

    def _retransmit_limit(self) -> int:
        return max(1, RETRANSMIT_MULT * math.ceil(math.log10(len(self._members()) + 1)))

    def _probe_timeout(self) -> float:
        return max(0.5, self._interval) * (1 + self.awareness)

    # ----- messages -----------------------------------------------------------------------

    def heartbeat(self, probe: str = "", *, news: bool = True) -> Heartbeat:
        """This node's probe (or ack): its id, versions, incarnation and a few suspicions (none
        when `news` is false: a probe of a node we suspect would likely waste them)."""
        suspects = self._news.take(MAX_NEWS, self._retransmit_limit(), self._still_suspected) if news else ()
        return Heartbeat(self.node_id, self._layout.current.version, self._access.version, self.incarnation,
                         suspects, probe=probe, energy=self._own_energy())

    def energy_of(self, node_id: str) -> str:
        """The energy state `node_id` last told us of its site (a node speaks only for itself,
        over an authenticated channel); "unknown" if it never did, said something else, or said it
        more than `ENERGY_FRESH` seconds ago (in a large mesh two nodes talk about every N periods)."""
        state, when = self._energy.get(node_id, ("unknown", -math.inf))
        return state if self._clock.monotonic() - when <= ENERGY_FRESH else "unknown"

    def _learn(self, beat: Heartbeat, *, sender: str, round_trip: bool = True) -> bool:
        """Take what a message from `sender` (an authenticated peer) says. False if not a member.

        `round_trip` False: the message came one way (a datagram probe; our ack may never reach its
        sender). It proves the sender alive, not reachable from here: under a one-way cut the
        sender's probes keep arriving while ours are lost, and taking them as "up" made a node
        flip a peer it cannot reach between suspect and up at every probe, routing writes to it.
        So it clears no suspicion: it makes us probe the sender at once (`_check_now`), and only
        that round trip (or a call over a connection, which needs both ways) clears it. A node
        back from a restart is then up here one probe later, not at our next turn of checks."""
        members = self._members()
        if sender not in members or sender == self.node_id:
            return False
        if round_trip or self._detector.is_up(sender):
            self._detector.heard(sender, beat.incarnation)
            self._news.drop(sender, up_to=self._detector.incarnation(sender))
            self._checks.pop(sender, None)
        else:
            self._checks[sender] = None
            self._check_now(sender)
        if beat.energy in ENERGY_STATES:
            self._energy[sender] = (beat.energy, self._clock.monotonic())
        else:
            self._energy.pop(sender, None)
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
        elif not self._detector.heard_within(target, self._detector.suspect_after):
            # A liar repeating "X is dead" makes each node probe X at most once per suspect_after.
            self._checks[target] = None
            self._check_now(target)

    def _check_now(self, target: str) -> None:
        """Probe a node others suspect at once, not at the next period: news of a crash then moves
        one hop per probe timeout. At most `CHECKS_PER_ROUND` at a time (the rest wait for the
        periods), and only once the loop runs (tests that drive `round()` themselves keep control)."""
        if self._task is None or target in self._checking or len(self._checking) >= CHECKS_PER_ROUND:
            return
        task = asyncio.get_running_loop().create_task(self._probe(target))
        self._checking[target] = task
        task.add_done_callback(lambda _: self._checking.pop(target, None))

    def on_heartbeat(self, beat: Heartbeat, *, round_trip: bool = True) -> Heartbeat:
        """A peer probed us: it is alive, and it may know a newer layout or access document. A
        heartbeat from a node outside the layout changes nothing (it still gets our ack).
        `round_trip` False: it came as a datagram, one way (see `_learn`)."""
        self._learn(beat, sender=beat.node_id, round_trip=round_trip)
        return self.heartbeat()

    async def on_ping_req(self, beat: Heartbeat, *, round_trip: bool = True) -> Heartbeat:
        """A peer asks us to probe `beat.probe` for it (SWIM's ping-req). Only for a member asking
        about another member, at most `MAX_RELAYS` at once: a stranger cannot make us probe."""
        target = beat.probe
        acked = False
        if (self._learn(beat, sender=beat.node_id, round_trip=round_trip) and target in self._members()
                and target not in (self.node_id, beat.node_id) and self._relaying < MAX_RELAYS):
            self._relaying += 1
            try:
                reply = await self._ping(target, self._probe_timeout())
            finally:
                self._relaying -= 1
            if reply is not None and self._learn(reply, sender=target):
                acked = True
        return dataclasses.replace(self.heartbeat(), acked=acked)

    def pending_checks(self) -> list[str]:
        """Nodes this node will probe itself soon (suspects, and nodes others said they suspect)."""
        return list(self._checks)

    # ----- the protocol period ------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await self.round()
            await self._clock.sleep(self._interval * (1 + self.awareness) * self._rng.uniform(0.9, 1.1))

    async def round(self) -> None:
        """One protocol period: probe the next node of the round-robin and up to
        `CHECKS_PER_ROUND` nodes to check."""
        members = self._members()
        targets: list[str] = []
        nxt = self._next_target(members)
        if nxt is not None:
            targets.append(nxt)
        for node_id in list(self._checks):
            if len(targets) > CHECKS_PER_ROUND:
                break
            if node_id not in targets and node_id not in self._checking:
                targets.append(node_id)
        await asyncio.gather(*(self._probe(t) for t in targets))

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

    async def _probe(self, target: str) -> None:
        told = target in self._checks   # an up node is there only because others said they suspect it
        self._checks.pop(target, None)
        if target not in self._members():
            return
        timeout = self._probe_timeout()
        reply = await self._ping(target, timeout)
        if reply is not None and self._learn(reply, sender=target):
            self.awareness = max(0, self.awareness - 1)
            return
        if not self._detector.is_up(target):   # already suspected: only its own ack clears that
            self._checks[target] = None
            return
        heard_of = Suspicion(target, self._detector.incarnation(target))
        if told:
            # Others suspect it and it does not answer us either: pass the word on now, while the
            # ping-reqs run (two probe timeouts), so the news moves one hop per direct probe. Each
            # listener still probes it itself, and a lie about a live node stops at the first hop.
            self._news.add(heard_of)
        # A node others suspect and we never heard from since we started (not started yet, or
        # dead since before we were) is suspected on our direct probe alone: asking others again
        # would only repeat what they said, and while a mesh starts that was most of its cost
        # (three relayed probes by every node for every node not listening yet).
        helpers = [] if told and not self._detector.ever_heard(target) else self._helpers(target)
        answers = await asyncio.gather(*(self._ping_req(h, target, 2 * timeout) for h in helpers))
        if any(answers):   # reachable through others: no suspicion this time, nothing to pass on
            self._news.drop(target, up_to=heard_of.incarnation)
            return
        if helpers and all(a is None for a in answers):
            self.awareness = min(MAX_AWARENESS, self.awareness + 1)   # nobody answers us: maybe we are slow
        if self._detector.suspect(target):
            log.info("suspecting %s: no ack, directly or through %d peers", target, len(helpers))
            self._news.add(heard_of)
            if not told and self._isolated_failure():
                self._alert(heard_of)
        self._checks[target] = None

    def _isolated_failure(self) -> bool:
        """Whether a suspicion is news worth telling co-owners: the mesh was settled (no node back
        from a suspicion within the last minute) and few nodes are suspected here (at most one in
        `ALERT_QUIET`). While a mesh starts, half of it is not up yet: 32 heartbeats for each such
        node from each node that probes it made a 100-node start a storm (a node not listening 30 s
        after its launch); a mass failure or a partition spreads by the epidemic as before."""
        quiet = max(1, len(self._members()) // ALERT_QUIET)
        return not self._detector.unsettled() and len(self._detector.suspects()) <= quiet

    def _alert(self, heard_of: Suspicion) -> None:
        """We suspect a node on a probe of our own (not because others said so): tell up to
        `ALERT_FANOUT` of its co-owners now, each of which probes it itself at once, at most once
        per `suspect_after` per node.
        Its co-owners are the nodes that must stop counting on it first, and the epidemic reaches
        a given node only after ~log N hops. Only once the loop runs (tests that drive `round()`
        keep control)."""
        target = heard_of.node_id
        now = self._clock.monotonic()
        if self._task is None or now - self._alerted.get(target, -math.inf) < self._detector.suspect_after:
            return
        self._alerted[target] = now
        others = sorted(self._co_owners(target) - {self.node_id})
        for node_id in self._rng.sample(others, min(ALERT_FANOUT, len(others))):
            task = asyncio.get_running_loop().create_task(self._tell(node_id, heard_of))
            self._alerts.add(task)
            task.add_done_callback(self._alerts.discard)

    async def _tell(self, node_id: str, heard_of: Suspicion) -> None:
        beat = Heartbeat(self.node_id, self._layout.current.version, self._access.version, self.incarnation,
                         (heard_of,), energy=self._own_energy())
        try:
            reply = await self._transport.heartbeat(node_id, beat, timeout=self._probe_timeout())
        except Exception:  # unanswered: it will hear of it from the others
            return
        self._learn(reply, sender=node_id)

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
        elif self._history_asks < HISTORY_ASKS and beat.layout_version == self._layout.current.version > 1:
            if self._layout.history():
                self._history_asks = HISTORY_ASKS  # it has some: nothing to ask
            else:
                self._start_fetch(sender, "history", beat.layout_version, self._fetch_history)
        if beat.access_version > self._access.version:
            self._start_fetch(sender, "access", beat.access_version, self._fetch_access)

    def _start_fetch(self, node_id: str, kind: str, version: int,
                     fetch: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        """Pull once: one pull of a kind at a time, the same version from the same node again only
        after `PULL_AGAIN_AFTER` (it failed or was refused: not every period)."""
        now = self._clock.monotonic()
        tried, when = self._tried.get((node_id, kind), (-1, 0.0))
        if kind in self._fetching or (tried >= version and now - when < PULL_AGAIN_AFTER):
            return
        self._tried[(node_id, kind)] = (version, now)
        self._fetching.add(kind)
        task = asyncio.get_running_loop().create_task(fetch(node_id))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)
        task.add_done_callback(lambda _: self._fetching.discard(kind))

    async def settle(self) -> None:
        """Wait for the layout fetches started so far (tests)."""
        while self._fetches:
            await asyncio.gather(*self._fetches, return_exceptions=True)

    async def stop(self) -> None:
        await super().stop()
        tasks = [*self._fetches, *self._checking.values(), *self._alerts]
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

    async def _fetch_history(self, node_id: str) -> None:
        """A node that joined in a layout change has none of the layouts before its first: pull
        those a peer kept (each admin-signed, checked as any layout), newest first. Bucket lookups
        ask the owners under them for records repair has not moved yet (`Catalog.moved`)."""
        self._history_asks += 1
        before = self._layout.current.version
        try:
            for _ in range(HISTORY):
                doc = await self._transport.fetch_layout(node_id, timeout=5, before=before)
                if not doc.text:
                    return
                layout = self._signed.verify(doc)
                if layout.version >= before:
                    raise LayoutAuthError(f"asked for a layout below version {before}, got {layout.version}")
                self._layout.add_history(layout, doc.signature, doc.text)
                before = layout.version
        except (NodeError, LayoutAuthError, PlacementError, StorageError) as err:
            log.warning("earlier layouts from %s refused: %s", node_id, err)

    async def _fetch_access(self, node_id: str) -> None:
        try:
            doc = await self._transport.fetch_access(node_id, timeout=5)
            self._access.offer(doc)
        except (NodeError, StorageError, *OFFER_ERRORS) as err:
            log.warning("access document from %s refused: %s", node_id, err)

