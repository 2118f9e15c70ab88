"""Request authentication: every SDK/CLI call proves it holds an access key's secret, for one request
to one node, once.

The scheme is AWS Signature Version 4 in its gRPC form, so the S3 front door reuses the key handling
(`signing_key`, `string_to_sign`) unchanged and users meet the key id / secret pair they know from
S3 tools. A call carries four metadata entries::

    x-maillage-date:   20260101T120000Z
    x-maillage-nonce:  <32 hex digits, random per call>
    x-maillage-target: <node id the client meant to reach, or "*">
    authorization:     AWS4-HMAC-SHA256 Credential=<key id>/20260101/maillage/grpc/aws4_request,
                       SignedHeaders=x-maillage-date;x-maillage-nonce;x-maillage-target,
                       Signature=<64 hex digits>

and the signature is SigV4's, over this canonical request::

    POST
    <gRPC method path>                       e.g. /maillage.v1.Objects/HeadObject
    credential=<key id>
    x-maillage-date:<timestamp>
    x-maillage-nonce:<nonce>
    x-maillage-target:<target>

    x-maillage-date;x-maillage-nonce;x-maillage-target
    <hex SHA-256 of the request body>

Why each part: a signature is captured by whoever sees a call in clear, which for the mesh means a
compromised node acting as coordinator. The method path stops it being replayed as another method;
the body digest (the serialized request message of a unary call, the header message of a
client-streaming PutObject, whose trailer's BLAKE3 the node checks against the data) as another
request of the same method (another object, another key to delete); the target as the same request
on another node. The target is a node id; "*" (any node) only where a client cannot know which node
an endpoint is before its first call, and a node takes it only for `CLUSTER_WIDE` methods, reads
whose replay tells a node of the mesh nothing it cannot ask itself (GetInfo, GetLayout). The key id
is signed too (in the query line, as SigV4's presigned URLs sign their credential).

A node takes a signature only within `DEFAULT_WINDOW` of its own clock, and only once: its replay
cache (`maillage.node.trust.replays`) remembers every signature it admitted until it leaves the
window. The nonce keeps two identical requests of one client in one second apart. The secret itself
never travels and never appears in an error message.

A node holds no secret: it verifies with the derived key of the signature's (key id, date, region,
service), which the admin publishes for a window of dates (`maillage.proto.trust.node_access`);
`verify` takes a lookup of those keys (`SigningKeyOf`) that raises `NoSigningKey` when the node has
none. `from_secrets` builds such a lookup from secrets, for clients and tests, never for a node.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ALGORITHM", "ANY_NODE", "AUTH_HEADER", "CLUSTER_WIDE", "DATE_HEADER", "NONCE_HEADER", "REGION", "SERVICE",
    "SIGNED_HEADERS", "TARGET_HEADER", "FailureKind", "NoSigningKey", "RequestAuthError", "SigningKeyOf", "Verified",
    "body_digest", "canonical_request", "credential_scope", "from_secrets", "sign", "signing_key", "string_to_sign",
    "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
REGION = "maillage"
SERVICE = "grpc"
DATE_HEADER = "x-maillage-date"
NONCE_HEADER = "x-maillage-nonce"
TARGET_HEADER = "x-maillage-target"
AUTH_HEADER = "authorization"
SIGNED_HEADERS = f"{DATE_HEADER};{NONCE_HEADER};{TARGET_HEADER}"
# Clocks of clients and nodes agree within a minute (NTP); a replay cache entry lives this long.
DEFAULT_WINDOW = datetime.timedelta(seconds=60)

#: The target of a call whose client does not know yet which node it reaches (its first call).
ANY_NODE = "*"
#: The only methods a node admits with target ANY_NODE: reads that any node of the mesh may make
#: itself, so replaying them on another node gains nothing.
CLUSTER_WIDE = frozenset({"/maillage.v1.Cluster/GetInfo", "/maillage.v1.Cluster/GetLayout"})

FailureKind = Literal["missing", "malformed", "unknown_key", "bad_signature", "clock_skew", "wrong_target",
                      "replayed", "no_verification_key"]

_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_RE = re.compile(r"\d{8}T\d{6}Z\Z")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
_NONCE = re.compile(r"[0-9a-f]{32}\Z")
_TARGET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z|\*\Z")
_METHOD = re.compile(r"/[\x21-\x7e]{1,1023}\Z")
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key_id>[^/,\s]{1,128})/(?P<date>\d{8})/(?P<region>[^/,\s]+)"
    r"/(?P<service>[^/,\s]+)/aws4_request, ?SignedHeaders=(?P<headers>[^,\s]+), ?Signature=(?P<sig>[0-9a-f]{64})\Z")

Body = bytes | bytearray | memoryview


class RequestAuthError(Exception):
    """A request whose credentials are missing, malformed, unknown, wrong, out of the time window,
    meant for another node, or already used.

    `kind` lets the node map it to a status (UNAUTHENTICATED for all) and tests tell the cases
    apart; the message is meant for the user and never contains a secret."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message


