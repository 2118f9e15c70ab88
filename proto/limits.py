"""Sizes the nodes and the SDK agree on; changing one is a change of the wire contract."""

from __future__ import annotations

from maillage.proto.frame import MAX_PLAIN_LENGTH

__all__ = ["DEFAULT_CHUNK_SIZE", "INLINE_MAX", "MAX_MESSAGE", "MAX_PLAIN_LENGTH", "max_request_message"]

# Objects are cut into chunks of this size (the last one shorter).
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
# Objects up to this size live inline in their manifest: one metadata write, no chunk files.
INLINE_MAX = 64 * 1024
# The largest gRPC message either side sends or accepts (a frame of the largest chunk fits).
MAX_MESSAGE = 64 * 1024 * 1024
# What a node accepts in one message beyond its chunk size: a frame's header, a PutObject piece.
MESSAGE_MARGIN = 1024 * 1024


def max_request_message(chunk_size: int) -> int:
    """The largest request message a node with this chunk size needs to accept: one frame of a
    chunk (stored raw when zstd does not help, so never much larger than the chunk), or one
    PutObject piece. Anything larger is refused before it is buffered."""
    return min(MAX_MESSAGE, chunk_size + MESSAGE_MARGIN)
