"""Client: the blocking twin of AsyncClient, sharing all of its logic.

Instead of a second hand-kept copy of the logic, the sync client runs one AsyncClient on a private
event loop in a daemon thread and waits for each call. Streaming bodies and listings are pulled
piece by piece across that boundary, so memory stays bounded exactly as in the async client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ._async import AsyncClient, AsyncObjectBody
from ._models import ObjectInfo, ObjectSummary


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="maillage-client", daemon=True)
        self._thread.start()

    def run(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, stream) -> Iterator[Any]:
        """Pull an async iterator one item at a time from a blocking caller."""
        try:
            while True:
                try:
                    yield self.run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self.run(stream.aclose())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class ObjectBody:
    """A streaming object body: `read()` all of it, or `for chunk in body.iter_chunks()`."""

    def __init__(self, body: AsyncObjectBody, runner: _LoopThread) -> None:
        self._body = body
        self._runner = runner
        self.info: ObjectInfo = body.info

    @property
    def content_length(self) -> int:
        return self._body.content_length

    def read(self) -> bytes:
        return self._runner.run(self._body.read())

    def iter_chunks(self) -> Iterator[bytes]:
        return self._runner.iterate(self._body.iter_chunks())


def _blocking(name: str):
    def method(self, *args, **kwargs):
        return self._runner.run(getattr(self._async, name)(*args, **kwargs))
    method.__name__ = name
    method.__doc__ = getattr(AsyncClient, name).__doc__
    return method


class Client:
    """S3-like blocking client for a maillage mesh; see AsyncClient for the arguments."""

    def __init__(self, endpoints: str | Sequence[str] = "127.0.0.1:7001", **options: Any) -> None:
        self._runner = _LoopThread()
        self._async = self._runner.run(_make(endpoints, options))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self._async.close())
            self._runner.stop()
            self._runner = None  # type: ignore[assignment]

    for _name in ("layout", "refresh_layout", "create_bucket", "head_bucket", "list_buckets",
                  "delete_bucket", "put_object", "head_object", "delete_object", "copy_object",
                  "list_objects_page", "upload_file", "download_file", "where"):
        locals()[_name] = _blocking(_name)
    del _name

    def get_object(self, bucket: str, key: str, *, range: tuple[int, int] | None = None) -> ObjectBody:
        """Open an object for reading; `range=(start, end)` selects bytes [start, end)."""
        return ObjectBody(self._runner.run(self._async.get_object(bucket, key, range=range)), self._runner)

    def list_objects(self, bucket: str, **kwargs: Any) -> Iterator[ObjectSummary | str]:
        """Every object (and, with a delimiter, every common prefix as a str), page after page."""
        return self._runner.iterate(self._async.list_objects(bucket, **kwargs))


async def _make(endpoints, options) -> AsyncClient:
    return AsyncClient(endpoints, **options)
