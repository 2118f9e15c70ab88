"""The access document: edits, the JSON codec (round trip, strict parsing) and permits()."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.proto.trust.access import (
    AccessDoc,
    AccessError,
    AccessKey,
    add_tenant,
    create_key,
    delete_tenant,
    encode_access,
    key_of,
    parse_access,
    permits,
    redacted,
    revoke_key,
    secret_of,
)
from maillage.proto.trust.signing import LayoutAuthError, LayoutSigner
from maillage.testing.examples import examples

NOW = 1_760_000_000_000

tenant_names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True)
bucket_names = st.from_regex(r"[a-z0-9][a-z0-9-]{1,8}[a-z0-9]", fullmatch=True)
roles = st.sampled_from(["read-write", "read-only", "admin"])


@st.composite
def docs(draw: st.DrawFn) -> AccessDoc:
    """Documents built only through the public edits, so every one is reachable in real use."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    doc = AccessDoc()
    for name in draw(st.lists(tenant_names, min_size=1, max_size=4, unique=True)):
        doc = add_tenant(doc, name, now_ms=draw(st.integers(0, 2**53)))
    for _ in range(draw(st.integers(0, 6))):
        tenant = draw(st.sampled_from([t.name for t in doc.tenants]))
        doc, key = create_key(doc, tenant, draw(roles), draw(st.lists(bucket_names, max_size=3)),
                              now_ms=NOW, rng=rng)
        if draw(st.booleans()):
            doc = revoke_key(doc, key.key_id)
    return doc


def _hospital() -> tuple[AccessDoc, AccessKey, AccessKey, AccessKey, AccessKey]:
    rng = random.Random(13)
    doc = add_tenant(add_tenant(AccessDoc(), "hospital", now_ms=NOW), "water", now_ms=NOW)
    doc, rw = create_key(doc, "hospital", "read-write", (), now_ms=NOW, rng=rng)
    doc, ro = create_key(doc, "hospital", "read-only", ["scans", "records"], now_ms=NOW, rng=rng)
    doc, admin = create_key(doc, "water", "admin", (), now_ms=NOW, rng=rng)
    doc, gone = create_key(doc, "water", "read-write", (), now_ms=NOW, rng=rng)
    doc = revoke_key(doc, gone.key_id)
    return doc, rw, ro, admin, gone


# ---------------------------------------------------------------------------------------------------
# Edits


def test_edits_bump_the_version_and_keys_look_like_aws_keys() -> None:
    doc, rw, ro, admin, gone = _hospital()
    assert doc.version == 7  # 2 tenants, 4 keys, 1 revocation
    for key in (rw, ro, admin, gone):
        assert len(key.key_id) == 20 and key.key_id.startswith("MK") and key.key_id.isupper()
    assert len(rw.secret) == 40 and rw.secret.isalnum()
    assert ro.buckets == ("records", "scans")
    assert secret_of(doc, rw.key_id) == rw.secret
    assert secret_of(doc, gone.key_id) is None
    assert secret_of(doc, "MK000000000000000000") is None
    assert doc.key(gone.key_id) is not None and doc.key(gone.key_id).secret == ""  # type: ignore[union-attr]
    assert key_of(doc, gone.key_id) is None


def test_default_rng_is_the_system_csprng() -> None:
    doc = add_tenant(AccessDoc(), "t", now_ms=0)
    _, a = create_key(doc, "t", "read-only", now_ms=0)
    _, b = create_key(doc, "t", "read-only", now_ms=0)
    assert a.key_id != b.key_id and a.secret != b.secret


def test_edit_errors_are_typed_and_clear() -> None:
    doc, rw, _, _, gone = _hospital()
    cases = [
        (lambda: add_tenant(doc, "hospital", now_ms=NOW), "already exists"),
        (lambda: add_tenant(doc, "bad name", now_ms=NOW), "tenant name"),
        (lambda: delete_tenant(doc, "nobody"), "does not exist"),
        (lambda: delete_tenant(doc, "hospital"), "revoke them first"),
        (lambda: create_key(doc, "nobody", "read-only", now_ms=NOW), "create it first"),
        (lambda: create_key(doc, "water", "root", now_ms=NOW), "role"),  # type: ignore[arg-type]
        (lambda: create_key(doc, "water", "read-only", ["UPPER"], now_ms=NOW), "bucket name"),
        (lambda: revoke_key(doc, "MK000000000000000000"), "does not exist"),
        (lambda: revoke_key(doc, gone.key_id), "already revoked"),
    ]
    for edit, message in cases:
        with pytest.raises(AccessError, match=message):
            edit()
    with pytest.raises(AccessError) as info:
        delete_tenant(doc, "hospital")
    assert rw.key_id in str(info.value) and rw.secret not in str(info.value)


def test_delete_tenant_after_revoking_its_keys_drops_them() -> None:
    doc, _, _, admin, gone = _hospital()
    doc = delete_tenant(revoke_key(doc, admin.key_id), "water")
    assert [t.name for t in doc.tenants] == ["hospital"]
    assert {k.tenant for k in doc.keys} == {"hospital"}


def test_secrets_stay_out_of_reprs_and_listings() -> None:
    doc, rw, *_ = _hospital()
    assert rw.secret not in repr(rw)
    assert rw.secret not in repr(doc)
    listing = redacted(doc)
    assert [k.key_id for k in listing] == [k.key_id for k in doc.keys]
    assert rw.secret not in repr(listing) and not any(hasattr(k, "secret") for k in listing)


