"""Lifecycle sweeps (`data/lifecycle.py`): a background loop like upload expiry, repair and scrub.

Each node sweeps the buckets it is the first record owner of (`Coordinator.led_buckets`) that have
a lifecycle configuration, so together the nodes sweep each bucket once, inside its policy, and
none asks every node. A sweep is deferrable work (`maillage.node.energy`, kind EXPIRY): it waits
for a turn before each action, stops on a shed order, and the next sweep starts again (every
action is idempotent: what is expired already is not there any more). Its totals are the node's
`maillage_lifecycle_actions` metric.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict

from maillage.node.cluster.sweep import PeriodicSweep
from maillage.node.data.bucket_settings import LIFECYCLE, BucketSettings
from maillage.node.data.coordinator import Coordinator
from maillage.node.data.lifecycle import Lifecycle, LifecycleConfig, SweepCounts
from maillage.node.energy.decide import Kind
from maillage.node.energy.scheduler import Job
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.storage import BucketRecord

__all__ = ["DEFAULT_LIFECYCLE_INTERVAL", "LifecycleLoop"]

log = logging.getLogger(__name__)

DEFAULT_LIFECYCLE_INTERVAL = 3600.0  # seconds between two sweeps (with jitter): rules count in days


class LifecycleLoop(PeriodicSweep):
    task_name = "lifecycle"

    def __init__(self, coordinator: Coordinator, settings: BucketSettings, lifecycle: Lifecycle, *,
                 interval: float = DEFAULT_LIFECYCLE_INTERVAL, clock: Clock = SYSTEM_CLOCK,
                 rng: random.Random | None = None, job: Job | None = None, moves: Job | None = None) -> None:
        """`job`: the sweep's energy job (expiry); `moves`: the transitions' (tier-move), which move bytes."""
        super().__init__(coordinator, interval, clock=clock, rng=rng, job=job)
        self._moves = moves or self._job.scheduler.job(Kind.TIER_MOVE)
        self._moves_left = False   # a transition was deferred in the current sweep
        self._settings = settings
        self._lifecycle = lifecycle
        self.totals = SweepCounts()
        self.sweeps = 0   # passes completed since the node started (its status)

    async def _turn(self) -> bool:
        if not self._job.allowed():
            return False
        await self._job.turn()
        return True

    async def _move_turn(self, nbytes: int) -> bool:
        """A transition's turn: False (left for a later sweep) while tier moves are deferred."""
        if not self._moves.allowed():
            self._moves_left = True
            return False
        await self._moves.turn(nbytes)
        return True

    async def sweep(self) -> SweepCounts:
        """One pass over the lifecycle-configured buckets this node leads; returns what it did."""
        done = SweepCounts()
        self._moves.open()   # moves due now are done within the kind's deadline, whatever the energy
        self._moves_left = False

        async def one(record: BucketRecord) -> None:
            config = LifecycleConfig.decode(await self._settings.get(record, LIFECYCLE))
            if config is not None:
                done.add(await self._lifecycle.sweep(record, config, self._turn, self._move_turn))

        await self._each_led_bucket(one, "lifecycle")
        if self._job.due is None and not self._moves_left:   # every bucket seen, every move due made
            self._moves.close()
        self.totals.add(done)
        self.sweeps += 1
        if any(asdict(done).values()):
            log.info("lifecycle: %s", done)
        return done
