"""Request authentication: every SDK/CLI call proves it holds an access key's secret.

The scheme is AWS Signature Version 4 in its gRPC form, so the S3 front door can reuse the key
handling (`signing_key`, `string_to_sign`) unchanged and users meet the key id / secret pair they
know from S3 tools. A call carries two metadata entries::

    x-maillage-date: 20260101T120000Z
    authorization:   AWS4-HMAC-SHA256 Credential=<key id>/20260101/maillage/grpc/aws4_request,
                     SignedHeaders=x-maillage-date, Signature=<64 hex digits>

The signature covers the full gRPC method path, the key id and the timestamp; a node accepts it only
within a window around its own clock, which bounds replay. The request body is not signed: the TLS
connection already protects it, and signing it would mean buffering bulk streams. The secret itself
never travels and never appears in an error message.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from typing import Literal

__all__ = [
    "ALGORITHM", "AUTH_HEADER", "DATE_HEADER", "REGION", "SERVICE", "FailureKind", "RequestAuthError",
    "canonical_request", "credential_scope", "sign", "signing_key", "string_to_sign", "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
REGION = "maillage"
SERVICE = "grpc"
DATE_HEADER = "x-maillage-date"
AUTH_HEADER = "authorization"
DEFAULT_WINDOW = datetime.timedelta(minutes=5)

FailureKind = Literal["missing", "malformed", "unknown_key", "bad_signature", "clock_skew"]

_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_RE = re.compile(r"\d{8}T\d{6}Z\Z")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
_METHOD = re.compile(r"/[\x21-\x7e]{1,1023}\Z")
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key_id>[^/,\s]{1,128})/(?P<date>\d{8})/(?P<region>[^/,\s]+)"
    r"/(?P<service>[^/,\s]+)/aws4_request, ?SignedHeaders=(?P<headers>[^,\s]+), ?Signature=(?P<sig>[0-9a-f]{64})\Z")


class RequestAuthError(Exception):
    """A request whose credentials are missing, malformed, unknown, wrong or out of the time window.

    `kind` lets the node map it to a status (UNAUTHENTICATED for all five) and tests tell the cases
    apart; the message is meant for the user and never contains a secret."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message


# ---------------------------------------------------------------------------------------------------
# SigV4 pieces, shared with the S3 front door


def signing_key(secret: str, date: str, region: str = REGION, service: str = SERVICE) -> bytes:
    """SigV4's derived key: kDate = HMAC("AWS4" + secret, yyyymmdd), then region, service, "aws4_request"."""
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def credential_scope(date: str, region: str = REGION, service: str = SERVICE) -> str:
    return f"{date}/{region}/{service}/aws4_request"


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    """SigV4's string to sign: algorithm, timestamp, scope and the SHA-256 of the canonical request."""
    return "\n".join((ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()))


def canonical_request(method: str, key_id: str, timestamp: str) -> str:
    """The gRPC call in SigV4's canonical-request shape: verb, path, empty query, the signed header,
    the signed header list, and the key id where SigV4 puts the payload hash."""
    return "\n".join(("POST", method, "", f"{DATE_HEADER}:{timestamp}", "", DATE_HEADER, key_id))


# ---------------------------------------------------------------------------------------------------
# Client side


def sign(method: str, key_id: str, secret: str, now: datetime.datetime | None = None) -> tuple[tuple[str, str], ...]:
    """The metadata entries authenticating one call of `method` (e.g. "/maillage.v1.Objects/GetObject")."""
    if not _METHOD.match(method):
        raise ValueError(f"method {method[:80]!r}: must be a gRPC method path like '/package.Service/Method'")
    if not _KEY_ID.match(key_id):
        raise ValueError(f"access key id {key_id[:40]!r}: use 1-128 characters among A-Z, a-z, 0-9, '.', '_', '-'")
    if not secret:
        raise ValueError("access key secret is empty")
    timestamp = _utc(now).strftime(_TIMESTAMP)
    date = timestamp[:8]
    scope = credential_scope(date)
    signature = _signature(secret, date, timestamp, scope, canonical_request(method, key_id, timestamp))
    authorization = (f"{ALGORITHM} Credential={key_id}/{scope}, SignedHeaders={DATE_HEADER}, "
                     f"Signature={signature}")
    return ((DATE_HEADER, timestamp), (AUTH_HEADER, authorization))


