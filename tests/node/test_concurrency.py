"""gather_bounded: results in order, never more than the bound in flight, the first error out."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.runtime.concurrency import gather_bounded
from maillage.testing.examples import examples


@given(st.lists(st.integers(0, 3), max_size=40), st.integers(1, 8))
@settings(max_examples=examples(0.5), deadline=None)
def test_results_in_order_and_the_bound_holds(delays: list[int], limit: int) -> None:
    running, most = [0], [0]

    async def call(i: int, ticks: int) -> int:
        running[0] += 1
        most[0] = max(most[0], running[0])
        for _ in range(ticks):
            await asyncio.sleep(0)
        running[0] -= 1
        return i

    calls = [lambda i=i, t=t: call(i, t) for i, t in enumerate(delays)]
    assert asyncio.run(gather_bounded(calls, limit)) == list(range(len(delays)))
    assert most[0] <= limit


def test_the_first_error_propagates() -> None:
    async def fails() -> int:
        raise ValueError("no")

    async def fine() -> int:
        return 1
    with pytest.raises(ValueError):
        asyncio.run(gather_bounded([fine, fails, fine], 2))
