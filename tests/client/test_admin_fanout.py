"""The admin fan-out (status, audit) asks many nodes at once, never more than its bound."""

from __future__ import annotations

import threading

import pytest

from maillage.client.admin._connect import WORKERS, parallel


def test_a_hundred_nodes_are_asked_in_waves_of_the_bound():
    """Every worker of the bound is busy at once (the barrier needs them all), none beyond it."""
    barrier = threading.Barrier(WORKERS, timeout=10)
    lock = threading.Lock()
    running = peak = 0

    def ask(node: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if node < WORKERS:  # the first wave meets here: it only passes if all WORKERS run together
            barrier.wait()
        with lock:
            running -= 1
        return node * 2

    assert parallel(ask, list(range(100))) == [n * 2 for n in range(100)]
    assert peak == WORKERS


def test_the_bound_holds_for_a_smaller_one():
    barrier = threading.Barrier(3, timeout=10)
    seen = []

    def ask(node: int) -> int:
        barrier.wait()  # three at a time, exactly: a fourth would wait for a party that never comes
        seen.append(node)
        return node

    assert parallel(ask, list(range(9)), workers=3) == list(range(9))
    assert sorted(seen) == list(range(9))


def test_fewer_workers_than_the_barrier_needs_never_meet():
    """The check above can fail: with two workers, three parties never meet."""
    barrier = threading.Barrier(3, timeout=0.5)
    with pytest.raises(threading.BrokenBarrierError):
        parallel(lambda n: barrier.wait(), list(range(3)), workers=2)
