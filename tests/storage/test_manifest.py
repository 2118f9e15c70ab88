"""Manifest and bucket record codec: exact round trips, version byte, strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.storage import (
    BucketRecord,
    BucketTombstone,
    ChunkRef,
    CorruptRecord,
    InvalidName,
    Manifest,
    StorageError,
    decode_bucket,
    decode_bucket_tombstone,
    decode_manifest,
    encode_bucket,
    encode_bucket_tombstone,
    encode_manifest,
    validate_bucket_name,
    validate_generation,
    validate_key,
)
from maillage.storage.manifest import BUCKET_FORMAT, MANIFEST_FORMAT

bucket_names = st.from_regex(r"[a-z0-9.-]{1,63}", fullmatch=True)
keys = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               min_size=1, max_size=200)
u64 = st.integers(0, (1 << 64) - 1)
manifests = st.builds(
    Manifest,
    bucket=bucket_names,
    key=keys,
    version=u64,
    size=u64,
    etag=st.text(max_size=40),
    content_type=st.text(max_size=40),
    user_metadata=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=50)), max_size=5).map(tuple),
    chunks=st.lists(st.builds(ChunkRef, st.binary(min_size=32, max_size=32), u64), max_size=5).map(tuple),
    inline=st.none() | st.binary(max_size=300),
    deleted=st.booleans(),
    writer=st.text(max_size=20),
    generation=st.from_regex(r"[0-9a-f]{0,64}", fullmatch=True),
    attributes=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=50)), max_size=3).map(tuple),
)


@given(manifests)
def test_manifest_round_trip(m: Manifest) -> None:
    raw = encode_manifest(m)
    assert raw[0] == MANIFEST_FORMAT == 4
    assert decode_manifest(raw) == m


@given(manifests, st.data())
def test_truncated_or_padded_manifest_is_rejected(m: Manifest, data: st.DataObject) -> None:
    raw = encode_manifest(m)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(CorruptRecord):
        decode_manifest(raw[:cut])
    with pytest.raises(CorruptRecord, match="trailing"):
        decode_manifest(raw + b"\x00")


def test_unknown_manifest_format_is_rejected() -> None:
    raw = encode_manifest(Manifest("b", "k", 1, 0, "e"))
    with pytest.raises(CorruptRecord, match="format 9"):
        decode_manifest(b"\x09" + raw[1:])
    assert issubclass(CorruptRecord, StorageError)


def test_bucket_round_trip_and_version() -> None:
    rec = BucketRecord("photos.eu-1", "fr-only", 123 << 16, "alice")
    raw = encode_bucket(rec)
    assert raw[0] == BUCKET_FORMAT == 2 and decode_bucket(raw) == rec
    with pytest.raises(CorruptRecord):
        decode_bucket(b"\x09" + raw[1:])
    with pytest.raises(CorruptRecord):
        decode_bucket(raw[:-1])


@pytest.mark.parametrize("name", ["", "UPPER", "a_b", "a/b", "x" * 64, "é"])
def test_bad_bucket_names(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_bucket_name(name)


def test_bad_keys() -> None:
    for key in ["", "a\x00b", "x" * 1025, "é" * 513]:
        with pytest.raises(InvalidName):
            validate_key(key)
    assert validate_key("é" * 512) == ("é" * 512).encode()
    assert validate_key("dir/ file?\n\t\u2603") == "dir/ file?\n\t\u2603".encode()
    with pytest.raises(ValueError):  # InvalidName is also a ValueError
        encode_manifest(Manifest("b", "a\x00", 1, 0, ""))


def test_encode_rejects_bad_digests_and_ranges() -> None:
    with pytest.raises(ValueError):
        encode_manifest(Manifest("b", "k", 1, 0, "", chunks=(ChunkRef(b"short", 1),)))
    with pytest.raises(ValueError):
        encode_manifest(Manifest("b", "k", -1, 0, ""))


def _format_1(raw: bytes, trailing_fields: int = 1) -> bytes:
    """The format-1 bytes of a record encoded with generation "" (and, for a manifest, no
    attributes): version byte 1, without those last empty fields (4 bytes each)."""
    assert raw.endswith(b"\x00\x00\x00\x00" * trailing_fields)
    return b"\x01" + raw[1:-4 * trailing_fields]


@given(manifests)
def test_format_1_manifests_read_as_generation_empty(m: Manifest) -> None:
    from dataclasses import replace
    old = replace(m, generation="", attributes=())
    assert decode_manifest(_format_1(encode_manifest(old), trailing_fields=2)) == old


@given(manifests)
def test_format_2_manifests_read_without_attributes(m: Manifest) -> None:
    from dataclasses import replace
    old = replace(m, attributes=())
    raw = encode_manifest(old)
    assert raw.endswith(b"\x00\x00\x00\x00")  # the empty attributes, last
    assert decode_manifest(b"\x02" + raw[1:-4]) == old


def test_format_1_bucket_records_read_as_generation_empty_and_generations_round_trip() -> None:
    old = BucketRecord("photos", "fr-only", 7, "alice")
    assert decode_bucket(_format_1(encode_bucket(old))) == old
    new = BucketRecord("photos", "eu-wide", 9, "alice", generation="0f" * 16)
    assert decode_bucket(encode_bucket(new)) == new
    assert not new.same_bucket(old) and new.same_bucket(BucketRecord("photos", "eu-wide", 1, "", "0f" * 16))


def test_bucket_tombstone_round_trip_and_strictness() -> None:
    t = BucketTombstone("photos", "ab" * 16, "fr-only", 123 << 16)
    raw = encode_bucket_tombstone(t)
    assert raw[0] == 1 and decode_bucket_tombstone(raw) == t
    with pytest.raises(CorruptRecord):
        decode_bucket_tombstone(raw[:-1])
    with pytest.raises(CorruptRecord):
        decode_bucket_tombstone(b"\x07" + raw[1:])


@pytest.mark.parametrize("generation", ["AB", "g", "0" * 65, "a\x00", "../x"])
def test_bad_generations(generation: str) -> None:
    with pytest.raises(InvalidName):
        validate_generation(generation)
    with pytest.raises(InvalidName):
        encode_bucket(BucketRecord("b", "p", 1, generation=generation))
    with pytest.raises(InvalidName):
        encode_manifest(Manifest("b", "k", 1, 0, "e", generation=generation))
