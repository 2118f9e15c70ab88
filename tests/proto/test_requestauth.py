"""Request signatures (SigV4 over gRPC): round trips, and every tampering, stale request or request
meant for another node is refused."""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.proto.trust import requestauth
from maillage.proto.trust.requestauth import RequestAuthError, sign, signing_key, string_to_sign, verify
from maillage.testing.examples import examples

UTC = datetime.UTC
T0 = datetime.datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY12"
KEY_ID = "MKAAAAAAAAAAAAAAAAAA"
METHOD = "/maillage.v1.Objects/HeadObject"
NODE = "paris-1"
BODY = b"\n\x05scans\x12\x0bct-0001.dcm"   # HeadObjectRequest(bucket="scans", key="ct-0001.dcm")

methods = st.from_regex(r"/[a-zA-Z0-9_.]{1,30}/[A-Za-z]{1,30}", fullmatch=True)
key_ids = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True)
secrets_ = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)
targets = st.one_of(st.just("*"), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True))
bodies = st.binary(max_size=200)
instants = st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2099, 12, 31),
                        timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))


def _meta(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(pairs)


def _sign(method: str = METHOD, key_id: str = KEY_ID, secret: str = SECRET, *, target: str = NODE,
          body: bytes = BODY, now=T0) -> tuple[tuple[str, str], ...]:
    return sign(method, key_id, secret, target=target, body=body, now=now)


def _verify(method: str, metadata, secret_of, *, node_id: str = NODE, body: bytes = BODY, now=T0,
            window=requestauth.DEFAULT_WINDOW):
    # nodes verify with published derived keys: here derived from the secrets, as the admin does
    return verify(method, metadata, requestauth.from_secrets(secret_of), node_id=node_id, body=body, now=now,
                  window=window)


def _refusal(method: str, metadata, secret_of, now=T0, *, node_id: str = NODE, body: bytes = BODY) -> RequestAuthError:
    with pytest.raises(RequestAuthError) as info:
        _verify(method, metadata, secret_of, node_id=node_id, body=body, now=now)
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
    pairs = _sign(now=T0)
    assert [k for k, _ in pairs] == ["x-maillage-date", "x-maillage-nonce", "x-maillage-target", "authorization"]
    date, nonce, target, auth = (v for _, v in pairs)
    assert date == "20260314T150926Z" and len(nonce) == 32 and target == NODE
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20260314/maillage/grpc/aws4_request, "
                           "SignedHeaders=x-maillage-date;x-maillage-nonce;x-maillage-target, Signature=")
    assert SECRET not in auth


def test_the_canonical_request_is_the_documented_one() -> None:
    nonce = "0123456789abcdef" * 2
    pairs = dict(sign(METHOD, KEY_ID, SECRET, target=NODE, body=BODY, now=T0, nonce=nonce))
    canonical = "\n".join(["POST", METHOD, f"credential={KEY_ID}", "x-maillage-date:20260314T150926Z",
                           f"x-maillage-nonce:{nonce}", f"x-maillage-target:{NODE}", "",
                           "x-maillage-date;x-maillage-nonce;x-maillage-target", hashlib.sha256(BODY).hexdigest()])
    sts = string_to_sign("20260314T150926Z", "20260314/maillage/grpc/aws4_request", canonical)
    expected = hmac.new(signing_key(SECRET, "20260314"), sts.encode(), hashlib.sha256).hexdigest()
    assert pairs["authorization"].endswith(f"Signature={expected}")


def test_every_call_gets_its_own_nonce_and_signature() -> None:
    one, two = dict(_sign()), dict(_sign())   # the same request in the same second
    assert one["x-maillage-nonce"] != two["x-maillage-nonce"]
    assert one["authorization"] != two["authorization"]


@settings(deadline=None)
@given(method=methods, key_id=key_ids, secret=secrets_, now=instants, target=targets, body=bodies,
       offset=st.integers(min_value=-60, max_value=60))
def test_round_trip(method: str, key_id: str, secret: str, now: datetime.datetime, target: str, body: bytes,
                    offset: int) -> None:
    node_id = NODE if target == "*" else target
    if target == "*":
        method = sorted(requestauth.CLUSTER_WIDE)[len(body) % 2]
    pairs = sign(method, key_id, secret, target=target, body=body, now=now)
    later = now + datetime.timedelta(seconds=offset)
    verified = _verify(method, pairs, {key_id: secret}.get, node_id=node_id, body=body, now=later)
    assert verified.key_id == key_id and verified.when == now
    assert verified.signature.hex() == dict(pairs)["authorization"][-64:]
    # bytes values and upper-case keys, as some transports hand them over
    as_bytes = [(k.upper(), v.encode()) for k, v in pairs]
    assert _verify(method, as_bytes, {key_id: secret}.get, node_id=node_id, body=body, now=later).key_id == key_id


# ---------------------------------------------------------------------------------------------------
# A signature binds the method, the node, the body and the time


