"""The throughput driver's cell rules, over a stand-in client (the figures themselves come from real
meshes in test_bench_smoke)."""

from __future__ import annotations

import asyncio

from maillage.benchmarks.throughput import UniqueBodies, _drive


class CountingClient:
    """Answers PUTs at once and counts them by body (each worker owns one buffer)."""

    def __init__(self) -> None:
        self.puts_by_body: dict[int, int] = {}

    async def put_object(self, bucket: str, key: str, body: bytearray) -> None:
        await asyncio.sleep(0)
        self.puts_by_body[id(body)] = self.puts_by_body.get(id(body), 0) + 1


def test_every_worker_finishes_its_minimum_even_past_the_deadline() -> None:
    client = CountingClient()
    keys: list[str] = []
    latencies, _ = asyncio.run(_drive(client, "put", UniqueBodies(1024), 4, 0.0, keys, [],  # type: ignore[arg-type]
                                      min_per_worker=3))
    assert len(client.puts_by_body) == 4  # four workers, each with its own body
    assert all(n >= 3 for n in client.puts_by_body.values())
    assert len(latencies) == len(keys) == sum(client.puts_by_body.values())
