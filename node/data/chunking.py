"""Cut a stream of byte pieces of any size into fixed-size chunks, holding at most one chunk.

Each chunk costs one copy (issue 27): the chunker keeps views of the pieces it was fed, not a
buffer they are appended to, and joins a chunk's views once, into the `bytes` the frame is built
from. Appending to a `bytearray`, slicing it and taking `bytes()` of the slice copied every byte
three times. A view keeps its piece alive until its chunk is complete (at most one chunk of pieces,
as the buffer held before); a piece that is not immutable `bytes` or a view of them (a `bytearray`,
any view of one) is copied when it is fed, so the chunker never depends on its producer's care."""

from __future__ import annotations

from maillage.proto.limits import DEFAULT_CHUNK_SIZE


class FixedChunker:
    def __init__(self, size: int = DEFAULT_CHUNK_SIZE) -> None:
        if size <= 0:
            raise ValueError("chunk size must be positive")
        self.size = size
        self._views: list[memoryview] = []
        self._held = 0

    def feed(self, piece: bytes | bytearray | memoryview) -> list[bytes]:
        """Add a piece; return the chunks it completed (usually zero or one)."""
        view = memoryview(piece).cast("B")
        if not isinstance(view.obj, bytes):  # a buffer that may change: keep a copy, not a view
            view = memoryview(bytes(view))
        chunks = []
        while self._held + len(view) >= self.size:
            take = self.size - self._held
            self._views.append(view[:take])
            chunks.append(self._take())
            view = view[take:]
        if view:
            self._views.append(view)
            self._held += len(view)
        return chunks

    def rest(self) -> bytes:
        """The final partial chunk (possibly empty); the chunker is empty afterwards."""
        return self._take()

    def _take(self) -> bytes:
        """The held views as one `bytes` (a piece that is a whole chunk by itself is not copied)."""
        views, self._views, self._held = self._views, [], 0
        if len(views) == 1 and isinstance(views[0].obj, bytes) and len(views[0]) == len(views[0].obj):
            return views[0].obj
        return b"".join(views)
