"""The node's scheduler of deferrable background work: the one place scrub, GC, upload expiry,
hand-back and rebalance ask "may I run now, and how fast?".

It keeps the site's latest signal (read from its source every `poll` seconds; a source that fails
makes it unknown, logged once per new problem) and a `Job` per kind of work, which carries the
work's deadline and what is left of it. A job asks at each of its safe points (a frame, a bucket, a
group, a pass): `turn()` waits there while its pace is 0 (a shed order, or a grey window with slack
left) and wakes within a second of a change of signal; loops that must not wait (repair's rounds,
whose urgent part never waits) ask `allowed()` and skip the deferrable part until a later round.
`decide.pace` is the rule. The source is the one the node's site declares in the layout, looked
up again every `SPEC_CHECK` seconds (a layout change takes effect without a restart); a site that
declares none costs a wake-up every `SPEC_CHECK` seconds, and every job runs at full pace, as
before energy was known.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from maillage.node.energy.decide import DEADLINES, Backlog, Kind, pace, shared, wait_hint
from maillage.node.energy.power import PowerModel
from maillage.node.energy.signal import GREEN_CARBON, UNKNOWN, Signal, SignalError, State
from maillage.node.energy.sources import SignalSource, source_for
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.placement.energy import EnergySource, PowerFigures
from maillage.placement.errors import LayoutError

__all__ = ["EnergyScheduler", "Job", "KindStats"]

log = logging.getLogger(__name__)

RECHECK = 60.0  # seconds a waiting job sleeps at most before it looks at its deadline again
DEFAULT_POWER = PowerModel()
SPEC_CHECK = 10.0  # seconds between two looks at the source the layout declares


@dataclass
class KindStats:
    """What one kind of work did: turns granted, bytes granted (in green windows among them), waits,
    and its estimated energy (`power.PowerModel`), in green windows among it."""
    turns: int = 0
    bytes: int = 0
    green_bytes: int = 0
    waits: int = 0
    waiting: bool = False
    joules: float = 0.0
    green_joules: float = 0.0


@dataclass
class Job:
    """One kind of deferrable work on this node: its current deadline and bytes left (set by the work)."""
    kind: Kind
    scheduler: EnergyScheduler
    rate: float = 0.0               # bytes/s at full pace (0: a pass whose duration does not matter)
    due: float | None = None        # unix s; None: nothing due now
    bytes_left: int = 0
    stats: KindStats = field(default_factory=KindStats)

    def open(self, bytes_left: int = 0) -> None:
        """Work is due: its deadline is now + the kind's deadline, unless a cycle is open already."""
        if self.due is None:
            self.due = self.scheduler.clock.time() + DEADLINES.get(self.kind, 0.0)
        self.bytes_left = bytes_left

    def close(self) -> None:
        """The work due is done (the next `open` starts a new deadline)."""
        self.due, self.bytes_left = None, 0

    def _backlog(self) -> Backlog | None:
        return None if self.due is None else Backlog(self.due, self.bytes_left, self.rate)

    def _state(self, peer: str) -> State:
        return shared(self.scheduler.state, peer)

    def pace(self, peer: str = "") -> float:
        """`peer`: the energy state the other site of a transfer told us ("": none, or no peer)."""
        return pace(self.kind, self._state(peer), self._backlog(), self.scheduler.clock.time(), self._next_green())

    def _next_green(self) -> float | None:
        """The site's next forecast green reading, while its own state is grey (a transfer made grey
        by the peer's state has no forecast of both sites to wait for)."""
        s = self.scheduler
        return s.signal.next_green(s.green_carbon) if s.state is State.GREY else None

    def allowed(self, peer: str = "") -> bool:
        """Whether the work may go on now (for loops that skip rather than wait)."""
        ok = self.pace(peer) > 0
        if not ok:
            self.stats.waits += 1
        self.stats.waiting = not ok
        return ok

    async def turn(self, nbytes: int = 0, peer: str = "") -> float:
        """Wait until the work may run; its pace (0 < pace <= 1) then, `nbytes` counted to it."""
        s = self.scheduler
        while (p := self.pace(peer)) <= 0:
            self.stats.waits += 1
            self.stats.waiting = True
            hint = wait_hint(self.kind, self._state(peer), self._backlog(), s.clock.time(), self._next_green())
            await s.changed(RECHECK if hint is None else min(max(hint, 1.0), RECHECK))
        st = self.stats
        st.waiting = False
        st.turns += 1
        st.bytes += nbytes
        joules = s.power.joules(self.kind, nbytes)
        st.joules += joules
        if self._state(peer) in (State.GREEN, State.UNKNOWN):
            st.green_bytes += nbytes
            st.green_joules += joules
        self.bytes_left = max(0, self.bytes_left - nbytes)
        return p

    def slowed_by(self, nbytes: int, pace: float) -> float:
        """Seconds to wait after moving `nbytes` at full rate so the work moves at `pace` of it (0
        at full pace, or without a rate: such work can only run or wait)."""
        if self.rate <= 0 or pace >= 1.0 or pace <= 0:
            return 0.0
        return nbytes / self.rate * (1.0 / pace - 1.0)


