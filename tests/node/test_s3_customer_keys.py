"""SSE-C: objects under a key the customer sends with each request (`data/customer_keys.py`), as
the cipher alone (properties over any data, pieces, parts and ranges) and through the S3 door over
TLS with boto3, on an in-memory mesh."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.data import customer_keys, parts
from maillage.node.data.customer_keys import CustomerKey, KeyRequired, NotEncryptedWithKey, WrongKey
from maillage.node.errors import InvalidRequest
from maillage.node.s3.common import Services
from maillage.node.s3.server import S3Server, tls_context
from maillage.proto.trust.identity import create_cluster, issue_node_certificate
from maillage.testing.inmemory import InMemoryMesh

from .conftest import run
from .test_s3_inprocess import CONFIG, code, keys

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402


def new_key() -> CustomerKey:
    raw = os.urandom(32)
    return CustomerKey.parse("AES256", base64.b64encode(raw).decode(),
                             base64.b64encode(hashlib.md5(raw).digest()).decode())


async def pieces_of(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts} | {len(data)}):
        yield data[start:cut]
        start = cut


async def joined(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


# ----- the cipher -------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=5), cuts=st.lists(st.integers(0, 20000)),
       numbered=st.booleans(), data=st.data())
def test_any_range_of_any_parts_decrypts_to_its_bytes(sizes, cuts, numbered, data):
    """Whole objects and parts (any numbers, lengths, piece cuts): every range decrypts to the
    plain bytes it covers, and what rests is not the plain bytes."""
    key = new_key()
    attributes = key.new_attributes()
    nonce = customer_keys.nonce_of(attributes)
    plain = [os.urandom(n) for n in sizes]
    numbers = sorted(data.draw(st.sets(st.integers(1, 10_000), min_size=len(sizes), max_size=len(sizes))))

    async def scenario() -> None:
        if numbered:
            stored = b"".join([await joined(customer_keys.encrypt(pieces_of(p, cuts), key, nonce, n, len(p)))
                               for n, p in zip(numbers, plain)])
            attributes[parts.PARTS] = parts.part_table(list(zip(numbers, sizes)))
        else:
            stored = await joined(customer_keys.encrypt(pieces_of(b"".join(plain), cuts), key, nonce))
        whole = b"".join(plain)
        assert len(stored) == len(whole)
        if len(whole) >= 32:
            assert stored != whole
        if not whole:
            return
        first = data.draw(st.integers(0, len(whole) - 1))
        last = data.draw(st.integers(first, len(whole) - 1))
        segments = parts.segments(attributes, len(whole))
        got = await joined(customer_keys.decrypt_range(pieces_of(stored[first:last + 1], cuts), key, nonce,
                                                       segments, first))
        assert got == whole[first:last + 1]

    run(scenario())


def test_the_key_is_checked_and_never_shown():
    key, other = new_key(), new_key()
    attributes = key.new_attributes()
    assert customer_keys.require(key, attributes) == customer_keys.nonce_of(attributes)
    with pytest.raises(WrongKey):
        customer_keys.require(other, attributes)
    with pytest.raises(KeyRequired):
        customer_keys.require(None, attributes)
    with pytest.raises(NotEncryptedWithKey):
        customer_keys.require(key, {})
    assert customer_keys.require(None, {}) is None
    assert base64.b64encode(key.key).decode() not in repr(key) + str(attributes)
    assert key.new_attributes()[customer_keys.NONCE] != attributes[customer_keys.NONCE]  # a nonce per write


@pytest.mark.parametrize("algorithm, key_b64, md5_b64", [
    ("AES128", base64.b64encode(bytes(32)).decode(), base64.b64encode(hashlib.md5(bytes(32)).digest()).decode()),
    ("AES256", base64.b64encode(bytes(16)).decode(), base64.b64encode(hashlib.md5(bytes(16)).digest()).decode()),
    ("AES256", "not base64!", "x"),
    ("AES256", base64.b64encode(bytes(32)).decode(), base64.b64encode(hashlib.md5(b"other").digest()).decode()),
    ("AES256", "A" * 10_000, ""),
])
def test_bad_keys_are_refused(algorithm, key_b64, md5_b64):
    with pytest.raises(InvalidRequest):
        CustomerKey.parse(algorithm, key_b64, md5_b64)


# ----- through the S3 door, over TLS ------------------------------------------------------------

@pytest.fixture(scope="module")
def door_tls(tmp_path_factory) -> tuple[ssl.SSLContext, str]:
    d = tmp_path_factory.mktemp("sse-c-tls")
    cluster = create_cluster(d / "cluster", "sse-c")
    files = issue_node_certificate(cluster, "paris-1", d / "node", sans=("localhost", "127.0.0.1"))
    return tls_context(files.cert, files.key), str(cluster.ca_cert)


async def serving(mesh: InMemoryMesh, tls: tuple[ssl.SSLContext, str] | None,
                  scenario: Callable[[Callable[..., Any]], Any]) -> None:
    node = mesh.nodes["paris-1"]
    node.service.uploads.min_part_size = 1
    services = Services(node.service, node.layout, mesh._executor, default_policy="eu-wide",
                        upload_budget=node.upload_budget)
    server = S3Server("127.0.0.1:0", services, node.access, ssl_context=tls[0] if tls else None)
    await server.start()
    try:
        def client(key: tuple[str, str]) -> Any:
            scheme = "https" if tls else "http"
            return boto3.client("s3", endpoint_url=f"{scheme}://127.0.0.1:{server.port}", aws_access_key_id=key[0],
                                aws_secret_access_key=key[1], region_name="us-east-1", config=CONFIG,
                                verify=tls[1] if tls else True)
        await scenario(client)
    finally:
        await server.stop()


def sse(key: CustomerKey, prefix: str = "") -> dict[str, str]:
    """boto3's parameters for a customer key (it sends the MD5 itself)."""
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key.key}  # type: ignore[dict-item]


