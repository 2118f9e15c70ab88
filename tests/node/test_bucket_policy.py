"""Bucket policy documents (`node/service/bucket_policy.py`): parsed strictly and bounded, hostile
input refused with MalformedPolicy and never a crash, and evaluated as S3 does: an explicit Deny
wins, a statement that does not name the caller never grants, what cannot be known never grants."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.service import bucket_policy as bp
from maillage.node.service.bucket_policy import ALLOW, DENY, Context, MalformedPolicy, Who, parse, resource_of
from maillage.node.service.rules import OPERATIONS

B = "shared"
ARN = f"arn:aws:s3:::{B}"
ANONYMOUS = Who()
HOUSING = Who("housing", "AKHOUSING")
SECURE = Context(secure=True, source_ip="192.0.2.7")


def policy(*statements: dict[str, Any]) -> bp.Policy:
    return parse(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}), B)


def allow(principal: Any = "*", action: Any = "s3:GetObject", resource: Any = f"{ARN}/*", **extra: Any) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": resource, **extra}


def deny(principal: Any = "*", action: Any = "s3:*", resource: Any = (ARN, f"{ARN}/*"), **extra: Any) -> dict:
    return {"Effect": "Deny", "Principal": principal, "Action": action, "Resource": list(resource), **extra}


def decide(p: bp.Policy, who: Who, operation: str, key: str | None = None, context: Context = SECURE,
           **kw: Any) -> str | None:
    action = bp.action_of(operation)
    return p.evaluate(who, action, resource_of(B, action, key), context, **kw)[0]


def test_a_public_read_policy_on_a_prefix():
    p = policy(allow(resource=f"{ARN}/public/*", Sid="PublicRead"))
    assert p.public
    assert decide(p, ANONYMOUS, "GetObject", "public/a.txt") == ALLOW
    assert decide(p, ANONYMOUS, "HeadObject", "public/deep/b") == ALLOW
    assert decide(p, ANONYMOUS, "GetObject", "private/a.txt") is None
    assert decide(p, ANONYMOUS, "ListObjects") is None  # s3:ListBucket is on the bucket, not granted
    assert decide(p, ANONYMOUS, "PutObject", "public/a.txt") is None
    assert decide(p, ANONYMOUS, "GetChunk") is None  # the key is unknown: a prefix grant does not cover it


def test_principals_name_tenants_and_keys():
    p = policy(allow({"AWS": ["arn:aws:iam::housing:root"]}), allow({"AWS": "AKOTHER"}, resource=f"{ARN}/k"))
    assert not p.public
    assert decide(p, HOUSING, "GetObject", "any") == ALLOW
    assert decide(p, Who("housing", "AKSECOND"), "GetObject", "any") == ALLOW  # any key of the tenant
    assert decide(p, Who("other", "AKOTHER"), "GetObject", "k") == ALLOW  # that key only
    assert decide(p, Who("other", "AKOTHER2"), "GetObject", "k") is None
    assert decide(p, ANONYMOUS, "GetObject", "k") is None


def test_an_explicit_deny_wins_and_an_unknown_never_grants():
    p = policy(allow({"AWS": "housing"}, ["s3:GetObject", "s3:ListBucket"], [ARN, f"{ARN}/*"]),
               deny({"AWS": "housing"}, "s3:GetObject", [f"{ARN}/secret/*"], Sid="NoSecrets"))
    assert decide(p, HOUSING, "GetObject", "open/a") == ALLOW
    assert p.evaluate(HOUSING, "s3:GetObject", f"{ARN}/secret/a", SECURE) == (DENY, "NoSecrets")
    assert decide(p, HOUSING, "GetChunk") == DENY  # any key: the Deny may cover it, so it applies
    assert decide(p, HOUSING, "ListObjects", context=Context(prefix="")) == ALLOW


def test_conditions():
    secure_only = policy(allow(), deny(Condition={"Bool": {"aws:SecureTransport": "false"}}))
    assert decide(secure_only, ANONYMOUS, "GetObject", "a") == ALLOW
    assert decide(secure_only, ANONYMOUS, "GetObject", "a", Context(secure=False)) == DENY
    assert decide(secure_only, ANONYMOUS, "GetObject", "a", Context(secure=None)) == DENY  # a forwarded request
    office = policy(allow(Condition={"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]}}))
    assert not office.public  # limited to fixed networks
    assert decide(office, ANONYMOUS, "GetObject", "a") == ALLOW
    assert decide(office, ANONYMOUS, "GetObject", "a", Context(secure=True, source_ip="2001:db8::1")) == ALLOW
    assert decide(office, ANONYMOUS, "GetObject", "a", Context(secure=True, source_ip="198.51.100.1")) is None
    assert decide(office, ANONYMOUS, "GetObject", "a", Context(secure=True)) is None  # address unknown
    outside = policy(allow(), deny(Condition={"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))
    assert decide(outside, ANONYMOUS, "GetObject", "a") == ALLOW
    assert decide(outside, ANONYMOUS, "GetObject", "a", Context(source_ip="198.51.100.1")) == DENY
    assert decide(outside, ANONYMOUS, "GetObject", "a", Context()) == DENY
    listing = policy(allow(action="s3:ListBucket", resource=ARN,
                           Condition={"StringLike": {"s3:prefix": ["public/*", ""]}}))
    assert decide(listing, ANONYMOUS, "ListObjects", context=Context(prefix="public/x")) == ALLOW
    assert decide(listing, ANONYMOUS, "ListObjects", context=Context(prefix="")) == ALLOW
    assert decide(listing, ANONYMOUS, "ListObjects", context=Context(prefix="private/")) is None
    equals = policy(allow(action="s3:ListBucket", resource=ARN, Condition={"StringEquals": {"s3:prefix": "a/"}}))
    assert decide(equals, ANONYMOUS, "ListObjects", context=Context(prefix="a/")) == ALLOW
    assert decide(equals, ANONYMOUS, "ListObjects", context=Context(prefix="a/b")) is None


def test_object_tag_conditions():
    """s3:ExistingObjectTag/<key>: the tag's name is case-sensitive, an unknown tag set neither grants
    nor spares (the caller then reads the object's tags), a missing tag fails a positive test."""
    shared = policy(allow({"AWS": "housing"}, Condition={"StringEquals": {"s3:ExistingObjectTag/Share": "yes"}}),
                    deny(action="s3:GetObject", Condition={"StringLike": {"s3:ExistingObjectTag/class": "secret*"}}))
    assert shared.tests_tags and not policy(allow()).tests_tags

    def with_tags(**tags: str) -> Context:
        return Context(secure=True, tags=tags)

    assert decide(shared, HOUSING, "GetObject", "a", with_tags(Share="yes")) == ALLOW
    assert decide(shared, HOUSING, "GetObject", "a", with_tags(share="yes")) is None     # another tag
    assert decide(shared, HOUSING, "GetObject", "a", with_tags()) is None
    assert decide(shared, HOUSING, "GetObject", "a") == DENY           # tags unknown: the Deny may hold
    assert decide(shared, HOUSING, "GetObject", "a", with_tags(Share="yes", **{"class": "secret-x"})) == DENY
    with pytest.raises(MalformedPolicy):
        policy(allow(Condition={"StringEquals": {"s3:ExistingObjectTag/": "x"}}))
    with pytest.raises(MalformedPolicy):
        policy(allow(Condition={"Bool": {"s3:ExistingObjectTag/Share": "true"}}))


def test_restrict_public_buckets_ignores_public_statements_only():
    p = policy(allow(), allow({"AWS": "housing"}, resource=f"{ARN}/k"))
    assert decide(p, ANONYMOUS, "GetObject", "k", restrict_public=True) is None
    assert decide(p, HOUSING, "GetObject", "k", restrict_public=True) == ALLOW
    assert decide(p, ANONYMOUS, "GetObject", "k") == ALLOW


def test_action_names_and_wildcards():
    p = policy(allow(action=["s3:get*", "s3:List?ucket"], resource=[ARN, f"{ARN}/*"]))
    assert decide(p, ANONYMOUS, "GetObjectTagging", "a") == ALLOW
    assert decide(p, ANONYMOUS, "ListObjects", context=Context(prefix="")) == ALLOW
    assert decide(p, ANONYMOUS, "GetBucketPolicy") == ALLOW
    assert decide(p, ANONYMOUS, "DeleteObject", "a") is None


@pytest.mark.parametrize("document, words", [
    ({"Statement": [allow(action="s3:*")]}, "grants reads only"),
    ({"Statement": [allow(action="s3:PutObject")]}, "grants reads only"),
    ({"Statement": [allow(resource="arn:aws:s3:::other/*")]}, "not in bucket"),
    ({"Statement": [allow(resource="arn:aws:s3:::shared-but-longer/*")]}, "not in bucket"),
    ({"Statement": [allow(resource="arn:aws:s3:::*")]}, "not in bucket"),
    ({"Statement": [allow(resource="*")]}, "invalid resource"),
    ({"Statement": [{**allow(), "NotPrincipal": "*"}]}, "NotPrincipal is not supported"),
    ({"Statement": [{"Effect": "Allow", "Principal": "*", "NotAction": "s3:GetObject", "Resource": ARN}]},
     "NotAction is not supported"),
    ({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "NotResource": ARN}]},
     "NotResource is not supported"),
    ({"Statement": [allow(Condition={"StringEqualsIgnoreCase": {"s3:prefix": "a"}})]}, "unknown condition operator"),
    ({"Statement": [allow(Condition={"StringLikeIfExists": {"s3:prefix": "a"}})]}, "unknown condition operator"),
    ({"Statement": [allow(Condition={"StringEquals": {"aws:UserAgent": "x"}})]}, "cannot be tested"),
    ({"Statement": [allow(Condition={"IpAddress": {"aws:SourceIp": "not-an-address"}})]}, "not an IP address"),
    ({"Statement": [allow(Condition={"Bool": {"aws:SecureTransport": "maybe"}})]}, "true or false"),
    ({"Statement": [allow(Condition={"IpAddress": {"aws:SourceIp": []}})]}, "is empty"),
    ({"Statement": [allow(principal={"CanonicalUser": "abc"})]}, "unknown field"),
    ({"Statement": [allow(principal={"AWS": "arn:aws:iam::acme:user/bob"})]}, "invalid principal"),
    ({"Statement": [allow(principal="someone")]}, "must be a JSON object"),
    ({"Statement": [allow(action="s3:NoSuchAction")]}, "not one this store serves"),
    ({"Statement": [allow(action="iam:PassRole")]}, "invalid action"),
    ({"Statement": [allow(action=[])]}, "is empty"),
    ({"Statement": [allow(Effect="Maybe")]}, "Effect must be"),
    ({"Statement": [{**allow(), "Extra": 1}]}, "unknown field"),
    ({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]}, "needs Resource"),
    ({"Statement": [allow(Sid="a"), allow(Sid="a")]}, "unique"),
    ({"Statement": []}, "is empty"),
    ({"Version": "2024-01-01", "Statement": [allow()]}, "Version"),
    ({"Version": "2012-10-17"}, "no Statement"),
    ({"Statement": [allow()], "Other": 1}, "unknown field"),
    ({"Statement": [allow()] * 101}, "at most 100"),
    ({"Statement": [allow(resource=f"{ARN}/" + "k" * 2000)]}, "longer than"),
    ({"Statement": [allow(Sid="x" * 200)]}, "Sid must be"),
    ([1, 2], "must be a JSON object"),
])
def test_documents_refused_with_words(document, words):
    with pytest.raises(MalformedPolicy) as err:
        parse(json.dumps(document), B)
    assert words in str(err.value)


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"{", b'{"Statement": NaN}', b"\xff\xfe{}", b"[" * 20000, b'{"a": 1, "a": 2}',
    b" " * (bp.MAX_DOCUMENT + 1), json.dumps({"Statement": [allow()] * 90, "Id": "x"}).encode() + b" " * 20000,
])
def test_bytes_that_are_no_policy_are_malformed(raw):
    with pytest.raises(MalformedPolicy):
        parse(raw, B)


