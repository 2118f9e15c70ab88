"""AWS Signature Version 4 of an S3 request, checked against the access document: the Authorization
header, or the query string of a presigned URL.

The derived key of the client's credential scope (key id, date, region, service "s3") is looked up
in the node's published access document (`AccessState.signing_key`): the node holds no secret. A
date outside the published window or a region not published is refused (SignatureDoesNotMatch, or
AuthorizationQueryParametersError for a presigned URL) with words saying the node has no
verification key for it and that the admin must refresh. Every comparison of signatures is
constant-time (`hmac.compare_digest`).

What the request signed as its payload (x-amz-content-sha256) says how its body is checked
(`payload.py`):

- a hex SHA-256: the body must have it;
- UNSIGNED-PAYLOAD (and every presigned URL, as S3 does): nothing, beyond the checksums sent;
- STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]: an aws-chunked body whose every chunk carries a
  signature chained from this request's own signature (the seed), and, with -TRAILER, a signed
  trailer (`Verified.chunk_signature`, `Verified.trailer_signature`);
- STREAMING-UNSIGNED-PAYLOAD-TRAILER (boto3 and aws-cli over HTTPS): aws-chunked, unsigned chunks,
  then a trailing x-amz-checksum-* that must match the decoded bytes.

Presigned URLs carry X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires (at most 604800 s,
a week), X-Amz-SignedHeaders and X-Amz-Signature in the query; the canonical query is every other
parameter. An expired URL is AccessDenied "Request has expired"; a malformed one is
AuthorizationQueryParametersError.

A request with neither (no Authorization header, no presigned query) is anonymous (`ANONYMOUS`):
the rule table lets it only read, and only a bucket whose policy allows it.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, unquote

from maillage.node.s3.errors import S3Error
from maillage.proto.trust.access import KeyInfo
from maillage.proto.trust.requestauth import ALGORITHM, NoSigningKey, credential_scope, string_to_sign

__all__ = ["ANONYMOUS", "CREDENTIAL", "derived_key", "Verified", "UNSIGNED", "STREAMING_SIGNED",
           "STREAMING_SIGNED_TRAILER", "STREAMING_UNSIGNED_TRAILER", "STREAMING_MODES", "MAX_EXPIRES", "Keys",
           "verify", "canonical_request", "canonical_query", "SKEW"]

UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = frozenset({STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER})
SKEW = datetime.timedelta(minutes=15)
MAX_EXPIRES = 7 * 24 * 3600  # a presigned URL lives at most a week, as on S3
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key_id>[^/,\s]{1,128})/(?P<date>\d{8})/(?P<region>[^/,\s]{1,64})"
    r"/(?P<service>[^/,\s]{1,64})/aws4_request,\s*SignedHeaders=(?P<headers>[a-z0-9;._-]{1,2048}),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})\Z")
CREDENTIAL = re.compile(
    r"(?P<key_id>[^/,\s]{1,128})/(?P<date>\d{8})/(?P<region>[^/,\s]{1,64})/(?P<service>[^/,\s]{1,64})/aws4_request\Z")
_SIGNED_HEADERS = re.compile(r"[a-z0-9;._-]{1,2048}\Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}\Z")
_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z\Z")
_EXPIRES = re.compile(r"\d{1,7}\Z")
_HASH = _SIGNATURE
_SPACES = re.compile(r"\s+")
_QUERY_AUTH = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
               "X-Amz-Signature")
_MAX_QUERY_PAIRS = 256


@dataclass(frozen=True)
class Verified:
    """The access key that signed a request (None: an unsigned, anonymous request), and what it
    signed about the body."""

    key: KeyInfo | None
    payload_sha256: str | None  # the hex SHA-256 the body must have, None when the body is not hashed as a whole
    mode: str = UNSIGNED        # x-amz-content-sha256 as signed: a hex SHA-256, UNSIGNED-PAYLOAD or STREAMING-*
    signature: str = ""         # the request's own signature: the seed of a streaming upload's chunk signatures
    signing_key: bytes = field(default=b"", repr=False)  # the derived key of the request's credential scope
    scope: str = ""             # <date>/<region>/s3/aws4_request
    timestamp: str = ""         # x-amz-date (or X-Amz-Date of a presigned URL)
    presigned: bool = False

    @property
    def streaming(self) -> bool:
        """The body is aws-chunked (one of the STREAMING-* modes)."""
        return self.mode in STREAMING_MODES

    @property
    def signed_chunks(self) -> bool:
        return self.mode in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)

    @property
    def has_trailer(self) -> bool:
        return self.mode in (STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)

    def chunk_signature(self, previous: str, chunk_sha256: str) -> str:
        """The signature of one aws-chunked chunk whose data has hex SHA-256 `chunk_sha256`, chained
        from the previous chunk's (the seed signature for the first)."""
        return self._sign("AWS4-HMAC-SHA256-PAYLOAD", previous, EMPTY_SHA256, chunk_sha256)

    def trailer_signature(self, previous: str, trailer_sha256: str) -> str:
        """The signature of the trailer (its canonical `name:value\\n` lines hashed), chained from the
        final chunk's."""
        return self._sign("AWS4-HMAC-SHA256-TRAILER", previous, trailer_sha256)

    def _sign(self, algorithm: str, *lines: str) -> str:
        text = "\n".join((algorithm, self.timestamp, self.scope, *lines))
        return hmac.new(self.signing_key, text.encode(), hashlib.sha256).hexdigest()


