"""The energy benchmark's simulation: a week of a mesh's background work, site by site, on simulated
time, decided by the node's own scheduler (`EnergyScheduler`, `Job`, hence `decide.pace`).

Each site gets a real `EnergyScheduler` on a clock the simulation sets, and the jobs the node's loops
hold (scrub, rebalance, urgent repair, GC, expiry). Every step (60 s) the simulation hands the
scheduler the site's reading (mode "energy": as a node with a `solar:` source reads it) or nothing
(mode "fixed": a node without a source, i.e. today's fixed-interval behaviour), then asks each job
as the node's loop does, and moves what it may:

- scrub (`cluster/scrub.py`): its limiter's rate is `--scrub-rate` times the job's pace; a pass opens
  (`Job.open`, a 14-day deadline) `--scrub-interval` after the last one ends. At the start each
  site is in the middle of a pass, due 1 to 14 days later, the bytes left in proportion;
- rebalance (`cluster/repair.py`): pulled at the repair rate times the job's pace once `allowed()`
  (repair pauses after each frame so a deferrable pull keeps its pace, `Job.slowed_by`), sharing
  the rate with urgent repair, which goes first;
- urgent repair: its pace (always 1) times the repair rate; `Job.pace` is asked all the same;
- GC and expiry (`cluster/gc.py`, `sweep.py`): a pass of no bytes, opened every interval (expiry with
  its jitter), run when the job grants a turn.

`Job.turn` is awaited only when the pace is positive, so it never waits, and it does the node's own
accounting (`KindStats`). The benchmark's own tally judges every byte by the site's real reading,
in both modes alike (a node without a source counts its bytes as "green or unknown").

Not modelled: disks and links (every rate is reached; no contention between sites), repair's
rounds (checked every step rather than every 30 s), hand-back (no lost site comes back), clouds.
"""

from __future__ import annotations

import asyncio
import functools
import random
from dataclasses import dataclass, field

from maillage.benchmarks.energy_sites import DAY, Site, readings
from maillage.node.energy.decide import DEADLINES, Kind
from maillage.node.energy.power import PowerModel
from maillage.node.energy.scheduler import EnergyScheduler, Job
from maillage.node.energy.signal import Reading, Signal, State

__all__ = ["Scenario", "Tally", "Deadline", "simulate", "MODES", "DEFERRABLE", "CHARTED"]

MODES = ("energy", "fixed")
DEFERRABLE = (Kind.SCRUB, Kind.REBALANCE)          # the deferrable kinds that move bytes here
CHARTED = (Kind.SCRUB, Kind.REBALANCE, Kind.URGENT_REPAIR)  # the bytes per hour kept for a site's chart
HOUR = 3600.0


@dataclass(frozen=True)
class Scenario:
    """What happens in a run: when, how much, at which rates (the node's defaults)."""
    sites: tuple[Site, ...]
    start: float
    days: int
    step: float = 60.0
    lost: str = ""                      # the site lost (its data re-replicated at once: urgent)
    lost_at: float = 0.0
    rebalance_at: float = 0.0           # a layout change gives partitions to `receivers`
    receivers: tuple[str, ...] = ()
    rebalance_bytes: float = 300e9      # bytes each receiver pulls
    scrub_rate: float = 8e6             # node defaults (`maillage node run`)
    scrub_interval: float = 3600.0
    repair_rate: float = 100e6
    gc_interval: float = 600.0
    expiry_interval: float = 3600.0
    seed: int = 1


@dataclass
class Deadline:
    """One piece of work with a deadline: when it opened, was due, and finished (None: not yet)."""
    site: str
    kind: str
    opened: float
    due: float
    finished: float | None = None
    left: float = 0.0               # bytes left at the end of the run (open work)
    rate: float = 0.0

    def met(self, end: float) -> bool:
        """Finished in time; or, still open at the end of the run, able to finish in time at full rate."""
        if self.finished is not None:
            return self.finished <= self.due
        return end + (self.left / self.rate if self.rate else 0.0) <= self.due