class NoSigningKey(LookupError):
    """A `SigningKeyOf` lookup found no derived key: `kind` "unknown_key" (no active key of this id)
    or "no_verification_key" (the key is active, but the node holds no derived key for that date or
    scope: outside the published window, or a region not published); the message says which."""

    def __init__(self, kind: Literal["unknown_key", "no_verification_key"], message: str) -> None:
        super().__init__(message)
        self.kind: Literal["unknown_key", "no_verification_key"] = kind
        self.message = message


#: (key id, yyyymmdd, region, service) -> SigV4's derived signing key, or NoSigningKey.
SigningKeyOf = Callable[[str, str, str, str], bytes]


def from_secrets(secret_of: Callable[[str], str | None]) -> SigningKeyOf:
    """A `SigningKeyOf` deriving keys from secrets (`secret_of`: None for an unknown key), for
    clients and tests; a node verifies with published derived keys only."""
    def lookup(key_id: str, date: str, region: str, service: str) -> bytes:
        secret = secret_of(key_id)
        if secret is None:
            raise NoSigningKey("unknown_key", f"access key {key_id!r} is unknown or revoked")
        return signing_key(secret, date, region, service)
    return lookup


@dataclass(frozen=True)
class Verified:
    """A verified signature: who signed, when (the signed time), and the signature (what a replay
    cache remembers)."""

    key_id: str
    when: datetime.datetime
    signature: bytes


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


def body_digest(body: Body) -> str:
    """The hex SHA-256 of a request body, where SigV4 puts the payload hash."""
    return hashlib.sha256(body).hexdigest()


def canonical_request(method: str, key_id: str, timestamp: str, nonce: str, target: str, digest: str) -> str:
    """The gRPC call in SigV4's canonical-request shape: verb, path, the key id as the query, the
    signed headers, their list, and the body's SHA-256 (`body_digest`)."""
    return "\n".join(("POST", method, f"credential={key_id}", f"{DATE_HEADER}:{timestamp}",
                      f"{NONCE_HEADER}:{nonce}", f"{TARGET_HEADER}:{target}", "", SIGNED_HEADERS, digest))


# ---------------------------------------------------------------------------------------------------
# Client side


def sign(method: str, key_id: str, secret: str, *, target: str, body: Body,
         now: datetime.datetime | None = None, nonce: str | None = None) -> tuple[tuple[str, str], ...]:
    """The metadata entries authenticating one call of `method` (e.g. "/maillage.v1.Objects/GetObject")
    to node `target` (ANY_NODE: not known, CLUSTER_WIDE methods only) with request bytes `body`
    exactly as sent (the first message of a client stream)."""
    if not _METHOD.match(method):
        raise ValueError(f"method {method[:80]!r}: must be a gRPC method path like '/package.Service/Method'")
    if not _KEY_ID.match(key_id):
        raise ValueError(f"access key id {key_id[:40]!r}: use 1-128 characters among A-Z, a-z, 0-9, '.', '_', '-'")
    if not secret:
        raise ValueError("access key secret is empty")
    if not _TARGET.match(target):
        raise ValueError(f"target {target[:80]!r}: must be a node id or {ANY_NODE!r}")
    nonce = secrets.token_hex(16) if nonce is None else nonce
    if not _NONCE.match(nonce):
        raise ValueError("nonce: must be 32 lower-case hex digits")
    timestamp = _utc(now).strftime(_TIMESTAMP)
    date = timestamp[:8]
    scope = credential_scope(date)
    canonical = canonical_request(method, key_id, timestamp, nonce, target, body_digest(body))
    signature = _signature(secret, date, timestamp, scope, canonical)
    authorization = (f"{ALGORITHM} Credential={key_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, "
                     f"Signature={signature}")
    return ((DATE_HEADER, timestamp), (NONCE_HEADER, nonce), (TARGET_HEADER, target), (AUTH_HEADER, authorization))


# ---------------------------------------------------------------------------------------------------
# Node side


