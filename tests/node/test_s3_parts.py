"""GetObject and HeadObject by `partNumber` (the part table every completed upload keeps,
`node/data/parts.py`): a parallel downloader asking for part N gets part N's bytes, never the whole
object again."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.node.data.parts import PARTS, Segment, part_table, segments
from maillage.testing.inmemory import InMemoryMesh

from .conftest import run
from .test_s3_inprocess import code, keys, serving

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 10**9)), max_size=50))
def test_a_part_table_gives_its_parts_back(steps):
    numbers, number = [], 0
    for gap, _ in steps:
        number += gap
        numbers.append(number)
    sizes = [(n, size) for n, (_, size) in zip(numbers, steps)]
    table = part_table(sizes)
    found = segments({PARTS: table}, sum(size for _, size in sizes)) if sizes else []
    assert [(s.number, s.length) for s in found] == sizes
    assert all(a.start + a.length == b.start for a, b in zip(found, found[1:]))
    assert segments({}, 7) == [Segment(0, 0, 7)]


def test_parts_read_one_at_a_time(mesh: InMemoryMesh) -> None:
    made = keys(mesh)
    body = os.urandom(7234)
    cuts = (0, 3000, 6000, 7234)

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = client(made["hospital"])
        mesh.nodes["paris-1"].service.uploads.min_part_size = 1

        def call(name: str, **kwargs: Any) -> Any:
            return asyncio.to_thread(getattr(s3, name), **kwargs)

        async def part(key: str, number: int) -> tuple[dict, bytes]:
            got = await call("get_object", Bucket="parts", Key=key, PartNumber=number)
            return got, await asyncio.to_thread(got["Body"].read)

        await call("create_bucket", Bucket="parts", CreateBucketConfiguration={"LocationConstraint": "france-only"})
        upload = await call("create_multipart_upload", Bucket="parts", Key="m")
        etags = [(await call("upload_part", Bucket="parts", Key="m", UploadId=upload["UploadId"], PartNumber=n + 1,
                             Body=body[a:b]))["ETag"] for n, (a, b) in enumerate(zip(cuts, cuts[1:]))]
        await call("complete_multipart_upload", Bucket="parts", Key="m", UploadId=upload["UploadId"],
                   MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
        for n, (a, b) in enumerate(zip(cuts, cuts[1:])):
            got, data = await part("m", n + 1)
            assert data == body[a:b] and got["PartsCount"] == 3
            assert got["ContentRange"] == f"bytes {a}-{b - 1}/{len(body)}"
        head = await call("head_object", Bucket="parts", Key="m", PartNumber=3)
        assert head["ContentLength"] == 1234 and head["PartsCount"] == 3
        await call("put_object", Bucket="parts", Key="whole", Body=body)
        _, data = await part("whole", 1)
        assert data == body
        for key, number, expected in (("m", 4, "InvalidPart"), ("whole", 2, "InvalidPart")):
            with pytest.raises(ClientError) as err:
                await call("get_object", Bucket="parts", Key=key, PartNumber=number)
            assert code(err.value) == expected
        with pytest.raises(ClientError) as err:
            await call("get_object", Bucket="parts", Key="m", PartNumber=1, Range="bytes=0-9")
        assert code(err.value) == "InvalidRequest"

    run(serving(mesh, "paris-1", scenario))