def test_sse_c_objects_through_boto3(mesh: InMemoryMesh, door_tls) -> None:
    made = keys(mesh)
    body = os.urandom(5000)
    key, other = new_key(), new_key()

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = client(made["hospital"])

        def call(name: str, **kwargs: Any) -> Any:
            return asyncio.to_thread(getattr(s3, name), **kwargs)

        async def body_of(**kwargs: Any) -> bytes:
            """GetObject's body, read off the loop the server runs in."""
            return await asyncio.to_thread(lambda: s3.get_object(**kwargs)["Body"].read())

        async def refused(name: str, **kwargs: Any) -> tuple[int, str]:
            with pytest.raises(ClientError) as err:
                await call(name, **kwargs)
            return err.value.response["ResponseMetadata"]["HTTPStatusCode"], code(err.value)

        await call("create_bucket", Bucket="scans", CreateBucketConfiguration={"LocationConstraint": "france-only"})
        put = await call("put_object", Bucket="scans", Key="a.bin", Body=body, **sse(key))
        assert put["SSECustomerAlgorithm"] == "AES256" and "ServerSideEncryption" not in put
        assert await body_of(Bucket="scans", Key="a.bin", **sse(key)) == body
        assert await body_of(Bucket="scans", Key="a.bin", Range="bytes=1000-3499", **sse(key)) == body[1000:3500]
        head = await call("head_object", Bucket="scans", Key="a.bin", **sse(key))
        assert head["ContentLength"] == len(body) and head["SSECustomerKeyMD5"] == key.md5
        # What rests is not the plain bytes, and no key (nor its MD5) is kept with it.
        node = mesh.nodes["paris-1"]
        record = await node.service.coordinator.find_bucket("scans")
        assert record is not None
        manifest = await node.service.coordinator.head_object(record, "a.bin")
        table = node.layout.table(record.policy)
        name_key = node.service.coordinator.key_of(record)
        stored = b"".join([await node.service.coordinator.read_plain_chunk(table, ref.digest, name_key)
                           for ref in manifest.chunks])
        assert len(stored) == len(body) and stored != body and body[:64] not in stored
        assert key.md5 not in str(manifest.attributes)
        # A wrong key reads nothing, nor does no key; a key for a plain object is refused too (all 400).
        assert await refused("get_object", Bucket="scans", Key="a.bin", **sse(other)) == (400, "InvalidArgument")
        assert (await refused("get_object", Bucket="scans", Key="a.bin"))[0] == 400
        assert (await refused("head_object", Bucket="scans", Key="a.bin", **sse(other)))[0] == 400
        await call("put_object", Bucket="scans", Key="plain.bin", Body=body)
        assert (await refused("get_object", Bucket="scans", Key="plain.bin", **sse(key)))[0] == 400
        # Copies between any two kinds, a key rotation included.
        await call("copy_object", Bucket="scans", Key="rotated.bin", CopySource="scans/a.bin",
                   **sse(key, "CopySource"), **sse(other))
        assert await body_of(Bucket="scans", Key="rotated.bin", **sse(other)) == body
        await call("copy_object", Bucket="scans", Key="opened.bin", CopySource="scans/a.bin", **sse(key, "CopySource"))
        assert await body_of(Bucket="scans", Key="opened.bin") == body
        await call("copy_object", Bucket="scans", Key="sealed.bin", CopySource="scans/plain.bin", **sse(key))
        assert await body_of(Bucket="scans", Key="sealed.bin", **sse(key)) == body
        assert (await refused("copy_object", Bucket="scans", Key="x.bin", CopySource="scans/a.bin"))[0] == 400
        assert (await refused("copy_object", Bucket="scans", Key="x.bin", CopySource="scans/a.bin",
                              **sse(other, "CopySource")))[0] == 400
        # A multipart upload under a key: every part with it, read back whole and across parts.
        upload = await call("create_multipart_upload", Bucket="scans", Key="m.bin", **sse(key))
        uid = upload["UploadId"]
        halves = (body[:3000], body[3000:])
        etags = [(await call("upload_part", Bucket="scans", Key="m.bin", UploadId=uid, PartNumber=n + 1,
                             Body=half, **sse(key)))["ETag"] for n, half in enumerate(halves)]
        assert (await refused("upload_part", Bucket="scans", Key="m.bin", UploadId=uid, PartNumber=3,
                              Body=b"x", **sse(other)))[0] == 400
        assert (await refused("upload_part", Bucket="scans", Key="m.bin", UploadId=uid, PartNumber=3,
                              Body=b"x"))[0] == 400
        # a third part copied from a range of the SSE-C object, then a fourth from a plain one
        copied = await call("upload_part_copy", Bucket="scans", Key="m.bin", UploadId=uid, PartNumber=3,
                            CopySource="scans/a.bin", CopySourceRange="bytes=100-1099", **sse(key, "CopySource"),
                            **sse(key))
        etags.append(copied["CopyPartResult"]["ETag"])
        assert (await refused("upload_part_copy", Bucket="scans", Key="m.bin", UploadId=uid, PartNumber=4,
                              CopySource="scans/a.bin", **sse(key)))[0] == 400   # the source's key missing
        copied = await call("upload_part_copy", Bucket="scans", Key="m.bin", UploadId=uid, PartNumber=4,
                            CopySource="scans/plain.bin", CopySourceRange="bytes=0-9", **sse(key))
        etags.append(copied["CopyPartResult"]["ETag"])
        await call("complete_multipart_upload", Bucket="scans", Key="m.bin", UploadId=uid,
                   MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
        whole = body + body[100:1100] + body[:10]
        assert await body_of(Bucket="scans", Key="m.bin", **sse(key)) == whole
        assert await body_of(Bucket="scans", Key="m.bin", Range="bytes=2990-3009", **sse(key)) == whole[2990:3010]
        assert await body_of(Bucket="scans", Key="m.bin", Range="bytes=4990-5019", **sse(key)) == whole[4990:5020]

    run(serving(mesh, door_tls, scenario))


def test_a_customer_key_over_plain_http_is_refused(mesh: InMemoryMesh) -> None:
    made = keys(mesh)
    key = new_key()

    async def scenario(client: Callable[..., Any]) -> None:
        s3 = client(made["hospital"])
        await asyncio.to_thread(s3.create_bucket, Bucket="scans",
                                CreateBucketConfiguration={"LocationConstraint": "france-only"})
        with pytest.raises(ClientError) as err:
            await asyncio.to_thread(s3.put_object, Bucket="scans", Key="a.bin", Body=b"x", **sse(key))
        assert code(err.value) == "InvalidRequest"
        with pytest.raises(ClientError):
            await asyncio.to_thread(s3.head_object, Bucket="scans", Key="a.bin")   # nothing was written

    run(serving(mesh, None, scenario))
