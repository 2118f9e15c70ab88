"""S3 multipart uploads with boto3 against real node processes: parts stored as chunks in the bucket,
completion composing the object without copying (AWS-style ETag), errors, abort, listings,
UploadPartCopy and its residency refusal, boto3's own multipart transfers, residency of the parts
from the nodes' inventories, and the native SDK's check of a composed object."""

from __future__ import annotations

import hashlib
import os

import pytest

from maillage.client import Client, IntegrityError
from maillage.client.admin import fetch_inventories
from maillage.placement import bucket_partition, partition_table
from maillage.proto import pb, rpc
from maillage.proto.channels import open_blocking_channel
from maillage.proto.trust.identity import TlsIdentity
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import CHUNK, FRENCH, POLICIES, SITES
from .helpers import newest_manifest

boto3 = pytest.importorskip("boto3")
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

MIB = 1024 * 1024
CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("s3multipart"),
                  extra_args=("--chunk-size", str(CHUNK)), s3=True, s3_default_policy="eu-wide")
    with m:
        yield m


def s3_client(mesh: LocalMesh, node: int = 0):
    creds = mesh.profile.credentials
    return boto3.client("s3", aws_access_key_id=creds.key_id, aws_secret_access_key=creds.secret,
                        region_name="us-east-1", config=CONFIG, **mesh.s3_client_kwargs(node))


@pytest.fixture(scope="module")
def s3(mesh):
    return s3_client(mesh)


def code(err: pytest.ExceptionInfo) -> str:
    return err.value.response["Error"]["Code"]


def aws_etag(parts: list[bytes]) -> str:
    return f'"{hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()}-{len(parts)}"'


def _as_node(mesh, node_id: str):
    """A Replica stub on `node_id`, calling as paris-1 (PutManifest is for nodes only)."""
    tls = TlsIdentity.load_node(mesh.trust_dir("paris-1"))
    channel = open_blocking_channel(mesh.address(node_id), tls=tls, peer=node_id)
    return channel, rpc.ReplicaStub(channel)


