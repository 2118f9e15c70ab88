"""AWS Signature Version 4 of an S3 request's Authorization header, checked against the access document.

The derived key is `maillage.proto.requestauth.signing_key` (region and service as the client's
credential scope names them, the service must be "s3"); the secret is the access key's in the node's
`AccessState`. The payload hash is the one the client signed (x-amz-content-sha256): either
UNSIGNED-PAYLOAD or the hex SHA-256 of the body, which the handler then checks while it reads the
body. Presigned URLs and aws-chunked streaming signatures are later steps (refused as NotImplemented).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from maillage.proto.access import AccessKey
from maillage.proto.requestauth import ALGORITHM, credential_scope, signing_key, string_to_sign

from .errors import S3Error

__all__ = ["Verified", "UNSIGNED", "verify", "canonical_request", "SKEW"]

UNSIGNED = "UNSIGNED-PAYLOAD"
SKEW = datetime.timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key_id>[^/,\s]{1,128})/(?P<date>\d{8})/(?P<region>[^/,\s]{1,64})"
    r"/(?P<service>[^/,\s]{1,64})/aws4_request,\s*SignedHeaders=(?P<headers>[a-z0-9;._-]{1,2048}),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})\Z")
_HASH = re.compile(r"[0-9a-f]{64}\Z")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Verified:
    key: AccessKey
    payload_sha256: str | None  # the hex SHA-256 the body must have, None for UNSIGNED-PAYLOAD


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else ():
        name, _, value = part.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def canonical_request(method: str, path: str, raw_query: str, headers: Mapping[str, Iterable[str]],
                      signed: list[str], payload_hash: str) -> str:
    """SigV4's canonical request of an S3 call (`path` decoded; S3 encodes it once, '/' kept)."""
    lines = [f"{name}:{','.join(_SPACES.sub(' ', v.strip()) for v in headers.get(name, ()))}" for name in signed]
    return "\n".join((method, quote(path, safe="/-_.~"), canonical_query(raw_query), *lines, "",
                      ";".join(signed), payload_hash))


def verify(method: str, path: str, raw_query: str, headers: Mapping[str, Iterable[str]],
           key_of, now: datetime.datetime | None = None) -> Verified:
    """The access key that signed this request, or S3Error. `headers`: lower-case name -> values;
    `key_of(key_id)` is the active key or None."""
    authorization = list(headers.get("authorization", ()))
    if not authorization:
        if "X-Amz-Signature" in raw_query or "X-Amz-Credential" in raw_query:
            raise S3Error("NotImplemented", "presigned URLs are not supported yet; sign the Authorization header")
        raise S3Error("AccessDenied", "anonymous requests are refused: sign the request with an access key (SigV4)")
    if len(authorization) > 1:
        raise S3Error("InvalidArgument", "more than one Authorization header")
    if not authorization[0].startswith(ALGORITHM + " "):
        raise S3Error("InvalidArgument", f"only {ALGORITHM} (Signature Version 4) is supported")
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
    try:
        when = datetime.datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise S3Error("AccessDenied", "x-amz-date is missing or not like 20260101T120000Z") from None
    if timestamp[:8] != match["date"]:
        raise S3Error("SignatureDoesNotMatch", "the credential scope's date is not the x-amz-date's")
    now = now or datetime.datetime.now(datetime.UTC)
    if abs(now - when) > SKEW:
        raise S3Error("RequestTimeTooSkewed", f"the request time {timestamp} is more than "
                                              f"{int(SKEW.total_seconds() // 60)} minutes from the node's clock")
    payload_hash = _one(headers, "x-amz-content-sha256")
    if payload_hash.startswith("STREAMING-"):
        raise S3Error("NotImplemented", f"{payload_hash} (aws-chunked streaming upload) is not supported yet")
    if payload_hash != UNSIGNED and not _HASH.match(payload_hash):
        raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a hex SHA-256")
    key = key_of(match["key_id"])
    if key is None:
        raise S3Error("InvalidAccessKeyId", f"no active access key {match['key_id']!r}")
    scope = credential_scope(match["date"], match["region"], match["service"])
    canonical = canonical_request(method, path, raw_query, headers, signed, payload_hash)
    derived = signing_key(key.secret, match["date"], match["region"], match["service"])
    expected = hmac.new(derived, string_to_sign(timestamp, scope, canonical).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["sig"]):
        raise S3Error("SignatureDoesNotMatch", "the request signature does not match: check the secret key "
                                               "and the signing method")
    return Verified(key, None if payload_hash == UNSIGNED else payload_hash)


def _one(headers: Mapping[str, Iterable[str]], name: str) -> str:
    values = list(headers.get(name, ()))
    return values[0].strip() if len(values) == 1 else ""
