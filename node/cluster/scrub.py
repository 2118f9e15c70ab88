"""Scrub: re-read and re-hash every stored frame in the background, at a bounded rate.

Bit rot is silent until read. A corrupt frame found here is quarantined by the chunk store (as on a
client read); it then simply is missing from this node's listings, so the next anti-entropy round
pulls a good copy from another owner. The scrub only has to find it, and say so in `status`.

Scrub is deferrable work (`maillage.node.energy`): each frame is a safe point where it asks its job
for a turn and a pace (the share of `rate` it may use), so it runs in the site's green windows,
stops within a frame on a shed order, and still re-reads every frame within its deadline (14 days).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from maillage.node.energy.decide import Kind
from maillage.node.energy.scheduler import EnergyScheduler, Job
from maillage.node.replicas.replica import LocalReplica
from maillage.node.runtime.background import BackgroundLoop
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.node.runtime.ratelimit import TokenBucket
from maillage.storage import ChunkNotFound, CorruptFrame

log = logging.getLogger(__name__)


@dataclass
class ScrubStats:
    frames_checked: int = 0
    bytes_checked: int = 0
    corrupt_found: int = 0
    passes_completed: int = 0


class Scrubber(BackgroundLoop):
    task_name = "scrub"

    def __init__(self, local: LocalReplica, *, rate: float, interval: float,
                 on_corrupt: Callable[[], None] = lambda: None, clock: Clock = SYSTEM_CLOCK,
                 job: Job | None = None) -> None:
        self._interval = interval
        self._local = local
        self._clock = clock
        self._limiter = TokenBucket(rate, clock)
        self._rate = rate
        self._on_corrupt = on_corrupt
        self._job = job or EnergyScheduler(None, clock=clock).job(Kind.SCRUB, rate=rate)
        self.stats = ScrubStats()

    def start(self) -> None:
        if self._rate > 0:  # --scrub-rate 0 turns the scrub off
            super().start()

    async def _loop(self) -> None:
        while True:
            await self.scrub_pass()
            await self._clock.sleep(self._interval)

    async def scrub_pass(self) -> None:
        local = self._local
        job = self._job
        digests = await local.stored_digests()
        job.open(local.chunks.stats().stored_bytes)
        for digest in digests:
            size = await local.frame_size(digest)
            if size is None:
                continue
            self._limiter.rate = self._rate * await job.turn(size)  # waits while deferred
            await self._limiter.take(size)
            try:
                await local.get_chunk(digest)  # reads and verifies; quarantines on mismatch
            except ChunkNotFound:
                continue
            except CorruptFrame as err:
                self.stats.corrupt_found += 1
                log.warning("scrub: %s", err)
                self._on_corrupt()
            self.stats.frames_checked += 1
            self.stats.bytes_checked += size
        self.stats.passes_completed += 1
        job.close()