class EnergyScheduler(BackgroundLoop):
    """The site's signal as this node last read it, and the jobs that ask it."""
    task_name = "energy"

    def __init__(self, declared: Callable[[], EnergySource | None] | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 green_carbon: float = GREEN_CARBON, power: PowerModel = DEFAULT_POWER,
                 declared_power: Callable[[], PowerFigures | None] | None = None) -> None:
        """`declared`: the source the node's site declares now (None: never any, as in tests);
        `declared_power`: the power figures it declares now (None: `power` stays)."""
        self.power = power
        self._declared = declared
        self._declared_power = declared_power
        self._spec: EnergySource | None = None
        self.source: SignalSource | None = None
        self.clock = clock
        self.green_carbon = green_carbon
        self.signal: Signal = UNKNOWN
        self.state = State.UNKNOWN
        self.jobs: dict[Kind, Job] = {}
        self._changed = asyncio.Event()
        self._problem = ""
        self.on_resume: list[Callable[[], None]] = []  # called when deferrable work may run again

    def told_state(self) -> str:
        """The state this node tells its peers in every heartbeat ("" for unknown: no bytes)."""
        return "" if self.state is State.UNKNOWN else self.state.value

    def job(self, kind: Kind, *, rate: float = 0.0) -> Job:
        job = self.jobs.get(kind)
        if job is None:
            job = self.jobs[kind] = Job(kind, self, rate)
        return job

    def start(self) -> None:
        if self._declared is not None:
            super().start()

    async def changed(self, timeout: float) -> None:
        """Until the state changes or `timeout` seconds pass."""
        wake = asyncio.ensure_future(self._changed.wait())
        nap = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            await asyncio.wait((wake, nap), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (wake, nap):
                f.cancel()

    def update(self, signal: Signal) -> None:
        """Take a new signal (from the loop, or a test)."""
        before = self.state
        self.signal = signal
        self.state = signal.state(self.green_carbon)
        problem = re.sub(r"[0-9.]+", "N", signal.problem)  # "stale: 901 s old" then "902 s old": one line
        if problem and problem != self._problem:
            log.warning("energy signal unknown (background work runs as without one): %s", signal.problem)
        self._problem = problem
        if self.state is not before:
            log.info("energy: %s -> %s", before.value, self.state.value)
            self._changed.set()
            self._changed = asyncio.Event()
            if self.state in (State.GREEN, State.UNKNOWN):
                for resume in self.on_resume:
                    resume()

    def _follow_layout(self) -> None:
        assert self._declared is not None
        try:
            spec = self._declared()
        except (LookupError, LayoutError) as err:
            spec = None
            log.warning("energy source of this site unreadable from the layout: %s", err)
        if spec != self._spec:
            self._spec, self.source = spec, (None if spec is None else source_for(spec))
            log.info("energy source: %s", "none" if spec is None else type(spec).__name__)
            if spec is None:
                self.update(UNKNOWN)
        if self._declared_power is not None:
            try:
                figures = self._declared_power()
            except (LookupError, LayoutError) as err:
                figures = None
                log.warning("power figures of this site unreadable from the layout: %s", err)
            power = DEFAULT_POWER if figures is None else PowerModel.of(figures)
            if power != self.power:
                self.power = power
                log.info("power model: %s", power)

    async def _loop(self) -> None:
        checked = float("-inf")
        while True:
            if self.clock.monotonic() - checked >= SPEC_CHECK:
                self._follow_layout()
                checked = self.clock.monotonic()
            source = self.source
            if source is None:
                await self.clock.sleep(SPEC_CHECK)
                continue
            try:
                signal = await source.read(self.clock.time())
            except (SignalError, OSError) as err:
                signal = Signal(None, problem=f"{source.kind}: {str(err)[:200]}")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a source must never stop the node: unknown, as before
                signal = Signal(None, problem=f"{source.kind}: {type(err).__name__}: {str(err)[:200]}")
            self.update(signal)
            await self.clock.sleep(source.poll)
