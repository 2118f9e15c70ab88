"""Key -> partition functions."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.placement import bucket_partition, chunk_partition


@given(st.binary(min_size=32, max_size=32), st.integers(1, 20))
def test_chunk_partition_is_top_bits(digest, bits):
    p = chunk_partition(digest, bits)
    assert 0 <= p < 2**bits
    assert p == int.from_bytes(digest, "big") >> (256 - bits)


def test_chunk_partition_examples():
    assert chunk_partition(b"\xff" * 32, 10) == 1023
    assert chunk_partition(b"\x80" + b"\x00" * 31, 4) == 8
    assert chunk_partition(b"\x00" * 32, 16) == 0


@given(st.text(max_size=40), st.integers(1, 20))
def test_bucket_partition(bucket, bits):
    digest = blake3.blake3(b"bucket:" + bucket.encode("utf-8")).digest()
    assert bucket_partition(bucket, bits) == chunk_partition(digest, bits)


def test_bad_arguments():
    with pytest.raises(ValueError, match="digest"):
        chunk_partition(b"short", 10)
    with pytest.raises(ValueError, match="bits"):
        chunk_partition(b"\x00" * 32, 0)
    with pytest.raises(ValueError, match="bits"):
        bucket_partition("b", 65)
