"""Hybrid logical clock: monotonic under skew, merges remote versions."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.storage import HybridClock, version_time


class SteppedClock:
    def __init__(self, values: list[float]) -> None:
        self.values = list(values)
        self.i = 0

    def __call__(self) -> float:
        v = self.values[min(self.i, len(self.values) - 1)]
        self.i += 1
        return v


def test_strictly_increasing_when_the_wall_clock_goes_backwards() -> None:
    wall = SteppedClock([1000.0, 1000.5, 990.0, 990.0, 500.0, 1000.5, 1000.6])
    clock = HybridClock(wall)
    versions = [clock.now() for _ in range(7)]
    assert all(a < b for a, b in zip(versions, versions[1:]))
    assert version_time(versions[-1]) == pytest.approx(1000.6, abs=0.001)


@given(st.lists(st.floats(0, 2e9, allow_nan=False), min_size=1, max_size=200))
def test_any_wall_sequence_gives_increasing_versions(walls: list[float]) -> None:
    clock = HybridClock(SteppedClock(walls))
    versions = [clock.now() for _ in walls]
    assert all(a < b for a, b in zip(versions, versions[1:]))
    assert all(v >= int(w * 1000) << 16 for v, w in zip(versions, walls))


def test_logical_counter_carries_instead_of_wrapping() -> None:
    clock = HybridClock(lambda: 1000.0)
    versions = [clock.now() for _ in range(70_000)]
    assert all(a < b for a, b in zip(versions, versions[1:]))


def test_observe_remote_version_30_seconds_ahead() -> None:
    now = 1_700_000_000.0
    remote = HybridClock(lambda: now + 30.0).now()
    local = HybridClock(lambda: now)
    assert local.now() < remote
    local.observe(remote)
    after = local.now()
    assert after > remote
    assert version_time(after) == pytest.approx(now + 30.0, abs=0.01)
    local.observe(remote - 1000)  # older versions change nothing
    assert local.now() > after


def test_observe_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        HybridClock().observe(-1)
    with pytest.raises(ValueError):
        HybridClock().observe(1 << 64)


def test_thread_safe_uniqueness() -> None:
    clock = HybridClock(lambda: 5.0)
    out: list[list[int]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        out[i].extend(clock.now() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allv = [v for part in out for v in part]
    assert len(set(allv)) == len(allv) == 16_000


def test_real_clock_tracks_wall_time() -> None:
    import time

    v = HybridClock().now()
    assert abs(version_time(v) - time.time()) < 1.0


# ----- hostile versions (issue 14, case 6) --------------------------------------------------------

from maillage.storage.errors import StorageError, VersionTooFarAhead  # noqa: E402
from maillage.storage.hlc import DEFAULT_MAX_DRIFT, MAX_VERSION, check_version  # noqa: E402

NOW = 1_800_000_000.0


def test_the_last_64_bit_version_is_refused_and_every_later_version_still_comes() -> None:
    clock = HybridClock(lambda: NOW)
    before = clock.now()
    with pytest.raises(VersionTooFarAhead, match="ahead of this node's clock"):
        clock.observe(MAX_VERSION)
    assert issubclass(VersionTooFarAhead, StorageError)
    assert clock.last == before  # nothing merged
    versions = [clock.now() for _ in range(1000)]
    assert all(a < b for a, b in zip([before, *versions], versions))
    assert version_time(versions[-1]) == pytest.approx(NOW, abs=0.01)


def test_a_version_past_the_drift_is_refused_one_within_it_is_merged() -> None:
    clock = HybridClock(lambda: NOW, max_drift=60)
    within = HybridClock(lambda: NOW + 59.9).now()
    clock.observe(within)
    assert clock.now() > within
    beyond = HybridClock(lambda: NOW + 61).now()
    with pytest.raises(VersionTooFarAhead, match=r"61 s ahead.*60 s allowed"):
        clock.observe(beyond)
    assert clock.now() < beyond


def test_the_default_drift_is_five_minutes() -> None:
    assert DEFAULT_MAX_DRIFT == 300
    check_version(HybridClock(lambda: NOW + 299).now(), NOW)
    with pytest.raises(VersionTooFarAhead):
        check_version(HybridClock(lambda: NOW + 301).now(), NOW)


@given(st.integers(0, MAX_VERSION), st.floats(0, 1e11, allow_nan=False), st.floats(0, 1e6, allow_nan=False))
def test_the_clock_never_leaves_the_64_bit_range(remote: int, wall: float, drift: float) -> None:
    clock = HybridClock(lambda: wall, max_drift=drift)
    try:
        clock.observe(remote)
    except VersionTooFarAhead:
        assert remote > (int((wall + drift) * 1000) << 16)
    v = clock.now()  # never OverflowError
    assert 0 < v <= MAX_VERSION
    assert version_time(v) <= wall + drift + 0.002


def test_now_refuses_at_the_end_of_the_range_instead_of_wrapping() -> None:
    clock = HybridClock(lambda: NOW)
    clock._last = MAX_VERSION  # only reachable by a bug: the clock says so with a typed error
    with pytest.raises(VersionTooFarAhead, match="end of its 64-bit range"):
        clock.now()
