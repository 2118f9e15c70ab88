"""Sizes the nodes and the SDK agree on; changing one is a change of the wire contract."""

from __future__ import annotations

from .frame import MAX_PLAIN_LENGTH

__all__ = ["DEFAULT_CHUNK_SIZE", "INLINE_MAX", "MAX_MESSAGE", "MAX_PLAIN_LENGTH"]

# Objects are cut into chunks of this size (the last one shorter).
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
# Objects up to this size live inline in their manifest: one metadata write, no chunk files.
INLINE_MAX = 64 * 1024
# The largest gRPC message either side sends or accepts (a frame of the largest chunk fits).
MAX_MESSAGE = 64 * 1024 * 1024