ANONYMOUS = Verified(key=None, payload_sha256=None)


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a raw (still percent-encoded) query string, decoded once; '+' is
    kept as '+' (SigV4 clients encode a space as %20)."""
    parts = raw_query.split("&", _MAX_QUERY_PAIRS) if raw_query else []
    if len(parts) > _MAX_QUERY_PAIRS:
        raise S3Error("InvalidArgument", f"more than {_MAX_QUERY_PAIRS} query parameters")
    pairs = []
    for part in parts:
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_query(raw_query: str, exclude: frozenset[str] = frozenset()) -> str:
    pairs = [(_encode(n), _encode(v)) for n, v in query_pairs(raw_query) if n not in exclude]
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def canonical_request(method: str, path: str, raw_query: str, headers: Mapping[str, Iterable[str]],
                      signed: list[str], payload_hash: str, *, exclude: frozenset[str] = frozenset()) -> str:
    """SigV4's canonical request of an S3 call (`path` decoded; S3 encodes it once, '/' kept)."""
    lines = [f"{name}:{','.join(_SPACES.sub(' ', v.strip()) for v in headers.get(name, ()))}" for name in signed]
    return "\n".join((method, quote(path, safe="/-_.~"), canonical_query(raw_query, exclude), *lines, "",
                      ";".join(signed), payload_hash))


class Keys(Protocol):
    """What verifying needs of the node's access document (`AccessState`)."""

    def key(self, key_id: str) -> KeyInfo | None: ...         # the active key, None if unknown or revoked

    def signing_key(self, key_id: str, date: str, region: str, service: str) -> bytes: ...  # or NoSigningKey


