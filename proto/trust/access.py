"""The access document: tenants and their access keys, one versioned document for the whole mesh.

A city datacenter hosts a hospital, a housing office and a water utility on one mesh; each is a
tenant and sees only its own buckets. Every node must answer "may this key do that?" on its own,
even when others are down, and a revocation must reach every node within seconds, so the whole
document is replicated to every node like the layout: versioned (highest version wins), signed by
the admin's Ed25519 key (`signing.LayoutSigner.sign(version, text, kind="access")`) and verified
before a node adopts it.

Everything here is pure: edits return a new document with version + 1. This is the admin's MASTER
document: it holds every key's long-term secret and stays on the admin machine (the cluster dir's
access.signed, signed as kind "access-master"). Nodes never receive it: what is signed and spread
to them is derived from it (`node_access.publish`: SigV4 signing keys for a window of dates and the
published scopes, naming keys per tenant and policy, no secret). Secrets are kept out of reprs
(`AccessKey`) and listings (`redacted`), and a revoked key's secret is erased.

The document also carries the cluster's chunk naming secret (`naming_secret`, 32 random bytes in
hex): the admin derives from it the key that names a bucket's chunks (`naming.chunk_key`) per
tenant and policy for the nodes, and no tenant or node ever sees it. It is made once, by the first
`add_tenant` (or `ensure_naming_secret`), and never changes: chunks already named with it must
keep their names. A document written before it existed parses with "" (names stay unkeyed until a tenant is added).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "DEFAULT_S3_REGIONS", "FORMAT", "NODE_FORMAT", "AccessDoc", "AccessError", "AccessKey", "Action", "KeyInfo", "Role",
    "Tenant", "add_s3_region", "add_tenant", "create_key", "delete_tenant", "encode_access", "ensure_naming_secret",
    "for_policies", "key_of", "parse_access", "permits", "redacted", "revoke_key", "secret_of",
]

FORMAT = "maillage-access/1"
#: S3 regions every publication covers: clients signing without a region configured use us-east-1.
DEFAULT_S3_REGIONS: tuple[str, ...] = ("us-east-1",)

Role = Literal["read-write", "read-only", "admin"]
Action = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

KEY_ID_PREFIX = "MK"
KEY_ID_LENGTH = 20
SECRET_LENGTH = 40
_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_KEY_ID = re.compile(rf"{KEY_ID_PREFIX}[A-Z0-9]{{{KEY_ID_LENGTH - len(KEY_ID_PREFIX)}}}\Z")
_SECRET = re.compile(rf"[A-Za-z0-9]{{{SECRET_LENGTH}}}\Z")
# The shape node.validation.check_bucket_name accepts (proto may not import the node).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
NAMING_SECRET_BYTES = 32
_NAMING_SECRET = re.compile(rf"[0-9a-f]{{{2 * NAMING_SECRET_BYTES}}}\Z")
_MAX_U64 = (1 << 64) - 1
# a SigV4 credential scope's region (no '/', ',' or space) and a layout's policy name
_REGION = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
#: the format of the document nodes hold (`node_access`): refused where a master is expected
NODE_FORMAT = "maillage-node-access/1"


class AccessError(ValueError):
    """An access document or edit that is invalid; the message names the field or the tenant/key."""


@dataclass(frozen=True)
class Tenant:
    name: str
    created_ms: int


@dataclass(frozen=True)
class AccessKey:
    """One access key. `buckets` empty means every bucket of the tenant; a revoked key has no secret."""

    key_id: str
    secret: str = field(repr=False)
    tenant: str
    role: Role
    buckets: tuple[str, ...] = ()
    revoked: bool = False
    created_ms: int = 0

    def info(self) -> KeyInfo:
        return KeyInfo(key_id=self.key_id, tenant=self.tenant, role=self.role, buckets=self.buckets,
                       revoked=self.revoked, created_ms=self.created_ms)


@dataclass(frozen=True)
class KeyInfo:
    """An access key as listings show it: everything but the secret."""

    key_id: str
    tenant: str
    role: Role
    buckets: tuple[str, ...]
    revoked: bool
    created_ms: int


@dataclass(frozen=True)
class AccessDoc:
    """Tenants sorted by name and keys sorted by id, so equal documents encode to equal text."""

    version: int = 0
    tenants: tuple[Tenant, ...] = ()
    keys: tuple[AccessKey, ...] = ()
    #: hex of 32 random bytes, or "" (a document older than keyed chunk names): see `naming.py`
    naming_secret: str = field(default="", repr=False)
    #: the S3 regions nodes get verification keys for, besides the layout's policy names
    #: (`node_access.publish`); `maillage key refresh --s3-region` adds one
    s3_regions: tuple[str, ...] = DEFAULT_S3_REGIONS
    #: the policy names of the layout this document was last published for: the nodes' document
    #: carries K(tenant, policy) for each and S3 verification keys in each as a region
    policies: tuple[str, ...] = ()
    # lookup indexes: every request looks its key up
    _tenants_by_name: dict[str, Tenant] = field(init=False, repr=False, compare=False)
    _keys_by_id: dict[str, AccessKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_doc(self)
        object.__setattr__(self, "_tenants_by_name", {t.name: t for t in self.tenants})
        object.__setattr__(self, "_keys_by_id", {k.key_id: k for k in self.keys})

    def tenant(self, name: str) -> Tenant | None:
        return self._tenants_by_name.get(name)

    def key(self, key_id: str) -> AccessKey | None:
        return self._keys_by_id.get(key_id)


# ---------------------------------------------------------------------------------------------------
# Edits: each returns a new document with version + 1


def add_tenant(doc: AccessDoc, name: str, *, now_ms: int, rng: random.Random | None = None) -> AccessDoc:
    """Add a tenant; the document gets its naming secret too if it has none (`ensure_naming_secret`)."""
    _check_tenant_name(name)
    if doc.tenant(name) is not None:
        raise AccessError(f"tenant {name!r} already exists")
    tenants = tuple(sorted((*doc.tenants, Tenant(name, now_ms)), key=lambda t: t.name))
    return dataclasses.replace(doc, version=doc.version + 1, tenants=tenants, naming_secret=_secret_or_new(doc, rng))


def ensure_naming_secret(doc: AccessDoc, rng: random.Random | None = None) -> AccessDoc:
    """`doc` itself if it has a naming secret, else a new version with 32 random bytes (from `rng`,
    by default the operating system's CSPRNG). Never replaces a secret: names made with it stay."""
    if doc.naming_secret:
        return doc
    return dataclasses.replace(doc, version=doc.version + 1, naming_secret=_secret_or_new(doc, rng))


def _secret_or_new(doc: AccessDoc, rng: random.Random | None) -> str:
    if doc.naming_secret:
        return doc.naming_secret
    source = rng if rng is not None else random.SystemRandom()
    return source.getrandbits(8 * NAMING_SECRET_BYTES).to_bytes(NAMING_SECRET_BYTES, "big").hex()


def delete_tenant(doc: AccessDoc, name: str) -> AccessDoc:
    """Remove a tenant and its revoked keys.

    Refused while the tenant has a key that is not revoked: deleting a tenant must not be a silent
    way to cut off live credentials, and the admin sees each key go in `key revoke`. The caller must
    also refuse while the tenant still owns buckets (bucket records are not in this document)."""
    if doc.tenant(name) is None:
        raise AccessError(f"tenant {name!r} does not exist")
    live = [k.key_id for k in doc.keys if k.tenant == name and not k.revoked]
    if live:
        raise AccessError(f"tenant {name!r} still has {len(live)} active access key(s) ({', '.join(live)}); "
                          "revoke them first")
    return dataclasses.replace(doc, version=doc.version + 1, tenants=tuple(t for t in doc.tenants if t.name != name),
                               keys=tuple(k for k in doc.keys if k.tenant != name))


def create_key(doc: AccessDoc, tenant: str, role: Role, buckets: Iterable[str] = (), *, now_ms: int,
               rng: random.Random | None = None) -> tuple[AccessDoc, AccessKey]:
    """A new key for `tenant`: an AWS-like id (MK + 18 of A-Z0-9) and a 40-character secret.

    `rng` defaults to the operating system's CSPRNG (`random.SystemRandom`, as `secrets` uses); tests
    pass a seeded `random.Random` for reproducible ids."""
    if doc.tenant(tenant) is None:
        raise AccessError(f"tenant {tenant!r} does not exist; create it first")
    if role not in ROLES:
        raise AccessError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    limited = tuple(sorted(set(buckets)))
    for b in limited:
        _check_bucket_name(b)
    source = rng if rng is not None else random.SystemRandom()
    while True:
        key_id = KEY_ID_PREFIX + "".join(source.choice(_KEY_ID_ALPHABET)
                                         for _ in range(KEY_ID_LENGTH - len(KEY_ID_PREFIX)))
        if doc.key(key_id) is None:
            break
    secret = "".join(source.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    key = AccessKey(key_id=key_id, secret=secret, tenant=tenant, role=role, buckets=limited, revoked=False,
                    created_ms=now_ms)
    keys = tuple(sorted((*doc.keys, key), key=lambda k: k.key_id))
    return dataclasses.replace(doc, version=doc.version + 1, keys=keys), key


def revoke_key(doc: AccessDoc, key_id: str) -> AccessDoc:
    """Mark a key revoked and erase its secret (kept in the document so listings show it was revoked)."""
    key = doc.key(key_id)
    if key is None:
        raise AccessError(f"access key {key_id!r} does not exist")
    if key.revoked:
        raise AccessError(f"access key {key_id!r} is already revoked")
    revoked = dataclasses.replace(key, secret="", revoked=True)
    return dataclasses.replace(doc, version=doc.version + 1,
                               keys=tuple(revoked if k.key_id == key_id else k for k in doc.keys))


def add_s3_region(doc: AccessDoc, region: str) -> AccessDoc:
    """Publish S3 verification keys in `region` too (a client configured with that region)."""
    _check_region(region)
    if region in doc.s3_regions:
        return doc
    return dataclasses.replace(doc, version=doc.version + 1, s3_regions=tuple(sorted((*doc.s3_regions, region))))


def for_policies(doc: AccessDoc, policies: Iterable[str]) -> AccessDoc:
    """`doc` recording the layout's policy names it is published for (same version)."""
    names = tuple(sorted(set(policies)))
    for name in names:
        _check_region(name)
    return doc if names == doc.policies else dataclasses.replace(doc, policies=names)


# ---------------------------------------------------------------------------------------------------
# Lookups


def key_of(doc: AccessDoc, key_id: str) -> AccessKey | None:
    """The active (not revoked) key with this id."""
    key = doc.key(key_id)
    return key if key is not None and not key.revoked else None


def secret_of(doc: AccessDoc, key_id: str) -> str | None:
    """For `requestauth.verify`: the secret of an active key, None if unknown or revoked."""
    key = key_of(doc, key_id)
    return key.secret if key is not None else None


def permits(doc: AccessDoc, key_id: str, action: Action, bucket: str | None = None, *,
            owner: str | None = None) -> bool:
    """May this key do `action`, on `bucket` owned by tenant `owner` when a bucket is concerned?

    - "admin" (layout, repair, status, audit) needs role admin; `bucket` is ignored.
    - "read" needs any role; "write" needs read-write or admin (admin is read-write within its tenant).
    - With a bucket: its owner must be the key's tenant, and a key limited to named buckets must
      name it. `owner` is then required (for a bucket being created, pass the key's own tenant).
    - Without a bucket (listing buckets): the role alone decides; the caller filters the listing to
      the key's tenant.
    """
    if bucket is not None and owner is None:
        raise ValueError("permits: give the bucket's owner tenant with the bucket")
    key = key_of(doc, key_id)
    if key is None:
        return False
    if action == "admin":
        return key.role == "admin"
    if action == "write" and key.role == "read-only":
        return False
    if action not in ("read", "write"):
        return False
    if bucket is None:
        return True
    return owner == key.tenant and (not key.buckets or bucket in key.buckets)


def redacted(doc: AccessDoc) -> tuple[KeyInfo, ...]:
    """Every key without its secret, for listings and logs."""
    return tuple(k.info() for k in doc.keys)


# ---------------------------------------------------------------------------------------------------
# JSON codec


def encode_access(doc: AccessDoc) -> str:
    """Deterministic JSON (sorted keys, no spaces): the text that is signed and replicated. The
    naming secret is written only when there is one, so an older document encodes as it did."""
    body: dict[str, object] = {
        "format": FORMAT,
        "version": doc.version,
        "tenants": [{"name": t.name, "created_ms": t.created_ms} for t in doc.tenants],
        "keys": [{"id": k.key_id, "secret": k.secret, "tenant": k.tenant, "role": k.role,
                  "buckets": list(k.buckets), "revoked": k.revoked, "created_ms": k.created_ms}
                 for k in doc.keys],
    }
    if doc.naming_secret:
        body["naming_secret"] = doc.naming_secret
    if doc.s3_regions != DEFAULT_S3_REGIONS:
        body["s3_regions"] = list(doc.s3_regions)
    if doc.policies:
        body["policies"] = list(doc.policies)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def parse_access(text: str) -> AccessDoc:
    """The document in `text`, or `AccessError` naming the first field that is wrong."""
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise AccessError(f"access document: not JSON ({err})") from None
    obj = _object(body, "access document", {"format", "version", "tenants", "keys"},
                  optional=frozenset({"naming_secret", "s3_regions", "policies"}))
    if obj["format"] == NODE_FORMAT:
        raise AccessError("access document: this is a node's published document (derived keys, no secrets), "
                          "not the admin's master document")
    if obj["format"] != FORMAT:
        raise AccessError(f"access document: format {str(obj['format'])[:40]!r} is not {FORMAT!r} "
                          "(written by another maillage version?)")
    version = _uint(obj["version"], "version")
    tenants = tuple(_tenant(t, f"tenants[{i}]") for i, t in enumerate(_list(obj["tenants"], "tenants")))
    keys = tuple(_key(k, f"keys[{i}]") for i, k in enumerate(_list(obj["keys"], "keys")))
    naming_secret = _str(obj.get("naming_secret", ""), "naming_secret")
    regions = tuple(_str(r, f"s3_regions[{i}]")
                    for i, r in enumerate(_list(obj.get("s3_regions", list(DEFAULT_S3_REGIONS)), "s3_regions")))
    policies = tuple(_str(p, f"policies[{i}]") for i, p in enumerate(_list(obj.get("policies", []), "policies")))
    return AccessDoc(version, tenants, keys, naming_secret, regions, policies)


def _tenant(value: object, where: str) -> Tenant:
    obj = _object(value, where, {"name", "created_ms"})
    return Tenant(name=_str(obj["name"], f"{where}.name"), created_ms=_uint(obj["created_ms"], f"{where}.created_ms"))


def _key(value: object, where: str) -> AccessKey:
    obj = _object(value, where, {"id", "secret", "tenant", "role", "buckets", "revoked", "created_ms"})
    role = _role(_str(obj["role"], f"{where}.role"), f"{where}.role")
    revoked = obj["revoked"]
    if not isinstance(revoked, bool):
        raise AccessError(f"{where}.revoked: must be true or false")
    buckets = tuple(_str(b, f"{where}.buckets[{i}]") for i, b in enumerate(_list(obj["buckets"], f"{where}.buckets")))
    return AccessKey(key_id=_str(obj["id"], f"{where}.id"), secret=_str(obj["secret"], f"{where}.secret"),
                     tenant=_str(obj["tenant"], f"{where}.tenant"), role=role, buckets=buckets,
                     revoked=revoked, created_ms=_uint(obj["created_ms"], f"{where}.created_ms"))


def _role(value: str, where: str) -> Role:
    for r in ROLES:
        if r == value:
            return r
    raise AccessError(f"{where}: {value[:40]!r} is not one of {', '.join(ROLES)}")


def _object(value: object, where: str, fields: set[str], optional: frozenset[str] = frozenset()) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise AccessError(f"{where}: must be an object")
    missing, extra = fields - value.keys(), value.keys() - fields - optional
    if missing:
        raise AccessError(f"{where}: missing {', '.join(sorted(missing))}")
    if extra:
        raise AccessError(f"{where}: unknown field(s) {', '.join(sorted(str(e)[:40] for e in extra))}")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise AccessError(f"{where}: must be a list")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise AccessError(f"{where}: must be a string")
    return value


def _uint(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_U64:
        raise AccessError(f"{where}: must be an integer from 0 to 2^64-1")
    return value


# ---------------------------------------------------------------------------------------------------
# Validation: every AccessDoc, however built, satisfies these


def _check_doc(doc: AccessDoc) -> None:
    _uint(doc.version, "version")
    # never echo the secret, even a malformed one
    if not isinstance(doc.naming_secret, str) or (doc.naming_secret and not _NAMING_SECRET.match(doc.naming_secret)):
        raise AccessError(f"naming_secret: must be {2 * NAMING_SECRET_BYTES} lowercase hex digits (or empty)")
    names = [t.name for t in doc.tenants]
    for t in doc.tenants:
        _check_tenant_name(t.name)
        _uint(t.created_ms, f"tenant {t.name!r}: created_ms")
    if names != sorted(set(names)):
        raise AccessError("tenants: must be sorted by name, without duplicates")
    for what, values in (("s3_regions", doc.s3_regions), ("policies", doc.policies)):
        if not isinstance(values, tuple) or list(values) != sorted(set(values)):
            raise AccessError(f"{what}: must be a sorted tuple without duplicates")
        for value in values:
            _check_region(value)
    ids = [k.key_id for k in doc.keys]
    known = set(names)
    for k in doc.keys:
        _check_key(k, known)
    if ids != sorted(set(ids)):
        raise AccessError("keys: must be sorted by id, without duplicates")


def _check_key(k: AccessKey, tenants: set[str]) -> None:
    if not isinstance(k.key_id, str) or not _KEY_ID.match(k.key_id):
        raise AccessError(f"access key id {str(k.key_id)[:40]!r}: must be {KEY_ID_PREFIX} followed by "
                          f"{KEY_ID_LENGTH - len(KEY_ID_PREFIX)} of A-Z and 0-9")
    where = f"access key {k.key_id}"
    if k.tenant not in tenants:
        raise AccessError(f"{where}: tenant {str(k.tenant)[:64]!r} does not exist")
    if k.role not in ROLES:
        raise AccessError(f"{where}: role {str(k.role)[:40]!r} is not one of {', '.join(ROLES)}")
    if not isinstance(k.revoked, bool):
        raise AccessError(f"{where}: revoked must be a bool")
    # never echo a secret, even a malformed one
    if k.revoked and k.secret != "":
        raise AccessError(f"{where}: a revoked key keeps no secret")
    if not k.revoked and (not isinstance(k.secret, str) or not _SECRET.match(k.secret)):
        raise AccessError(f"{where}: secret must be {SECRET_LENGTH} characters among A-Z, a-z and 0-9")
    if not isinstance(k.buckets, tuple) or list(k.buckets) != sorted(set(k.buckets)):
        raise AccessError(f"{where}: buckets must be a sorted tuple without duplicates")
    for b in k.buckets:
        _check_bucket_name(b)
    _uint(k.created_ms, f"{where}: created_ms")


def _check_tenant_name(name: str) -> None:
    if not isinstance(name, str) or not _TENANT.match(name):
        raise AccessError(f"tenant name {str(name)[:64]!r}: use 1-63 characters among A-Z, a-z, 0-9, '.', '_' "
                          "and '-', starting with a letter or digit")


def _check_region(name: str) -> None:
    if not isinstance(name, str) or not _REGION.match(name):
        raise AccessError(f"region or policy name {str(name)[:64]!r}: use 1-64 characters among A-Z, a-z, 0-9, "
                          "'.', '_' and '-'")


def _check_bucket_name(name: str) -> None:
    if not isinstance(name, str) or not _BUCKET.match(name) or ".." in name:
        raise AccessError(f"bucket name {str(name)[:64]!r}: use 3-63 characters among a-z, 0-9, '.' and '-', "
                          "starting and ending with a letter or digit")