@settings(max_examples=examples(2), deadline=None)
@given(method=methods, other_method=methods, target=targets.filter(lambda t: t != "*"), other_target=targets,
       body=bodies, other_body=bodies)
def test_changing_method_target_or_body_is_refused(method: str, other_method: str, target: str, other_target: str,
                                                   body: bytes, other_body: bytes) -> None:
    pairs = sign(method, KEY_ID, SECRET, target=target, body=body, now=T0)
    table = {KEY_ID: SECRET}.get
    assert _verify(method, pairs, table, node_id=target, body=body).key_id == KEY_ID
    if other_method != method:       # replayed as another method
        assert _refusal(other_method, pairs, table, node_id=target, body=body).kind == "bad_signature"
    if other_body != body:           # replayed with another request (another object, another key)
        assert _refusal(method, pairs, table, node_id=target, body=other_body).kind == "bad_signature"
    if other_target not in (target, "*"):
        # sent to another node as it is...
        assert _refusal(method, pairs, table, node_id=other_target, body=body).kind == "wrong_target"
        # ...or with the target rewritten to that node (or to any node)
        for forged_target in (other_target, "*"):
            forged = [(k, forged_target if k == "x-maillage-target" else v) for k, v in pairs]
            kind = _refusal(method, forged, table, node_id=other_target, body=body).kind
            assert kind == ("wrong_target" if forged_target == "*" and method not in requestauth.CLUSTER_WIDE
                            else "bad_signature")


@settings(deadline=None)
@given(method=methods, other_key=key_ids, other_secret=secrets_)
def test_changing_key_or_secret_is_refused(method: str, other_key: str, other_secret: str) -> None:
    pairs = _sign(method)
    if other_secret != SECRET:
        assert _refusal(method, pairs, {KEY_ID: other_secret}.get).kind == "bad_signature"
    if other_key != KEY_ID:
        forged = tuple((k, v.replace(f"Credential={KEY_ID}/", f"Credential={other_key}/")) for k, v in pairs)
        # even a key sharing the secret: the key id is signed
        assert _refusal(method, forged, {KEY_ID: SECRET, other_key: SECRET}.get).kind == "bad_signature"
        # a key the node does not know (or revoked)
        assert _refusal(method, forged, {KEY_ID: SECRET}.get).kind == "unknown_key"


@settings(deadline=None)
@given(shift=st.integers(min_value=1, max_value=60), data=st.data())
def test_changing_the_date_is_refused(shift: int, data: st.DataObject) -> None:
    pairs = _meta(_sign())
    moved = (T0 + datetime.timedelta(seconds=data.draw(st.sampled_from([shift, -shift])))).strftime("%Y%m%dT%H%M%SZ")
    forged = {**pairs, "x-maillage-date": moved}
    if moved[:8] != pairs["x-maillage-date"][:8]:
        forged["authorization"] = forged["authorization"].replace("/20260314/", f"/{moved[:8]}/")
    assert _refusal(METHOD, forged.items(), {KEY_ID: SECRET}.get).kind == "bad_signature"


@settings(max_examples=examples(0.5), deadline=None)
@given(nonce=st.from_regex(r"[0-9a-f]{32}", fullmatch=True))
def test_changing_the_nonce_is_refused(nonce: str) -> None:
    pairs = _meta(_sign())
    if nonce == pairs["x-maillage-nonce"]:
        return
    assert _refusal(METHOD, {**pairs, "x-maillage-nonce": nonce}.items(), {KEY_ID: SECRET}.get).kind == "bad_signature"


def test_any_node_only_for_cluster_wide_reads() -> None:
    assert requestauth.CLUSTER_WIDE == {"/maillage.v1.Cluster/GetInfo", "/maillage.v1.Cluster/GetLayout"}
    for method in requestauth.CLUSTER_WIDE:
        pairs = _sign(method, target="*", body=b"")
        assert _verify(method, pairs, {KEY_ID: SECRET}.get, node_id="lyon-1", body=b"").key_id == KEY_ID
    for method in (METHOD, "/maillage.v1.Objects/DeleteObject", "/maillage.v1.Cluster/PushLayout"):
        error = _refusal(method, _sign(method, target="*"), {KEY_ID: SECRET}.get)
        assert error.kind == "wrong_target" and "for the node it is sent to" in error.message


@settings(deadline=None)
@given(position=st.integers(min_value=0, max_value=63), digit=st.sampled_from("0123456789abcdef"))
def test_changing_the_signature_is_refused(position: int, digit: str) -> None:
    pairs = _meta(_sign())
    auth = pairs["authorization"]
    start = auth.index("Signature=") + len("Signature=")
    if auth[start + position] == digit:
        return
    forged = {**pairs, "authorization": auth[:start + position] + digit + auth[start + position + 1:]}
    error = _refusal(METHOD, forged.items(), {KEY_ID: SECRET}.get)
    assert error.kind == "bad_signature"
    assert SECRET not in str(error)