def test_a_deny_may_name_writes_and_is_not_public():
    p = policy(deny(action=["s3:PutObject", "s3:DeleteObject"]))
    assert not p.public
    assert decide(p, HOUSING, "PutObject", "a") == DENY
    assert decide(p, HOUSING, "GetObject", "a") is None


def test_every_operation_naming_a_bucket_has_an_action_and_only_reads_are_grantable():
    for operation, rule in OPERATIONS.items():
        if rule.bucket is None:
            continue
        assert operation in bp.ACTIONS, operation
        assert (bp.ACTIONS[operation] in bp.GRANTABLE) == (rule.bucket == "read"), operation


def test_access_block_storage():
    block = bp.AccessBlock(False, True, False, True)
    assert bp.AccessBlock.decode(block.encode()) == block
    assert bp.AccessBlock.decode("") == bp.AccessBlock() == bp.AccessBlock.decode("junk")
    assert all(bp.AccessBlock().flags())


# ----- properties --------------------------------------------------------------------------

_PRINCIPALS = st.one_of(st.just(("*",)), st.lists(st.sampled_from(["acme", "housing", "AKHOUSING", "AK1", "*"]),
                                                  min_size=1, max_size=4, unique=True).map(tuple))
_READS = sorted(bp.GRANTABLE) + ["s3:Get*", "s3:List*", "s3:GetObject?ttributes"]
_ANY = sorted(set(bp.ACTIONS.values())) + ["*", "s3:*", "s3:Put*", "s3:Delete*"]
_KEYS = st.text(alphabet="ab/.*?", max_size=8)
_RESOURCES = st.lists(st.one_of(st.just(ARN), _KEYS.map(lambda k: f"{ARN}/{k}")), min_size=1, max_size=3,
                      unique=True).map(tuple)
