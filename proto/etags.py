"""The native etag of an object composed from parts (an S3 multipart upload), computed alike by
the node that completes the upload and the SDK that reads the object.

An object written whole has the BLAKE3 of its bytes as etag (64 hex). An object composed from N
parts has ``BLAKE3(context || N || (digest || length) of each chunk) + "-N"``: the BLAKE3 of the
whole would need every byte read back at completion, while this one names the exact chunk list.
A reader verifies every chunk against its digest and length, then recomputes this etag from the
manifest's chunk list, so a manifest pointing at other (genuine) chunks still fails a whole read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

import blake3

__all__ = ["COMPOSED_CONTEXT", "ChunkEntry", "composed_etag", "composed_parts"]

COMPOSED_CONTEXT = b"maillage composed etag v1"
_COMPOSED = re.compile(r"[0-9a-f]{64}-([1-9][0-9]{0,4})")


class ChunkEntry(Protocol):
    """One entry of a chunk list: the node's `storage.ChunkRef` and the SDK's `pb.ChunkRef` both are."""

    @property
    def digest(self) -> bytes: ...

    @property
    def length(self) -> int: ...


def composed_etag(chunks: Iterable[ChunkEntry], parts: int) -> str:
    """The etag of an object composed from `parts` parts with this chunk list: the BLAKE3 of a
    context string, the 4-byte part count, then each chunk's digest and 8-byte length (big-endian),
    as hex followed by "-<parts>"."""
    h = blake3.blake3(COMPOSED_CONTEXT)
    h.update(parts.to_bytes(4, "big"))
    for c in chunks:
        h.update(c.digest)
        h.update(c.length.to_bytes(8, "big"))
    return f"{h.hexdigest()}-{parts}"


def composed_parts(etag: str) -> int | None:
    """The part count of a composed etag ("<64 hex>-<N>"), None for any other etag (a whole
    object's BLAKE3)."""
    match = _COMPOSED.fullmatch(etag)
    return int(match[1]) if match is not None else None
