"""The shape of a periodic sweep of the buckets a node leads (multipart upload expiry, lifecycle):
every `interval` seconds, with jitter so that the nodes do not sweep in step, one `sweep()` as
deferrable work of the site's energy schedule (it waits for a turn first). A failed sweep is logged
and the next one retries: a sweep never ends the loop."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from maillage.node.data.coordinator import Coordinator
from maillage.node.energy.decide import Kind
from maillage.node.energy.scheduler import EnergyScheduler, Job
from maillage.node.errors import NodeError
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.storage import BucketRecord

__all__ = ["PeriodicSweep"]

log = logging.getLogger(__name__)


class PeriodicSweep(BackgroundLoop):
    def __init__(self, coordinator: Coordinator, interval: float, *, clock: Clock = SYSTEM_CLOCK,
                 rng: random.Random | None = None, job: Job | None = None) -> None:
        self._coordinator = coordinator
        self._interval = interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._job = job or EnergyScheduler(None, clock=clock).job(Kind.EXPIRY)

    async def sweep(self) -> Any:
        raise NotImplementedError

    async def _each_led_bucket(self, one: Callable[[BucketRecord], Awaitable[None]], what: str) -> None:
        """`one(record)` for each bucket this node leads (`Coordinator.led_buckets`), stopping
        between two on a shed order (the next sweep goes on); a bucket that fails (deleted
        meanwhile, its index unreachable) is logged and retried by the next sweep. The job's
        cycle closes once every bucket was seen."""
        for record in await self._coordinator.led_buckets():
            if not self._job.allowed():
                return
            try:
                await one(record)
            except NodeError as err:
                log.info("%s of bucket %s postponed: %s", what, record.name, err)
            await asyncio.sleep(0)
        self._job.close()

    async def _loop(self) -> None:
        while True:
            await self._clock.sleep(self._interval * self._rng.uniform(0.5, 1.0))
            self._job.open()
            await self._job.turn()  # waits while deferred
            try:
                await self.sweep()
            except Exception:  # a sweep must never kill the loop; the next one retries
                log.exception("%s sweep failed", self.task_name)
