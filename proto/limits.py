"""Sizes the nodes and the SDK agree on; changing one is a change of the wire contract."""

from __future__ import annotations

__all__ = ["DEFAULT_CHUNK_SIZE", "INLINE_MAX", "MAX_CHUNK_PLAIN", "MAX_MESSAGE", "check_chunk_size",
           "max_request_message"]

# Objects are cut into chunks of this size (the last one shorter).
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
# The one bound on a chunk: the largest chunk size a node may be configured with (`--chunk-size`),
# and so the largest plain (and stored) size a frame may declare. The frame codec enforces it
# wherever a frame is read (`frame.read_frame_header`, `verify_frame`, `decode_frame`): PutChunk,
# repair, coordinator and SDK reads, scrub. A frame declaring more is refused before anything is
# allocated (`frame.FrameTooLarge`), so no reader ever holds more than this for one chunk.
MAX_CHUNK_PLAIN = 16 * 1024 * 1024
# Objects up to this size live inline in their manifest: one metadata write, no chunk files.
INLINE_MAX = 64 * 1024
# The largest gRPC message either side sends or accepts (a frame of the largest chunk fits).
MAX_MESSAGE = 64 * 1024 * 1024
# What a node accepts in one message beyond its chunk size: a frame's header, a PutObject piece.
MESSAGE_MARGIN = 1024 * 1024


def check_chunk_size(size: int) -> int:
    """`size` if a node may cut objects into chunks of that many bytes; ValueError otherwise."""
    if not 0 < size <= MAX_CHUNK_PLAIN:
        raise ValueError(f"a chunk size is 1 to {MAX_CHUNK_PLAIN} bytes ({MAX_CHUNK_PLAIN >> 20} MiB, the largest "
                         f"chunk any node reads), not {size}")
    return size


def max_request_message(chunk_size: int) -> int:
    """The largest request message a node with this chunk size needs to accept: one frame of a
    chunk (stored raw when zstd does not help, so never much larger than the chunk), or one
    PutObject piece. Anything larger is refused before it is buffered."""
    return min(MAX_MESSAGE, chunk_size + MESSAGE_MARGIN)