def verify(method: str, path: str, raw_query: str, headers: Mapping[str, Iterable[str]],
           keys: Keys, now: datetime.datetime | None = None) -> Verified:
    """The access key that signed this request (`ANONYMOUS`: none did), or S3Error. `raw_query` is the query string as
    received (percent-encoded); `headers`: lower-case name -> values; `keys` gives the active key
    and its published derived keys."""
    now = now or datetime.datetime.now(datetime.UTC)
    authorization = list(headers.get("authorization", ()))
    if any(name in _QUERY_AUTH for name, _ in query_pairs(raw_query)):
        if authorization:
            raise S3Error("InvalidArgument", "only one authentication mechanism is allowed: the X-Amz-Signature "
                                             "query parameters or the Authorization header, not both")
        return _verify_presigned(method, path, raw_query, headers, keys, now)
    if not authorization:
        if "Signature=" in raw_query and "AWSAccessKeyId=" in raw_query:
            raise S3Error("InvalidRequest", "this URL is presigned with Signature Version 2, which is not supported: "
                                            f"presign with {ALGORITHM} (SigV4; boto3: signature_version='s3v4')")
        return ANONYMOUS
    if len(authorization) > 1:
        raise S3Error("InvalidArgument", "more than one Authorization header")
    if not authorization[0].startswith(ALGORITHM + " "):
        raise S3Error("InvalidRequest", "the authorization mechanism you have provided is not supported: "
                                        f"use {ALGORITHM} (Signature Version 4)")
    match = _AUTHORIZATION.match(authorization[0].strip())
    if match is None:
        raise S3Error("InvalidArgument", "malformed Authorization header (expected AWS4-HMAC-SHA256 "
                                         "Credential=..., SignedHeaders=..., Signature=...)")
    if match["service"] != "s3":
        raise S3Error("SignatureDoesNotMatch", f"the credential scope names service {match['service']!r}, not 's3'")
    signed = match["headers"].split(";")
    if signed != sorted(signed) or "host" not in signed:
        raise S3Error("SignatureDoesNotMatch", "SignedHeaders must be sorted and include host")
    timestamp = _one(headers, "x-amz-date")
    when = _parse_time(timestamp)
    if when is None:
        raise S3Error("AccessDenied", "x-amz-date is missing or not like 20260101T120000Z")
    if timestamp[:8] != match["date"]:
        raise S3Error("SignatureDoesNotMatch", "the credential scope's date is not the x-amz-date's")
    if abs(now - when) > SKEW:
        raise S3Error("RequestTimeTooSkewed", f"the request time {timestamp} is more than "
                                              f"{int(SKEW.total_seconds() // 60)} minutes from the node's clock")
    payload_hash = _one(headers, "x-amz-content-sha256")
    if payload_hash.startswith("STREAMING-") and payload_hash not in STREAMING_MODES:
        if "ECDSA" in payload_hash:
            raise S3Error("NotImplemented", f"{payload_hash[:64]} (SigV4a) is not supported: sign with SigV4")
        raise S3Error("InvalidArgument", f"unknown x-amz-content-sha256 {payload_hash[:64]!r}")
    if payload_hash != UNSIGNED and payload_hash not in STREAMING_MODES and not _HASH.match(payload_hash):
        raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a hex SHA-256 or "
                                         "a STREAMING-* aws-chunked mode")
    canonical = canonical_request(method, path, raw_query, headers, signed, payload_hash)
    key, derived, scope = _signed_by(keys, match, timestamp, canonical, match["sig"],
                                     "the request signature does not match: check the secret key and the "
                                     "signing method", "SignatureDoesNotMatch")
    hashed = payload_hash if _HASH.match(payload_hash) else None
    return Verified(key, hashed, mode=payload_hash, signature=match["sig"], signing_key=derived, scope=scope,
                    timestamp=timestamp)


def _query_error(message: str) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", message)


