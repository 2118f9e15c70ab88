"""S3 bucket policies: the JSON document parsed, bounded and evaluated (pure: no I/O).

A bucket's owner tenant may share reads of its bucket with other tenants, single access keys or
anyone (anonymous S3 requests) by a policy, and deny its own keys what it wants denied. The
document is S3's policy language, the part of it this store can keep its word on:

- `Principal`: `"*"` (anyone, anonymous included) or `{"AWS": ...}` naming tenants
  (`arn:aws:iam::<tenant>:root` or the bare tenant) or access key ids;
- `Action`: `s3:` names (or `*`), with `*` and `?` wildcards, matched without case;
- `Resource`: `arn:aws:s3:::<this bucket>` and `arn:aws:s3:::<this bucket>/<key pattern>`;
- `Condition`: `Bool aws:SecureTransport`, `IpAddress`/`NotIpAddress aws:SourceIp`, and
  `StringEquals`/`StringNotEquals`/`StringLike`/`StringNotLike s3:prefix`.

What it cannot keep is refused with `MalformedPolicy` (S3's 400), never ignored: `NotPrincipal`,
`NotAction`, `NotResource`, other condition operators and keys, another bucket's resources, and an
`Allow` of any write action, since a policy here grants reads only (data written into a bucket
stays its owner tenant's to write). Sizes are bounded as S3 bounds them (20 KB).

Evaluation is S3's: an explicit Deny wins, then an Allow, else no decision (the owner's keys are
allowed by ownership, anyone else is refused). What the deciding node cannot know is *unknown*
rather than false: the object key of a request that names none (a chunk read, a batch delete),
the client's address and transport of a request another door forwarded. An unknown never grants,
and a Deny it might meet applies.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from maillage.node.errors import InvalidArgument

__all__ = ["ACTIONS", "ALLOW", "AUTHENTICATED", "AccessBlock", "CANNED_ACLS", "DENY", "GRANTABLE", "MAX_DOCUMENT",
           "Condition", "Context", "Decision", "MalformedPolicy", "Policy", "Statement", "Who", "action_of",
           "canned_acl", "is_object_action", "parse", "resource_of", "TAG_CONDITION"]

MAX_DOCUMENT = 20 * 1024  # bytes, as S3
MAX_STATEMENTS = 100
MAX_ITEMS = 100           # principals, actions, resources, condition values of one statement
MAX_STRING = 1024
VERSIONS = ("2012-10-17", "2008-10-17")
ALLOW: Literal["Allow"] = "Allow"
DENY: Literal["Deny"] = "Deny"
Decision = Literal["Allow", "Deny"] | None
ARN = "arn:aws:s3:::"

#: The S3 action each operation of the rule table is, for a policy (several operations are one action).
ACTIONS: Mapping[str, str] = {
    # reads: a policy may grant these
    "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject",
    "ChunkKey": "s3:GetObject", "GetChunk": "s3:GetObject",  # an SDK's read of an object's chunks
    "GetObjectAttributes": "s3:GetObjectAttributes", "GetObjectTagging": "s3:GetObjectTagging",
    "GetObjectAcl": "s3:GetObjectAcl", "GetObjectRetention": "s3:GetObjectRetention",
    "GetObjectLegalHold": "s3:GetObjectLegalHold", "ListParts": "s3:ListMultipartUploadParts",
    "ListObjects": "s3:ListBucket", "HeadBucket": "s3:ListBucket", "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads", "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketTagging": "s3:GetBucketTagging", "GetBucketAcl": "s3:GetBucketAcl",
    "GetBucketVersioning": "s3:GetBucketVersioning", "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "GetBucketPolicy": "s3:GetBucketPolicy", "GetBucketPolicyStatus": "s3:GetBucketPolicyStatus",
    "GetBucketCors": "s3:GetBucketCORS",
    # writes: only a Deny may name these
    "PutObject": "s3:PutObject", "PutSmallObject": "s3:PutObject", "PostObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject", "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject", "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject",
    "PutObjectTagging": "s3:PutObjectTagging", "DeleteObjectTagging": "s3:DeleteObjectTagging",
    "PutObjectAcl": "s3:PutObjectAcl", "PutObjectRetention": "s3:PutObjectRetention",
    "PutObjectLegalHold": "s3:PutObjectLegalHold", "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket", "PutBucketAcl": "s3:PutBucketAcl",
    "PutBucketVersioning": "s3:PutBucketVersioning", "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging", "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "PutBucketPolicy": "s3:PutBucketPolicy", "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "PutBucketCors": "s3:PutBucketCORS", "DeleteBucketCors": "s3:PutBucketCORS",
}
#: The actions an Allow may name: reads.
GRANTABLE = frozenset({
    "s3:GetObject", "s3:GetObjectAttributes", "s3:GetObjectTagging", "s3:GetObjectAcl", "s3:GetObjectRetention",
    "s3:GetObjectLegalHold", "s3:ListMultipartUploadParts", "s3:ListBucket", "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads", "s3:GetBucketLocation", "s3:GetBucketTagging", "s3:GetBucketAcl",
    "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration", "s3:GetLifecycleConfiguration",
    "s3:GetBucketOwnershipControls", "s3:GetBucketPublicAccessBlock", "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketPolicy", "s3:GetBucketPolicyStatus", "s3:GetBucketCORS"})
_KNOWN = {a.lower(): a for a in ACTIONS.values()}
#: Actions on an object (resource `bucket/key`); every other one is on the bucket.
_OBJECT_ACTIONS = frozenset({
    "s3:GetObject", "s3:GetObjectAttributes", "s3:GetObjectTagging", "s3:GetObjectAcl", "s3:GetObjectRetention",
    "s3:GetObjectLegalHold", "s3:ListMultipartUploadParts", "s3:PutObject", "s3:AbortMultipartUpload",
    "s3:DeleteObject", "s3:PutObjectTagging", "s3:DeleteObjectTagging", "s3:PutObjectAcl",
    "s3:PutObjectRetention", "s3:PutObjectLegalHold"})
#: Condition operators and the keys each may test (keys are matched without case).
_OPERATORS: Mapping[str, frozenset[str]] = {
    "Bool": frozenset({"aws:securetransport"}),
    "IpAddress": frozenset({"aws:sourceip"}),
    "NotIpAddress": frozenset({"aws:sourceip"}),
    **{op: frozenset({"s3:prefix"}) for op in ("StringEquals", "StringNotEquals", "StringLike", "StringNotLike")},
}
#: The condition key testing an object's tag (+ the tag's key), with the String operators.
TAG_CONDITION = "s3:existingobjecttag/"
_ID = re.compile(r"[A-Za-z0-9._@+=,-]{1,128}\Z")
_ROOT_ARN = re.compile(r"arn:aws:iam::(?P<id>[A-Za-z0-9._@+=,-]{1,128}):root\Z")
_ACTION = re.compile(r"(\*|s3:[A-Za-z*?]{1,128})\Z", re.IGNORECASE)
_SID = re.compile(r"[\w .:/=+@-]{0,128}\Z")

# Three-valued matching: a statement part matches, does not, or cannot be known here.
_YES, _NO, _MAYBE = 2, 0, 1


class MalformedPolicy(InvalidArgument):
    """A bucket policy document this store refuses (S3's MalformedPolicy), with the reason in words."""


@dataclass(frozen=True)
class Who:
    """The caller a statement's Principal is matched against: None for both is an anonymous caller."""

    tenant: str | None = None
    key_id: str | None = None


@dataclass(frozen=True)
class Context:
    """What conditions test. None: not known here (a forwarded request's client address and
    transport; `prefix` for any operation but a listing)."""

    secure: bool | None = None
    source_ip: str | None = None
    prefix: str | None = None
    tags: Mapping[str, str] | None = None   # the object's tags (s3:ExistingObjectTag/<key>)


@dataclass(frozen=True)
class Condition:
    operator: str           # a key of _OPERATORS
    key: str                # lower case
    values: tuple[str, ...]  # canonical: "true"/"false", networks as `ipaddress` writes them

    def match(self, context: Context) -> int:
        if self.key == "aws:securetransport":
            return _MAYBE if context.secure is None else _yes(str(context.secure).lower() in self.values)
        if self.key == "aws:sourceip":
            address = _address(context.source_ip)
            if address is None:
                return _MAYBE
            inside = any(address in ipaddress.ip_network(v) for v in self.values)
            return _yes(inside != (self.operator == "NotIpAddress"))
        negated = "Not" in self.operator
        if self.key.startswith(TAG_CONDITION):
            if context.tags is None:
                return _MAYBE
            tested = context.tags.get(self.key[len(TAG_CONDITION):])
        else:
            tested = context.prefix
        if tested is None:  # the key is absent: a positive test fails, a negated one holds
            return _yes(negated)
        if self.operator in ("StringLike", "StringNotLike"):
            hit = any(_glob(v).fullmatch(tested) for v in self.values)
        else:
            hit = tested in self.values
        return _yes(hit != negated)


@dataclass(frozen=True)
class Statement:
    effect: str                       # Allow or Deny
    principals: tuple[str, ...]       # "*" or tenant / key ids
    actions: tuple[str, ...]          # as given ("s3:Get*"), matched without case
    resources: tuple[str, ...]        # full ARNs, key patterns with wildcards
    conditions: tuple[Condition, ...] = ()
    sid: str = ""

    @property
    def public(self) -> bool:
        """Whether it allows anyone: Allow to "*", unless limited to fixed networks (IPv4 /8 or
        narrower, IPv6 /32 or narrower), as S3 judges it."""
        if self.effect != ALLOW or "*" not in self.principals:
            return False
        return not any(c.operator == "IpAddress" and all(_narrow(v) for v in c.values) for c in self.conditions)

    def match(self, who: Who, action: str, resource: str | None, context: Context) -> int:
        if not ("*" in self.principals or who.tenant in self.principals or who.key_id in self.principals
                or AUTHENTICATED in self.principals and who.tenant is not None):
            return _NO
        if not any(_glob(a.lower()).fullmatch(action.lower()) for a in self.actions):
            return _NO
        found = max((_resource_match(r, resource) for r in self.resources), default=_NO)
        return min([found, *(c.match(context) for c in self.conditions)])


@dataclass(frozen=True)
class Policy:
    bucket: str
    statements: tuple[Statement, ...]
    version: str = "2012-10-17"
    id: str = ""

    @property
    def public(self) -> bool:
        return any(s.public for s in self.statements)

    @property
    def tests_tags(self) -> bool:
        """Whether a statement tests an object's tags (then the object's tags are read to decide)."""
        return any(c.key.startswith(TAG_CONDITION) for s in self.statements for c in s.conditions)

    def evaluate(self, who: Who, action: str, resource: str | None, context: Context, *,
                 restrict_public: bool = False) -> tuple[Decision, str]:
        """(Deny, Allow or None; the deciding statement's Sid). `resource` None: an object of this
        bucket whose key the request does not name. `restrict_public`: public statements count
        for nothing (the public access block's RestrictPublicBuckets)."""
        allowed: Statement | None = None
        for statement in self.statements:
            if restrict_public and statement.public:
                continue
            found = statement.match(who, action, resource, context)
            if statement.effect == DENY and found != _NO:
                return DENY, statement.sid
            if statement.effect == ALLOW and found == _YES and allowed is None:
                allowed = statement
        return (ALLOW, allowed.sid) if allowed is not None else (None, "")

    def document(self) -> dict[str, Any]:
        """The policy as JSON values (`parse` gives it back)."""
        out: dict[str, Any] = {"Version": self.version}
        if self.id:
            out["Id"] = self.id
        out["Statement"] = [_statement_document(s) for s in self.statements]
        return out

    def encode(self) -> str:
        return json.dumps(self.document(), separators=(",", ":"))


@dataclass(frozen=True)
class AccessBlock:
    """A bucket's public access block (S3's four flags). Every bucket starts with all four set, as
    S3's do; ACLs stay disabled whatever the first two say (`s3/acl.py`)."""

    block_public_acls: bool = True
    ignore_public_acls: bool = True
    block_public_policy: bool = True      # a public policy is refused (AccessDenied)
    restrict_public_buckets: bool = True  # a policy's public statements count for nothing

    NAMES = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")

    def flags(self) -> tuple[bool, bool, bool, bool]:
        return (self.block_public_acls, self.ignore_public_acls, self.block_public_policy,
                self.restrict_public_buckets)

    def encode(self) -> str:
        """As stored: one 0/1 per flag (never empty: empty is "never set", all four on)."""
        return "".join("1" if flag else "0" for flag in self.flags())

    @classmethod
    def decode(cls, stored: str) -> AccessBlock:
        if len(stored) != 4 or set(stored) - {"0", "1"}:
            return cls()  # never set (or unreadable): every block on
        return cls(*(c == "1" for c in stored))


#: A principal no document can name (`_ID` refuses "#"): any access key of any tenant, for the
#: canned ACL authenticated-read.
AUTHENTICATED = "#authenticated"
#: The canned ACLs a bucket may have, and the principal each grants reads to (None: the owner alone).
CANNED_ACLS: Mapping[str, str | None] = {"private": None, "bucket-owner-full-control": None,
                                         "public-read": "*", "authenticated-read": AUTHENTICATED}


def canned_acl(name: str, bucket: str) -> tuple[Statement, ...]:
    """The statements a bucket's canned ACL stands for: public-read lets anyone, authenticated-read
    any key holder, list the bucket and read its objects (S3's READ on the bucket, and on objects
    as a bucket policy grants it); the owner-only ACLs stand for nothing."""
    principal = CANNED_ACLS.get(name)
    if principal is None:
        return ()
    return (Statement(ALLOW, (principal,), ("s3:GetObject",), (f"{ARN}{bucket}/*",), sid=f"acl {name}"),
            Statement(ALLOW, (principal,), ("s3:ListBucket",), (ARN + bucket,), sid=f"acl {name}"))


def action_of(operation: str) -> str:
    """The S3 action of a rule-table operation ("" for one no policy names)."""
    return ACTIONS.get(operation, "")


def is_object_action(action: str) -> bool:
    """Whether the action is on an object (resource `bucket/key`) rather than the bucket."""
    return action in _OBJECT_ACTIONS


def resource_of(bucket: str, action: str, key: str | None) -> str | None:
    """The resource an action is on: the bucket, or its object `key` (None: not known)."""
    if action not in _OBJECT_ACTIONS:
        return ARN + bucket
    return None if key is None else f"{ARN}{bucket}/{key}"


def parse(document: bytes | str, bucket: str) -> Policy:
    """The policy of `bucket` this document is, or MalformedPolicy saying what is wrong."""
    raw = document.encode() if isinstance(document, str) else document
    if len(raw) > MAX_DOCUMENT:
        raise MalformedPolicy(f"a bucket policy is at most {MAX_DOCUMENT} bytes (got {len(raw)})")
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedPolicy(f"the policy is not a JSON document: {str(exc)[:120]}") from None
    top = _object(value, "the policy", {"Version", "Id", "Statement"})
    version = top.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise MalformedPolicy(f"Version must be one of {', '.join(VERSIONS)}")
    if "Statement" not in top:
        raise MalformedPolicy("the policy has no Statement")
    statements = tuple(_statement(s, bucket) for s in _items(top["Statement"], "Statement", MAX_STATEMENTS, dict))
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise MalformedPolicy("statement ids (Sid) must be unique")
    return Policy(bucket, statements, version, _string(top.get("Id", ""), "Id", _SID))


def _statement(value: dict[str, Any], bucket: str) -> Statement:
    for refused in ("NotPrincipal", "NotAction", "NotResource"):
        if refused in value:
            raise MalformedPolicy(f"{refused} is not supported here: name what the statement is about "
                                  "with Principal, Action and Resource")
    fields = _object(value, "a Statement", {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"})
    for needed in ("Effect", "Principal", "Action", "Resource"):
        if needed not in fields:
            raise MalformedPolicy(f"a Statement needs {needed}")
    sid = _string(fields.get("Sid", ""), "Sid", _SID)
    effect = fields["Effect"]
    if effect not in (ALLOW, DENY):
        raise MalformedPolicy("Effect must be Allow or Deny")
    actions = tuple(_action(a) for a in _items(fields["Action"], "Action", MAX_ITEMS, str))
    if effect == ALLOW:
        for action in actions:
            pattern = _glob(action.lower())
            writes = sorted(a for a in _KNOWN.values() if a not in GRANTABLE and pattern.fullmatch(a.lower()))
            if writes:
                raise MalformedPolicy(f"Allow of {action[:64]} covers {writes[0]}: a bucket policy here grants "
                                      "reads only (writes stay with the bucket owner's keys); Deny may name writes")
    resources = tuple(_resource(r, bucket) for r in _items(fields["Resource"], "Resource", MAX_ITEMS, str))
    return Statement(effect=effect, principals=_principals(fields["Principal"]), actions=actions, resources=resources,
                     conditions=_conditions(fields.get("Condition", {})), sid=sid)


def _principals(value: Any) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    given = _object(value, "Principal", {"AWS"})
    if "AWS" not in given:
        raise MalformedPolicy('Principal must be "*" or {"AWS": ...} naming tenants or access keys')
    ids = []
    for name in _items(given["AWS"], "Principal AWS", MAX_ITEMS, str):
        root = _ROOT_ARN.match(name)
        if name == "*" or root is not None or _ID.match(name):
            ids.append(root["id"] if root is not None else name)
        else:
            raise MalformedPolicy(f"invalid principal {name[:64]!r}: use \"*\", arn:aws:iam::<tenant>:root, "
                                  "a tenant or an access key id")
    return tuple(dict.fromkeys(ids))


def _action(value: str) -> str:
    if not _ACTION.match(value):
        raise MalformedPolicy(f"invalid action {value[:64]!r}: actions are s3:<Name>, wildcards * and ? allowed")
    if "*" not in value and "?" not in value and value.lower() not in _KNOWN:
        raise MalformedPolicy(f"action {value[:64]} is not one this store serves")
    return value


def _resource(value: str, bucket: str) -> str:
    if len(value) > MAX_STRING or not value.startswith(ARN):
        raise MalformedPolicy(f"invalid resource {value[:64]!r}: resources are {ARN}<bucket>[/<key pattern>]")
    named, slash, _ = value[len(ARN):].partition("/")
    if named != bucket:
        raise MalformedPolicy(f"resource {value[:80]!r} is not in bucket {bucket!r}: a bucket's policy names "
                              "that bucket and its objects only")
    if not value.isprintable():
        raise MalformedPolicy("a resource holds printable characters only")
    return value


def _conditions(value: Any) -> tuple[Condition, ...]:
    operators = _object(value, "Condition", _OPERATORS, kind="condition operator")
    found = []
    for operator, tests in operators.items():
        for key, values in _object(tests, f"Condition {operator}", None).items():
            name = _condition_key(operator, key)
            items = _items(values, f"Condition {operator} {key[:64]}", MAX_ITEMS, (str, bool))
            found.append(Condition(operator, name, tuple(_condition_value(operator, v) for v in items)))
    return tuple(found)


def _condition_key(operator: str, key: str) -> str:
    """A condition key as matched: lower case, but for a tag's name (S3's tag keys are case-sensitive)."""
    if key.lower().startswith(TAG_CONDITION) and operator.startswith("String"):
        tag = key[len(TAG_CONDITION):]
        if not 0 < len(tag) <= 128:
            raise MalformedPolicy(f"condition key {key[:64]!r} names no tag (1 to 128 characters)")
        return TAG_CONDITION + tag
    if key.lower() not in _OPERATORS[operator]:
        raise MalformedPolicy(f"condition key {key[:64]!r} cannot be tested with {operator} here "
                              f"(it tests {', '.join(sorted(_OPERATORS[operator]))}"
                              f"{', s3:ExistingObjectTag/<key>' if operator.startswith('String') else ''})")
    return key.lower()


def _condition_value(operator: str, value: str | bool) -> str:
    if operator == "Bool":
        text = str(value).lower()
        if text not in ("true", "false"):
            raise MalformedPolicy(f"Bool takes true or false, not {str(value)[:32]!r}")
        return text
    if isinstance(value, bool):
        raise MalformedPolicy(f"{operator} takes strings")
    if operator.endswith("IpAddress"):
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise MalformedPolicy(f"{value[:64]!r} is not an IP address or CIDR network") from None
    if len(value) > MAX_STRING:
        raise MalformedPolicy(f"a condition value is at most {MAX_STRING} characters")
    return value


def _statement_document(s: Statement) -> dict[str, Any]:
    out: dict[str, Any] = {"Sid": s.sid} if s.sid else {}
    out["Effect"] = s.effect
    out["Principal"] = "*" if s.principals == ("*",) else {"AWS": list(s.principals)}
    out["Action"] = list(s.actions)
    out["Resource"] = list(s.resources)
    if s.conditions:
        condition: dict[str, dict[str, list[str]]] = {}
        for c in s.conditions:
            condition.setdefault(c.operator, {})[c.key] = list(c.values)
        out["Condition"] = condition
    return out


# ----- JSON shapes -------------------------------------------------------------------------

def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("a JSON object gives a key twice")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object(value: Any, what: str, allowed: Iterable[str] | None, *, kind: str = "field") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPolicy(f"{what} must be a JSON object")
    if len(value) > MAX_ITEMS:
        raise MalformedPolicy(f"{what} has more than {MAX_ITEMS} fields")
    unknown = sorted(set(value) - set(allowed)) if allowed is not None else []
    if unknown:
        raise MalformedPolicy(f"{what}: unknown {kind} {unknown[0][:64]!r}")
    return value


def _items(value: Any, what: str, most: int, types: type | tuple[type, ...]) -> list[Any]:
    """A JSON value that is one item or a list of them, each of `types` (strings bounded)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise MalformedPolicy(f"{what} is empty")
    if len(items) > most:
        raise MalformedPolicy(f"{what}: at most {most} entries")
    for item in items:
        if not isinstance(item, types):
            raise MalformedPolicy(f"{what}: an entry is a JSON {type(item).__name__}, not what it takes")
        if isinstance(item, str) and len(item) > MAX_STRING:
            raise MalformedPolicy(f"{what}: an entry is longer than {MAX_STRING} characters")
    return items


def _string(value: Any, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise MalformedPolicy(f"{what} must be a string of at most 128 letters, digits and . : / = + @ - _")
    return value


# ----- matching ----------------------------------------------------------------------------

def _yes(hit: bool) -> int:
    return _YES if hit else _NO


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    """`*` and `?` wildcards (nothing else is special), compiled as `fnmatch` does: without
    catastrophic backtracking, whatever the pattern."""
    return re.compile(fnmatch.translate(pattern.replace("[", "[[]")))


def _resource_match(pattern: str, resource: str | None) -> int:
    if resource is not None:
        return _yes(_glob(pattern).fullmatch(resource) is not None)
    _, slash, key_pattern = pattern[len(ARN):].partition("/")
    if not slash:
        return _NO  # the bucket itself, not an object of it
    return _YES if key_pattern and set(key_pattern) == {"*"} else _MAYBE


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _narrow(network: str) -> bool:
    net = ipaddress.ip_network(network)
    return net.prefixlen >= (8 if net.version == 4 else 32)
