"""Request signatures (SigV4 over gRPC): round trips, and every tampering or stale request is refused."""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.proto.trust import requestauth
from maillage.proto.trust.requestauth import RequestAuthError, sign, signing_key, string_to_sign, verify

UTC = datetime.UTC
T0 = datetime.datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY12"
KEY_ID = "MKAAAAAAAAAAAAAAAAAA"
METHOD = "/maillage.v1.Objects/GetObject"

methods = st.from_regex(r"/[a-zA-Z0-9_.]{1,30}/[A-Za-z]{1,30}", fullmatch=True)
key_ids = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True)
secrets_ = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)
instants = st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2099, 12, 31),
                        timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))


def _meta(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(pairs)


def _refusal(method: str, metadata, secret_of, now=T0) -> RequestAuthError:
    with pytest.raises(RequestAuthError) as info:
        verify(method, metadata, secret_of, now=now)
    return info.value


# ---------------------------------------------------------------------------------------------------
# AWS's published SigV4 examples: the key handling is the one the S3 front door needs


def test_signing_key_matches_aws_example() -> None:
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_string_to_sign_matches_aws_example() -> None:
    canonical = "\n".join(["GET", "/", "Action=ListUsers&Version=2010-05-08",
                           "content-type:application/x-www-form-urlencoded; charset=utf-8",
                           "host:iam.amazonaws.com", "x-amz-date:20150830T123600Z", "",
                           "content-type;host;x-amz-date",
                           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"])
    sts = string_to_sign("20150830T123600Z", "20150830/us-east-1/iam/aws4_request", canonical)
    assert sts.endswith("f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59")
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam")
    assert hmac.new(key, sts.encode(), hashlib.sha256).hexdigest() == \
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


# ---------------------------------------------------------------------------------------------------
# Round trip and the shape on the wire


def test_metadata_shape() -> None:
    pairs = sign(METHOD, KEY_ID, SECRET, now=T0)
    assert [k for k, _ in pairs] == ["x-maillage-date", "authorization"]
    date, auth = (v for _, v in pairs)
    assert date == "20260314T150926Z"
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20260314/maillage/grpc/aws4_request, "
                           "SignedHeaders=x-maillage-date, Signature=")
    assert SECRET not in auth


@settings(max_examples=100, deadline=None)
@given(method=methods, key_id=key_ids, secret=secrets_, now=instants,
       offset=st.integers(min_value=-300, max_value=300))
def test_round_trip(method: str, key_id: str, secret: str, now: datetime.datetime, offset: int) -> None:
    pairs = sign(method, key_id, secret, now=now)
    later = now + datetime.timedelta(seconds=offset)
    assert verify(method, pairs, {key_id: secret}.get, now=later) == key_id
    # bytes values and upper-case keys, as some transports hand them over
    as_bytes = [(k.upper(), v.encode()) for k, v in pairs]
    assert verify(method, as_bytes, {key_id: secret}.get, now=later) == key_id


@settings(max_examples=100, deadline=None)
@given(method=methods, other_method=methods, key_id=key_ids, other_key=key_ids, secret=secrets_,
       other_secret=secrets_)
def test_changing_method_key_or_secret_is_refused(method: str, other_method: str, key_id: str, other_key: str,
                                                  secret: str, other_secret: str) -> None:
    pairs = sign(method, key_id, secret, now=T0)
    table = {key_id: secret, other_key: secret if other_key == key_id else other_secret}
    if other_method != method:
        assert _refusal(other_method, pairs, table.get).kind == "bad_signature"
    if other_secret != secret:
        assert _refusal(method, pairs, {key_id: other_secret}.get).kind == "bad_signature"
    if other_key != key_id:
        forged = tuple((k, v.replace(f"Credential={key_id}/", f"Credential={other_key}/")) for k, v in pairs)
        assert _refusal(method, forged, table.get).kind == "bad_signature"
        # a key the node does not know (or revoked)
        assert _refusal(method, forged, {key_id: secret}.get).kind == "unknown_key"


@settings(max_examples=100, deadline=None)
@given(shift=st.integers(min_value=1, max_value=300), data=st.data())
def test_changing_the_date_is_refused(shift: int, data: st.DataObject) -> None:
    pairs = _meta(sign(METHOD, KEY_ID, SECRET, now=T0))
    moved = (T0 + datetime.timedelta(seconds=data.draw(st.sampled_from([shift, -shift])))).strftime("%Y%m%dT%H%M%SZ")
    forged = {**pairs, "x-maillage-date": moved}
    if moved[:8] != pairs["x-maillage-date"][:8]:
        forged["authorization"] = forged["authorization"].replace("/20260314/", f"/{moved[:8]}/")
    assert _refusal(METHOD, forged.items(), {KEY_ID: SECRET}.get).kind == "bad_signature"


@settings(max_examples=100, deadline=None)
@given(position=st.integers(min_value=0, max_value=63), digit=st.sampled_from("0123456789abcdef"))
def test_changing_the_signature_is_refused(position: int, digit: str) -> None:
    pairs = _meta(sign(METHOD, KEY_ID, SECRET, now=T0))
    auth = pairs["authorization"]
    start = auth.index("Signature=") + len("Signature=")
    if auth[start + position] == digit:
        return
    forged = {**pairs, "authorization": auth[:start + position] + digit + auth[start + position + 1:]}
    error = _refusal(METHOD, forged.items(), {KEY_ID: SECRET}.get)
    assert error.kind == "bad_signature"
    assert SECRET not in str(error)


@settings(max_examples=100, deadline=None)
@given(skew=st.integers(min_value=301, max_value=10 * 365 * 86400), sign_=st.sampled_from([1, -1]))
def test_skew_outside_the_window_is_refused(skew: int, sign_: int) -> None:
    pairs = sign(METHOD, KEY_ID, SECRET, now=T0)
    now = T0 + datetime.timedelta(seconds=sign_ * skew)
    error = _refusal(METHOD, pairs, {KEY_ID: SECRET}.get, now=now)
    assert error.kind == "clock_skew"
    assert "clock" in str(error)


def test_window_is_configurable() -> None:
    pairs = sign(METHOD, KEY_ID, SECRET, now=T0)
    later = T0 + datetime.timedelta(seconds=61)
    assert verify(METHOD, pairs, {KEY_ID: SECRET}.get, now=later) == KEY_ID
    with pytest.raises(RequestAuthError) as info:
        verify(METHOD, pairs, {KEY_ID: SECRET}.get, now=later, window=datetime.timedelta(minutes=1))
    assert info.value.kind == "clock_skew"


# ---------------------------------------------------------------------------------------------------
# Missing and malformed credentials get their own kinds, and no message carries the secret


def test_missing_credentials() -> None:
    error = _refusal(METHOD, [], {KEY_ID: SECRET}.get)
    assert error.kind == "missing" and "access key" in error.message
    only_date = sign(METHOD, KEY_ID, SECRET, now=T0)[:1]
    assert _refusal(METHOD, only_date, {KEY_ID: SECRET}.get).kind == "missing"


@pytest.mark.parametrize("edit", [
    lambda m: {"authorization": m["authorization"]},
    lambda m: {**m, "x-maillage-date": "yesterday"},
    lambda m: {**m, "x-maillage-date": "20261341T000000Z"},
    lambda m: {**m, "authorization": "Bearer token"},
    lambda m: {**m, "authorization": m["authorization"].replace("/maillage/", "/us-east-1/")},
    lambda m: {**m, "authorization": m["authorization"].replace("/grpc/", "/s3/")},
    lambda m: {**m, "authorization": m["authorization"].replace("/20260314/", "/20260315/")},
    lambda m: {**m, "authorization": m["authorization"].replace("SignedHeaders=x-maillage-date",
                                                                "SignedHeaders=host")},
    lambda m: {**m, "authorization": m["authorization"][:-1]},
    lambda m: {**m, "authorization": m["authorization"].upper().replace("AWS4-HMAC-SHA256 CREDENTIAL",
                                                                        "AWS4-HMAC-SHA256 Credential")},
])
def test_malformed_credentials(edit) -> None:
    metadata = edit(_meta(sign(METHOD, KEY_ID, SECRET, now=T0)))
    error = _refusal(METHOD, metadata.items(), {KEY_ID: SECRET}.get)
    assert error.kind == "malformed", error.message
    assert SECRET not in error.message


def test_duplicate_entries_are_malformed() -> None:
    pairs = sign(METHOD, KEY_ID, SECRET, now=T0)
    assert _refusal(METHOD, pairs + pairs[1:], {KEY_ID: SECRET}.get).kind == "malformed"


def test_unknown_key_message_names_the_key_not_a_secret() -> None:
    error = _refusal(METHOD, sign(METHOD, KEY_ID, SECRET, now=T0), {}.get)
    assert error.kind == "unknown_key" and KEY_ID in error.message


def test_bad_arguments_to_sign() -> None:
    for method, key_id, secret in (("GetObject", KEY_ID, SECRET), (METHOD, "a/b", SECRET), (METHOD, "", SECRET),
                                   (METHOD, KEY_ID, ""), ("/a\nb", KEY_ID, SECRET)):
        with pytest.raises(ValueError):
            sign(method, key_id, secret, now=T0)
    with pytest.raises(ValueError, match="timezone"):
        sign(METHOD, KEY_ID, SECRET, now=datetime.datetime(2026, 1, 1))


def test_default_clock_is_now() -> None:
    pairs = sign(METHOD, KEY_ID, SECRET)
    assert verify(METHOD, pairs, {KEY_ID: SECRET}.get) == KEY_ID
    assert requestauth.DEFAULT_WINDOW == datetime.timedelta(minutes=5)
