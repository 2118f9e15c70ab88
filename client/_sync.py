"""Client: the blocking twin of AsyncClient, sharing all of its logic.

Instead of a second hand-kept copy of the logic, the sync client runs one AsyncClient on a private
event loop in a daemon thread and waits for each call. Streaming bodies and listings are pulled
piece by piece across that boundary, so memory stays bounded exactly as in the async client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from os import PathLike
from typing import Any, TypeVar

from maillage.client._async import AsyncClient, AsyncObjectBody, Body, Progress
from maillage.client._models import (
    Bucket,
    LifecycleRule,
    ListPage,
    LockConfiguration,
    ObjectInfo,
    ObjectPlacement,
    ObjectSummary,
    ObjectVersion,
    PutResult,
    Retention,
    VersionPage,
)
from maillage.client._profile import Profile
from maillage.placement import Layout

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="maillage-client", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        """Pull an async iterator one item at a time from a blocking caller."""
        try:
            while True:
                try:
                    yield self.run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                self.run(aclose())

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


class Client:
    """S3-like blocking client for a maillage mesh; see AsyncClient for the arguments.

    Every method runs the AsyncClient method of the same name on the client's private loop."""

    def __init__(self, endpoints: str | Sequence[str] | None = None, *, profile: Profile | None = None,
                 profile_name: str | None = None, key_id: str | None = None, secret: str | None = None,
                 trust_dir: str | PathLike[str] | None = None, config_file: str | PathLike[str] | None = None,
                 site: str | None = None, timeout: float = 60.0, prefetch: int = 4) -> None:
        self._runner: _LoopThread | None = None
        runner = _LoopThread()
        try:
            self._async: AsyncClient = runner.run(_make(
                endpoints, profile=profile, profile_name=profile_name, key_id=key_id, secret=secret,
                trust_dir=trust_dir, config_file=config_file, site=site, timeout=timeout, prefetch=prefetch))
        except BaseException:
            runner.stop()
            raise
        self._runner = runner

    @property
    def profile(self) -> Profile:
        return self._async.profile

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self._async.close())
            self._runner.stop()
            self._runner = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._runner is None:
            coro.close()
            raise RuntimeError("this Client is closed")
        return self._runner.run(coro)

    # ----- layout and buckets ----------------------------------------------------------------

    def layout(self) -> Layout:
        return self._run(self._async.layout())

    def refresh_layout(self) -> Layout:
        return self._run(self._async.refresh_layout())

    def create_bucket(self, name: str, policy: str, *, object_lock: bool = False) -> Bucket:
        """Create bucket `name` bound to residency policy `policy`; it belongs to the access key's tenant.
        `object_lock`: with versioning Enabled and object lock from the start (never disabled)."""
        return self._run(self._async.create_bucket(name, policy, object_lock=object_lock))

    def head_bucket(self, name: str) -> Bucket:
        return self._run(self._async.head_bucket(name))

    def list_buckets(self) -> list[Bucket]:
        return self._run(self._async.list_buckets())

    def delete_bucket(self, name: str) -> None:
        return self._run(self._async.delete_bucket(name))

    # ----- objects ---------------------------------------------------------------------------

    def put_object(self, bucket: str, key: str, body: Body, *, content_type: str = "application/octet-stream",
                   metadata: Mapping[str, str] | None = None, progress: Progress | None = None) -> PutResult:
        """Store `body` (bytes, a binary file, or an iterator of bytes) under `key`."""
        return self._run(self._async.put_object(bucket, key, body, content_type=content_type,
                                                metadata=metadata, progress=progress))

    def head_object(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """The key's current version, or its version `version_id` (a versioned bucket's)."""
        return self._run(self._async.head_object(bucket, key, version_id=version_id))

    def object_chunks(self, bucket: str, key: str) -> list[tuple[bytes, int]]:
        """(BLAKE3 digest, length) of each chunk of the object; empty for a small object stored inline."""
        return self._run(self._async.object_chunks(bucket, key))

    def get_object(self, bucket: str, key: str, *, range: tuple[int, int] | None = None,
                   version_id: str | None = None) -> ObjectBody:
        """Open an object (or its version `version_id`) for reading; `range=(start, end)` selects
        bytes [start, end)."""
        body = self._run(self._async.get_object(bucket, key, range=range, version_id=version_id))
        assert self._runner is not None
        return ObjectBody(body, self._runner)

    def delete_object(self, bucket: str, key: str, *, version_id: str | None = None,
                      bypass_governance: bool = False) -> int:
        """Delete the key (on a versioned bucket: a delete marker), or remove its version `version_id`
        (PermissionDenied while a legal hold or retention keeps it)."""
        return self._run(self._async.delete_object(bucket, key, version_id=version_id,
                                                   bypass_governance=bypass_governance))

    def copy_object(self, source_bucket: str, source_key: str, bucket: str, key: str, *,
                    source_version_id: str | None = None) -> ObjectInfo:
        return self._run(self._async.copy_object(source_bucket, source_key, bucket, key,
                                                 source_version_id=source_version_id))

    def put_bucket_versioning(self, bucket: str, status: str) -> None:
        """Enable ("Enabled") or suspend ("Suspended") the bucket's versioning (its owner's keys only)."""
        self._run(self._async.put_bucket_versioning(bucket, status))

    def get_bucket_versioning(self, bucket: str) -> str:
        return self._run(self._async.get_bucket_versioning(bucket))

    def put_bucket_lifecycle(self, bucket: str, rules: Sequence[LifecycleRule]) -> None:
        """Replace the bucket's lifecycle rules (1 to 100)."""
        self._run(self._async.put_bucket_lifecycle(bucket, rules))

    def get_bucket_lifecycle(self, bucket: str) -> list[LifecycleRule]:
        return self._run(self._async.get_bucket_lifecycle(bucket))

    def delete_bucket_lifecycle(self, bucket: str) -> None:
        self._run(self._async.delete_bucket_lifecycle(bucket))

    def put_object_lock_configuration(self, bucket: str, default: LockConfiguration | None = None) -> None:
        """Enable object lock on a bucket whose versioning is Enabled, with a default retention."""
        self._run(self._async.put_object_lock_configuration(bucket, default))

    def get_object_lock_configuration(self, bucket: str) -> LockConfiguration | None:
        return self._run(self._async.get_object_lock_configuration(bucket))

    def put_object_retention(self, bucket: str, key: str, retention: Retention | None, *,
                             version_id: str | None = None, bypass_governance: bool = False) -> None:
        self._run(self._async.put_object_retention(bucket, key, retention, version_id=version_id,
                                                   bypass_governance=bypass_governance))

    def get_object_retention(self, bucket: str, key: str, *, version_id: str | None = None) -> Retention | None:
        return self._run(self._async.get_object_retention(bucket, key, version_id=version_id))

    def put_object_legal_hold(self, bucket: str, key: str, on: bool, *, version_id: str | None = None) -> None:
        self._run(self._async.put_object_legal_hold(bucket, key, on, version_id=version_id))

    def get_object_legal_hold(self, bucket: str, key: str, *, version_id: str | None = None) -> bool:
        return self._run(self._async.get_object_legal_hold(bucket, key, version_id=version_id))

    def list_object_versions_page(self, bucket: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
                                  version_id_marker: str = "", max_keys: int = 1000) -> VersionPage:
        return self._run(self._async.list_object_versions_page(
            bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            version_id_marker=version_id_marker, max_keys=max_keys))

    def list_object_versions(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                             page_size: int = 1000) -> Iterator[ObjectVersion | str]:
        """Every version and delete marker (and, with a delimiter, every common prefix as a str)."""
        if self._runner is None:
            raise RuntimeError("this Client is closed")
        return self._runner.iterate(self._async.list_object_versions(
            bucket, prefix=prefix, delimiter=delimiter, page_size=page_size))

    def list_objects_page(self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "",
                          continuation_token: str = "", max_keys: int = 1000) -> ListPage:
        return self._run(self._async.list_objects_page(
            bucket, prefix=prefix, delimiter=delimiter, start_after=start_after,
            continuation_token=continuation_token, max_keys=max_keys))

    def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "",
                     page_size: int = 1000) -> Iterator[ObjectSummary | str]:
        """Every object (and, with a delimiter, every common prefix as a str), page after page."""
        if self._runner is None:
            raise RuntimeError("this Client is closed")
        return self._runner.iterate(self._async.list_objects(
            bucket, prefix=prefix, delimiter=delimiter, start_after=start_after, page_size=page_size))

    # ----- files and placement ---------------------------------------------------------------

    def upload_file(self, path: str | PathLike[str], bucket: str, key: str, *,
                    content_type: str = "application/octet-stream", metadata: Mapping[str, str] | None = None,
                    progress: Progress | None = None) -> PutResult:
        return self._run(self._async.upload_file(path, bucket, key, content_type=content_type,
                                                 metadata=metadata, progress=progress))

    def download_file(self, bucket: str, key: str, path: str | PathLike[str], *,
                      progress: Progress | None = None) -> ObjectInfo:
        """Write the object to `path` (via a temp file renamed at the end: no half file on error)."""
        return self._run(self._async.download_file(bucket, key, path, progress=progress))

    def where(self, bucket: str, key: str) -> ObjectPlacement:
        return self._run(self._async.where(bucket, key))


async def _next(stream: AsyncIterator[T]) -> T:
    return await anext(stream)


async def _make(endpoints: str | Sequence[str] | None, **options: Any) -> AsyncClient:
    return AsyncClient(endpoints, **options)
