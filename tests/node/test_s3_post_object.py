"""POST object (`node/s3/post_object.py`): a browser's form upload, signed beforehand with boto3's
`generate_presigned_post`, through the S3 door in-process: what the policy allows is stored, and a
form that changes anything it did not sign, an expired or forged policy, or a file outside its size
range stores nothing."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
import urllib3

from maillage.node.s3 import post_object
from maillage.node.s3.errors import S3Error
from maillage.testing.inmemory import InMemoryMesh

from .conftest import run
from .test_s3_inprocess import code, keys, serving

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

HTTP = urllib3.PoolManager(retries=False, timeout=10)


def post(url: str, fields: dict[str, str], file: bytes, filename: str = "photo.jpg") -> urllib3.BaseHTTPResponse:
    """The form as a browser sends it: its fields, then the file."""
    return HTTP.request("POST", url, fields=[*fields.items(), ("file", (filename, file))])


def s3_code(answer: urllib3.BaseHTTPResponse) -> str:
    text = answer.data.decode()
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""


def test_a_signed_form_uploads_what_its_policy_allows(mesh: InMemoryMesh) -> None:
    made = keys(mesh)

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = client(made["hospital"])

        def call(name: str, **kwargs: Any) -> Any:
            return asyncio.to_thread(getattr(s3, name), **kwargs)

        async def head(key: str) -> Any:
            return await call("head_object", Bucket="forms", Key=key)

        await call("create_bucket", Bucket="forms", CreateBucketConfiguration={"LocationConstraint": "france-only"})
        signed = s3.generate_presigned_post(
            "forms", "uploads/${filename}",
            Fields={"Content-Type": "image/jpeg", "success_action_status": "201", "x-amz-meta-patient": "42"},
            Conditions=[["starts-with", "$key", "uploads/"], {"Content-Type": "image/jpeg"},
                        {"success_action_status": "201"}, {"x-amz-meta-patient": "42"},
                        ["content-length-range", 1, 1000]],
            ExpiresIn=600)
        url, fields = signed["url"], signed["fields"]
        answer = await asyncio.to_thread(post, url, fields, b"\xff\xd8 jpeg bytes")
        assert answer.status == 201, answer.data
        assert b"<Key>uploads/photo.jpg</Key>" in answer.data
        stored = await head("uploads/photo.jpg")
        assert stored["ContentType"] == "image/jpeg" and stored["Metadata"] == {"patient": "42"}
        assert stored["ContentLength"] == len(b"\xff\xd8 jpeg bytes")

        async def refused(form: dict[str, str], file: bytes = b"x", filename: str = "other.jpg") -> tuple[int, str]:
            answer = await asyncio.to_thread(post, url, form, file, filename)
            with pytest.raises(ClientError):   # nothing was stored
                await head(f"uploads/{filename}")
            return answer.status, s3_code(answer)

        assert await refused({**fields, "Content-Type": "text/html"}) == (403, "AccessDenied")   # a field changed
        assert await refused({**fields, "x-amz-meta-extra": "1"}) == (403, "AccessDenied")      # a field added
        assert await refused(fields, b"x" * 1001) == (400, "EntityTooLarge")                    # size range
        forged = dict(fields, policy=base64.b64encode(json.dumps({
            "expiration": "2099-01-01T00:00:00Z", "conditions": [["starts-with", "$key", ""]]}).encode()).decode())
        assert await refused(forged) == (403, "SignatureDoesNotMatch")
        assert (await refused({k: v for k, v in fields.items() if k != "policy"}))[0] == 403   # anonymous
        # A key that may not write the bucket signs in vain: the rule table and the bucket decide.
        stranger = client(made["housing"]).generate_presigned_post("forms", "uploads/${filename}", ExpiresIn=600)
        answer = await asyncio.to_thread(post, stranger["url"], stranger["fields"], b"x", "stranger.jpg")
        assert answer.status == 403 and s3_code(answer) == "AccessDenied"

    run(serving(mesh, "paris-1", scenario))


def test_policy_conditions_and_expiry():
    class Keys:
        def key(self, key_id: str) -> None:
            return None

        def signing_key(self, *args: str) -> bytes:
            raise AssertionError("not reached")

    form = post_object.Form({"policy": "e30=", "x-amz-algorithm": "AWS4-HMAC-SHA256",
                             "x-amz-credential": "AKID/20260101/us-east-1/s3/aws4_request",
                             "x-amz-date": "20260101T000000Z", "x-amz-signature": "0" * 64}, file=None)  # type: ignore[arg-type]
    with pytest.raises(S3Error) as err:
        post_object.authorize(form, Keys(), "b")
    assert err.value.code == "InvalidAccessKeyId"
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    expired = base64.b64encode(json.dumps({"expiration": "2025-12-31T00:00:00Z", "conditions": []}).encode()).decode()
    with pytest.raises(S3Error) as err:
        post_object._policy(expired, now)
    assert err.value.code == "AccessDenied"
    for bad in ("not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{}").decode()):
        with pytest.raises(S3Error) as err:
            post_object._policy(bad, now)
        assert err.value.code == "InvalidPolicyDocument"


def test_a_form_without_a_file_or_with_huge_fields_is_refused(mesh: InMemoryMesh) -> None:
    made = keys(mesh)

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = client(made["hospital"])
        await asyncio.to_thread(s3.create_bucket, Bucket="forms",
                                CreateBucketConfiguration={"LocationConstraint": "france-only"})
        url = s3.meta.endpoint_url + "/forms"
        answer = await asyncio.to_thread(HTTP.request, "POST", url, fields={"key": "a"})
        assert answer.status == 400 and s3_code(answer) == "InvalidArgument"
        answer = await asyncio.to_thread(post, url, {"key": "a", "big": "x" * (post_object.MAX_FIELDS_BYTES + 1)}, b"x")
        assert answer.status == 400 and s3_code(answer) == "MaxPostPreDataLengthExceeded"
        with pytest.raises(ClientError) as err:
            await asyncio.to_thread(s3.head_object, Bucket="forms", Key="a")
        assert code(err.value) == "404"

    run(serving(mesh, "paris-1", scenario))
