"""Nodes hold derived verification keys, not secrets (issue 22, item 3): the published document, its
window of dates and scopes, verification with it (gRPC and S3), refresh, and what a node's trust dir
and data dir hold."""

from __future__ import annotations

import dataclasses
import datetime
import random
from pathlib import Path
from unittest import mock
from urllib.parse import unquote, urlsplit

import pytest

from maillage.client.admin import (
    init_cluster,
    load_signer,
    node_trust_dir,
    read_access_file,
    signed_node_access,
    write_access_file,
)
from maillage.node.errors import PeerUnavailable
from maillage.node.s3.errors import S3Error
from maillage.node.s3.sigv4 import verify as s3_verify
from maillage.node.trust.access_state import ACCESS_FILE, AccessState, NoNamingKey
from maillage.node.trust.documents import LayoutDoc
from maillage.proto import naming
from maillage.proto.trust import requestauth
from maillage.proto.trust.access import AccessDoc, AccessError, add_tenant, create_key, encode_access, revoke_key
from maillage.proto.trust.node_access import (
    WINDOW_FUTURE_DAYS,
    WINDOW_PAST_DAYS,
    encode_node_access,
    parse_node_access,
    publish,
)
from maillage.proto.trust.requestauth import RequestAuthError, sign
from maillage.proto.trust.signing import LayoutSigner, write_signed

botocore = pytest.importorskip("botocore")
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

TODAY = datetime.date(2026, 12, 5)
NOON = datetime.time(12, tzinfo=datetime.UTC)
POLICIES = ("eu-wide", "france-only")
METHOD = "/maillage.v1.Objects/HeadObject"
NODE = "paris-1"
SIGNER = LayoutSigner.generate()


def at(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, NOON)


def master() -> tuple[AccessDoc, list]:
    rng = random.Random(3)
    doc = add_tenant(AccessDoc(), "hospital", now_ms=1, rng=rng)
    doc = add_tenant(doc, "housing", now_ms=1, rng=rng)
    doc, a = create_key(doc, "hospital", "read-write", now_ms=1, rng=rng)
    doc, b = create_key(doc, "housing", "admin", ("files",), now_ms=1, rng=rng)
    doc, c = create_key(doc, "housing", "read-only", now_ms=1, rng=rng)
    doc = revoke_key(doc, c.key_id)
    return dataclasses.replace(doc, policies=POLICIES), [a, b, c]


def secrets_of(doc: AccessDoc, keys) -> list[str]:
    """Every secret the master holds (the revoked key's too, captured before its revocation)."""
    return [k.secret for k in keys] + [doc.naming_secret, bytes.fromhex(doc.naming_secret).hex().upper()]


def test_the_published_document_holds_no_secret_and_round_trips() -> None:
    doc, keys = master()
    published = publish(doc, today=TODAY)
    text = encode_node_access(published)
    for secret in secrets_of(doc, keys):
        assert secret and secret not in text
    assert "secret" not in text
    assert parse_node_access(text) == published
    assert published.version == doc.version
    assert published.key(keys[0].key_id) == keys[0].info() and published.key(keys[2].key_id) is None
    assert published.first_date == (TODAY - datetime.timedelta(days=WINDOW_PAST_DAYS)).strftime("%Y%m%d")
    assert published.last_date == (TODAY + datetime.timedelta(days=WINDOW_FUTURE_DAYS)).strftime("%Y%m%d")
    assert set(published.scopes) == {("maillage", "grpc"), ("us-east-1", "s3"), ("eu-wide", "s3"),
                                      ("france-only", "s3")}
    # naming: per (tenant, policy) keys, equal to what the secret derives, and nothing else
    assert published.chunk_key("hospital", "france-only") == naming.chunk_key(doc.naming_secret, "hospital",
                                                                              "france-only")
    with pytest.raises(KeyError):
        published.chunk_key("hospital", "germany-only")


def test_a_master_document_is_never_taken_as_a_nodes_document() -> None:
    doc, _ = master()
    with pytest.raises(AccessError, match="master document"):
        parse_node_access(encode_access(doc))


def grpc_call(secret: str, key_id: str, when: datetime.datetime):
    return sign(METHOD, key_id, secret, target=NODE, body=b"body", now=when)


