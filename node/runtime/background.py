"""The shape shared by the node's background work (gossip, repair, scrub): one asyncio task
running `_loop()` from `start()` until `stop()` cancels it and waits for it to end."""

from __future__ import annotations

import asyncio


class BackgroundLoop:
    task_name = "background"
    _task: asyncio.Task | None = None

    async def _loop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