_CONDITIONS = st.lists(st.one_of(
    st.builds(bp.Condition, st.just("Bool"), st.just("aws:securetransport"),
              st.sampled_from([("true",), ("false",)])),
    st.builds(bp.Condition, st.sampled_from(["IpAddress", "NotIpAddress"]), st.just("aws:sourceip"),
              st.sampled_from([("192.0.2.0/24",), ("0.0.0.0/0", "2001:db8::/32")])),
    st.builds(bp.Condition, st.sampled_from(["StringLike", "StringEquals", "StringNotLike"]),
              st.just("s3:prefix"), st.lists(_KEYS, min_size=1, max_size=2).map(tuple)),
), max_size=2, unique_by=lambda c: (c.operator, c.key)).map(tuple)


@st.composite
def statements(draw: st.DrawFn, effect: str | None = None) -> bp.Statement:
    effect = effect or draw(st.sampled_from([ALLOW, DENY]))
    actions = draw(st.lists(st.sampled_from(_READS if effect == ALLOW else _ANY), min_size=1, max_size=3,
                            unique=True))
    return bp.Statement(effect, draw(_PRINCIPALS), tuple(actions), draw(_RESOURCES), draw(_CONDITIONS))


@st.composite
def policies(draw: st.DrawFn) -> bp.Policy:
    found = draw(st.lists(statements(), min_size=1, max_size=4))
    with_sids = tuple(bp.Statement(s.effect, s.principals, s.actions, s.resources, s.conditions,
                                   f"s{i}" if draw(st.booleans()) else "") for i, s in enumerate(found))
    return bp.Policy(B, with_sids, draw(st.sampled_from(bp.VERSIONS)), draw(st.sampled_from(["", "id-1"])))


