"""The S3 handlers in-process: a node's S3 server over the in-memory mesh, driven by boto3.

No node process is started: the S3 server runs in the test's event loop on top of one in-memory
node's service layer, so the handlers, the rule table, the service layer and the error mapping are
exercised in seconds, with the real stores underneath and a real S3 client in front.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from maillage.node.s3.common import Services
from maillage.node.s3.server import S3Server
from maillage.proto.trust.access import AccessDoc, add_tenant, create_key, ensure_naming_secret
from maillage.testing.inmemory import InMemoryMesh

from .conftest import FRENCH, run

boto3 = pytest.importorskip("boto3")
from botocore import UNSIGNED  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1})


def keys(mesh: InMemoryMesh) -> dict[str, tuple[str, str]]:
    """Two tenants' keys and an admin's, pushed to every node: tenant -> (key id, secret)."""
    now = int(time.time() * 1000)
    doc = ensure_naming_secret(AccessDoc())
    made = {}
    for tenant, role in (("hospital", "read-write"), ("housing", "read-write"), ("operators", "admin")):
        doc = add_tenant(doc, tenant, now_ms=now)
        doc, key = create_key(doc, tenant, role, now_ms=now)
        made[tenant] = (key.key_id, key.secret)
    mesh.push_access(doc)
    return made


async def serving(mesh: InMemoryMesh, node_id: str, scenario: Callable[[Callable[..., Any]], Any]) -> None:
    """Run `scenario(client)` against node `node_id`'s S3 server, started in this loop."""
    node = mesh.nodes[node_id]
    services = Services(node.service, node.layout, mesh._executor, default_policy="eu-wide",
                        upload_budget=node.upload_budget)
    server = S3Server("127.0.0.1:0", services, node.access)
    await server.start()
    try:
        def client(key: tuple[str, str] | None) -> Any:
            """boto3 signing with `key`, or sending unsigned requests (None)."""
            config = CONFIG if key is not None else CONFIG.merge(Config(signature_version=UNSIGNED))
            key_id, secret = key or ("anonymous", "anonymous")
            return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{server.port}", aws_access_key_id=key_id,
                                aws_secret_access_key=secret, region_name="us-east-1", config=config)
        await scenario(client)
    finally:
        await server.stop()


def code(err: ClientError) -> str:
    return str(err.response["Error"]["Code"])


def test_objects_round_trip_through_the_s3_handlers(mesh: InMemoryMesh) -> None:
    made = keys(mesh)
    body = os.urandom(5000)  # several 1 KiB chunks in the in-memory mesh

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = client(made["hospital"])

        def call(name: str, **kwargs: Any) -> Any:
            return asyncio.to_thread(getattr(s3, name), **kwargs)

        await call("create_bucket", Bucket="scans", CreateBucketConfiguration={"LocationConstraint": "france-only"})
        put = await call("put_object", Bucket="scans", Key="a/one.bin", Body=body, Metadata={"ward": "b2"})
        assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'  # the MD5 the stream's end carried
        got = await call("get_object", Bucket="scans", Key="a/one.bin")
        assert await asyncio.to_thread(got["Body"].read) == body and got["Metadata"] == {"ward": "b2"}
        part = await call("get_object", Bucket="scans", Key="a/one.bin", Range="bytes=1000-2999")
        assert await asyncio.to_thread(part["Body"].read) == body[1000:3000]
        await call("copy_object", Bucket="scans", Key="a/two.bin", CopySource={"Bucket": "scans", "Key": "a/one.bin"})
        listing = await call("list_objects_v2", Bucket="scans", Prefix="a/")
        assert [o["Key"] for o in listing["Contents"]] == ["a/one.bin", "a/two.bin"]
        # a multipart upload of one (last, so small) part
        upload = await call("create_multipart_upload", Bucket="scans", Key="m.bin")
        p1 = await call("upload_part", Bucket="scans", Key="m.bin", UploadId=upload["UploadId"], PartNumber=1,
                        Body=body)
        await call("complete_multipart_upload", Bucket="scans", Key="m.bin", UploadId=upload["UploadId"],
                   MultipartUpload={"Parts": [{"ETag": p1["ETag"], "PartNumber": 1}]})
        got = await call("get_object", Bucket="scans", Key="m.bin")
        assert await asyncio.to_thread(got["Body"].read) == body
        # conditional PUT: If-None-Match: * refuses to overwrite
        with pytest.raises(ClientError) as err:
            await call("put_object", Bucket="scans", Key="a/one.bin", Body=b"x", IfNoneMatch="*")
        assert code(err.value) == "PreconditionFailed"
        await call("delete_object", Bucket="scans", Key="a/two.bin")
        with pytest.raises(ClientError) as err:
            await call("get_object", Bucket="scans", Key="a/two.bin")
        assert code(err.value) == "NoSuchKey"

    run(serving(mesh, "paris-1", scenario))
    # residency: nothing of the France-only bucket rests on the German node
    munich = mesh.nodes["munich-1"].local
    buckets, _ = run(munich.inventory())
    assert all(b.bucket != "scans" for b in buckets)
    holders = {n for n in FRENCH if any(b.bucket == "scans" for b in run(mesh.nodes[n].local.inventory())[0])}
    assert len(holders) >= 2


def test_errors_and_refusals_come_from_the_shared_rules_and_reasons(mesh: InMemoryMesh) -> None:
    made = keys(mesh)

    async def scenario(client: Callable[..., Any]) -> None:
        hospital, housing = client(made["hospital"]), client(made["housing"])

        async def refused(s3: Any, name: str, **kwargs: Any) -> str:
            with pytest.raises(ClientError) as err:
                await asyncio.to_thread(getattr(s3, name), **kwargs)
            return code(err.value)

        await asyncio.to_thread(hospital.create_bucket, Bucket="records",
                                CreateBucketConfiguration={"LocationConstraint": "france-only"})
        await asyncio.to_thread(hospital.put_object, Bucket="records", Key="k", Body=b"private")
        # another tenant: AccessDenied on every operation on the bucket
        assert await refused(housing, "get_object", Bucket="records", Key="k") == "AccessDenied"
        assert await refused(housing, "put_object", Bucket="records", Key="k", Body=b"x") == "AccessDenied"
        assert await refused(housing, "list_objects_v2", Bucket="records") == "AccessDenied"
        # no signature at all: AccessDenied before anything
        assert await refused(client(None), "list_buckets") == "AccessDenied"
        # an unsatisfiable policy (one German site, R=2): InvalidLocationConstraint, by its Reason
        assert await refused(hospital, "create_bucket", Bucket="de-only",
                             CreateBucketConfiguration={"LocationConstraint": "germany-only"}) == \
            "InvalidLocationConstraint"
        assert await refused(hospital, "head_bucket", Bucket="nope") == "404"
        listing = await asyncio.to_thread(housing.list_buckets)
        assert [b["Name"] for b in listing["Buckets"]] == []  # a tenant sees only its own buckets
        # an admin sees every tenant's, read from each tenant's bucket list (not from every node)
        admin = client(made["operators"])
        await asyncio.to_thread(housing.create_bucket, Bucket="flats")
        listing = await asyncio.to_thread(admin.list_buckets)
        assert [b["Name"] for b in listing["Buckets"]] == ["flats", "records"]

    run(serving(mesh, "lyon-1", scenario))
