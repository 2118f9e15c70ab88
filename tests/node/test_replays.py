"""The replay cache of request signatures: once only, forgotten after the window, bounded in count."""

from __future__ import annotations

import datetime
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.trust.replays import ReplayCache
from maillage.testing.examples import examples

WINDOW = datetime.timedelta(seconds=60)
T0 = datetime.datetime(2026, 3, 14, 15, 9, 26, tzinfo=datetime.UTC)


class Clock:
    def __init__(self, at: datetime.datetime = T0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()

    def advance(self, seconds: float) -> None:
        self.at += datetime.timedelta(seconds=seconds)


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_a_signature_is_admitted_once() -> None:
    cache = ReplayCache(WINDOW, now=Clock(_at(-1)))
    signature = os.urandom(32)
    assert cache.admit(signature, T0) == "new"
    assert cache.admit(signature, T0) == "replayed"
    assert cache.admit(signature, T0) == "replayed"
    assert cache.admit(os.urandom(32), T0) == "new"
    assert len(cache) == 2


def test_a_fresh_cache_admits_anything_inside_the_window() -> None:
    """No floor at start: a client whose clock is behind the node's (by less than the window) is
    served at once, not refused until the node's clock has passed the client's."""
    cache = ReplayCache(WINDOW, now=Clock(_at(30)))
    assert cache.admit(os.urandom(32), _at(0)) == "new"
    assert cache.admit(os.urandom(32), _at(29)) == "new"
    assert cache.admit(os.urandom(32), _at(30) - WINDOW - datetime.timedelta(seconds=1)) == "too_old"


def test_entries_leave_with_the_window_and_a_late_copy_is_still_refused() -> None:
    clock = Clock(_at(-1))
    cache = ReplayCache(WINDOW, now=clock)
    signature = os.urandom(32)
    assert cache.admit(signature, _at(30)) == "new"     # a client 30 s ahead
    clock.advance(89)
    assert cache.admit(signature, _at(30)) == "replayed"  # still inside the window: still remembered
    clock.advance(3)
    assert cache.admit(os.urandom(32), _at(91)) == "new"
    assert len(cache) == 1                               # the first one expired...
    assert cache.admit(signature, _at(30)) == "too_old"  # ...and its time refuses it by itself


def test_the_count_is_bounded_and_a_forgotten_signature_is_never_admitted_again() -> None:
    clock = Clock(_at(-1))
    cache = ReplayCache(WINDOW, capacity=100, now=clock)
    signatures = [os.urandom(32) for _ in range(250)]
    for i, signature in enumerate(signatures):
        assert cache.admit(signature, _at(i * 0.1)) == "new"
        assert len(cache) <= 100
    for signature in signatures:              # every one refused: remembered, or below the floor
        assert cache.admit(signature, _at(signatures.index(signature) * 0.1)) in ("replayed", "too_old")
    assert cache.admit(os.urandom(32), _at(25)) == "new"        # a fresh request still gets in
    assert cache.admit(os.urandom(32), _at(1)) == "too_old"     # a late one is refused, not forgotten


@settings(max_examples=examples(0.5), deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 30), st.integers(-50, 50), st.integers(0, 5)),
                       min_size=1, max_size=200),
       capacity=st.integers(1, 40))
def test_never_admitted_twice_and_never_above_capacity(events, capacity) -> None:
    """Any order of signatures, times and clock steps: a signature is "new" at most once, and the
    cache never holds more than its capacity. (A signature signs its time: a replay carries the
    time of its first use.)"""
    clock = Clock(_at(-60))
    cache = ReplayCache(WINDOW, capacity=capacity, now=clock)
    clock.advance(60)
    admitted: set[int] = set()
    times: dict[int, datetime.datetime] = {}
    for which, offset, step in events:
        clock.advance(step)
        signed_at = times.setdefault(which, clock.at + datetime.timedelta(seconds=offset))
        if cache.admit(which.to_bytes(32, "big"), signed_at) == "new":
            assert which not in admitted
            admitted.add(which)
        assert len(cache) <= capacity
