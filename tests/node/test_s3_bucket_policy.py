"""Bucket policies through the S3 door in-process (boto3 against one in-memory node's S3 server):
the documents (put, get, delete, status, hostile ones), the public access block they meet, and
what they let other tenants and anonymous callers do; the same decision for the native door's
calls, made in the service layer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from maillage.node.data.coordinator import Upload, UploadStream
from maillage.node.errors import AccessDenied
from maillage.node.s3 import acl
from maillage.node.s3.errors import S3Error
from maillage.node.service.bucket_policy import parse
from maillage.node.service.tenancy import Caller
from maillage.proto.trust.access import AccessDoc, add_tenant, create_key, ensure_naming_secret
from maillage.storage import ChunkNotFound
from maillage.testing.inmemory import InMemoryMesh

from .conftest import FRENCH, run
from .test_s3_inprocess import code, serving

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

B = "shared"
ARN = f"arn:aws:s3:::{B}"
OPEN = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False}


def keys(mesh: InMemoryMesh) -> dict[str, Any]:
    """name -> the access key (hospital: the bucket's owner tenant; housing: another)."""
    now = int(time.time() * 1000)
    doc = ensure_naming_secret(AccessDoc())
    made = {}
    for tenant in ("hospital", "housing"):
        doc = add_tenant(doc, tenant, now_ms=now)
    for name, tenant, role in (("owner", "hospital", "read-write"), ("admin", "hospital", "admin"),
                               ("reader", "hospital", "read-only"), ("housing", "housing", "read-write")):
        doc, made[name] = create_key(doc, tenant, role, now_ms=now)
    mesh.push_access(doc)
    return made


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


PUBLIC_READ = document({"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                        "Resource": f"{ARN}/public/*"})
SHARED = document(
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::housing:root"}, "Action": ["s3:GetObject", "s3:ListBucket"],
     "Resource": [ARN, f"{ARN}/*"]},
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{ARN}/public/*"},
    {"Sid": "KeepKept", "Effect": "Deny", "Principal": {"AWS": "hospital"}, "Action": "s3:DeleteObject",
     "Resource": f"{ARN}/keep/*"},
    {"Sid": "NoSecrets", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"{ARN}/secret/*"})
LOCKOUT = document({"Sid": "Everyone", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                    "Resource": [ARN, f"{ARN}/*"]})


def test_policies_through_the_s3_door(mesh: InMemoryMesh) -> None:
    made = keys(mesh)

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = {name: client((k.key_id, k.secret)) for name, k in made.items()}
        anonymous = client(None)

        async def call(who: Any, name: str, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(who, name), **kwargs)

        async def refused(who: Any, name: str, **kwargs: Any) -> str:
            with pytest.raises(ClientError) as err:
                await call(who, name, **kwargs)
            return code(err.value)

        async def read(who: Any, key: str) -> bytes:
            got = await call(who, "get_object", Bucket=B, Key=key)
            return await asyncio.to_thread(got["Body"].read)

        owner = s3["owner"]
        await call(owner, "create_bucket", Bucket=B, CreateBucketConfiguration={"LocationConstraint": "france-only"})
        for key in ("public/a.txt", "private/b.txt", "keep/c.txt", "secret/d.txt"):
            await call(owner, "put_object", Bucket=B, Key=key, Body=key.encode())
        assert await refused(owner, "get_bucket_policy", Bucket=B) == "NoSuchBucketPolicy"
        assert await refused(owner, "get_bucket_policy_status", Bucket=B) == "NoSuchBucketPolicy"
        assert await refused(anonymous, "get_object", Bucket=B, Key="public/a.txt") == "AccessDenied"

        # Hostile and unsupported documents: MalformedPolicy, nothing stored.
        for bad in ("not json", "{}", json.dumps({"Statement": [json.loads(PUBLIC_READ)["Statement"][0]] * 200}),
                    PUBLIC_READ.replace(ARN, "arn:aws:s3:::elsewhere"), " " * 30_000 + PUBLIC_READ,
                    document({"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": f"{ARN}/*"})):
            assert await refused(owner, "put_bucket_policy", Bucket=B, Policy=bad) == "MalformedPolicy"
        assert await refused(owner, "get_bucket_policy", Bucket=B) == "NoSuchBucketPolicy"

        # Only the owner's write keys set a policy.
        assert await refused(s3["housing"], "put_bucket_policy", Bucket=B, Policy=SHARED) == "AccessDenied"
        assert await refused(s3["reader"], "put_bucket_policy", Bucket=B, Policy=SHARED) == "AccessDenied"
        assert await refused(anonymous, "put_bucket_policy", Bucket=B, Policy=SHARED) == "AccessDenied"

        # The public access block: on by default, a public policy is refused until it is lifted...
        block = await call(owner, "get_public_access_block", Bucket=B)
        assert all(block["PublicAccessBlockConfiguration"].values())
        assert await refused(owner, "put_bucket_policy", Bucket=B, Policy=PUBLIC_READ) == "AccessDenied"
        await call(owner, "put_public_access_block", Bucket=B,
                   PublicAccessBlockConfiguration={**OPEN, "RestrictPublicBuckets": True})
        await call(owner, "put_bucket_policy", Bucket=B, Policy=PUBLIC_READ)
        assert json.loads((await call(owner, "get_bucket_policy", Bucket=B))["Policy"]) == json.loads(PUBLIC_READ)
        status = await call(owner, "get_bucket_policy_status", Bucket=B)
        assert status["PolicyStatus"]["IsPublic"] is True
        # ... and while RestrictPublicBuckets holds, public statements count for nothing.
        assert await refused(anonymous, "get_object", Bucket=B, Key="public/a.txt") == "AccessDenied"
        await call(owner, "put_public_access_block", Bucket=B, PublicAccessBlockConfiguration=OPEN)
        assert (await call(owner, "get_public_access_block", Bucket=B))["PublicAccessBlockConfiguration"] == OPEN

        # Anonymous: reads what the policy allows, nothing else.
        assert await read(anonymous, "public/a.txt") == b"public/a.txt"
        assert (await call(anonymous, "head_object", Bucket=B, Key="public/a.txt"))["ContentLength"] == 12
        assert await refused(anonymous, "get_object", Bucket=B, Key="private/b.txt") == "AccessDenied"
        assert await refused(anonymous, "put_object", Bucket=B, Key="public/x", Body=b"x") == "AccessDenied"
        assert await refused(anonymous, "delete_object", Bucket=B, Key="public/a.txt") == "AccessDenied"
        assert await refused(anonymous, "list_objects_v2", Bucket=B) == "AccessDenied"
        assert await refused(anonymous, "list_buckets") == "AccessDenied"
        assert await refused(anonymous, "create_bucket", Bucket="anon-bucket") == "AccessDenied"
        assert await refused(anonymous, "get_object", Bucket="no-such-bucket", Key="k") == "NoSuchBucket"

        # Another tenant, then granted reads; a Deny reaches the owner's keys too.
        assert await read(s3["housing"], "public/a.txt") == b"public/a.txt"  # "*" is everyone
        assert await refused(s3["housing"], "get_object", Bucket=B, Key="private/b.txt") == "AccessDenied"
        await call(owner, "put_bucket_policy", Bucket=B, Policy=SHARED)
        housing = s3["housing"]
        assert await read(housing, "private/b.txt") == b"private/b.txt"
        listed = await call(housing, "list_objects_v2", Bucket=B)
        assert [o["Key"] for o in listed["Contents"]] == ["keep/c.txt", "private/b.txt", "public/a.txt",
                                                         "secret/d.txt"]
        assert await refused(housing, "get_object", Bucket=B, Key="secret/d.txt") == "AccessDenied"
        assert await refused(housing, "put_object", Bucket=B, Key="private/b.txt", Body=b"x") == "AccessDenied"
        assert await refused(housing, "delete_object", Bucket=B, Key="private/b.txt") == "AccessDenied"
        assert await refused(housing, "get_bucket_policy", Bucket=B) == "AccessDenied"  # not granted
        assert await refused(owner, "delete_object", Bucket=B, Key="keep/c.txt") == "AccessDenied"
        assert await refused(owner, "get_object", Bucket=B, Key="secret/d.txt") == "AccessDenied"
        assert await read(owner, "keep/c.txt") == b"keep/c.txt"

        # A reader of a France-only bucket copies it into a France-only bucket of its own, never wider.
        await call(housing, "create_bucket", Bucket="housing-fr", CreateBucketConfiguration={"LocationConstraint":
                                                                                              "france-only"})
        await call(housing, "create_bucket", Bucket="housing-eu", CreateBucketConfiguration={"LocationConstraint":
                                                                                              "eu-wide"})
        await call(housing, "copy_object", Bucket="housing-fr", Key="copy", CopySource={"Bucket": B,
                                                                                        "Key": "private/b.txt"})
        with pytest.raises(ClientError) as err:
            await call(housing, "copy_object", Bucket="housing-eu", Key="copy", CopySource={"Bucket": B,
                                                                                            "Key": "private/b.txt"})
        assert code(err.value) == "AccessDenied" and "copy refused" in err.value.response["Error"]["Message"]
        with pytest.raises(ClientError):
            await call(housing, "head_object", Bucket="housing-eu", Key="copy")

        # A policy denying everything still leaves the owner's admin key its policy operations.
        await call(owner, "put_bucket_policy", Bucket=B, Policy=LOCKOUT)
        assert await refused(owner, "get_object", Bucket=B, Key="keep/c.txt") == "AccessDenied"
        assert await refused(owner, "delete_bucket_policy", Bucket=B) == "AccessDenied"
        admin = s3["admin"]
        assert await refused(admin, "get_object", Bucket=B, Key="keep/c.txt") == "AccessDenied"
        assert json.loads((await call(admin, "get_bucket_policy", Bucket=B))["Policy"]) == json.loads(LOCKOUT)
        await call(admin, "put_bucket_policy", Bucket=B, Policy=PUBLIC_READ)
        await call(admin, "delete_bucket_policy", Bucket=B)
        assert await refused(owner, "get_bucket_policy", Bucket=B) == "NoSuchBucketPolicy"
        assert await refused(anonymous, "get_object", Bucket=B, Key="public/a.txt") == "AccessDenied"
        assert await read(owner, "keep/c.txt") == b"keep/c.txt"

        # Deleting the public access block is "no block"; a secure-transport condition over plain HTTP.
        await call(owner, "delete_public_access_block", Bucket=B)
        await call(owner, "put_bucket_policy", Bucket=B, Policy=document(
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{ARN}/public/*",
             "Condition": {"Bool": {"aws:SecureTransport": "true"}}}))
        assert await refused(anonymous, "get_object", Bucket=B, Key="public/a.txt") == "AccessDenied"

    run(serving(mesh, "paris-1", scenario))


def test_canned_bucket_acls_are_policies_under_the_public_access_block(mesh: InMemoryMesh) -> None:
    """public-read lets anyone list and read, authenticated-read any key holder; both only once the
    owner lifted BlockPublicAcls, and both count for nothing under IgnorePublicAcls."""
    made = keys(mesh)

    async def scenario(client: Callable[..., Any]) -> None:
        owner, housing = client((made["owner"].key_id, made["owner"].secret)), \
            client((made["housing"].key_id, made["housing"].secret))
        anonymous = client(None)

        async def call(who: Any, name: str, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(who, name), **kwargs)

        async def reads(who: Any) -> bool:
            try:
                got = await call(who, "get_object", Bucket=B, Key="k")
            except ClientError as err:
                assert code(err) == "AccessDenied"
                return False
            return await asyncio.to_thread(got["Body"].read) == b"v"

        await call(owner, "create_bucket", Bucket=B, CreateBucketConfiguration={"LocationConstraint": "france-only"})
        await call(owner, "put_object", Bucket=B, Key="k", Body=b"v")
        with pytest.raises(ClientError) as err:   # BlockPublicAcls: on for a new bucket
            await call(owner, "put_bucket_acl", Bucket=B, ACL="public-read")
        assert code(err.value) == "AccessDenied"
        assert not await reads(anonymous)
        await call(owner, "put_public_access_block", Bucket=B, PublicAccessBlockConfiguration=OPEN)
        await call(owner, "put_bucket_acl", Bucket=B, ACL="public-read")
        grants = (await call(owner, "get_bucket_acl", Bucket=B))["Grants"]
        assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                "Permission": "READ"} in grants
        assert await reads(anonymous) and await reads(housing)
        listed = await call(anonymous, "list_objects_v2", Bucket=B)
        assert [o["Key"] for o in listed["Contents"]] == ["k"]
        with pytest.raises(ClientError) as err:   # reads only
            await call(anonymous, "put_object", Bucket=B, Key="k", Body=b"vandal")
        assert code(err.value) == "AccessDenied"
        await call(owner, "put_public_access_block", Bucket=B,
                   PublicAccessBlockConfiguration={**OPEN, "IgnorePublicAcls": True})
        assert not await reads(anonymous)
        await call(owner, "put_public_access_block", Bucket=B, PublicAccessBlockConfiguration=OPEN)
        await call(owner, "put_bucket_acl", Bucket=B, ACL="authenticated-read")
        assert await reads(housing) and not await reads(anonymous)
        await call(owner, "put_bucket_acl", Bucket=B, ACL="private")
        assert not await reads(housing) and not await reads(anonymous)
        assert len((await call(owner, "get_bucket_acl", Bucket=B))["Grants"]) == 1

    run(serving(mesh, "paris-1", scenario))


def test_a_policy_shares_the_objects_tagged_for_it(mesh: InMemoryMesh) -> None:
    """s3:ExistingObjectTag: another tenant reads exactly the objects whose tags the policy names,
    as the tags are now (a tag changed changes the answer)."""
    made = keys(mesh)

    async def scenario(client: Callable[..., Any]) -> None:
        owner, housing = client((made["owner"].key_id, made["owner"].secret)), \
            client((made["housing"].key_id, made["housing"].secret))

        async def call(who: Any, name: str, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(who, name), **kwargs)

        async def reads(key: str) -> bool:
            try:
                got = await call(housing, "get_object", Bucket=B, Key=key)
            except ClientError as err:
                assert code(err) == "AccessDenied"
                return False
            return await asyncio.to_thread(got["Body"].read) == key.encode()

        await call(owner, "create_bucket", Bucket=B, CreateBucketConfiguration={"LocationConstraint": "france-only"})
        await call(owner, "put_object", Bucket=B, Key="shared.txt", Body=b"shared.txt", Tagging="share=housing")
        await call(owner, "put_object", Bucket=B, Key="mine.txt", Body=b"mine.txt", Tagging="share=nobody")
        await call(owner, "put_bucket_policy", Bucket=B, Policy=document(
            {"Effect": "Allow", "Principal": {"AWS": "housing"}, "Action": "s3:GetObject", "Resource": f"{ARN}/*",
             "Condition": {"StringEquals": {"s3:ExistingObjectTag/share": "housing"}}}))
        assert await reads("shared.txt") and not await reads("mine.txt")
        await call(owner, "put_object_tagging", Bucket=B, Key="shared.txt",
                   Tagging={"TagSet": [{"Key": "share", "Value": "nobody"}]})
        assert not await reads("shared.txt")
        assert (await call(owner, "get_object", Bucket=B, Key="mine.txt"))["ContentLength"] == 8  # the owner's

    run(serving(mesh, "paris-1", scenario))


def test_a_node_outside_the_bucket_answers_anonymous_callers_clearly(mesh: InMemoryMesh) -> None:
    made = keys(mesh)

    async def inside(client: Callable[..., Any]) -> None:
        owner = client((made["owner"].key_id, made["owner"].secret))
        await asyncio.to_thread(owner.create_bucket, Bucket=B,
                                CreateBucketConfiguration={"LocationConstraint": "france-only"})
        await asyncio.to_thread(owner.put_object, Bucket=B, Key="public/a.txt", Body=b"a")
        await asyncio.to_thread(owner.put_public_access_block, Bucket=B, PublicAccessBlockConfiguration=OPEN)
        await asyncio.to_thread(owner.put_bucket_policy, Bucket=B, Policy=PUBLIC_READ)

    async def outside(client: Callable[..., Any]) -> None:  # a door without a forwarder: says where to go
        with pytest.raises(ClientError) as err:
            await asyncio.to_thread(client(None).get_object, Bucket=B, Key="public/a.txt")
        message = err.value.response["Error"]["Message"]
        assert code(err.value) == "AccessDenied" and "known only to nodes inside" in message and "paris-1" in message

    run(serving(mesh, "paris-1", inside))
    run(serving(mesh, "munich-1", outside))


def test_the_native_door_gets_the_same_decision(mesh: InMemoryMesh) -> None:
    """The service layer decides for both doors: another tenant's key through gRPC reads what the
    policy grants (the manifest, the chunk key and chunks for a whole-bucket grant), nothing else."""
    made = keys(mesh)
    service = mesh.nodes["paris-1"].service
    owner, housing = Caller(key=made["owner"]), Caller(key=made["housing"])

    async def scenario() -> None:
        await service.create_bucket(owner, B, "france-only")

        async def pieces() -> AsyncIterator[bytes]:
            yield b"x" * 5000  # several chunks in the in-memory mesh

        await service.put_object(owner, B, Upload(key="k"), UploadStream(pieces()))
        with pytest.raises(AccessDenied):
            await service.head_object(housing, B, "k")
        grant = document({"Effect": "Allow", "Principal": {"AWS": "housing"}, "Action": "s3:GetObject",
                          "Resource": f"{ARN}/*"})
        await service.set_bucket_policy(owner, B, grant, parse(grant, B), "PutBucketPolicy")
        _, manifest = await service.head_object(housing, B, "k")
        assert await service.chunk_key(housing, B) is not None
        held = []
        for node_id in sorted(FRENCH):  # the replicas holding the chunk serve it to this reader
            try:
                held.append(await mesh.nodes[node_id].service.read_chunk(housing, B, manifest.chunks[0].digest))
            except ChunkNotFound:
                pass
        assert len(held) >= 2
        with pytest.raises(AccessDenied):
            await service.list_objects(housing, B)  # s3:ListBucket is not granted
        with pytest.raises(AccessDenied):
            await service.delete_object(housing, B, "k")

    run(scenario())


NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


@pytest.mark.parametrize("body, flags", [
    (f"<PublicAccessBlockConfiguration{NS}><BlockPublicPolicy>true</BlockPublicPolicy>"
     "</PublicAccessBlockConfiguration>", (False, False, True, False)),
    (b"<PublicAccessBlockConfiguration><BlockPublicAcls>TRUE</BlockPublicAcls><IgnorePublicAcls>false"
     b"</IgnorePublicAcls><BlockPublicPolicy>false</BlockPublicPolicy><RestrictPublicBuckets>true"
     b"</RestrictPublicBuckets></PublicAccessBlockConfiguration>", (True, False, False, True)),
    (b"<PublicAccessBlockConfiguration/>", (False, False, False, False)),
])
def test_public_access_block_documents(body, flags):
    raw = body.encode() if isinstance(body, str) else body
    assert acl.access_block_from_document(raw).flags() == flags


@pytest.mark.parametrize("body", [
    b"<PublicAccessBlockConfiguration><BlockPublicPolicy>yes</BlockPublicPolicy></PublicAccessBlockConfiguration>",
    b"<PublicAccessBlockConfiguration><BlockPublicPolicy>true</BlockPublicPolicy><BlockPublicPolicy>false"
    b"</BlockPublicPolicy></PublicAccessBlockConfiguration>",
    b"<PublicAccessBlockConfiguration><Other>true</Other></PublicAccessBlockConfiguration>",
    b"<Other/>", b"not xml",
])
def test_bad_public_access_block_documents_are_malformed_xml(body):
    with pytest.raises(S3Error) as err:
        acl.access_block_from_document(body)
    assert err.value.code == "MalformedXML"