@dataclass
class Tally:
    """What one mode did, judged by the sites' real readings."""
    mode: str
    bytes: dict[str, float] = field(default_factory=dict)          # kind -> bytes moved
    green: dict[str, float] = field(default_factory=dict)          # of them, while the site was green
    shed_bytes: float = 0.0                                        # deferrable bytes moved under a shed order
    joules: float = 0.0                                            # all background work (PowerModel)
    grid_joules: float = 0.0                                       # of it, not covered by the PV surplus
    co2_g: float = 0.0                                             # the grid part at the grid's carbon
    passes: dict[str, int] = field(default_factory=dict)           # gc/expiry -> passes
    green_passes: dict[str, int] = field(default_factory=dict)
    longest_wait: dict[str, float] = field(default_factory=dict)   # gc/expiry -> longest open -> pass
    deadlines: list[Deadline] = field(default_factory=list)
    urgent_s: float | None = None                                  # site loss -> last byte re-replicated
    green_time: float = 0.0                                        # share of site-steps that were green
    node_stats: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> the node's KindStats sums
    hourly: dict[str, list[list[float]]] = field(default_factory=dict)  # site -> hour -> bytes of CHARTED

    def add(self, kind: Kind, nbytes: float, green: bool) -> None:
        self.bytes[kind.value] = self.bytes.get(kind.value, 0.0) + nbytes
        if green:
            self.green[kind.value] = self.green.get(kind.value, 0.0) + nbytes

    def deferrable(self) -> tuple[float, float]:
        """(deferrable bytes, of them in green windows)."""
        kinds = [k.value for k in DEFERRABLE]
        return sum(self.bytes.get(k, 0.0) for k in kinds), sum(self.green.get(k, 0.0) for k in kinds)


class SimClock:
    """The scheduler's clock: the simulation sets `now`; nothing in it ever sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("a simulated job was made to wait (the simulation only asks for a turn when granted)")


class _SiteRun:
    """One site's node in a run: its scheduler, its jobs and their progress."""

    def __init__(self, site: Site, sc: Scenario, rng: random.Random) -> None:
        self.site = site
        self.clock = SimClock(sc.start)
        self.energy = EnergyScheduler(None, clock=self.clock, power=PowerModel())
        self.scrub = self.energy.job(Kind.SCRUB, rate=sc.scrub_rate)
        self.rebalance = self.energy.job(Kind.REBALANCE, rate=sc.repair_rate)
        self.urgent = self.energy.job(Kind.URGENT_REPAIR, rate=sc.repair_rate)
        self.gc = self.energy.job(Kind.GC)
        self.expiry = self.energy.job(Kind.EXPIRY)
        self.stored = site.stored
        self.alive = True
        self.rng = random.Random(f"{sc.seed}/{site.name}")
        # a pass in its middle: due 1..14 days from now, the bytes left in proportion
        due = sc.start + rng.uniform(DAY, DEADLINES[Kind.SCRUB])
        self.scrub.due = due
        self.scrub.bytes_left = int(self.stored * (due - sc.start) / DEADLINES[Kind.SCRUB])
        self.scrub_deadline = Deadline(site.name, "scrub", due - DEADLINES[Kind.SCRUB], due, rate=sc.scrub_rate)
        self.next_scrub: float | None = None
        self.rebalance_deadline: Deadline | None = None
        self.next_pass = {Kind.GC: sc.start + rng.uniform(0, sc.gc_interval),
                          Kind.EXPIRY: sc.start + sc.expiry_interval * rng.uniform(0.5, 1.0)}
        self.opened: dict[Kind, float | None] = {Kind.GC: None, Kind.EXPIRY: None}