def test_a_three_part_upload_round_trip_residency_and_the_native_check(mesh, s3):
    s3.create_bucket(Bucket="mp-fr", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1000)]
    created = s3.create_multipart_upload(Bucket="mp-fr", Key="scans/big.bin", ContentType="application/x-scan",
                                         Metadata={"patient": "anon-42"}, CacheControl="no-store")
    upload_id = created["UploadId"]
    # each part through another node's front door: any node coordinates
    etags = [s3_client(mesh, i % len(mesh.s3_endpoints)).upload_part(
        Bucket="mp-fr", Key="scans/big.bin", UploadId=upload_id, PartNumber=i + 1, Body=p)["ETag"]
        for i, p in enumerate(parts)]
    assert etags == [f'"{hashlib.md5(p).hexdigest()}"' for p in parts]

    listed = s3.list_parts(Bucket="mp-fr", Key="scans/big.bin", UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == \
        [(i + 1, etags[i], len(p)) for i, p in enumerate(parts)]
    assert listed["Initiator"]["ID"] == listed["Owner"]["ID"] != ""  # the tenant that began it owns the bucket
    uploads = s3.list_multipart_uploads(Bucket="mp-fr")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("scans/big.bin", upload_id)]
    assert "Contents" not in s3.list_objects_v2(Bucket="mp-fr")  # the parts are not objects

    # the parts (index entries and chunks) rest only on French nodes, as the nodes' inventories say
    inventories, unreachable = fetch_inventories(mesh.layout, mesh.admin_profile)
    assert not unreachable
    holders = {n for n, inv in inventories.items() if inv.keys.get("mp-fr") or inv.refs.get("mp-fr")}
    assert holders and {mesh.layout.node(n).site for n in holders} <= FRENCH
    reserved = {k for inv in inventories.values() for k in inv.keys.get("mp-fr", ())}
    assert any(k.startswith("\x01mpu/p/") for k in reserved)

    done = s3.complete_multipart_upload(
        Bucket="mp-fr", Key="scans/big.bin", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    assert done["ETag"] == aws_etag(parts)
    whole = b"".join(parts)
    got = s3_client(mesh, 2).get_object(Bucket="mp-fr", Key="scans/big.bin")
    assert got["Body"].read() == whole and got["ETag"] == aws_etag(parts)
    assert got["ContentType"] == "application/x-scan" and got["Metadata"] == {"patient": "anon-42"}
    assert got["CacheControl"] == "no-store"
    first, last = 5 * MIB - 10, 10 * MIB + 10  # across both part boundaries
    ranged = s3.get_object(Bucket="mp-fr", Key="scans/big.bin", Range=f"bytes={first}-{last}")
    assert ranged["Body"].read() == whole[first:last + 1]
    assert s3.list_multipart_uploads(Bucket="mp-fr").get("Uploads", []) == []
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="mp-fr")["Contents"]] == ["scans/big.bin"]
    with pytest.raises(ClientError) as err:
        s3.list_parts(Bucket="mp-fr", Key="scans/big.bin", UploadId=upload_id)
    assert code(err) == "NoSuchUpload"

    # the native SDK reads it and checks its composed etag against the chunks it verified...
    with Client(profile=mesh.profile) as c:
        info = c.head_object("mp-fr", "scans/big.bin")
        assert info.etag.endswith("-3") and info.size == len(whole)
        assert c.get_object("mp-fr", "scans/big.bin").read() == whole
        # ...and a manifest whose chunk list was changed (each chunk genuine) is an IntegrityError
        table = partition_table(c.layout(), "france-only")
        owners = table.replicas(bucket_partition("mp-fr", table.bits))
        real = newest_manifest(mesh, owners, "mp-fr", "scans/big.bin")
        forged = pb.Manifest()
        forged.CopyFrom(real)
        reordered = list(real.chunks)[::-1]
        del forged.chunks[:]
        forged.chunks.extend(reordered)
        forged.version = real.version + 1
        for node_id in owners:
            channel, stub = _as_node(mesh, node_id)
            with channel:
                assert stub.PutManifest(pb.PutManifestRequest(manifest=forged), timeout=10).applied
        with pytest.raises(IntegrityError, match="composed etag"):
            c.get_object("mp-fr", "scans/big.bin").read()
    s3.delete_object(Bucket="mp-fr", Key="scans/big.bin")


def test_completion_errors_and_abort(mesh, s3):
    s3.create_bucket(Bucket="mp-errors")
    key = "k.bin"
    upload_id = s3.create_multipart_upload(Bucket="mp-errors", Key=key)["UploadId"]
    big, small = os.urandom(5 * MIB), b"tail" * 10
    e1 = s3.upload_part(Bucket="mp-errors", Key=key, UploadId=upload_id, PartNumber=1, Body=big)["ETag"]
    e2 = s3.upload_part(Bucket="mp-errors", Key=key, UploadId=upload_id, PartNumber=2, Body=small)["ETag"]
    e3 = s3.upload_part(Bucket="mp-errors", Key=key, UploadId=upload_id, PartNumber=3, Body=small)["ETag"]

    def complete(parts):
        return s3.complete_multipart_upload(Bucket="mp-errors", Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]})

    for parts, expected in (([(2, e2), (1, e1)], "InvalidPartOrder"),
                            ([(1, e1), (4, e2)], "InvalidPart"),       # never uploaded
                            ([(1, e2), (2, e2)], "InvalidPart"),       # the ETag of another part
                            ([(1, e1), (2, e2), (3, e3)], "EntityTooSmall")):  # part 2 is not the last
        with pytest.raises(ClientError) as err:
            complete(parts)
        assert code(err) == expected, parts
    for number in (0, 10001):
        with pytest.raises(ClientError) as err:
            s3.upload_part(Bucket="mp-errors", Key=key, UploadId=upload_id, PartNumber=number, Body=b"x")
        assert code(err) == "InvalidArgument"
    for other_key, other_id in ((key, "0" * 32), ("another-key", upload_id), (key, "not-an-id")):
        with pytest.raises(ClientError) as err:
            s3.upload_part(Bucket="mp-errors", Key=other_key, UploadId=other_id, PartNumber=1, Body=b"x")
        assert code(err) == "NoSuchUpload"
    # the reserved key space cannot be written through S3 (InvalidArgument; the error document's
    # Resource holds the key's U+0001, which botocore's XML parser refuses, so only the status is checked)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="mp-errors", Key=f"\x01mpu/p/{upload_id}/00001", Body=b"forged")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert [p["PartNumber"] for p in s3.list_parts(Bucket="mp-errors", Key=key, UploadId=upload_id)["Parts"]] \
        == [1, 2, 3]

    assert complete([(1, e1), (3, e3)])["ETag"] == aws_etag([big, small])  # parts may skip numbers
    assert s3.get_object(Bucket="mp-errors", Key=key)["Body"].read() == big + small

    aborted = s3.create_multipart_upload(Bucket="mp-errors", Key="gone")["UploadId"]
    s3.upload_part(Bucket="mp-errors", Key="gone", UploadId=aborted, PartNumber=1, Body=b"bytes")
    s3.abort_multipart_upload(Bucket="mp-errors", Key="gone", UploadId=aborted)
    for call in (lambda: s3.list_parts(Bucket="mp-errors", Key="gone", UploadId=aborted),
                 lambda: s3.abort_multipart_upload(Bucket="mp-errors", Key="gone", UploadId=aborted),
                 lambda: s3.upload_part(Bucket="mp-errors", Key="gone", UploadId=aborted, PartNumber=2, Body=b"x")):
        with pytest.raises(ClientError) as err:
            call()
        assert code(err) == "NoSuchUpload"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket="mp-errors", Key="gone")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # an unfinished upload does not keep its bucket from being deleted: it goes with it
    s3.create_multipart_upload(Bucket="mp-errors", Key="unfinished")
    s3.delete_object(Bucket="mp-errors", Key=key)
    s3.delete_bucket(Bucket="mp-errors")
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket="mp-errors")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_list_uploads_and_parts_page_by_page(mesh, s3):
    s3.create_bucket(Bucket="mp-lists")
    made = [(k, s3.create_multipart_upload(Bucket="mp-lists", Key=k)["UploadId"])
            for k in ("logs/a", "logs/b", "photos/1", "readme", "logs/a")]
    expected = sorted(made)  # key order, then creation order (upload ids sort by creation)
    assert [u for k, u in expected if k == "logs/a"] == [u for k, u in made if k == "logs/a"]
    paginator = s3.get_paginator("list_multipart_uploads")
    pages = paginator.paginate(Bucket="mp-lists", PaginationConfig={"PageSize": 2})
    seen = [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]
    assert seen == expected
    top = s3.list_multipart_uploads(Bucket="mp-lists", Delimiter="/")
    assert [u["Key"] for u in top["Uploads"]] == ["readme"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["logs/", "photos/"]
    logs = s3.list_multipart_uploads(Bucket="mp-lists", Prefix="logs/")
    assert [u["Key"] for u in logs["Uploads"]] == ["logs/a", "logs/a", "logs/b"]
    first = s3.list_multipart_uploads(Bucket="mp-lists", MaxUploads=1)
    assert first["IsTruncated"] and first["NextKeyMarker"] == expected[0][0]
    assert first["NextUploadIdMarker"] == expected[0][1]

    key, upload_id = made[-1]
    for number in (1, 2, 5, 9):
        s3.upload_part(Bucket="mp-lists", Key=key, UploadId=upload_id, PartNumber=number, Body=b"p%d" % number)
    page = s3.list_parts(Bucket="mp-lists", Key=key, UploadId=upload_id, MaxParts=3)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2, 5] and page["IsTruncated"]
    assert page["NextPartNumberMarker"] == 5
    rest = s3.list_parts(Bucket="mp-lists", Key=key, UploadId=upload_id, PartNumberMarker=5)
    assert [p["PartNumber"] for p in rest["Parts"]] == [9] and not rest["IsTruncated"]
    for k, u in made:
        s3.abort_multipart_upload(Bucket="mp-lists", Key=k, UploadId=u)
    assert s3.list_multipart_uploads(Bucket="mp-lists").get("Uploads", []) == []


def test_upload_part_copy_and_its_residency_refusal(mesh, s3):
    s3.create_bucket(Bucket="mp-src-fr", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    s3.create_bucket(Bucket="mp-dst-fr", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    s3.create_bucket(Bucket="mp-dst-eu", CreateBucketConfiguration={"LocationConstraint": "eu-wide"})
    source = os.urandom(6 * MIB + 123)
    s3.put_object(Bucket="mp-src-fr", Key="source.bin", Body=source)
    upload_id = s3.create_multipart_upload(Bucket="mp-dst-fr", Key="copy.bin")["UploadId"]
    whole = s3.upload_part_copy(Bucket="mp-dst-fr", Key="copy.bin", UploadId=upload_id, PartNumber=1,
                                CopySource={"Bucket": "mp-src-fr", "Key": "source.bin"})["CopyPartResult"]
    assert whole["ETag"] == f'"{hashlib.md5(source).hexdigest()}"'
    ranged = s3.upload_part_copy(Bucket="mp-dst-fr", Key="copy.bin", UploadId=upload_id, PartNumber=2,
                                 CopySource="mp-src-fr/source.bin",
                                 CopySourceRange=f"bytes={MIB}-{6 * MIB - 1}")["CopyPartResult"]
    assert ranged["ETag"] == f'"{hashlib.md5(source[MIB:6 * MIB]).hexdigest()}"'
    own = s3.upload_part(Bucket="mp-dst-fr", Key="copy.bin", UploadId=upload_id, PartNumber=3, Body=b"own bytes")
    with pytest.raises(ClientError) as err:
        s3.upload_part_copy(Bucket="mp-dst-fr", Key="copy.bin", UploadId=upload_id, PartNumber=4,
                            CopySource="mp-src-fr/source.bin", CopySourceRange=f"bytes=0-{len(source)}")
    assert code(err) == "InvalidRange"
    s3.complete_multipart_upload(Bucket="mp-dst-fr", Key="copy.bin", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": whole["ETag"]}, {"PartNumber": 2, "ETag": ranged["ETag"]},
        {"PartNumber": 3, "ETag": own["ETag"]}]})
    assert s3.get_object(Bucket="mp-dst-fr", Key="copy.bin")["Body"].read() == \
        source + source[MIB:6 * MIB] + b"own bytes"

    # a France-only object cannot become a part of an upload into a wider (EU-wide) bucket
    wide = s3.create_multipart_upload(Bucket="mp-dst-eu", Key="leak.bin")["UploadId"]
    with pytest.raises(ClientError) as err:
        s3.upload_part_copy(Bucket="mp-dst-eu", Key="leak.bin", UploadId=wide, PartNumber=1,
                            CopySource="mp-src-fr/source.bin")
    assert code(err) == "AccessDenied" and "france-only" in err.value.response["Error"]["Message"]
    assert s3.list_parts(Bucket="mp-dst-eu", Key="leak.bin", UploadId=wide).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket="mp-dst-eu", Key="leak.bin", UploadId=wide)


def test_boto3_upload_file_and_download_file_in_parts(mesh, s3, tmp_path):
    s3.create_bucket(Bucket="mp-transfer")
    data = os.urandom(11 * MIB)
    src, back = tmp_path / "data.bin", tmp_path / "back.bin"
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=3)
    s3.upload_file(str(src), "mp-transfer", "data.bin", Config=config)
    head = s3.head_object(Bucket="mp-transfer", Key="data.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == aws_etag([data[:5 * MIB], data[5 * MIB:10 * MIB], data[10 * MIB:]])
    s3.download_file("mp-transfer", "data.bin", str(back), Config=config)  # ranged GETs in parallel
    assert back.read_bytes() == data
