"""Expiry of unfinished multipart uploads: a background loop like repair, GC and scrub.

An upload begun and never completed holds its parts' chunks; S3 clients that crash leave such
uploads behind. A node aborts an upload older than the expiry when it is next named (lazily, in
`MultipartUploads`), and this loop sweeps the buckets for the ones nobody names again. It runs on
every node, S3 port or not: uploads are the mesh's, not one door's; each node sweeps the buckets it
is the first record owner of (`Coordinator.led_buckets`), so together they sweep each bucket once
and none asks every node. A sweep is deferrable work (`maillage.node.energy`): it waits for a turn and
stops between two buckets on a shed order; a sweep is due within a day of the last.
"""

from __future__ import annotations

import logging
import random

from maillage.node.cluster.sweep import PeriodicSweep
from maillage.node.data.coordinator import Coordinator
from maillage.node.data.multipart import MultipartUploads
from maillage.node.energy.scheduler import Job
from maillage.node.runtime.clock import SYSTEM_CLOCK, Clock
from maillage.storage import BucketRecord

__all__ = ["DEFAULT_UPLOAD_EXPIRY", "UploadExpiry"]

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_EXPIRY = 7 * 24 * 3600.0  # seconds an unfinished multipart upload is kept


class UploadExpiry(PeriodicSweep):
    """Aborts the uploads begun more than `expiry` seconds ago, in the buckets it leads, every `interval`
    seconds (default: a tenth of the expiry, between 1 minute and 1 hour, with jitter so that the
    nodes do not sweep in step). Each sweep costs one listing of each bucket's reserved space; a
    bucket that fails is logged and retried at the next sweep."""

    task_name = "upload-expiry"

    def __init__(self, coordinator: Coordinator, uploads: MultipartUploads, expiry: float = DEFAULT_UPLOAD_EXPIRY,
                 *, interval: float | None = None, clock: Clock = SYSTEM_CLOCK,
                 rng: random.Random | None = None, job: Job | None = None) -> None:
        super().__init__(coordinator, interval if interval is not None else min(max(expiry / 10, 60.0), 3600.0),
                         clock=clock, rng=rng, job=job)
        self._uploads = uploads
        self.expiry = expiry
        self.aborted = 0

    async def sweep(self) -> int:
        """One pass over the buckets this node leads; returns how many uploads it aborted."""
        aborted = 0

        async def one(record: BucketRecord) -> None:
            nonlocal aborted
            aborted += await self._uploads.expire_uploads(record, self.expiry)

        await self._each_led_bucket(one, "multipart upload expiry")
        if aborted:
            log.info("aborted %d multipart upload(s) older than %g s", aborted, self.expiry)
        self.aborted += aborted
        return aborted