def _verify_presigned(method: str, path: str, raw_query: str, headers: Mapping[str, Iterable[str]],
                      keys: Keys, now: datetime.datetime) -> Verified:
    params: dict[str, str] = {}
    for name, value in query_pairs(raw_query):
        if name in _QUERY_AUTH:
            if name in params:
                raise _query_error(f"{name} is given more than once")
            params[name] = value
    missing = [name for name in _QUERY_AUTH if name not in params]
    if missing:
        raise _query_error(f"a presigned URL needs {', '.join(_QUERY_AUTH)}; missing: {', '.join(missing)}")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error(f"X-Amz-Algorithm only supports {ALGORITHM}")
    credential = CREDENTIAL.match(params["X-Amz-Credential"])
    if credential is None:
        raise _query_error("X-Amz-Credential must be <access key id>/<yyyymmdd>/<region>/s3/aws4_request")
    if credential["service"] != "s3":
        raise _query_error(f"X-Amz-Credential names service {credential['service']!r}, not 's3'")
    timestamp = params["X-Amz-Date"]
    when = _parse_time(timestamp)
    if when is None:
        raise _query_error("X-Amz-Date must be like 20260101T120000Z")
    if timestamp[:8] != credential["date"]:
        raise _query_error("the date of X-Amz-Credential is not the date of X-Amz-Date")
    if not _EXPIRES.match(params["X-Amz-Expires"]):
        raise _query_error("X-Amz-Expires must be a number of seconds")
    expires = int(params["X-Amz-Expires"])
    if not 1 <= expires <= MAX_EXPIRES:
        raise _query_error(f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds (a week)")
    signed = params["X-Amz-SignedHeaders"].split(";")
    if not _SIGNED_HEADERS.match(params["X-Amz-SignedHeaders"]) or signed != sorted(signed) or "host" not in signed:
        raise _query_error("X-Amz-SignedHeaders must be lower-case header names, sorted, separated by ';', "
                           "and include host")
    if not _SIGNATURE.match(params["X-Amz-Signature"]):
        raise _query_error("X-Amz-Signature must be 64 lower-case hex digits")
    if now > when + datetime.timedelta(seconds=expires):
        raise S3Error("AccessDenied", "Request has expired")
    if when - now > SKEW:
        raise S3Error("AccessDenied", "Request is not valid yet: its X-Amz-Date is later than the node's clock")
    payload_hash = next((v for n, v in query_pairs(raw_query) if n == "X-Amz-Content-Sha256"), UNSIGNED)
    if payload_hash != UNSIGNED and not _HASH.match(payload_hash):
        raise _query_error("X-Amz-Content-Sha256 must be UNSIGNED-PAYLOAD or a hex SHA-256")
    canonical = canonical_request(method, path, raw_query, headers, signed, payload_hash,
                                  exclude=frozenset({"X-Amz-Signature"}))
    key, derived, scope = _signed_by(keys, credential, timestamp, canonical, params["X-Amz-Signature"],
                                     "the presigned URL's signature does not match: it was changed after "
                                     "signing, or signed with another secret", "AuthorizationQueryParametersError")
    return Verified(key, None if payload_hash == UNSIGNED else payload_hash, mode=payload_hash,
                    signature=params["X-Amz-Signature"], signing_key=derived, scope=scope, timestamp=timestamp,
                    presigned=True)


def _signed_by(keys: Keys, credential: re.Match[str], timestamp: str, canonical: str, given: str,
               mismatch: str, no_key_code: str) -> tuple[KeyInfo, bytes, str]:
    """The active key the credential (key_id, date, region, service) names, once its published
    derived key is found to have signed `canonical` as `given`; with that derived key and the
    credential scope."""
    key, derived = derived_key(keys, credential, no_key_code)
    scope = credential_scope(credential["date"], credential["region"], credential["service"])
    expected = hmac.new(derived, string_to_sign(timestamp, scope, canonical).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise S3Error("SignatureDoesNotMatch", mismatch)
    return key, derived, scope


def derived_key(keys: Keys, credential: re.Match[str], no_key_code: str) -> tuple[KeyInfo, bytes]:
    """The active key a credential (`CREDENTIAL`: key_id, date, region, service) names and its
    published derived key. `no_key_code`: the S3 code when the node has none for that date or region."""
    key = keys.key(credential["key_id"])
    if key is None:
        raise S3Error("InvalidAccessKeyId", f"no active access key {credential['key_id']!r}")
    try:
        return key, keys.signing_key(key.key_id, credential["date"], credential["region"], credential["service"])
    except NoSigningKey as missing:
        code = "InvalidAccessKeyId" if missing.kind == "unknown_key" else no_key_code
        raise S3Error(code, missing.message) from None


def _parse_time(timestamp: str) -> datetime.datetime | None:
    if not _TIMESTAMP.match(timestamp):
        return None
    try:
        return datetime.datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def _one(headers: Mapping[str, Iterable[str]], name: str) -> str:
    values = list(headers.get(name, ()))
    return values[0].strip() if len(values) == 1 else ""
