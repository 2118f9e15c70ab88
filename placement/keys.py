"""Key -> partition.

Why it is built this way: placement is by partition, never by key, so a layout change
reasons about 2^P partitions instead of billions of keys. The partition is the top P bits
of a BLAKE3 digest: chunks use their own content digest (no extra hashing on the hot path),
and a bucket's object index uses the digest of ``b"bucket:" + bucket_id`` so that listing a
bucket reads one replica set, inside the bucket's policy like everything else.
"""

from __future__ import annotations

import blake3

__all__ = ["chunk_partition", "bucket_partition"]


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 64:
        raise ValueError(f"bits: must be an integer in 1..64, got {bits!r}")


def chunk_partition(digest: bytes, bits: int) -> int:
    """Top ``bits`` bits of a 32-byte BLAKE3 chunk digest."""
    _check_bits(bits)
    if len(digest) != 32:
        raise ValueError(f"digest: must be 32 bytes (BLAKE3), got {len(digest)}")
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


def bucket_partition(bucket_id: str, bits: int) -> int:
    """Top ``bits`` bits of BLAKE3(b"bucket:" + bucket_id as UTF-8)."""
    _check_bits(bits)
    digest = blake3.blake3(b"bucket:" + bucket_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)
