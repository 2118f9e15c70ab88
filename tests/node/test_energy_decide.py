"""The energy rule for background work (`maillage.node.energy.decide`): urgent work never waits, a shed
order stops every deferrable kind, and a deadline holds over a simulated week of any signal whose
shed orders fit the reserve."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.energy.decide import DEADLINES, SHED_RESERVE, STEP, Backlog, Kind, pace, wait_hint
from maillage.node.energy.signal import State

DEFERRABLE = [k for k in Kind if k is not Kind.URGENT_REPAIR]
HOUR = 3600.0
DAY = 24 * HOUR
WEEK_HOURS = 7 * 24

backlogs = st.one_of(st.none(), st.builds(
    Backlog, due=st.floats(0, 1e7), bytes_left=st.integers(0, 10**13), rate=st.floats(0, 1e9)))


@given(state=st.sampled_from(State), backlog=backlogs, now=st.floats(0, 1e7))
def test_urgent_repair_never_waits(state: State, backlog: Backlog | None, now: float) -> None:
    assert pace(Kind.URGENT_REPAIR, state, backlog, now) == 1.0


@given(kind=st.sampled_from(DEFERRABLE), backlog=backlogs, now=st.floats(0, 1e7))
def test_a_shed_order_stops_every_deferrable_kind(kind: Kind, backlog: Backlog | None, now: float) -> None:
    assert pace(kind, State.SHED, backlog, now) == 0.0


@given(kind=st.sampled_from(DEFERRABLE), backlog=backlogs, now=st.floats(0, 1e7),
       state=st.sampled_from([State.GREEN, State.UNKNOWN]))
def test_green_or_unknown_runs_at_full_pace(kind: Kind, backlog: Backlog | None, now: float, state: State) -> None:
    """Unknown is as before energy was known: no source, or a broken one, changes nothing."""
    assert pace(kind, state, backlog, now) == 1.0


@given(kind=st.sampled_from(DEFERRABLE), backlog=backlogs, now=st.floats(0, 1e7))
def test_grey_pace_grows_as_the_deadline_nears(kind: Kind, backlog: Backlog | None, now: float) -> None:
    p = pace(kind, State.GREY, backlog, now)
    assert 0.0 <= p <= 1.0
    if backlog is None:
        assert p == 0.0
        return
    assert pace(kind, State.GREY, backlog, now + HOUR) >= p
    hint = wait_hint(kind, State.GREY, backlog, now)
    if p == 0:  # the hint says when it will run if the state stays grey
        assert hint is not None and pace(kind, State.GREY, backlog, now + hint + 1.0) > 0


@st.composite
def weeks(draw: st.DrawFn) -> list[State]:
    """Hourly states for a week, shed orders at most SHED_RESERVE in all."""
    hours = draw(st.lists(st.sampled_from([State.GREEN, State.GREY, State.UNKNOWN]),
                          min_size=WEEK_HOURS, max_size=WEEK_HOURS))
    sheds = draw(st.lists(st.integers(0, WEEK_HOURS - 1), max_size=int(SHED_RESERVE // HOUR), unique=True))
    for h in sheds:
        hours[h] = State.SHED
    return hours


@settings(max_examples=60, deadline=None)
@given(states=weeks(), kind=st.sampled_from(DEFERRABLE), start_hour=st.integers(0, 5 * 24),
       load=st.floats(0.0, 1.0), rate=st.sampled_from([0.0, 8e6, 100e6]),
       forecasts=st.lists(st.one_of(st.none(), st.floats(-DAY, 3 * DAY)), min_size=WEEK_HOURS, max_size=WEEK_HOURS))
def test_every_deadline_is_met_in_a_simulated_week(states: list[State], kind: Kind, start_hour: int,
                                                   load: float, rate: float, forecasts: list[float | None]) -> None:
    """Work due at `start_hour` with as many bytes as fit its window (`load` of the most that fits)
    finishes before its deadline whatever the week's green, grey and unknown hours, sheds of at
    most SHED_RESERVE, and forecasts of the next green window, right or wrong; and it never runs
    during a shed."""
    window = min(DEADLINES[kind], 2 * 24 * HOUR)  # scrub's 14 days: two days here, so the week covers it
    start = start_hour * HOUR
    due = start + window
    fits = max(0.0, window - SHED_RESERVE - 2 * STEP)
    left = float(int(load * fits * rate)) if rate > 0 else 0.0
    t = start
    while t < due:
        state = states[int(t // HOUR) % WEEK_HOURS]
        ahead = forecasts[int(t // HOUR) % WEEK_HOURS]
        p = pace(kind, state, Backlog(due, int(left), rate), t, None if ahead is None else t + ahead)
        if state is State.SHED:
            assert p == 0.0
        if p > 0 and (left > 0 or rate == 0):
            if rate == 0:
                left = -1.0  # a pass of negligible duration: done as soon as it may run
                break
            left -= rate * p * STEP
            if left <= 0:
                break
        t += STEP
    assert left <= 0, f"{kind.value} not done by its deadline: {left:.0f} bytes left"


@settings(max_examples=30, deadline=None)
@given(load=st.floats(0.05, 0.5))
def test_grey_days_with_green_noons_run_the_work_at_noon(load: float) -> None:
    """Scrub due over two days of grey nights and green middays: when the work fits in the green
    hours, nothing runs in a grey hour until the deadline comes close."""
    rate = 8e6
    green_hours = [h for h in range(48) if 10 <= h % 24 < 16]
    window = 48 * HOUR
    left = load * len(green_hours) * HOUR * rate
    grey_bytes = green_bytes = 0.0
    t = 0.0
    while t < window and left > 0:
        state = State.GREEN if int(t // HOUR) in green_hours else State.GREY
        p = pace(Kind.SCRUB, state, Backlog(window, int(left), rate), t)
        moved = min(left, rate * p * STEP)
        if state is State.GREEN:
            green_bytes += moved
        else:
            grey_bytes += moved
        left -= moved
        t += STEP
    assert left <= 0
    assert grey_bytes == 0.0


@given(nbytes=st.integers(0, 10**12))
def test_the_power_model_charges_bytes_by_what_each_kind_does(nbytes: int) -> None:
    from maillage.node.energy.power import PowerModel

    model = PowerModel()
    scrub, pull, push = (model.joules(k, nbytes) for k in (Kind.SCRUB, Kind.URGENT_REPAIR, Kind.HAND_BACK))
    assert 0 <= scrub <= push <= pull or nbytes == 0  # a read < a read and a send < a receive and a write
    assert model.joules(Kind.REBALANCE, nbytes) == pull and model.joules(Kind.GC, nbytes) == 0


def test_a_green_window_forecast_in_time_is_waited_for_and_one_too_late_is_not() -> None:
    """Grey now, the deadline 24 h away, 300 GB at 100 MB/s (50 min): with no forecast the work
    ramps up once its slack is under the ramp; with a green window forecast where it still fits,
    it waits for it (and the hint says when); with one forecast past its slack, it ramps as before."""
    backlog, rate = Backlog(24 * HOUR, 300 * 10**9, 100e6), 100e6
    now = 24 * HOUR - backlog.need() - SHED_RESERVE - 3 * HOUR    # 3 h of slack: inside the ramp
    assert rate and pace(Kind.REBALANCE, State.GREY, backlog, now) > 0
    assert pace(Kind.REBALANCE, State.GREY, backlog, now, now + 2 * HOUR) == 0.0
    assert wait_hint(Kind.REBALANCE, State.GREY, backlog, now, now + 2 * HOUR) == 2 * HOUR
    assert pace(Kind.REBALANCE, State.GREY, backlog, now, now + 4 * HOUR) == pace(Kind.REBALANCE, State.GREY,
                                                                               backlog, now)
    assert pace(Kind.REBALANCE, State.GREEN, backlog, now + 2 * HOUR, now + 3 * HOUR) == 1.0