def test_a_grpc_request_signed_for_a_date_in_the_window_verifies_with_the_derived_key_alone() -> None:
    doc, keys = master()
    published = publish(doc, today=TODAY)
    for offset in (-1, 0, 3, WINDOW_FUTURE_DAYS):
        when = at(TODAY + datetime.timedelta(days=offset))
        verified = requestauth.verify(METHOD, grpc_call(keys[0].secret, keys[0].key_id, when), published.signing_key,
                                      node_id=NODE, body=b"body", now=when)
        assert verified.key_id == keys[0].key_id
    # the derived key for date D is SigV4's, nothing more
    date = (TODAY + datetime.timedelta(days=2)).strftime("%Y%m%d")
    assert published.signing_key(keys[0].key_id, date, "maillage", "grpc") == requestauth.signing_key(
        keys[0].secret, date)


@pytest.mark.parametrize("offset", [WINDOW_FUTURE_DAYS + 1, -WINDOW_PAST_DAYS - 1, 40])
def test_a_grpc_request_dated_outside_the_window_is_refused_saying_the_admin_must_refresh(offset) -> None:
    doc, keys = master()
    published = publish(doc, today=TODAY)
    when = at(TODAY + datetime.timedelta(days=offset))   # the node's clock agrees: only the window refuses
    with pytest.raises(RequestAuthError) as refused:
        requestauth.verify(METHOD, grpc_call(keys[0].secret, keys[0].key_id, when), published.signing_key,
                           node_id=NODE, body=b"body", now=when)
    assert refused.value.kind == "no_verification_key"
    assert "no verification key for date" in refused.value.message and "key refresh" in refused.value.message
    assert keys[0].secret not in refused.value.message


def test_a_revoked_or_unknown_key_has_no_derived_key() -> None:
    doc, keys = master()
    published = publish(doc, today=TODAY)
    for key in (keys[2], dataclasses.replace(keys[0], key_id="MKNOSUCHKEY00000000")):
        with pytest.raises(RequestAuthError) as refused:
            requestauth.verify(METHOD, grpc_call(keys[0].secret, key.key_id, at(TODAY)), published.signing_key,
                               node_id=NODE, body=b"body", now=at(TODAY))
        assert refused.value.kind == "unknown_key"


def s3_request(key, region: str, when: datetime.datetime, *, presign: int = 0):
    request = AWSRequest(method="GET", url="https://127.0.0.1:9000/scans/k", data=b"")
    creds = Credentials(key.key_id, key.secret)
    with mock.patch("botocore.auth.get_current_datetime", lambda: when.replace(tzinfo=None)):
        if presign:
            S3SigV4QueryAuth(creds, "s3", region, expires=presign).add_auth(request)
        else:
            S3SigV4Auth(creds, "s3", region).add_auth(request)
    parts = urlsplit(request.url)
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value if isinstance(value, str) else value.decode())
    headers.setdefault("host", [parts.netloc])
    return "GET", unquote(parts.path), parts.query, headers


def test_s3_signatures_verify_in_published_regions_only() -> None:
    doc, keys = master()
    published = publish(doc, today=TODAY)
    for region in ("us-east-1", "france-only"):
        assert s3_verify(*s3_request(keys[0], region, at(TODAY)), published, now=at(TODAY)).key == keys[0].info()
    with pytest.raises(S3Error) as refused:
        s3_verify(*s3_request(keys[0], "eu-west-3", at(TODAY)), published, now=at(TODAY))
    assert refused.value.code == "SignatureDoesNotMatch"
    assert "no verification key for region 'eu-west-3'" in refused.value.message
    assert "--s3-region" in refused.value.message
    # the admin adds the region: published from then on
    wider = publish(dataclasses.replace(doc, s3_regions=("eu-west-3", "us-east-1")), today=TODAY)
    assert s3_verify(*s3_request(keys[0], "eu-west-3", at(TODAY)), wider, now=at(TODAY)).key == keys[0].info()


def test_s3_requests_dated_outside_the_window_are_refused_and_a_weeks_presigned_url_still_reads() -> None:
    doc, keys = master()
    published = publish(doc, today=TODAY)
    late = at(TODAY + datetime.timedelta(days=WINDOW_FUTURE_DAYS + 1))
    with pytest.raises(S3Error) as refused:
        s3_verify(*s3_request(keys[0], "us-east-1", late), published, now=late)
    assert refused.value.code == "SignatureDoesNotMatch" and "no verification key for date" in refused.value.message
    # a URL presigned 6 days before the publication, for a week, reads on the day it is published
    made = at(TODAY - datetime.timedelta(days=6))
    url = s3_request(keys[0], "us-east-1", made, presign=7 * 24 * 3600)
    assert s3_verify(*url, published, now=at(TODAY)).presigned
    old = s3_request(keys[0], "us-east-1", at(TODAY - datetime.timedelta(days=WINDOW_PAST_DAYS + 1)), presign=3600)
    with pytest.raises(S3Error) as refused:
        s3_verify(*old, published, now=at(TODAY - datetime.timedelta(days=WINDOW_PAST_DAYS + 1)))
    assert refused.value.code == "AuthorizationQueryParametersError"