_WHO = st.sampled_from([ANONYMOUS, HOUSING, Who("acme", "AK1"), Who("other", "AK9")])
_OPERATION = st.sampled_from(sorted(bp.ACTIONS))
_CONTEXT = st.builds(Context, st.sampled_from([True, False, None]),
                     st.sampled_from([None, "192.0.2.9", "198.51.100.1", "2001:db8::5"]),
                     st.one_of(st.none(), _KEYS))


@given(policies())
def test_a_policy_survives_its_document(p):
    assert parse(p.encode(), B) == p
    assert parse(json.dumps(p.document(), indent=2), B) == p


@given(policies(), _WHO, _OPERATION, st.one_of(st.none(), _KEYS), _CONTEXT)
def test_an_explicit_deny_always_wins(p, who, operation, key, context):
    denying = bp.Policy(B, (*p.statements, bp.Statement(DENY, ("*",), ("*",), (ARN, f"{ARN}/*"))))
    action = bp.action_of(operation)
    assert denying.evaluate(who, action, resource_of(B, action, key), context)[0] == DENY


@given(policies(), _WHO, _OPERATION, st.one_of(st.none(), _KEYS), _CONTEXT, st.booleans())
def test_only_a_statement_naming_the_caller_grants(p, who, operation, key, context, restrict):
    action = bp.action_of(operation)
    decision, sid = p.evaluate(who, action, resource_of(B, action, key), context, restrict_public=restrict)
    if decision == ALLOW:
        assert action in bp.GRANTABLE  # policies grant reads only
        assert any(s.effect == ALLOW and ("*" in s.principals or who.tenant in s.principals
                                          or who.key_id in s.principals)
                   and not (restrict and s.public) for s in p.statements)
    strangers = bp.Policy(B, tuple(s for s in p.statements
                                   if "*" not in s.principals and who.tenant not in s.principals
                                   and who.key_id not in s.principals) or (bp.Statement(DENY, ("nobody",), ("*",),
                                                                                         (ARN,)),))
    assert strangers.evaluate(who, action, resource_of(B, action, key), context)[0] is None


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                       st.sampled_from(["*", "Allow", "Deny", "s3:GetObject", ARN, f"{ARN}/*", "2012-10-17",
                                        "aws:SourceIp", "Bool", "StringLike"]), st.text(max_size=10))
    keys = st.sampled_from(["Version", "Statement", "Effect", "Principal", "AWS", "Action", "Resource", "Condition",
                            "Sid", "Id", "NotAction", "IpAddress", "aws:SourceIp", "s3:prefix", "x"])
    return st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(keys, inner, max_size=5)), max_leaves=30)


@settings(max_examples=300)
@given(st.one_of(_json_values().map(lambda v: json.dumps(v).encode()), st.binary(max_size=300)))
def test_hostile_documents_are_a_policy_or_malformed_never_a_crash(raw):
    try:
        p = parse(raw, B)
    except MalformedPolicy as err:
        assert str(err)
    else:
        assert parse(p.encode(), B) == p
