"""The access document nodes hold: derived verification keys, never a secret.

The admin keeps the master document (`access.AccessDoc`: every key's long-term secret and the
naming secret) on the admin machine, in the cluster dir. What it publishes to the nodes
(`publish`) is derived from it and holds no secret a node could replay elsewhere:

- per access key, its id, tenant, role, bucket limits and revoked state, and SigV4's derived
  signing keys (`requestauth.signing_key(secret, date, region, service)`) for every UTC date of
  the window (`WINDOW_PAST_DAYS` before the publication day through `WINDOW_FUTURE_DAYS` after) and
  every scope nodes accept: the gRPC scope (`requestauth.REGION`/`SERVICE`) and service "s3" in
  each published region (the master's `s3_regions`, by default us-east-1, and every policy name of
  the layout, since `aws s3 mb --region POLICY` signs in that region). A revoked key has none.
- per (tenant, policy of the layout), the chunk naming key K(tenant, policy) (`naming.chunk_key`),
  and whether names are keyed at all (the master has a naming secret).

The window reaches 7 days back so that a presigned URL (valid up to a week, signed on the day it
was made) keeps working; 7 days ahead so that a node that hears nothing for a week still verifies.
The admin republishes at least weekly (`maillage key refresh`, a daily timer), and every key edit
republishes. A request signed for a date outside the window, or in a region not published, is
refused with words saying the node has no verification key for it and that the admin must refresh.

What one compromised node learns: these derived keys. With them it can sign as any tenant for the
window's dates in the published scopes: requests dated up to the window's last day (and presigned
URLs dated then, valid up to 7 days more), never a long-term secret; once the admin republishes
after it is cut off, what it holds expires with its window.

Size: per active key, days x scopes x 32 bytes (base64): 15 days, 6 scopes: about 3.8 KB a key.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from maillage.proto import naming
from maillage.proto.trust import requestauth
from maillage.proto.trust.access import (
    _KEY_ID,
    NODE_FORMAT,
    AccessDoc,
    AccessError,
    KeyInfo,
    Tenant,
    _check_bucket_name,
    _check_region,
    _check_tenant_name,
    _list,
    _object,
    _role,
    _str,
    _uint,
)
from maillage.proto.trust.requestauth import NoSigningKey

__all__ = ["GRPC_SCOPE", "NODE_FORMAT", "WINDOW_FUTURE_DAYS", "WINDOW_PAST_DAYS", "NodeAccess", "encode_node_access",
           "parse_node_access", "publish", "window_dates"]

#: Dates before the publication day that keys are published for (presigned URLs live up to a week).
WINDOW_PAST_DAYS = 7
#: Dates after the publication day: the admin must republish before they run out (weekly at least).
WINDOW_FUTURE_DAYS = 7
GRPC_SCOPE = (requestauth.REGION, requestauth.SERVICE)
S3_SERVICE = "s3"
KEY_SIZE = 32
_DATE = re.compile(r"\d{8}\Z")
_HEX_KEY = re.compile(r"[0-9a-f]{64}\Z")
_MAX_DAYS = 64
_MAX_SCOPES = 256


def window_dates(first: str, days: int) -> tuple[str, ...]:
    start = datetime.datetime.strptime(first, "%Y%m%d").date()
    return tuple((start + datetime.timedelta(days=i)).strftime("%Y%m%d") for i in range(days))


@dataclass(frozen=True)
class NodeAccess:
    """The published document: keys without secrets, their derived keys for the window, naming keys."""

    version: int = 0
    first_date: str = ""                                    # yyyymmdd, "" for an empty document
    days: int = 0
    scopes: tuple[tuple[str, str], ...] = ()                # (region, service), sorted
    tenants: tuple[Tenant, ...] = ()
    keys: tuple[KeyInfo, ...] = ()
    #: key id -> days x scopes derived keys of KEY_SIZE bytes each, date-major ("" for a revoked key)
    derived: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    keyed_names: bool = False                               # the master has a naming secret
    chunk_keys: Mapping[tuple[str, str], bytes] = field(default_factory=dict, repr=False)
    _keys_by_id: dict[str, KeyInfo] = field(init=False, repr=False, compare=False)
    _dates: dict[str, int] = field(init=False, repr=False, compare=False)
    _scopes: dict[tuple[str, str], int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self)
        object.__setattr__(self, "_keys_by_id", {k.key_id: k for k in self.keys})
        dates = window_dates(self.first_date, self.days) if self.first_date else ()
        object.__setattr__(self, "_dates", {d: i for i, d in enumerate(dates)})
        object.__setattr__(self, "_scopes", {s: i for i, s in enumerate(self.scopes)})

    @property
    def last_date(self) -> str:
        return window_dates(self.first_date, self.days)[-1] if self.days else ""

    def tenant(self, name: str) -> Tenant | None:
        return next((t for t in self.tenants if t.name == name), None)

    def key(self, key_id: str) -> KeyInfo | None:
        """The active (not revoked) key with this id."""
        key = self._keys_by_id.get(key_id)
        return key if key is not None and not key.revoked else None

    def signing_key(self, key_id: str, date: str, region: str, service: str) -> bytes:
        """The derived key of (key id, date, region, service), or NoSigningKey saying why there is none."""
        if self.key(key_id) is None:
            raise NoSigningKey("unknown_key", f"access key {key_id!r} is unknown or revoked")
        scope = self._scopes.get((region, service))
        if scope is None:
            published = ", ".join(r for r, s in self.scopes if s == service) or "none"
            raise NoSigningKey("no_verification_key",
                               f"this node has no verification key for region {region[:64]!r} (service "
                               f"{service[:16]!r}; published regions: {published}): sign in a published region, "
                               "or the admin must add it (`maillage key refresh --s3-region REGION`)")
        day = self._dates.get(date)
        if day is None:
            raise NoSigningKey("no_verification_key",
                               f"this node has no verification key for date {date[:8]} (access document "
                               f"v{self.version} covers {self.first_date or '-'} to {self.last_date or '-'}): "
                               "check the client's clock; if it is right, the admin must refresh the access "
                               "document (`maillage key refresh`, at least weekly)")
        at = (day * len(self.scopes) + scope) * KEY_SIZE
        return self.derived[key_id][at:at + KEY_SIZE]

    def chunk_key(self, tenant: str, policy: str) -> bytes | None:
        """K(tenant, policy); None when names are not keyed; KeyError when keyed but not published
        for this pair (a policy or tenant newer than the publication)."""
        if not self.keyed_names:
            return None
        return self.chunk_keys[(tenant, policy)]


def publish(master: AccessDoc, *, today: datetime.date, policies: Iterable[str] | None = None,
            owners: Iterable[str] = ()) -> NodeAccess:
    """The nodes' document of `master` (same version), with derived keys for the window around
    `today` (UTC), S3 keys in `master.s3_regions` and every policy name, naming keys per (tenant,
    policy); `policies` defaults to `master.policies`; `owners`: bucket owners that are not tenants
    of `master` to publish naming keys for too (in-process tests name owners freely)."""
    names = tuple(sorted(set(master.policies if policies is None else policies)))
    regions = sorted(set(master.s3_regions) | set(names))
    scopes = tuple(sorted({GRPC_SCOPE, *((r, S3_SERVICE) for r in regions)}))
    first = today - datetime.timedelta(days=WINDOW_PAST_DAYS)
    days = WINDOW_PAST_DAYS + 1 + WINDOW_FUTURE_DAYS
    dates = window_dates(first.strftime("%Y%m%d"), days)
    derived = {k.key_id: (b"" if k.revoked else b"".join(requestauth.signing_key(k.secret, d, r, s)
                                                          for d in dates for r, s in scopes))
               for k in master.keys}
    chunk_keys: dict[tuple[str, str], bytes] = {}
    if master.naming_secret:
        for tenant in {t.name for t in master.tenants} | set(owners):
            for p in names:
                key = naming.chunk_key(master.naming_secret, tenant, p)
                assert key is not None
                chunk_keys[(tenant, p)] = key
    return NodeAccess(master.version, dates[0], days, scopes, master.tenants, tuple(k.info() for k in master.keys),
                      derived, bool(master.naming_secret), chunk_keys)


# ---------------------------------------------------------------------------------------------------
# JSON codec


def encode_node_access(doc: NodeAccess) -> str:
    """Deterministic JSON: the text that is signed (kind "access") and spread to every node."""
    body: dict[str, object] = {
        "format": NODE_FORMAT,
        "version": doc.version,
        "window": {"first": doc.first_date, "days": doc.days},
        "scopes": [list(s) for s in doc.scopes],
        "tenants": [{"name": t.name, "created_ms": t.created_ms} for t in doc.tenants],
        "keys": [{"id": k.key_id, "tenant": k.tenant, "role": k.role, "buckets": list(k.buckets),
                  "revoked": k.revoked, "created_ms": k.created_ms,
                  "derived": base64.b64encode(doc.derived.get(k.key_id, b"")).decode("ascii")}
                 for k in doc.keys],
        "naming": {"keyed": doc.keyed_names,
                   "keys": [{"tenant": t, "policy": p, "key": key.hex()}
                            for (t, p), key in sorted(doc.chunk_keys.items())]},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def parse_node_access(text: str) -> NodeAccess:
    """The published document in `text`, or AccessError naming the first field that is wrong (a
    master document, with secrets, is refused: it never goes to a node)."""
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise AccessError(f"access document: not JSON ({err})") from None
    if isinstance(body, dict) and body.get("format") not in (None, NODE_FORMAT):
        raise AccessError(f"access document: format {str(body.get('format'))[:40]!r} is not {NODE_FORMAT!r} (the "
                          "admin's master document, with secrets, never goes to a node; or another maillage "
                          "version)")
    obj = _object(body, "access document", {"format", "version", "window", "scopes", "tenants", "keys", "naming"})
    version = _uint(obj["version"], "version")
    window = _object(obj["window"], "window", {"first", "days"})
    first, days = _str(window["first"], "window.first"), _uint(window["days"], "window.days")
    scopes = []
    for i, s in enumerate(_list(obj["scopes"], "scopes")):
        pair = _list(s, f"scopes[{i}]")
        if len(pair) != 2:
            raise AccessError(f"scopes[{i}]: must be [region, service]")
        scopes.append((_str(pair[0], f"scopes[{i}][0]"), _str(pair[1], f"scopes[{i}][1]")))
    tenants = tuple(Tenant(_str(t["name"], f"tenants[{i}].name"), _uint(t["created_ms"], f"tenants[{i}].created_ms"))
                    for i, t in enumerate(_object(v, f"tenants[{i}]", {"name", "created_ms"})
                                          for i, v in enumerate(_list(obj["tenants"], "tenants"))))
    keys, derived = [], {}
    for i, value in enumerate(_list(obj["keys"], "keys")):
        where = f"keys[{i}]"
        k = _object(value, where, {"id", "tenant", "role", "buckets", "revoked", "created_ms", "derived"})
        revoked = k["revoked"]
        if not isinstance(revoked, bool):
            raise AccessError(f"{where}.revoked: must be true or false")
        info = KeyInfo(key_id=_str(k["id"], f"{where}.id"), tenant=_str(k["tenant"], f"{where}.tenant"),
                       role=_role(_str(k["role"], f"{where}.role"), f"{where}.role"),
                       buckets=tuple(_str(b, f"{where}.buckets[{j}]")
                                     for j, b in enumerate(_list(k["buckets"], f"{where}.buckets"))),
                       revoked=revoked, created_ms=_uint(k["created_ms"], f"{where}.created_ms"))
        try:
            derived[info.key_id] = base64.b64decode(_str(k["derived"], f"{where}.derived"), validate=True)
        except (binascii.Error, ValueError):
            raise AccessError(f"{where}.derived: not base64") from None
        keys.append(info)
    naming_obj = _object(obj["naming"], "naming", {"keyed", "keys"})
    keyed = naming_obj["keyed"]
    if not isinstance(keyed, bool):
        raise AccessError("naming.keyed: must be true or false")
    chunk_keys: dict[tuple[str, str], bytes] = {}
    for i, value in enumerate(_list(naming_obj["keys"], "naming.keys")):
        entry = _object(value, f"naming.keys[{i}]", {"tenant", "policy", "key"})
        hex_key = _str(entry["key"], f"naming.keys[{i}].key")
        if not _HEX_KEY.match(hex_key):
            raise AccessError(f"naming.keys[{i}].key: must be 64 lowercase hex digits")
        chunk_keys[(_str(entry["tenant"], f"naming.keys[{i}].tenant"),
                    _str(entry["policy"], f"naming.keys[{i}].policy"))] = bytes.fromhex(hex_key)
    return NodeAccess(version, first, days, tuple(scopes), tenants, tuple(keys), derived, keyed, chunk_keys)


def _check(doc: NodeAccess) -> None:
    _uint(doc.version, "version")
    if doc.first_date or doc.days:
        if not _DATE.match(doc.first_date):
            raise AccessError("window.first: must be a date like 20260101")
        try:
            datetime.datetime.strptime(doc.first_date, "%Y%m%d")
        except ValueError:
            raise AccessError(f"window.first: {doc.first_date!r} is not a valid date") from None
        if not 1 <= doc.days <= _MAX_DAYS:
            raise AccessError(f"window.days: must be 1 to {_MAX_DAYS}")
    if len(doc.scopes) > _MAX_SCOPES or list(doc.scopes) != sorted(set(doc.scopes)):
        raise AccessError(f"scopes: at most {_MAX_SCOPES}, sorted, without duplicates")
    for region, service in doc.scopes:
        _check_region(region)
        _check_region(service)
    names = [t.name for t in doc.tenants]
    for t in doc.tenants:
        _check_tenant_name(t.name)
    if names != sorted(set(names)):
        raise AccessError("tenants: must be sorted by name, without duplicates")
    ids = [k.key_id for k in doc.keys]
    if ids != sorted(set(ids)):
        raise AccessError("keys: must be sorted by id, without duplicates")
    size = doc.days * len(doc.scopes) * KEY_SIZE
    for k in doc.keys:
        if not _KEY_ID.match(k.key_id):
            raise AccessError(f"access key id {k.key_id[:40]!r}: not a valid key id")
        if k.tenant not in names:
            raise AccessError(f"access key {k.key_id}: tenant {k.tenant[:64]!r} does not exist")
        for b in k.buckets:
            _check_bucket_name(b)
        if list(k.buckets) != sorted(set(k.buckets)):
            raise AccessError(f"access key {k.key_id}: buckets must be sorted without duplicates")
        got = len(doc.derived.get(k.key_id, b""))
        if got != (0 if k.revoked else size):
            raise AccessError(f"access key {k.key_id}: {got} bytes of derived keys, expected "
                              f"{0 if k.revoked else size} ({'revoked' if k.revoked else 'days x scopes x 32'})")
    if set(doc.derived) - set(ids):
        raise AccessError("derived keys of keys the document does not list")
    for (tenant, policy), key in doc.chunk_keys.items():
        if not isinstance(tenant, str) or len(tenant) > 64 or len(key) != naming.CHUNK_KEY_SIZE:
            raise AccessError(f"naming key of ({str(tenant)[:64]!r}, {policy[:64]!r}): not a tenant name, or not "
                              "32 bytes")
        _check_region(policy)
    if doc.chunk_keys and not doc.keyed_names:
        raise AccessError("naming: keys published while names are not keyed")