def offered(doc: AccessDoc, today: datetime.date) -> LayoutDoc:
    version, text, signature = signed_node_access(doc, SIGNER, today=today)
    return LayoutDoc(version, text, signature)


def test_refresh_moves_the_window(tmp_path: Path) -> None:
    doc, keys = master()
    state = AccessState(tmp_path / ACCESS_FILE, SIGNER.verifier())
    assert state.offer(offered(doc, TODAY))
    later = TODAY + datetime.timedelta(days=WINDOW_FUTURE_DAYS + 3)
    call = grpc_call(keys[0].secret, keys[0].key_id, at(later))
    with pytest.raises(RequestAuthError, match="no verification key for date"):
        requestauth.verify(METHOD, call, state.signing_key, node_id=NODE, body=b"body", now=at(later))
    # `maillage key refresh` on day TODAY + 5: the next version, its window 5 days further
    refreshed = dataclasses.replace(doc, version=doc.version + 1)
    assert state.offer(offered(refreshed, TODAY + datetime.timedelta(days=5)))
    assert state.version == doc.version + 1
    assert state.doc.first_date == (TODAY + datetime.timedelta(days=5 - WINDOW_PAST_DAYS)).strftime("%Y%m%d")
    assert requestauth.verify(METHOD, call, state.signing_key, node_id=NODE, body=b"body",
                              now=at(later)).key_id == keys[0].key_id
    # a stale publication (an older version) is not taken back
    assert not state.offer(offered(doc, TODAY))


def test_the_node_state_names_chunks_only_with_published_keys(tmp_path: Path) -> None:
    doc, _ = master()
    state = AccessState(tmp_path / ACCESS_FILE, SIGNER.verifier())
    assert state.chunk_key("hospital", "france-only") is None          # nothing published: unkeyed
    state.offer(offered(doc, TODAY))
    assert state.chunk_key("hospital", "france-only") == naming.chunk_key(doc.naming_secret, "hospital",
                                                                          "france-only")
    with pytest.raises(NoNamingKey, match="key refresh") as missing:
        state.chunk_key("hospital", "germany-only")                   # a policy newer than the publication
    assert isinstance(missing.value, PeerUnavailable)


def test_a_stored_master_document_is_not_taken_and_is_deleted_from_the_data_dir(tmp_path: Path) -> None:
    doc, keys = master()
    text = encode_access(doc)
    stored = tmp_path / ACCESS_FILE
    write_signed(stored, text, SIGNER.sign(doc.version, text, kind="access"))   # what an older node kept
    state = AccessState(stored, SIGNER.verifier())
    assert state.version == 0 and not stored.exists()
    with pytest.raises(AccessError):
        state.offer(LayoutDoc(doc.version, text, SIGNER.sign(doc.version, text, kind="access")))


def test_a_nodes_trust_dir_holds_no_secret_of_any_key_nor_the_naming_secret(tmp_path: Path) -> None:
    made = init_cluster(tmp_path / "cluster", "t", extra_tenants=("hospital",))
    signer = load_signer(made.cluster.directory)
    doc, key = create_key(made.access, "hospital", "read-write", now_ms=1)
    write_access_file(made.cluster.directory / ACCESS_FILE, dataclasses.replace(doc, policies=POLICIES), signer)
    master_doc = read_access_file(made.cluster.directory / ACCESS_FILE, signer)
    assert master_doc.naming_secret and key.secret in (made.cluster.directory / ACCESS_FILE).read_text()
    files = node_trust_dir(made.cluster.directory, "paris-1", tmp_path / "trust")
    blobs = [p.read_bytes() for p in files.directory.iterdir() if p.is_file()]
    assert (files.directory / ACCESS_FILE).exists()
    for secret in (made.admin_key.secret, key.secret, master_doc.naming_secret):
        assert not any(secret.encode() in blob for blob in blobs)
    # and what is there is the node's document, for the layout's policies, verifying as kind "access"
    (tmp_path / "data").mkdir()
    state = AccessState(tmp_path / "data" / ACCESS_FILE, signer.verifier(), files.directory / ACCESS_FILE)
    assert state.version == master_doc.version and state.key(key.key_id) == key.info()
    assert state.chunk_key("hospital", "france-only") is not None