def simulate(sc: Scenario, mode: str, chart_sites: tuple[str, ...] = ()) -> Tally:
    """One run of `sc` in `mode` ("energy" or "fixed"): what moved, when, and which deadlines held."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    return asyncio.run(_run(sc, mode, chart_sites))


async def _run(sc: Scenario, mode: str, chart_sites: tuple[str, ...]) -> Tally:
    rng = random.Random(sc.seed)
    steps = int(sc.days * DAY / sc.step)
    times = [sc.start + i * sc.step for i in range(steps)]
    runs = [_SiteRun(s, sc, rng) for s in sc.sites]
    signals = {r.site.name: _readings(r.site, sc.start, steps, sc.step) for r in runs}
    forecasts = {name: _forecasts(got, sc.step) for name, got in signals.items()} if mode == "energy" else {}
    tally = Tally(mode, hourly={n: [[0.0, 0.0, 0.0] for _ in range(sc.days * 24)] for n in chart_sites})
    end = times[-1] + sc.step if times else sc.start
    lost_bytes = 0.0
    lost = rebalanced = False
    green_steps = total_steps = 0
    for i, t in enumerate(times):
        if sc.lost and not lost and t >= sc.lost_at:  # events fire at the first step at or after their time
            lost, lost_bytes = True, _lose(runs, sc)
        if sc.receivers and not rebalanced and t >= sc.rebalance_at:
            rebalanced = True
            _layout_change(runs, sc, t, tally)
        for run in runs:
            if not run.alive:
                continue
            reading = signals[run.site.name][i]
            state = reading.state(run.energy.green_carbon)
            green_steps += state is State.GREEN
            total_steps += 1
            run.clock.now = t
            if mode == "energy":  # as the node's loop does after each read: now, and the day ahead
                run.energy.update(Signal(reading, forecasts[run.site.name][i]))
            await _step(run, sc, t, reading, state, tally)
    tally.green_time = green_steps / total_steps if total_steps else 0.0
    for run in runs:
        if run.alive:
            _close_open(run, end, tally)
        for kind, job in run.energy.jobs.items():
            s = tally.node_stats.setdefault(kind.value, {"bytes": 0.0, "green_bytes": 0.0, "waits": 0.0})
            s["bytes"] += job.stats.bytes
            s["green_bytes"] += job.stats.green_bytes
            s["waits"] += job.stats.waits
    if lost_bytes and tally.urgent_s is None:
        tally.urgent_s = float("inf")
    return tally


@functools.lru_cache(maxsize=128)
def _readings(site: Site, start: float, steps: int, step: float) -> tuple[Reading, ...]:
    """A site's readings over a run, computed once for both modes."""
    return tuple(readings(site, [start + i * step for i in range(steps)]))