# ---------------------------------------------------------------------------------------------------
# Node side


def verify(method: str, metadata: Iterable[tuple[str, str | bytes]], secret_of: Callable[[str], str | None],
           now: datetime.datetime | None = None, window: datetime.timedelta = DEFAULT_WINDOW) -> str:
    """The access key id that signed this call of `method`, or `RequestAuthError`.

    `metadata` is the call's invocation metadata; `secret_of` gives a key's secret, or None for an
    unknown or revoked key. Checks run from cheapest to dearest: shape, time window, key, signature."""
    date_values: list[str] = []
    auth_values: list[str] = []
    for key, value in metadata:
        name = key.lower()
        if name == DATE_HEADER:
            date_values.append(_text(value))
        elif name == AUTH_HEADER:
            auth_values.append(_text(value))
    if not auth_values:
        raise RequestAuthError("missing", "request carries no access key signature ('authorization' metadata); "
                                          "give an access key id and secret")
    if len(auth_values) > 1 or len(date_values) > 1:
        raise RequestAuthError("malformed", "request carries more than one 'authorization' or "
                                            f"'{DATE_HEADER}' metadata entry")
    if not date_values:
        raise RequestAuthError("malformed", f"request signature has no '{DATE_HEADER}' metadata entry")
    timestamp = date_values[0]
    if not _TIMESTAMP_RE.match(timestamp):
        raise RequestAuthError("malformed", f"'{DATE_HEADER}' {timestamp[:40]!r} is not a time like 20260101T120000Z")
    try:
        when = datetime.datetime.strptime(timestamp, _TIMESTAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise RequestAuthError("malformed", f"'{DATE_HEADER}' {timestamp!r} is not a valid date and time") from None
    m = _AUTHORIZATION.match(auth_values[0])
    if m is None:
        raise RequestAuthError("malformed", "'authorization' metadata is not of the form 'AWS4-HMAC-SHA256 "
                                            "Credential=<key id>/<date>/maillage/grpc/aws4_request, "
                                            f"SignedHeaders={DATE_HEADER}, Signature=<hex>'")
    key_id, date = m["key_id"], m["date"]
    if (m["region"], m["service"]) != (REGION, SERVICE):
        raise RequestAuthError("malformed", f"signature scope {m['region'][:40]!r}/{m['service'][:40]!r} is not "
                                            f"{REGION!r}/{SERVICE!r}")
    if m["headers"] != DATE_HEADER:
        raise RequestAuthError("malformed", f"SignedHeaders must be {DATE_HEADER!r}")
    if date != timestamp[:8]:
        raise RequestAuthError("malformed", f"signature scope date {date} differs from '{DATE_HEADER}' {timestamp}")
    if not _KEY_ID.match(key_id):
        raise RequestAuthError("malformed", f"access key id {key_id[:40]!r} is not a valid key id")

    current = _utc(now)
    skew = when - current
    if abs(skew) > window:
        direction = "ahead of" if skew > datetime.timedelta(0) else "behind"
        raise RequestAuthError("clock_skew", f"request time {timestamp} is {_duration(abs(skew))} {direction} the "
                                             f"node's clock {current.strftime(_TIMESTAMP)} (allowed: "
                                             f"{_duration(window)}); check the client's clock")
    secret = secret_of(key_id)
    if secret is None:
        raise RequestAuthError("unknown_key", f"access key {key_id!r} is unknown or revoked")
    expected = _signature(secret, date, timestamp, credential_scope(date),
                          canonical_request(method, key_id, timestamp))
    if not hmac.compare_digest(expected.encode("ascii"), m["sig"].encode("ascii")):
        raise RequestAuthError("bad_signature", f"signature of access key {key_id!r} does not match "
                                                "(wrong secret for this key id?)")
    return key_id


# ---------------------------------------------------------------------------------------------------


def _signature(secret: str, date: str, timestamp: str, scope: str, canonical: str) -> str:
    return hmac.new(signing_key(secret, date), string_to_sign(timestamp, scope, canonical).encode("utf-8"),
                    hashlib.sha256).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def _utc(now: datetime.datetime | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if now.tzinfo is None:
        raise ValueError("now: must be a timezone-aware datetime")
    return now.astimezone(datetime.UTC)


def _text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _duration(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
