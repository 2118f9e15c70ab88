"""Keyed chunk names: the frame flag, verification with and without the key, the naming key and
the access document's naming secret."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.proto.frame import (
    CODEC_RAW,
    CODEC_ZSTD,
    FLAG_KEYED,
    CorruptFrame,
    chunk_digest,
    decode_frame,
    encode_frame,
    read_frame_header,
    verify_frame,
)
from maillage.proto.naming import chunk_key
from maillage.proto.trust.access import (
    AccessDoc,
    AccessError,
    add_tenant,
    create_key,
    delete_tenant,
    encode_access,
    ensure_naming_secret,
    parse_access,
    revoke_key,
)
from maillage.testing.examples import examples

KEY = chunk_key("11" * 32, "hospital", "france-only")
OTHER = chunk_key("11" * 32, "housing", "france-only")
assert KEY is not None and OTHER is not None

compressible = st.builds(lambda word, n: word * n, st.binary(min_size=1, max_size=16), st.integers(1, 4000))
anything = st.one_of(st.binary(max_size=20_000), compressible)


# ----- the naming key -------------------------------------------------------------------------


def test_chunk_key_depends_on_secret_tenant_and_policy() -> None:
    secret = "ab" * 32
    base = chunk_key(secret, "t", "p")
    assert base is not None and len(base) == 32
    assert chunk_key(secret, "t", "p") == base
    others = {chunk_key("cd" * 32, "t", "p"), chunk_key(secret, "u", "p"), chunk_key(secret, "t", "q"),
              chunk_key(secret, "tp", ""), chunk_key(secret, "", "tp")}  # the separators matter
    assert base not in others and len(others) == 5


def test_no_secret_means_unkeyed_names() -> None:
    assert chunk_key("", "t", "p") is None


# ----- frames ---------------------------------------------------------------------------------


@given(anything, st.sampled_from([0, 1, 3]), st.booleans())
@settings(max_examples=examples(2), deadline=None)
def test_round_trip_with_and_without_key(data: bytes, level: int, keyed: bool) -> None:
    key = KEY if keyed else None
    frame = encode_frame(data, level=level, key=key)
    header = read_frame_header(frame)
    assert header.keyed is keyed
    assert header.digest == chunk_digest(data, key)
    assert decode_frame(frame, expected_digest=chunk_digest(data, key), key=key) == data
    assert verify_frame(frame, key=key) == header
    assert verify_frame(frame) == header  # without the key: everything but the name
    if keyed:
        assert header.digest != chunk_digest(data)


def test_the_keyed_flag_is_bit_1_and_raw_keyed_frames_carry_a_payload_check() -> None:
    frame = encode_frame(os.urandom(100), key=KEY)
    assert int.from_bytes(frame[6:8], "big") == FLAG_KEYED == 0x0002
    assert read_frame_header(frame).codec == CODEC_RAW
    assert frame[56:64] != bytes(8)
    assert read_frame_header(encode_frame(b"ab" * 500, key=KEY)).codec == CODEC_ZSTD


def test_unkeyed_frames_are_unchanged() -> None:
    data = os.urandom(100)
    frame = encode_frame(data)
    assert frame[6:8] == bytes(2) and frame[56:64] == bytes(8)
    assert not read_frame_header(frame).keyed
    # a reader holding a key still reads chunks written before names were keyed
    assert decode_frame(frame, expected_digest=chunk_digest(data), key=KEY) == data
    assert verify_frame(frame, key=KEY).digest == chunk_digest(data)


def test_a_keyed_frame_is_refused_without_its_key_or_with_another() -> None:
    data = b"patient record " * 100
    frame = encode_frame(data, key=KEY)
    with pytest.raises(CorruptFrame, match="keyed name and no key"):
        decode_frame(frame)
    with pytest.raises(CorruptFrame, match="keyed BLAKE3"):
        decode_frame(frame, key=OTHER)
    with pytest.raises(CorruptFrame, match="keyed BLAKE3"):
        verify_frame(frame, key=OTHER)


def test_a_keyed_frame_whose_content_was_replaced_passes_a_keyless_check_but_not_the_key() -> None:
    """What a node cannot see and the SDK does: genuine-looking frame, other content, same name."""
    name = chunk_digest(b"a" * 1000, KEY)
    forged = encode_frame(b"b" * 1000, key=KEY, digest=name)
    assert verify_frame(forged, expected_digest=name).digest == name
    with pytest.raises(CorruptFrame):
        decode_frame(forged, expected_digest=name, key=KEY)


def _every_bit_flip(frame: bytes):
    buf = bytearray(frame)
    for i in range(len(buf)):
        for bit in range(8):
            buf[i] ^= 1 << bit
            yield i, bit, bytes(buf)
            buf[i] ^= 1 << bit


@pytest.mark.parametrize(
    "data",
    [b"hello world, hello world, hello world, hello world " * 4, os.urandom(96), b""],
    ids=["zstd", "raw", "empty"],
)
def test_every_single_bit_flip_of_a_keyed_frame_is_rejected_with_and_without_the_key(data: bytes) -> None:
    frame = encode_frame(data, key=KEY)
    for i, bit, bad in _every_bit_flip(frame):
        for check in (lambda f: decode_frame(f, key=KEY), lambda f: verify_frame(f, key=KEY), verify_frame):
            with pytest.raises(CorruptFrame):
                check(bad)
                pytest.fail(f"flip of bit {bit} in byte {i} was accepted")


@given(anything, st.booleans(), st.data())
@settings(max_examples=examples(1.5), deadline=None)
def test_random_bit_flips_rejected_with_and_without_key(data: bytes, keyed: bool, draw: st.DataObject) -> None:
    key = KEY if keyed else None
    frame = bytearray(encode_frame(data, key=key))
    pos = draw.draw(st.integers(0, len(frame) - 1))
    frame[pos] ^= 1 << draw.draw(st.integers(0, 7))
    with pytest.raises(CorruptFrame):
        decode_frame(bytes(frame), key=key)
    with pytest.raises(CorruptFrame):
        verify_frame(bytes(frame))


def test_encode_rejects_a_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encode_frame(b"x", key=b"short")


# ----- the access document's naming secret ----------------------------------------------------


def test_the_first_tenant_brings_a_naming_secret_that_edits_keep() -> None:
    doc = add_tenant(AccessDoc(), "admin", now_ms=1, rng=random.Random(1))
    secret = doc.naming_secret
    assert len(secret) == 64 and int(secret, 16) >= 0
    doc = add_tenant(doc, "hospital", now_ms=2)
    doc, key = create_key(doc, "hospital", "read-write", now_ms=3, rng=random.Random(2))
    doc = revoke_key(doc, key.key_id)
    doc = delete_tenant(doc, "hospital")
    assert doc.naming_secret == secret
    assert ensure_naming_secret(doc) is doc
    assert parse_access(encode_access(doc)).naming_secret == secret
    assert secret not in repr(doc)


def test_secrets_are_random() -> None:
    assert add_tenant(AccessDoc(), "a", now_ms=1).naming_secret != add_tenant(AccessDoc(), "a", now_ms=1).naming_secret


def test_an_older_document_parses_without_a_secret_and_encodes_as_it_did() -> None:
    old = ('{"format":"maillage-access/1","keys":[],"tenants":[{"created_ms":1,"name":"admin"}],'
           '"version":1}')
    doc = parse_access(old)
    assert doc.naming_secret == ""
    assert encode_access(doc) == old
    fixed = ensure_naming_secret(doc, random.Random(3))
    assert fixed.version == 2 and len(fixed.naming_secret) == 64
    assert add_tenant(doc, "b", now_ms=2).naming_secret != ""


@pytest.mark.parametrize("bad", ['"xyz"', '"' + "AB" * 32 + '"', '"' + "ab" * 31 + '"', "12", "null"])
def test_a_malformed_secret_is_refused_without_echoing_it(bad: str) -> None:
    text = ('{"format":"maillage-access/1","keys":[],"naming_secret":' + bad +
            ',"tenants":[],"version":1}')
    with pytest.raises(AccessError, match="naming_secret") as info:
        parse_access(text)
    assert "AB" * 32 not in str(info.value)


def test_an_unknown_field_is_still_refused() -> None:
    with pytest.raises(AccessError, match="unknown field"):
        parse_access('{"format":"maillage-access/1","keys":[],"tenants":[],"version":1,"other":1}')