def _forecasts(readings: tuple[Reading, ...], step: float) -> list[tuple[Reading, ...]]:
    """For each step of a run, the next 24 hours, hourly, as the node's solar source forecasts them
    (recomputed each hour): its clear-sky model and the grid's daily swing, without demand-response
    orders, which are never forecast."""
    per_hour = max(1, round(HOUR / step))
    hourly = [tuple(Reading(r.time, r.surplus_w, r.carbon) for r in readings[h + per_hour:h + 25 * per_hour:per_hour])
              for h in range(0, len(readings), per_hour)]
    return [hourly[i // per_hour] for i in range(len(readings))]


def _lose(runs: list[_SiteRun], sc: Scenario) -> float:
    """The site is gone: every survivor pulls its share of the lost copies, urgently."""
    lost = next(r for r in runs if r.site.name == sc.lost)
    lost.alive = False
    survivors = [r for r in runs if r.alive]
    share = lost.stored / len(survivors)
    for r in survivors:
        r.urgent.open(int(r.urgent.bytes_left + share))
    return lost.stored


def _layout_change(runs: list[_SiteRun], sc: Scenario, t: float, tally: Tally) -> None:
    for r in runs:
        if r.alive and r.site.name in sc.receivers:
            r.rebalance.open(int(sc.rebalance_bytes))
            assert r.rebalance.due is not None
            r.rebalance_deadline = Deadline(r.site.name, "rebalance", t, r.rebalance.due, rate=sc.repair_rate)
            tally.deadlines.append(r.rebalance_deadline)


async def _step(run: _SiteRun, sc: Scenario, t: float, reading: Reading, state: State, tally: Tally) -> None:
    dt = sc.step
    joules = 0.0
    moved: dict[Kind, float] = {}
    power = run.energy.power
    # repair: urgent first, then a rebalance, in one rate
    budget = sc.repair_rate * dt
    if run.urgent.bytes_left > 0:
        n = min(run.urgent.bytes_left, sc.repair_rate * run.urgent.pace() * dt)
        await _count(run, run.urgent, n, state, tally, moved)
        budget -= n
        if run.urgent.bytes_left <= 0:
            run.urgent.close()
            finished = t + n / sc.repair_rate
            tally.urgent_s = max(tally.urgent_s or 0.0, finished - sc.lost_at)
    if run.rebalance.due is not None and run.rebalance.bytes_left > 0 and run.rebalance.allowed():
        n = min(run.rebalance.bytes_left, budget * run.rebalance.pace())   # repair's pause keeps its pace
        await _count(run, run.rebalance, n, state, tally, moved)
        run.stored += n
        if run.rebalance.bytes_left <= 0 and run.rebalance_deadline is not None:
            run.rebalance.close()
            run.rebalance_deadline.finished = t + (sc.repair_rate * dt - budget + n) / sc.repair_rate
    # scrub: a pass at `scrub_rate` times its pace
    if run.scrub.due is None and run.next_scrub is not None and t >= run.next_scrub:
        run.scrub.open(int(run.stored))
        assert run.scrub.due is not None
        run.scrub_deadline = Deadline(run.site.name, "scrub", t, run.scrub.due, rate=sc.scrub_rate)
        run.next_scrub = None
    if run.scrub.due is not None:
        p = run.scrub.pace()
        if p > 0:
            n = min(run.scrub.bytes_left, sc.scrub_rate * p * dt)
            await _count(run, run.scrub, n, state, tally, moved)
            if run.scrub.bytes_left <= 0:
                run.scrub.close()
                run.scrub_deadline.finished = t + n / (sc.scrub_rate * p)
                tally.deadlines.append(run.scrub_deadline)
                run.next_scrub = run.scrub_deadline.finished + sc.scrub_interval
        else:
            run.scrub.allowed()  # counted as a wait, as the node's turn() does
    # passes of no bytes: GC and expiry
    for kind, job, interval in ((Kind.GC, run.gc, sc.gc_interval), (Kind.EXPIRY, run.expiry, sc.expiry_interval)):
        if t < run.next_pass[kind]:
            continue
        if job.due is None:
            job.open()
            run.opened[kind] = t
        if job.pace() <= 0:
            job.allowed()
            continue
        await job.turn()
        job.close()
        opened = run.opened[kind] or t
        tally.passes[kind.value] = tally.passes.get(kind.value, 0) + 1
        if state is State.GREEN:
            tally.green_passes[kind.value] = tally.green_passes.get(kind.value, 0) + 1
        tally.longest_wait[kind.value] = max(tally.longest_wait.get(kind.value, 0.0), t - opened)
        jitter = 1.0 if kind is Kind.GC else run.rng.uniform(0.5, 1.0)  # PeriodicSweep's jitter
        run.next_pass[kind] = t + interval * jitter
    # writes (foreground) grow what the next scrub pass reads
    run.stored += run.site.writes_per_day * dt / DAY
    for kind, n in moved.items():
        joules += power.joules(kind, int(n))
    if joules:
        surplus = max(0.0, reading.surplus_w or 0.0) * dt
        grid = max(0.0, joules - surplus)
        tally.joules += joules
        tally.grid_joules += grid
        tally.co2_g += grid / 3.6e6 * (reading.carbon or 0.0)
    row = tally.hourly.get(run.site.name)
    if row is not None:
        slot = row[int((t - sc.start) // HOUR)]
        for j, kind in enumerate(CHARTED):
            slot[j] += moved.get(kind, 0.0)


async def _count(run: _SiteRun, job: Job, nbytes: float, state: State, tally: Tally,
                 moved: dict[Kind, float]) -> None:
    n = int(nbytes)
    if n <= 0:
        return
    await job.turn(n)
    tally.add(job.kind, n, state is State.GREEN)
    if job.kind is not Kind.URGENT_REPAIR and state is State.SHED:
        tally.shed_bytes += n
    moved[job.kind] = moved.get(job.kind, 0.0) + n


def _close_open(run: _SiteRun, end: float, tally: Tally) -> None:
    """Work still open at the end of the run: recorded with what is left (judged able to finish)."""
    if run.scrub.due is not None:
        run.scrub_deadline.left = run.scrub.bytes_left
        tally.deadlines.append(run.scrub_deadline)
    if run.rebalance_deadline is not None and run.rebalance_deadline.finished is None:
        run.rebalance_deadline.left = run.rebalance.bytes_left
    for kind in (Kind.GC, Kind.EXPIRY):
        opened = run.opened[kind]
        job = run.energy.jobs[kind]
        if job.due is not None and opened is not None:
            tally.longest_wait[kind.value] = max(tally.longest_wait.get(kind.value, 0.0), end - opened)
