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
