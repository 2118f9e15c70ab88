"""Signature domains: a signature made for one kind of document never verifies as another kind.

A staged layout is signed with the version it was prepared against, so its (version, text) pair
can be exactly what an applied layout of that version would be: only the kind tells them apart.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.proto.trust.signing import DOC_KINDS, LayoutAuthError, LayoutSigner, _message
from maillage.testing.examples import examples

SIGNER = LayoutSigner.generate()
VERIFIER = SIGNER.verifier()


def test_the_kinds_are_the_documented_ones() -> None:
    assert DOC_KINDS == ("layout", "staged-layout", "clear-staged-layout", "access", "bucket-record",
                         "access-master", "audit-report")
    assert all("\x00" not in kind for kind in DOC_KINDS)


def test_an_unknown_kind_is_refused_when_signing_and_verifying() -> None:
    with pytest.raises(ValueError, match="document kind"):
        SIGNER.sign(1, "x", kind="staged")  # type: ignore[arg-type]
    signature = SIGNER.sign(1, "x", kind="layout")
    with pytest.raises(ValueError, match="document kind"):
        VERIFIER.verify(1, "x", signature, kind="Layout")  # type: ignore[arg-type]


@settings(max_examples=examples(0.5), deadline=None)
@given(version=st.integers(0, (1 << 64) - 1), text=st.text(max_size=200),
       signed_as=st.sampled_from(DOC_KINDS))
def test_a_signature_verifies_in_its_own_domain_only(version: int, text: str, signed_as: str) -> None:
    signature = SIGNER.sign(version, text, kind=signed_as)  # type: ignore[arg-type]
    VERIFIER.verify(version, text, signature, kind=signed_as)  # type: ignore[arg-type]
    for other in DOC_KINDS:
        if other != signed_as:
            with pytest.raises(LayoutAuthError, match="does not verify"):
                VERIFIER.verify(version, text, signature, kind=other)


@settings(max_examples=examples(0.5), deadline=None)
@given(version=st.integers(0, (1 << 64) - 1), text=st.text(max_size=50))
def test_no_two_kinds_sign_the_same_bytes(version: int, text: str) -> None:
    messages = [_message(kind, version, text) for kind in DOC_KINDS]
    assert len(set(messages)) == len(messages)
    for a, b in itertools.permutations(messages, 2):
        assert not a.startswith(b[:len(b) - len(text.encode())]) or a == b