# ---------------------------------------------------------------------------------------------------
# permits


def test_permits_table() -> None:
    doc, rw, ro, admin, gone = _hospital()
    H, W = "hospital", "water"
    table = [
        (rw, "read", "scans", H, True), (rw, "write", "scans", H, True), (rw, "write", None, None, True),
        (rw, "read", "pumps", W, False), (rw, "admin", None, None, False),
        (ro, "read", "scans", H, True), (ro, "write", "scans", H, False), (ro, "read", "other", H, False),
        (ro, "read", None, None, True), (ro, "read", "scans", W, False),
        (admin, "admin", None, None, True), (admin, "write", "pumps", W, True), (admin, "read", "scans", H, False),
        (gone, "read", "pumps", W, False), (gone, "admin", None, None, False),
    ]
    for key, action, bucket, owner, expected in table:
        assert permits(doc, key.key_id, action, bucket, owner=owner) is expected, (key.role, action, bucket, owner)
    assert not permits(doc, "MK000000000000000000", "read")
    with pytest.raises(ValueError, match="owner"):
        permits(doc, rw.key_id, "read", "scans")


@settings(max_examples=examples(0.6), deadline=None)
@given(doc=docs(), action=st.sampled_from(["read", "write", "admin"]), bucket=st.none() | bucket_names,
       data=st.data())
def test_permits_matches_its_rules(doc: AccessDoc, action: str, bucket: str | None, data: st.DataObject) -> None:
    if not doc.keys:
        return
    key = data.draw(st.sampled_from(doc.keys))
    owner = None if bucket is None else data.draw(st.sampled_from([t.name for t in doc.tenants]))
    got = permits(doc, key.key_id, action, bucket, owner=owner)  # type: ignore[arg-type]
    if key.revoked:
        assert not got
    elif action == "admin":
        assert got == (key.role == "admin")
    elif action == "write" and key.role == "read-only":
        assert not got
    elif bucket is None:
        assert got
    else:
        assert got == (owner == key.tenant and (not key.buckets or bucket in key.buckets))
    # a key never reaches another tenant's bucket (an admin action names no bucket: see above)
    if got and bucket is not None and action != "admin":
        assert owner == key.tenant


# ---------------------------------------------------------------------------------------------------
# The codec


@settings(max_examples=examples(0.8), deadline=None)
@given(doc=docs())
def test_codec_round_trip_is_exact_and_deterministic(doc: AccessDoc) -> None:
    text = encode_access(doc)
    assert parse_access(text) == doc
    assert encode_access(parse_access(text)) == text
    body = json.loads(text)
    assert body["format"] == "maillage-access/1" and body["version"] == doc.version


def test_the_document_is_signed_with_its_own_domain() -> None:
    doc, *_ = _hospital()
    signer = LayoutSigner.generate()
    text = encode_access(doc)
    signature = signer.sign(doc.version, text, kind="access")
    signer.verifier().verify(doc.version, text, signature, kind="access")
    with pytest.raises(LayoutAuthError):
        signer.verifier().verify(doc.version, text, signature, kind="layout")  # not a layout signature


def _body() -> dict:
    doc, *_ = _hospital()
    return json.loads(encode_access(doc))


@pytest.mark.parametrize("edit, message", [
    (lambda b: b.update(format="maillage-access/9"), "format"),
    (lambda b: b.pop("keys"), "missing keys"),
    (lambda b: b.update(extra=1), "unknown field"),
    (lambda b: b.update(version=-1), "version"),
    (lambda b: b.update(version=True), "version"),
    (lambda b: b.update(version=2**64), "version"),
    (lambda b: b.update(tenants={}), "tenants: must be a list"),
    (lambda b: b["tenants"].append(dict(b["tenants"][0])), "duplicates"),
    (lambda b: b["tenants"].reverse(), "sorted"),
    (lambda b: b["tenants"][0].update(name=""), "tenant name"),
    (lambda b: b["keys"][0].update(role="root"), "role"),
    (lambda b: b["keys"][0].update(revoked="no"), "revoked"),
    (lambda b: b["keys"][0].update(id="AKIA0000000000000000"), "access key id"),
    (lambda b: b["keys"][0].update(tenant="nobody"), "does not exist"),
    (lambda b: b["keys"][0].update(secret="short"), "secret must be"),
    (lambda b: b["keys"][0].update(buckets=["b", "a"]), "bucket name|sorted"),
    (lambda b: b["keys"][0].update(buckets=["zz1", "aa1"]), "sorted"),
    (lambda b: b["keys"][0].update(created_ms=1.5), "created_ms"),
    (lambda b: b["keys"][0].pop("secret"), "missing secret"),
    (lambda b: b["keys"].append(dict(b["keys"][0])), "duplicates"),
    (lambda b: [k.update(secret="A" * 40) for k in b["keys"] if k["revoked"]], "revoked key keeps no secret"),
])
def test_parse_refuses_invalid_documents(edit, message: str) -> None:
    body = _body()
    edit(body)
    with pytest.raises(AccessError, match=message):
        parse_access(json.dumps(body))


def test_parse_refuses_non_json_and_never_echoes_a_secret() -> None:
    for text in ("", "[]", "{", "null"):
        with pytest.raises(AccessError):
            parse_access(text)
    body = _body()
    body["keys"][0]["secret"] = "x" * 39 + "!"
    with pytest.raises(AccessError) as info:
        parse_access(json.dumps(body))
    assert "x" * 39 not in str(info.value)
