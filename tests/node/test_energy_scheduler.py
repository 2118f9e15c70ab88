"""The scheduler of deferrable work (`maillage.node.energy.scheduler`) on a manual clock, over a real
file source: a shed order stops a job at its next safe point and a normal one lets it go on; a
broken, missing or stale source is unknown (work as before), never an error; a scrub pass waits
for its turn frame by frame."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from maillage.node.energy.decide import Kind
from maillage.node.energy.scheduler import EnergyScheduler
from maillage.node.energy.signal import State
from maillage.node.runtime.clock import ManualClock
from maillage.placement.energy import EnergySource, FileSource

from .conftest import run


def write(path: Path, clock: ManualClock, **fields: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"time": clock.time(), **fields}))
    tmp.replace(path)


async def until(clock: ManualClock, cond: Callable[[], bool], *, step: float = 1.0, rounds: int = 200) -> None:
    """Advance the clock a step at a time (letting the file reads in threads finish) until `cond`."""
    for _ in range(rounds):
        if cond():
            return
        clock.advance(step)
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def test_a_shed_order_stops_a_job_and_normal_resumes_it(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"

    async def main() -> None:
        clock = ManualClock()
        declared: list[EnergySource | None] = [FileSource(str(path))]
        sched = EnergyScheduler(lambda: declared[0], clock=clock)
        resumed: list[int] = []
        sched.on_resume.append(lambda: resumed.append(1))
        write(path, clock, surplus_w=500, order="shed")
        sched.start()
        try:
            await until(clock, lambda: sched.state is State.SHED)
            job = sched.job(Kind.SCRUB, rate=1e6)
            job.open(10**6)
            assert not job.allowed()
            turn = asyncio.ensure_future(job.turn(4096))
            await until(clock, lambda: job.stats.waiting)
            clock.advance(30)
            await asyncio.sleep(0.01)
            assert not turn.done()  # still shed
            write(path, clock, surplus_w=500, order="normal")
            await until(clock, turn.done)
            assert turn.result() == 1.0 and sched.state is State.GREEN and resumed
            assert job.stats.bytes == 4096 and job.stats.green_bytes == 4096 and job.stats.waits >= 1
            assert job.stats.joules == job.stats.green_joules == sched.power.joules(Kind.SCRUB, 4096) > 0
            # A grey hour: scrub (14 days of slack) waits; urgent repair never does.
            write(path, clock, surplus_w=-800, carbon_g_per_kwh=500)
            await until(clock, lambda: sched.state is State.GREY)
            assert not job.allowed()
            urgent = sched.job(Kind.URGENT_REPAIR)
            assert await asyncio.wait_for(urgent.turn(10**6), 1) == 1.0
            assert urgent.stats.joules > 0 and urgent.stats.green_joules == 0  # done on grid power
            # The layout drops the source: unknown, as before energy was known.
            declared[0] = None
            await until(clock, lambda: sched.state is State.UNKNOWN, step=5.0)
            assert job.allowed() and sched.source is None
        finally:
            await sched.stop()
    run(main())


def test_a_broken_missing_or_stale_source_is_unknown_never_an_error(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    path = tmp_path / "energy.json"

    async def main() -> None:
        clock = ManualClock()
        sched = EnergyScheduler(lambda: FileSource(str(path)), clock=clock)
        sched.start()
        try:
            await until(clock, lambda: "No such file" in sched.signal.problem)
            assert sched.state is State.UNKNOWN and sched.job(Kind.GC).allowed()
            write(path, clock, order="shed")
            await until(clock, lambda: sched.state is State.SHED)
            path.write_bytes(b"\x00garbage{")
            await until(clock, lambda: sched.state is State.UNKNOWN)
            assert "not JSON" in sched.signal.problem
            write(path, clock, surplus_w=10, order="shed")
            await until(clock, lambda: sched.state is State.SHED)
            clock.advance(3600)  # nobody rewrote it for an hour: stale, so unknown
            await until(clock, lambda: sched.state is State.UNKNOWN)
            assert "stale" in sched.signal.problem
            for _ in range(5):  # read again and again, still stale: said once in the log
                clock.advance(1)
                await asyncio.sleep(0.005)
            assert sum("stale: the reading" in r.getMessage() for r in caplog.records) == 1
            assert sched._task is not None and not sched._task.done()
        finally:
            await sched.stop()
    run(main())


def test_a_scrub_pass_waits_frame_by_frame(tmp_path: Path, mesh) -> None:  # noqa: ANN001
    """A real node's scrubber over its real chunk store: shed, no frame is read; normal, all are."""
    from maillage.node.cluster.scrub import Scrubber

    async def main() -> None:
        node = mesh.nodes[mesh.layout.nodes[0].id]
        from maillage.proto.frame import encode_frame
        for i in range(3):
            await node.local.put_chunk(encode_frame(bytes([i]) * 1000), policy="france-only")
        clock = ManualClock()
        sched = EnergyScheduler(None, clock=clock)
        sched.update(_signal("shed", clock))
        scrub = Scrubber(node.local, rate=0, interval=3600, clock=clock, job=sched.job(Kind.SCRUB))
        task = asyncio.ensure_future(scrub.scrub_pass())
        await until(clock, lambda: sched.jobs[Kind.SCRUB].stats.waiting)
        assert scrub.stats.frames_checked == 0
        sched.update(_signal("normal", clock))
        await asyncio.wait_for(task, 5)
        assert scrub.stats.frames_checked == 3 and scrub.stats.passes_completed == 1
        assert sched.jobs[Kind.SCRUB].due is None  # the pass is done: the next one gets a new deadline
    run(main())


