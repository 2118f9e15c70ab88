"""Cut a stream of byte pieces of any size into fixed-size chunks, holding at most one chunk."""

from __future__ import annotations

from maillage.proto.limits import DEFAULT_CHUNK_SIZE


class FixedChunker:
    def __init__(self, size: int = DEFAULT_CHUNK_SIZE) -> None:
        if size <= 0:
            raise ValueError("chunk size must be positive")
        self.size = size
        self._buffer = bytearray()

    def feed(self, piece: bytes | memoryview) -> list[bytes]:
        """Add a piece; return the chunks it completed (usually zero or one)."""
        self._buffer += piece
        chunks = []
        while len(self._buffer) >= self.size:
            chunks.append(bytes(self._buffer[:self.size]))
            del self._buffer[:self.size]
        return chunks

    def rest(self) -> bytes:
        """The final partial chunk (possibly empty); the chunker is empty afterwards."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest
