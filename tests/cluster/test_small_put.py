"""Small PUTs in one request (Bulk/PutSmallObject) on a real mesh: the SDK sends a body it knows holds
at most INLINE_MAX bytes in one message, the node stores it on the same path as the PutObject stream
(tenancy, the client's BLAKE3 checked before the manifest is written), and refuses a larger one."""

from __future__ import annotations

import os

import blake3
import grpc
import pytest

from maillage.client import Client, IntegrityError, InvalidRequest, NoSuchKey
from maillage.client import _async as sdk
from maillage.proto import bulk, pb
from maillage.proto.channels import open_blocking_channel
from maillage.proto.limits import INLINE_MAX
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import TlsIdentity


@pytest.fixture(scope="module")
def bucket(client):
    client.create_bucket("small-puts", "france-only")
    return "small-puts"


@pytest.fixture()
def methods(monkeypatch):
    """Which PUT method each put_object used: 'small' (one request) or 'stream'."""
    used: list[str] = []
    small, stream = sdk.AsyncClient._put_small, sdk._put_stream

    async def counted_small(self, *args, **kwargs):
        used.append("small")
        return await small(self, *args, **kwargs)

    def counted_stream(*args, **kwargs):
        used.append("stream")
        return stream(*args, **kwargs)

    monkeypatch.setattr(sdk.AsyncClient, "_put_small", counted_small)
    monkeypatch.setattr(sdk, "_put_stream", counted_stream)
    return used


@pytest.mark.parametrize("size", [0, 1, 4096, INLINE_MAX])
def test_a_small_body_goes_in_one_request_and_reads_back(client, bucket, methods, size):
    data = os.urandom(size)
    put = client.put_object(bucket, f"small/{size}", data, content_type="text/x-test", metadata={"team": "a"})
    assert methods == ["small"]
    assert put.size == size and put.etag == blake3.blake3(data).hexdigest() and len(set(put.sites)) >= 2
    assert client.get_object(bucket, f"small/{size}").read() == data
    info = client.head_object(bucket, f"small/{size}")
    assert (info.size, info.etag, info.content_type, info.metadata) == (size, put.etag, "text/x-test", {"team": "a"})


def test_bodies_of_unknown_or_larger_size_stream(client, bucket, methods):
    client.put_object(bucket, "over", os.urandom(INLINE_MAX + 1))
    client.put_object(bucket, "iterated", iter([b"abc", b"def"]))   # size unknown: streamed
    assert methods == ["stream", "stream"]
    assert client.get_object(bucket, "iterated").read() == b"abcdef"


def test_a_small_file_goes_in_one_request(client, bucket, methods, tmp_path):
    path = tmp_path / "note.txt"
    path.write_bytes(b"x" * 1000)
    seen: list[tuple[int, int | None]] = []
    put = client.upload_file(path, bucket, "file", progress=lambda done, total: seen.append((done, total)))
    assert methods == ["small"] and put.size == 1000 and seen == [(1000, 1000)]
    assert client.get_object(bucket, "file").read() == b"x" * 1000


def _put_small(client: Client, key: str, data: bytes, digest: bytes):
    header = pb.PutObjectHeader(bucket="small-puts", key=key)
    return client._run(client._async._put_small(header, data, digest))


def test_a_wrong_blake3_is_an_integrity_error_and_nothing_is_written(client, bucket):
    data = b"the bytes the client meant"
    with pytest.raises(IntegrityError, match="nothing was written"):
        _put_small(client, "tampered", data, blake3.blake3(b"other bytes").digest())
    with pytest.raises(NoSuchKey):
        client.head_object(bucket, "tampered")
    client.put_object(bucket, "kept", b"version one")
    with pytest.raises(IntegrityError):
        _put_small(client, "kept", b"version two", blake3.blake3(b"version 2").digest())
    assert client.get_object(bucket, "kept").read() == b"version one"


def test_a_body_larger_than_inline_max_is_refused_by_the_sdk_and_by_the_node(mesh, client, bucket):
    data = os.urandom(INLINE_MAX + 1)
    with pytest.raises(InvalidRequest, match=f"at most {INLINE_MAX}"):
        _put_small(client, "too-large", data, blake3.blake3(data).digest())
    # the node's own bound, for a caller that does not go through the SDK
    key = mesh.profile.credentials
    message = bulk.small_object_message(pb.PutObjectHeader(bucket=bucket, key="too-large"), data,
                                        blake3.blake3(data).digest())
    with open_blocking_channel(mesh.address("paris-1"), tls=TlsIdentity.load_client(mesh.cluster_dir),
                               peer="paris-1") as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(bulk.PUT_SMALL_OBJECT)(
                message, timeout=10, metadata=requestauth.sign(bulk.PUT_SMALL_OBJECT, key.key_id, key.secret,
                                                               target="paris-1", body=message))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"more than the {INLINE_MAX}" in info.value.details() and "PutObject stream" in info.value.details()
    with pytest.raises(NoSuchKey):
        client.head_object(bucket, "too-large")