@settings(deadline=None)
@given(skew=st.integers(min_value=61, max_value=10 * 365 * 86400), sign_=st.sampled_from([1, -1]))
def test_skew_outside_the_window_is_refused(skew: int, sign_: int) -> None:
    pairs = _sign()
    now = T0 + datetime.timedelta(seconds=sign_ * skew)
    error = _refusal(METHOD, pairs, {KEY_ID: SECRET}.get, now=now)
    assert error.kind == "clock_skew"
    assert "clock" in str(error)


def test_window_is_short_and_configurable() -> None:
    assert requestauth.DEFAULT_WINDOW == datetime.timedelta(seconds=60)
    pairs = _sign()
    later = T0 + datetime.timedelta(seconds=31)
    assert _verify(METHOD, pairs, {KEY_ID: SECRET}.get, now=later).key_id == KEY_ID
    with pytest.raises(RequestAuthError) as info:
        _verify(METHOD, pairs, {KEY_ID: SECRET}.get, now=later, window=datetime.timedelta(seconds=30))
    assert info.value.kind == "clock_skew"


# ---------------------------------------------------------------------------------------------------
# Missing and malformed credentials get their own kinds, and no message carries the secret


def test_missing_credentials() -> None:
    error = _refusal(METHOD, [], {KEY_ID: SECRET}.get)
    assert error.kind == "missing" and "access key" in error.message
    without_authorization = _sign()[:3]
    assert _refusal(METHOD, without_authorization, {KEY_ID: SECRET}.get).kind == "missing"


@pytest.mark.parametrize("edit", [
    lambda m: {"authorization": m["authorization"]},
    lambda m: {k: v for k, v in m.items() if k != "x-maillage-target"},   # an older client's signature
    lambda m: {k: v for k, v in m.items() if k != "x-maillage-nonce"},
    lambda m: {**m, "x-maillage-date": "yesterday"},
    lambda m: {**m, "x-maillage-date": "20261341T000000Z"},
    lambda m: {**m, "x-maillage-nonce": "NOT-HEX"},
    lambda m: {**m, "x-maillage-target": "../paris-1"},
    lambda m: {**m, "x-maillage-target": ""},
    lambda m: {**m, "authorization": "Bearer token"},
    lambda m: {**m, "authorization": m["authorization"].replace("/maillage/", "/us-east-1/")},
    lambda m: {**m, "authorization": m["authorization"].replace("/grpc/", "/s3/")},
    lambda m: {**m, "authorization": m["authorization"].replace("/20260314/", "/20260315/")},
    lambda m: {**m, "authorization": m["authorization"].replace(
        "SignedHeaders=x-maillage-date;x-maillage-nonce;x-maillage-target", "SignedHeaders=x-maillage-date")},
    lambda m: {**m, "authorization": m["authorization"][:-1]},
    lambda m: {**m, "authorization": m["authorization"].upper().replace("AWS4-HMAC-SHA256 CREDENTIAL",
                                                                        "AWS4-HMAC-SHA256 Credential")},
])
def test_malformed_credentials(edit) -> None:
    metadata = edit(_meta(_sign()))
    error = _refusal(METHOD, metadata.items(), {KEY_ID: SECRET}.get)
    assert error.kind == "malformed", error.message
    assert SECRET not in error.message


def test_duplicate_entries_are_malformed() -> None:
    pairs = _sign()
    for extra in pairs:
        assert _refusal(METHOD, pairs + (extra,), {KEY_ID: SECRET}.get).kind == "malformed"


def test_unknown_key_message_names_the_key_not_a_secret() -> None:
    error = _refusal(METHOD, _sign(), {}.get)
    assert error.kind == "unknown_key" and KEY_ID in error.message


def test_bad_arguments_to_sign() -> None:
    for method, key_id, secret in (("GetObject", KEY_ID, SECRET), (METHOD, "a/b", SECRET), (METHOD, "", SECRET),
                                   (METHOD, KEY_ID, ""), ("/a\nb", KEY_ID, SECRET)):
        with pytest.raises(ValueError):
            _sign(method, key_id, secret)
    for target in ("", "a b", "-lead", "x" * 64):
        with pytest.raises(ValueError, match="target"):
            _sign(target=target)
    with pytest.raises(ValueError, match="nonce"):
        sign(METHOD, KEY_ID, SECRET, target=NODE, body=BODY, nonce="xyz")
    with pytest.raises(ValueError, match="timezone"):
        _sign(now=datetime.datetime(2026, 1, 1))


def test_default_clock_is_now() -> None:
    pairs = sign(METHOD, KEY_ID, SECRET, target=NODE, body=BODY)
    keys = requestauth.from_secrets({KEY_ID: SECRET}.get)
    assert verify(METHOD, pairs, keys, node_id=NODE, body=BODY).key_id == KEY_ID