def _signal(order: str, clock: ManualClock):  # noqa: ANN202
    from maillage.node.energy.signal import parse_signal
    return parse_signal(json.dumps({"time": clock.time(), "surplus_w": 100, "order": order}).encode(), clock.time())


def test_the_green_threshold_is_a_node_setting(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """`--green-carbon` reaches the scheduler: grid power at 100 gCO2/kWh (no surplus) is green
    under the default 150 and grey under 80; a value that is no carbon intensity is refused."""
    import pytest

    from maillage.cli.main import build_parser
    from maillage.node.daemon.wiring import Timings
    from maillage.node.energy.signal import GREEN_CARBON

    base = ["node", "run", "--id", "paris-1", "--data-dir", "d", "--trust-dir", "t"]
    parser = build_parser()
    assert parser.parse_args(base).green_carbon == GREEN_CARBON == Timings().green_carbon
    assert parser.parse_args([*base, "--green-carbon", "80"]).green_carbon == 80.0
    for bad in ("-1", "nan", "much", "6000"):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--green-carbon", bad])
        assert "a carbon intensity in gCO2/kWh" in capsys.readouterr().err

    path = tmp_path / "energy.json"

    async def state_under(green_carbon: float) -> State:
        clock = ManualClock()
        sched = EnergyScheduler(lambda: FileSource(str(path)), clock=clock, green_carbon=green_carbon)
        write(path, clock, surplus_w=-100, carbon_g_per_kwh=100)
        sched.start()
        try:
            await until(clock, lambda: sched.state is not State.UNKNOWN)
            return sched.state
        finally:
            await sched.stop()

    assert run(state_under(GREEN_CARBON)) is State.GREEN
    assert run(state_under(80.0)) is State.GREY

    from dataclasses import replace

    from maillage.testing.inmemory import InMemoryMesh

    from .conftest import TIMINGS, make_layout
    mesh = InMemoryMesh(make_layout(), tmp_path / "mesh", timings=replace(TIMINGS, green_carbon=80.0))
    try:
        assert {node.energy.green_carbon for node in mesh.nodes.values()} == {80.0}   # what each node's scheduler uses
    finally:
        mesh.close()


def test_a_job_below_full_pace_is_slowed_to_its_pace_not_run_at_full_rate() -> None:
    """What repair waits after each frame of a deferrable pull or push (`Repairer._paced`): the
    frame's time at full rate times (1/pace - 1), so bytes move at pace x rate; none at full pace,
    none for urgent work, none without a rate (such work only runs or waits)."""
    scheduler = EnergyScheduler(None, clock=ManualClock())
    rebalance = scheduler.job(Kind.REBALANCE, rate=100e6)
    assert rebalance.slowed_by(4 << 20, 1.0) == 0.0
    assert rebalance.slowed_by(100_000_000, 0.25) == 3.0     # 1 s of transfer, 3 s of pause: a quarter
    assert abs(rebalance.slowed_by(100_000_000, 0.5) - 1.0) < 1e-9
    assert scheduler.job(Kind.SCRUB).slowed_by(10**9, 0.1) == 0.0
    assert scheduler.job(Kind.URGENT_REPAIR, rate=1e6).pace() == 1.0



def test_the_power_figures_follow_the_layout() -> None:
    """The site's declared figures replace the defaults at the next look at the layout, and a site
    that drops them (or a layout that cannot be read) gets the defaults back; the estimate of each
    kind's joules follows."""
    from maillage.node.energy.power import PowerModel
    from maillage.placement.energy import PowerFigures

    declared: list[PowerFigures | None] = [PowerFigures(idle_w=12.0, transfer_nj=30.0)]
    scheduler = EnergyScheduler(lambda: None, clock=ManualClock(), declared_power=lambda: declared[0])
    scheduler._follow_layout()
    assert scheduler.power == PowerModel(12.0, 2.0, 5.0, 30.0)
    assert scheduler.power.joules(Kind.REBALANCE, 10**9) == 35.0   # (30 + 5) nJ per byte
    declared[0] = None
    scheduler._follow_layout()
    assert scheduler.power == PowerModel()