def verify(method: str, metadata: Iterable[tuple[str, str | bytes]], signing_key_of: SigningKeyOf,
           *, node_id: str, body: Body, now: datetime.datetime | None = None,
           window: datetime.timedelta = DEFAULT_WINDOW) -> Verified:
    """The verified signature of this call of `method` with request bytes `body`, received by node
    `node_id`, or `RequestAuthError`.

    `metadata` is the call's invocation metadata; `signing_key_of` gives the derived key of (key
    id, date, REGION, SERVICE), or raises NoSigningKey (unknown or revoked key, or no published key
    for that date). Checks run from cheapest to dearest: shape, time window, target, key,
    signature. Whether the signature was seen before is the caller's replay cache's to say."""
    values: dict[str, list[str]] = {DATE_HEADER: [], NONCE_HEADER: [], TARGET_HEADER: [], AUTH_HEADER: []}
    for key, value in metadata:
        found = values.get(key.lower())
        if found is not None:
            found.append(_text(value))
    if not values[AUTH_HEADER]:
        raise RequestAuthError("missing", "request carries no access key signature ('authorization' metadata); "
                                          "give an access key id and secret")
    for name, found in values.items():
        if len(found) > 1:
            raise RequestAuthError("malformed", f"request carries more than one {name!r} metadata entry")
        if not found:
            raise RequestAuthError("malformed", f"request signature has no {name!r} metadata entry (signed "
                                                "by an older client? this node needs the target and nonce)")
    timestamp, nonce, target = values[DATE_HEADER][0], values[NONCE_HEADER][0], values[TARGET_HEADER][0]
    if not _TIMESTAMP_RE.match(timestamp):
        raise RequestAuthError("malformed", f"'{DATE_HEADER}' {timestamp[:40]!r} is not a time like 20260101T120000Z")
    try:
        when = datetime.datetime.strptime(timestamp, _TIMESTAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise RequestAuthError("malformed", f"'{DATE_HEADER}' {timestamp!r} is not a valid date and time") from None
    if not _NONCE.match(nonce):
        raise RequestAuthError("malformed", f"'{NONCE_HEADER}' is not 32 lower-case hex digits")
    if not _TARGET.match(target):
        raise RequestAuthError("malformed", f"'{TARGET_HEADER}' {target[:70]!r} is not a node id or {ANY_NODE!r}")
    m = _AUTHORIZATION.match(values[AUTH_HEADER][0])
    if m is None:
        raise RequestAuthError("malformed", "'authorization' metadata is not of the form 'AWS4-HMAC-SHA256 "
                                            "Credential=<key id>/<date>/maillage/grpc/aws4_request, "
                                            f"SignedHeaders={SIGNED_HEADERS}, Signature=<hex>'")
    key_id, date = m["key_id"], m["date"]
    if (m["region"], m["service"]) != (REGION, SERVICE):
        raise RequestAuthError("malformed", f"signature scope {m['region'][:40]!r}/{m['service'][:40]!r} is not "
                                            f"{REGION!r}/{SERVICE!r}")
    if m["headers"] != SIGNED_HEADERS:
        raise RequestAuthError("malformed", f"SignedHeaders must be {SIGNED_HEADERS!r}")
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
    if target == ANY_NODE and method not in CLUSTER_WIDE:
        raise RequestAuthError("wrong_target", f"{method[:120]} must be signed for the node it is sent to (node "
                                               f"{node_id}), not for any node")
    if target not in (ANY_NODE, node_id):
        raise RequestAuthError("wrong_target", f"request signed for node {target!r}, sent to node {node_id!r}")
    try:
        derived = signing_key_of(key_id, date, REGION, SERVICE)
    except NoSigningKey as missing:
        raise RequestAuthError(missing.kind, missing.message) from None
    expected = _signature_with(derived, timestamp, credential_scope(date),
                               canonical_request(method, key_id, timestamp, nonce, target, body_digest(body)))
    if not hmac.compare_digest(expected.encode("ascii"), m["sig"].encode("ascii")):
        raise RequestAuthError("bad_signature", f"signature of access key {key_id!r} does not match this request "
                                                "(wrong secret for this key id, or a request changed after signing)")
    return Verified(key_id, when, bytes.fromhex(m["sig"]))


# ---------------------------------------------------------------------------------------------------


def _signature(secret: str, date: str, timestamp: str, scope: str, canonical: str) -> str:
    return _signature_with(signing_key(secret, date), timestamp, scope, canonical)


def _signature_with(derived: bytes, timestamp: str, scope: str, canonical: str) -> str:
    return hmac.new(derived, string_to_sign(timestamp, scope, canonical).encode("utf-8"), hashlib.sha256).hexdigest()


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
