"""Checksums a client sends with a write (x-amz-checksum-*) are kept with the object and answered:
echoed by PutObject and UploadPart, given back by GET and HEAD asked with x-amz-checksum-mode
ENABLED (boto3 then checks the body against it), and composed for a completed upload as S3 does
("<checksum of the parts' checksums>-<parts>")."""

from __future__ import annotations

import asyncio
import base64
import os
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from maillage.node.s3.checksums import composite
from maillage.testing.inmemory import InMemoryMesh

from .conftest import run
from .test_s3_inprocess import keys, serving

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_composite_of_parts():
    parts = [b"one", b"two"]
    assert composite([{"crc32": crc32(p)} for p in parts]) == \
        {"crc32": f"{crc32(b''.join(base64.b64decode(crc32(p)) for p in parts))}-2"}
    assert composite([{"crc32": crc32(b"a")}, {"sha256": "x"}]) == {}   # not one algorithm: none
    assert composite([{"crc32": crc32(b"a")}, {}]) == {}


def test_checksums_are_kept_and_answered(mesh: InMemoryMesh) -> None:
    made = keys(mesh)
    body = os.urandom(5000)

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = client(made["hospital"])
        mesh.nodes["paris-1"].service.uploads.min_part_size = 1

        def call(name: str, **kwargs: Any) -> Any:
            return asyncio.to_thread(getattr(s3, name), **kwargs)

        await call("create_bucket", Bucket="sums", CreateBucketConfiguration={"LocationConstraint": "france-only"})
        put = await call("put_object", Bucket="sums", Key="a", Body=body, ChecksumAlgorithm="CRC32")
        assert put["ChecksumCRC32"] == crc32(body)
        head = await call("head_object", Bucket="sums", Key="a", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == crc32(body)
        assert "ChecksumCRC32" not in await call("head_object", Bucket="sums", Key="a")   # not asked
        got = await asyncio.to_thread(lambda: s3.get_object(Bucket="sums", Key="a", ChecksumMode="ENABLED"))
        assert got["ChecksumCRC32"] == crc32(body) and await asyncio.to_thread(got["Body"].read) == body
        with pytest.raises(ClientError) as err:   # not a CRC32 at all: nothing stored
            await call("put_object", Bucket="sums", Key="b", Body=body, ChecksumAlgorithm="CRC32", ChecksumCRC32="bad")
        assert err.value.response["Error"]["Code"] == "BadDigest"
        ranged = await call("get_object", Bucket="sums", Key="a", Range="bytes=0-9", ChecksumMode="ENABLED")
        assert "ChecksumCRC32" not in ranged   # a range has no checksum of its own

        upload = await call("create_multipart_upload", Bucket="sums", Key="m", ChecksumAlgorithm="CRC32")
        assert upload["ChecksumAlgorithm"] == "CRC32"
        halves = (body[:3000], body[3000:])
        parts = [await call("upload_part", Bucket="sums", Key="m", UploadId=upload["UploadId"], PartNumber=n + 1,
                            Body=half, ChecksumAlgorithm="CRC32") for n, half in enumerate(halves)]
        assert [p["ChecksumCRC32"] for p in parts] == [crc32(h) for h in halves]
        done = await call("complete_multipart_upload", Bucket="sums", Key="m", UploadId=upload["UploadId"],
                          MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": p["ETag"],
                                                      "ChecksumCRC32": p["ChecksumCRC32"]}
                                                     for n, p in enumerate(parts)]})
        expected = composite([{"crc32": crc32(h)} for h in halves])["crc32"]
        assert done["ChecksumCRC32"] == expected
        head = await call("head_object", Bucket="sums", Key="m", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == expected
        attributes = await call("get_object_attributes", Bucket="sums", Key="a", ObjectAttributes=["Checksum"])
        assert attributes["Checksum"]["ChecksumCRC32"] == crc32(body)

    run(serving(mesh, "paris-1", scenario))
