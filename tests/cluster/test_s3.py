"""The S3 front door with a real S3 client: boto3 against real node processes, over TLS verified
with the cluster CA (the mesh's default), with its default checksum settings (aws-chunked bodies
with a trailing CRC32) and path-style addressing.
"""

from __future__ import annotations

import datetime
import os

import pytest

from maillage.client.admin import fetch_inventories
from maillage.testing import eventually
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import CHUNK, FRENCH, POLICIES, SITES

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("s3mesh"),
                  extra_args=("--chunk-size", str(CHUNK)), s3=True, s3_default_policy="eu-wide")
    with m:
        yield m


def s3_client(mesh, key_id: str, secret: str, node: int = 0):
    return boto3.client("s3", **mesh.s3_client_kwargs(node), aws_access_key_id=key_id,
                        aws_secret_access_key=secret, region_name="us-east-1", config=CONFIG)


@pytest.fixture(scope="module")
def s3(mesh):
    creds = mesh.profile.credentials
    return s3_client(mesh, creds.key_id, creds.secret)


def code(err: pytest.ExceptionInfo) -> str:
    return err.value.response["Error"]["Code"]


def test_a_france_only_bucket_round_trip_and_residency(mesh, s3):
    s3.create_bucket(Bucket="fr-docs", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    assert s3.get_bucket_location(Bucket="fr-docs")["LocationConstraint"] == "france-only"
    s3.head_bucket(Bucket="fr-docs")
    assert "fr-docs" in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    body = bytes(range(256)) * (3 * CHUNK // 256 + 17)  # several chunks
    put = s3.put_object(Bucket="fr-docs", Key="dossiers/a.bin", Body=body, ContentType="application/x-test",
                        Metadata={"owner": "alice"})
    got = s3.get_object(Bucket="fr-docs", Key="dossiers/a.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "application/x-test" and got["Metadata"] == {"owner": "alice"}
    head = s3.head_object(Bucket="fr-docs", Key="dossiers/a.bin")
    assert head["ContentLength"] == len(body)

    # ranges across a chunk boundary, at the end, and the suffix form
    for first, last in ((CHUNK - 5, CHUNK + 5), (0, 0), (len(body) - 10, len(body) - 1)):
        part = s3.get_object(Bucket="fr-docs", Key="dossiers/a.bin", Range=f"bytes={first}-{last}")
        assert part["Body"].read() == body[first:last + 1]
        assert part["ContentRange"] == f"bytes {first}-{last}/{len(body)}"
    assert s3.get_object(Bucket="fr-docs", Key="dossiers/a.bin", Range="bytes=-7")["Body"].read() == body[-7:]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="fr-docs", Key="dossiers/a.bin", Range=f"bytes={len(body)}-")
    assert code(err) == "InvalidRange"

    # the bucket's data rests only on French nodes, as the nodes' own inventories say
    inventories, unreachable = fetch_inventories(mesh.layout, mesh.admin_profile)
    assert not unreachable
    holders = {n for n, inv in inventories.items() if inv.keys.get("fr-docs") or inv.refs.get("fr-docs")}
    assert holders and holders <= FRENCH
    assert {mesh.layout.node(n).site for n in holders} <= FRENCH

    s3.delete_object(Bucket="fr-docs", Key="dossiers/a.bin")
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket="fr-docs", Key="dossiers/a.bin")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="fr-docs", Key="dossiers/a.bin")
    assert code(err) == "NoSuchKey"
    s3.delete_bucket(Bucket="fr-docs")
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket="fr-docs")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_small_objects_and_list_v2(mesh, s3):
    s3.create_bucket(Bucket="listing")  # no LocationConstraint: the node's default policy
    assert s3.get_bucket_location(Bucket="listing")["LocationConstraint"] == "eu-wide"
    keys = ["a/1", "a/2", "a/sub/3", "b/1", "c"]
    for k in keys:
        s3.put_object(Bucket="listing", Key=k, Body=k.encode())
    assert s3.get_object(Bucket="listing", Key="a/sub/3")["Body"].read() == b"a/sub/3"

    whole = s3.list_objects_v2(Bucket="listing")
    assert [o["Key"] for o in whole["Contents"]] == keys and whole["KeyCount"] == 5
    assert whole["Contents"][0]["Size"] == 3
    top = s3.list_objects_v2(Bucket="listing", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["c"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "b/"]
    under_a = s3.list_objects_v2(Bucket="listing", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in under_a["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in under_a["CommonPrefixes"]] == ["a/sub/"]

    seen, token = [], None
    for _ in range(10):
        page = s3.list_objects_v2(Bucket="listing", MaxKeys=2, **({"ContinuationToken": token} if token else {}))
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == keys
    paginator = s3.get_paginator("list_objects_v2")
    assert [o["Key"] for p in paginator.paginate(Bucket="listing", PaginationConfig={"PageSize": 2})
            for o in p.get("Contents", [])] == keys

    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket="listing")
    assert code(err) == "BucketNotEmpty"
    # re-created by its owner in the default policy: 200, as S3's default region answers, and
    # nothing of it lost; naming a LocationConstraint: BucketAlreadyOwnedByYou
    assert s3.create_bucket(Bucket="listing")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="listing")["Contents"]] == keys
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket="listing", CreateBucketConfiguration={"LocationConstraint": "eu-wide"})
    assert code(err) == "BucketAlreadyOwnedByYou"
    other = mesh.new_key("stranger")
    with pytest.raises(ClientError) as err:
        s3_client(mesh, other.credentials.key_id, other.credentials.secret).create_bucket(Bucket="listing")
    assert code(err) == "BucketAlreadyExists"


def test_checksums_are_verified(mesh, s3):
    s3.create_bucket(Bucket="sums")
    for algorithm in ("CRC32", "SHA1", "SHA256"):
        s3.put_object(Bucket="sums", Key=algorithm, Body=b"checked " * 1000, ChecksumAlgorithm=algorithm)
        assert s3.get_object(Bucket="sums", Key=algorithm)["Body"].read() == b"checked " * 1000
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="sums", Key="bad", Body=b"some bytes", ChecksumCRC32="AAAAAA==")
    assert code(err) == "BadDigest"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket="sums", Key="bad")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_errors_are_s3_errors(mesh, s3):
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket="nowhere", CreateBucketConfiguration={"LocationConstraint": "mars-only"})
    assert code(err) == "InvalidLocationConstraint" and "mars-only" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket="german", CreateBucketConfiguration={"LocationConstraint": "germany-only"})
    assert code(err) == "InvalidLocationConstraint"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="no-such-bucket", Key="k")
    assert code(err) == "NoSuchBucket"
    assert err.value.response["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket="Bad_Name")
    assert code(err) == "InvalidBucketName"


def test_a_wrong_secret_an_unknown_key_and_anonymous_are_refused(mesh):
    creds = mesh.profile.credentials
    wrong = s3_client(mesh, creds.key_id, "not-the-secret")
    with pytest.raises(ClientError) as err:
        wrong.list_buckets()
    assert code(err) == "SignatureDoesNotMatch"
    unknown = s3_client(mesh, "NO-SUCH-KEY", "whatever")
    with pytest.raises(ClientError) as err:
        unknown.list_buckets()
    assert code(err) == "InvalidAccessKeyId"
    from botocore import UNSIGNED
    anonymous = boto3.client("s3", **mesh.s3_client_kwargs(0), region_name="us-east-1",
                             config=CONFIG.merge(Config(signature_version=UNSIGNED)))
    with pytest.raises(ClientError) as err:
        anonymous.list_buckets()
    assert code(err) == "AccessDenied"


def test_another_tenant_is_refused(mesh, s3):
    s3.create_bucket(Bucket="private-fr", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    s3.put_object(Bucket="private-fr", Key="secret", Body=b"mine")
    other = mesh.new_key("other")
    theirs = s3_client(mesh, other.credentials.key_id, other.credentials.secret, node=1)
    for call in (lambda: theirs.get_object(Bucket="private-fr", Key="secret"),
                 lambda: theirs.put_object(Bucket="private-fr", Key="x", Body=b"y"),
                 lambda: theirs.list_objects_v2(Bucket="private-fr")):
        with pytest.raises(ClientError) as err:
            call()
        assert code(err) == "AccessDenied"
    assert "private-fr" not in [b["Name"] for b in theirs.list_buckets()["Buckets"]]
    # the owner reads it through another node's front door
    creds = mesh.profile.credentials
    assert s3_client(mesh, creds.key_id, creds.secret, node=2).get_object(
        Bucket="private-fr", Key="secret")["Body"].read() == b"mine"


def test_a_bucket_policy_shares_reads_with_anyone_and_another_tenant_never_wider(mesh, s3):
    """Public reads of a prefix for unsigned clients (through a door inside the bucket's policy and
    one outside, which forwards), reads of the bucket for another tenant, and no copy of its data
    into that tenant's wider bucket."""
    import json
    from functools import partial

    from botocore import UNSIGNED
    s3.create_bucket(Bucket="shared-fr", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    s3.put_object(Bucket="shared-fr", Key="public/notice.txt", Body=b"open to all")
    s3.put_object(Bucket="shared-fr", Key="records/1.txt", Body=b"partners only")
    partner = mesh.new_key("partners")
    arn = "arn:aws:s3:::shared-fr"
    s3.put_public_access_block(Bucket="shared-fr", PublicAccessBlockConfiguration=dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), False))
    s3.put_bucket_policy(Bucket="shared-fr", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "PublicNotices", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"{arn}/public/*"},
        {"Sid": "Partners", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::partners:root"},
         "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": [arn, f"{arn}/*"]}]}))
    assert s3.get_bucket_policy_status(Bucket="shared-fr")["PolicyStatus"]["IsPublic"] is True

    for node in ("paris-1", "munich-1"):  # the first serves it; the second is outside France-only and forwards
        anonymous = boto3.client("s3", **mesh.s3_client_kwargs(node), region_name="us-east-1",
                                 config=CONFIG.merge(Config(signature_version=UNSIGNED)))
        got = eventually(partial(anonymous.get_object, Bucket="shared-fr", Key="public/notice.txt"),
                         what="an anonymous read the policy allows", retry_on=(ClientError,), timeout=15)
        assert got["Body"].read() == b"open to all"
        forwarded = got["ResponseMetadata"]["HTTPHeaders"].get("x-maillage-forwarded-to")
        assert (forwarded is not None) == (node == "munich-1")
        for name, kwargs in (("get_object", {"Key": "records/1.txt"}),
                             ("put_object", {"Key": "public/x", "Body": b"x"}), ("list_objects_v2", {})):
            with pytest.raises(ClientError) as err:
                getattr(anonymous, name)(Bucket="shared-fr", **kwargs)
            assert code(err) == "AccessDenied"

    theirs = s3_client(mesh, partner.credentials.key_id, partner.credentials.secret, node="toulouse-1")
    assert theirs.get_object(Bucket="shared-fr", Key="records/1.txt")["Body"].read() == b"partners only"
    assert [o["Key"] for o in theirs.list_objects_v2(Bucket="shared-fr")["Contents"]] == [
        "public/notice.txt", "records/1.txt"]
    with pytest.raises(ClientError) as err:
        theirs.put_object(Bucket="shared-fr", Key="records/2.txt", Body=b"no")
    assert code(err) == "AccessDenied"
    theirs.create_bucket(Bucket="partners-eu", CreateBucketConfiguration={"LocationConstraint": "eu-wide"})
    with pytest.raises(ClientError) as err:  # France-only data never copied into an EU-wide bucket
        theirs.copy_object(Bucket="partners-eu", Key="copy", CopySource={"Bucket": "shared-fr", "Key": "records/1.txt"})
    assert code(err) == "AccessDenied" and "copy refused" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        theirs.head_object(Bucket="partners-eu", Key="copy")
    s3.delete_bucket_policy(Bucket="shared-fr")


def test_etags_are_md5_and_standard_headers_are_kept(mesh, s3):
    import datetime
    import hashlib
    s3.create_bucket(Bucket="headers")
    body = b"x" * (2 * CHUNK + 11)  # chunked, not inline
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    put = s3.put_object(Bucket="headers", Key="doc.pdf", Body=body, ContentType="application/pdf",
                        CacheControl="max-age=60", ContentDisposition='attachment; filename="doc.pdf"',
                        ContentEncoding="identity", ContentLanguage="fr", Expires=expires)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'  # what s3cmd and rclone compare
    head = s3.head_object(Bucket="headers", Key="doc.pdf")
    assert head["ETag"] == put["ETag"] and head["ContentLength"] == len(body)
    assert (head["CacheControl"], head["ContentDisposition"], head["ContentEncoding"], head["ContentLanguage"]) \
        == ("max-age=60", 'attachment; filename="doc.pdf"', "identity", "fr")
    assert head["Expires"] == expires
    got = s3.get_object(Bucket="headers", Key="doc.pdf", ResponseContentType="text/plain",
                        ResponseCacheControl="no-store")
    assert got["ContentType"] == "text/plain" and got["CacheControl"] == "no-store"
    assert got["Body"].read() == body
    listed = s3.list_objects_v2(Bucket="headers")["Contents"][0]
    assert listed["ETag"] == put["ETag"]
    # an inline (small) object has an MD5 ETag too
    small = s3.put_object(Bucket="headers", Key="small", Body=b"tiny")
    assert small["ETag"] == f'"{hashlib.md5(b"tiny").hexdigest()}"'


def test_content_md5_is_checked_on_object_and_part_writes(mesh, s3):
    import base64
    import hashlib
    s3.create_bucket(Bucket="md5-checked")
    body = b"y" * (CHUNK + 5)

    def md5_of(data: bytes) -> str:
        return base64.b64encode(hashlib.md5(data).digest()).decode()
    put = s3.put_object(Bucket="md5-checked", Key="k", Body=body, ContentMD5=md5_of(body))
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="md5-checked", Key="k", Body=b"z" + body[1:], ContentMD5=md5_of(body))
    assert code(err) == "BadDigest"
    assert s3.get_object(Bucket="md5-checked", Key="k")["Body"].read() == body  # nothing was written
    upload = s3.create_multipart_upload(Bucket="md5-checked", Key="parts")["UploadId"]
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket="md5-checked", Key="parts", UploadId=upload, PartNumber=1, Body=b"abc",
                       ContentMD5=md5_of(b"abd"))
    assert code(err) == "BadDigest"
    assert s3.list_parts(Bucket="md5-checked", Key="parts", UploadId=upload).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket="md5-checked", Key="parts", UploadId=upload)


def status(err: pytest.ExceptionInfo) -> int:
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_conditional_requests(mesh, s3):
    import datetime
    s3.create_bucket(Bucket="conditions")
    etag = s3.put_object(Bucket="conditions", Key="k", Body=b"v1")["ETag"]
    before = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    assert s3.get_object(Bucket="conditions", Key="k", IfMatch=etag)["Body"].read() == b"v1"
    assert s3.get_object(Bucket="conditions", Key="k", IfModifiedSince=before)["Body"].read() == b"v1"
    assert s3.get_object(Bucket="conditions", Key="k", IfUnmodifiedSince=after)["Body"].read() == b"v1"
    for kwargs, expected in (({"IfMatch": '"0123"'}, 412), ({"IfNoneMatch": etag}, 304),
                             ({"IfModifiedSince": after}, 304), ({"IfUnmodifiedSince": before}, 412)):
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket="conditions", Key="k", **kwargs)
        assert status(err) == expected, kwargs
        with pytest.raises(ClientError) as err:
            s3.head_object(Bucket="conditions", Key="k", **kwargs)
        assert status(err) == expected, kwargs

    # create-only and compare-and-swap writes
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="conditions", Key="k", Body=b"v2", IfNoneMatch="*")
    assert code(err) == "PreconditionFailed"
    s3.put_object(Bucket="conditions", Key="new", Body=b"n", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="conditions", Key="k", Body=b"v2", IfMatch='"not-it"')
    assert code(err) == "PreconditionFailed"
    s3.put_object(Bucket="conditions", Key="k", Body=b"v2", IfMatch=etag)
    assert s3.get_object(Bucket="conditions", Key="k")["Body"].read() == b"v2"


def test_copy_object(mesh, s3):
    import datetime
    s3.create_bucket(Bucket="copy-eu")
    s3.create_bucket(Bucket="copy-fr", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    body = bytes(range(256)) * (CHUNK // 128)  # two chunks
    source = s3.put_object(Bucket="copy-eu", Key="src", Body=body, ContentType="text/x-a",
                           Metadata={"who": "alice"}, CacheControl="max-age=5")

    copied = s3.copy_object(Bucket="copy-eu", Key="same-meta", CopySource={"Bucket": "copy-eu", "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == source["ETag"]
    head = s3.head_object(Bucket="copy-eu", Key="same-meta")
    assert (head["ContentType"], head["Metadata"], head["CacheControl"]) == ("text/x-a", {"who": "alice"}, "max-age=5")

    s3.copy_object(Bucket="copy-eu", Key="new-meta", CopySource="copy-eu/src", MetadataDirective="REPLACE",
                   ContentType="text/x-b", Metadata={"who": "bob"})
    head = s3.head_object(Bucket="copy-eu", Key="new-meta")
    assert (head["ContentType"], head["Metadata"], head["ETag"]) == ("text/x-b", {"who": "bob"}, source["ETag"])
    assert "CacheControl" not in head
    assert s3.get_object(Bucket="copy-eu", Key="new-meta")["Body"].read() == body

    # in place, only with new metadata (how rclone updates a modification time)
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket="copy-eu", Key="src", CopySource="copy-eu/src")
    assert code(err) == "InvalidRequest"
    s3.copy_object(Bucket="copy-eu", Key="src", CopySource="copy-eu/src", MetadataDirective="REPLACE",
                   Metadata={"mtime": "1"})
    assert s3.head_object(Bucket="copy-eu", Key="src")["Metadata"] == {"mtime": "1"}

    # conditional copies
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket="copy-eu", Key="c", CopySource="copy-eu/src", CopySourceIfMatch='"nope"')
    assert code(err) == "PreconditionFailed"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket="copy-eu", Key="c", CopySource="copy-eu/src", CopySourceIfNoneMatch=source["ETag"])
    assert code(err) == "PreconditionFailed"
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket="copy-eu", Key="c", CopySource="copy-eu/src", CopySourceIfModifiedSince=future)
    assert code(err) == "PreconditionFailed"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="copy-eu", Key="c")

    # residency: into a narrower policy is fine, out of France is refused
    s3.copy_object(Bucket="copy-fr", Key="in-france", CopySource="copy-eu/src")
    assert s3.get_object(Bucket="copy-fr", Key="in-france")["Body"].read() == body
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket="copy-eu", Key="out", CopySource="copy-fr/in-france")
    assert code(err) == "AccessDenied" and "france-only" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket="copy-eu", Key="x", CopySource="copy-eu/no-such-key")
    assert code(err) == "NoSuchKey"


def test_delete_objects(mesh, s3):
    s3.create_bucket(Bucket="bulk-delete")
    for k in ("a", "b", "c", "keep"):
        s3.put_object(Bucket="bulk-delete", Key=k, Body=k.encode())
    answer = s3.delete_objects(Bucket="bulk-delete", Delete={"Objects": [{"Key": k} for k in ("a", "b", "c", "gone")]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == ["a", "b", "c", "gone"]  # as S3: absent is deleted
    assert not answer.get("Errors")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bulk-delete")["Contents"]] == ["keep"]
    quiet = s3.delete_objects(Bucket="bulk-delete", Delete={"Objects": [{"Key": "keep"}], "Quiet": True})
    assert not quiet.get("Deleted") and not quiet.get("Errors")
    assert s3.list_objects_v2(Bucket="bulk-delete")["KeyCount"] == 0
    with pytest.raises(ClientError) as err:
        s3.delete_objects(Bucket="bulk-delete", Delete={"Objects": [{"Key": str(i)} for i in range(1001)]})
    assert code(err) == "MalformedXML"


def test_list_objects_v1_and_url_encoding(mesh, s3):
    s3.create_bucket(Bucket="listing-v1")
    keys = ["a b/1", "a b/2", "plain", "z/1", "é/x"]  # S3 order: by UTF-8 bytes
    for k in keys:
        s3.put_object(Bucket="listing-v1", Key=k, Body=b"1")
    whole = s3.list_objects(Bucket="listing-v1")  # boto3 asks encoding-type=url and decodes
    assert [o["Key"] for o in whole["Contents"]] == keys
    assert whole["Contents"][0]["Owner"]["ID"]
    top = s3.list_objects(Bucket="listing-v1", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a b/", "z/", "é/"]
    assert [o["Key"] for o in top["Contents"]] == ["plain"]
    paginator = s3.get_paginator("list_objects")
    pages = list(paginator.paginate(Bucket="listing-v1", PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3 and [o["Key"] for p in pages for o in p.get("Contents", [])] == keys
    assert pages[0]["NextMarker"] == "a b/2"
    delimited = list(paginator.paginate(Bucket="listing-v1", Delimiter="/", PaginationConfig={"PageSize": 1}))
    assert [p["Prefix"] for page in delimited for p in page.get("CommonPrefixes", [])] == ["a b/", "z/", "é/"]
    assert [o["Key"] for page in delimited for o in page.get("Contents", [])] == ["plain"]
    v2 = s3.list_objects_v2(Bucket="listing-v1", FetchOwner=True, MaxKeys=1)
    assert v2["Contents"][0]["Owner"]["ID"] and v2["IsTruncated"]
    assert "Owner" not in s3.list_objects_v2(Bucket="listing-v1", MaxKeys=1)["Contents"][0]


def test_a_get_reads_past_a_corrupt_replica(mesh, s3):
    from maillage.storage import ChunkStore

    from .helpers import manifest_digests
    s3.create_bucket(Bucket="bit-rot")
    body = bytes(range(256)) * (CHUNK // 256) + b"tail"  # two chunks
    s3.put_object(Bucket="bit-rot", Key="k", Body=body)
    flipped = 0
    for digest in manifest_digests(mesh, "bit-rot", "k"):
        for node in mesh.layout.nodes:  # the first copy found of each chunk rots
            path = ChunkStore.path_in(mesh.data_dir(node.id) / "chunks", digest)
            if path.exists():
                raw = bytearray(path.read_bytes())
                raw[len(raw) // 2] ^= 0x01
                path.write_bytes(bytes(raw))
                flipped += 1
                break
    assert flipped == 2
    for node in range(len(mesh.s3_endpoints)):  # whichever node coordinates, the good copy is served
        creds = mesh.profile.credentials
        assert s3_client(mesh, creds.key_id, creds.secret, node=node).get_object(
            Bucket="bit-rot", Key="k")["Body"].read() == body


def test_object_tags_through_boto3(mesh, s3):
    """Tags on PUT, Get/Put/DeleteObjectTagging, the tag count on GET, tags following a copy; the
    content and ETag never change with them; another tenant reads no tags; bad tags are InvalidTag."""
    s3.create_bucket(Bucket="tagged", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    put = s3.put_object(Bucket="tagged", Key="scan.dcm", Body=b"pixels" * 1000, Tagging="ward=b2&retain=10y")
    tag_set = s3.get_object_tagging(Bucket="tagged", Key="scan.dcm")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tag_set) == [("retain", "10y"), ("ward", "b2")]
    assert s3.get_object(Bucket="tagged", Key="scan.dcm")["TagCount"] == 2

    s3.put_object_tagging(Bucket="tagged", Key="scan.dcm",
                          Tagging={"TagSet": [{"Key": "ward", "Value": "c4"}, {"Key": "team", "Value": "care home"}]})
    assert {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket="tagged", Key="scan.dcm")["TagSet"]} == \
        {"ward": "c4", "team": "care home"}
    got = s3.get_object(Bucket="tagged", Key="scan.dcm")
    assert got["Body"].read() == b"pixels" * 1000 and got["ETag"] == put["ETag"]

    s3.copy_object(Bucket="tagged", Key="copy.dcm", CopySource={"Bucket": "tagged", "Key": "scan.dcm"})
    assert len(s3.get_object_tagging(Bucket="tagged", Key="copy.dcm")["TagSet"]) == 2
    s3.copy_object(Bucket="tagged", Key="bare.dcm", CopySource={"Bucket": "tagged", "Key": "scan.dcm"},
                   MetadataDirective="REPLACE", TaggingDirective="REPLACE", Tagging="only=one")
    assert s3.get_object_tagging(Bucket="tagged", Key="bare.dcm")["TagSet"] == [{"Key": "only", "Value": "one"}]

    s3.delete_object_tagging(Bucket="tagged", Key="scan.dcm")
    assert s3.get_object_tagging(Bucket="tagged", Key="scan.dcm")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket="tagged", Key="scan.dcm")

    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="tagged", Key="bad", Body=b"x", Tagging="a=1&a=2")
    assert code(err) == "InvalidTag"
    with pytest.raises(ClientError) as err:
        s3.get_object_tagging(Bucket="tagged", Key="absent")
    assert code(err) == "NoSuchKey"
    other = mesh.new_key("stranger-tags")
    with pytest.raises(ClientError) as err:
        s3_client(mesh, other.credentials.key_id, other.credentials.secret).get_object_tagging(
            Bucket="tagged", Key="copy.dcm")
    assert code(err) == "AccessDenied"


def test_bucket_tags_through_boto3(mesh, s3):
    """Put/Get/DeleteBucketTagging: NoSuchTagSet until set, replaced whole, gone after delete; the
    tags rest in the bucket's index (only on its policy's nodes), never list as objects, never keep
    a bucket from being deleted; another tenant reads none; bad tags are InvalidTag."""
    s3.create_bucket(Bucket="labelled", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket="labelled")
    assert code(err) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket="labelled", Tagging={"TagSet": [{"Key": "cost-centre", "Value": "radiology"},
                                                                 {"Key": "retain", "Value": "10y"}]})
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket="labelled")["TagSet"]} == \
        {"cost-centre": "radiology", "retain": "10y"}
    s3.put_bucket_tagging(Bucket="labelled", Tagging={"TagSet": [{"Key": "team", "Value": "care home"}]})
    assert s3.get_bucket_tagging(Bucket="labelled")["TagSet"] == [{"Key": "team", "Value": "care home"}]
    assert s3.list_objects_v2(Bucket="labelled")["KeyCount"] == 0

    with pytest.raises(ClientError) as err:
        s3.put_bucket_tagging(Bucket="labelled", Tagging={"TagSet": [{"Key": "a", "Value": "1"},
                                                                     {"Key": "a", "Value": "2"}]})
    assert code(err) == "InvalidTag"
    other = mesh.new_key("stranger-bucket-tags")
    with pytest.raises(ClientError) as err:
        s3_client(mesh, other.credentials.key_id, other.credentials.secret).get_bucket_tagging(Bucket="labelled")
    assert code(err) == "AccessDenied"

    s3.delete_bucket_tagging(Bucket="labelled")
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket="labelled")
    assert code(err) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket="labelled", Tagging={"TagSet": [{"Key": "last", "Value": "one"}]})
    s3.delete_bucket(Bucket="labelled")   # its tags do not make it "not empty"
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket="labelled")
    assert code(err) == "NoSuchBucket"


def test_server_side_encryption_as_clients_ask(mesh, s3):
    """SSE-S3 is what every object has (sealed at rest with AES-256-GCM): asked for, it is echoed,
    and every object answer says so; SSE-KMS is refused with words, and so is a malformed customer
    key; bucket default encryption shows AES256 and takes only that."""
    s3.create_bucket(Bucket="sealed", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    put = s3.put_object(Bucket="sealed", Key="a", Body=b"secret", ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert s3.put_object(Bucket="sealed", Key="b", Body=b"plain ask")["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket="sealed", Key="a")["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="sealed", Key="a")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == b"secret"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="sealed", Key="k", Body=b"x", ServerSideEncryption="aws:kms")
    assert code(err) == "NotImplemented"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="sealed", Key="c", Body=b"x", SSECustomerAlgorithm="AES128", SSECustomerKey="k" * 32)
    assert code(err) == "InvalidArgument"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="sealed", Key="c")  # nothing was stored for the refused writes

    rules = s3.get_bucket_encryption(Bucket="sealed")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    s3.put_bucket_encryption(Bucket="sealed", ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    with pytest.raises(ClientError) as err:
        s3.put_bucket_encryption(Bucket="sealed", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    assert code(err) == "NotImplemented"
    s3.delete_bucket_encryption(Bucket="sealed")
    other = mesh.new_key("stranger-sse")
    with pytest.raises(ClientError) as err:
        s3_client(mesh, other.credentials.key_id, other.credentials.secret).get_bucket_encryption(Bucket="sealed")
    assert code(err) == "AccessDenied"


def test_customer_keys_through_boto3(mesh, s3):
    """SSE-C on real nodes over HTTPS: written through one node and read through others (forwarded
    to France where a node is outside it), a wrong key reads nothing, a multipart upload and a
    copy under a new key read back whole."""
    key, other = os.urandom(32), os.urandom(32)
    body = os.urandom(3 * CHUNK + 123)
    s3.create_bucket(Bucket="fr-sse-c", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    put = s3.put_object(Bucket="fr-sse-c", Key="scan", Body=body, SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert put["SSECustomerAlgorithm"] == "AES256" and "ServerSideEncryption" not in put
    creds = mesh.profile.credentials
    for node in range(len(mesh.layout.nodes)):
        reader = s3_client(mesh, creds.key_id, creds.secret, node=node)
        got = reader.get_object(Bucket="fr-sse-c", Key="scan", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
        assert got["Body"].read() == body
        with pytest.raises(ClientError) as err:
            reader.get_object(Bucket="fr-sse-c", Key="scan", SSECustomerAlgorithm="AES256", SSECustomerKey=other)
        assert status(err) == 400
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="fr-sse-c", Key="scan")
    assert status(err) == 400
    part = 5 * 1024 * 1024
    big = os.urandom(part + 1000)
    upload = s3.create_multipart_upload(Bucket="fr-sse-c", Key="big", SSECustomerAlgorithm="AES256",
                                        SSECustomerKey=key)["UploadId"]
    etags = [s3.upload_part(Bucket="fr-sse-c", Key="big", UploadId=upload, PartNumber=n + 1, Body=piece,
                            SSECustomerAlgorithm="AES256", SSECustomerKey=key)["ETag"]
             for n, piece in enumerate((big[:part], big[part:]))]
    s3.complete_multipart_upload(Bucket="fr-sse-c", Key="big", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    ranged = s3.get_object(Bucket="fr-sse-c", Key="big", Range=f"bytes={part - 10}-{part + 9}",
                           SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert ranged["Body"].read() == big[part - 10:part + 10]
    s3.copy_object(Bucket="fr-sse-c", Key="big", CopySource="fr-sse-c/big", SSECustomerAlgorithm="AES256",
                   SSECustomerKey=other, CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key)
    got = s3.get_object(Bucket="fr-sse-c", Key="big", SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    assert got["Body"].read() == big


def test_expected_bucket_owner_is_checked(mesh, s3):
    s3.create_bucket(Bucket="owned", CreateBucketConfiguration={"LocationConstraint": "eu-wide"})
    owner = s3.list_buckets()["Owner"]["ID"]
    s3.put_object(Bucket="owned", Key="k", Body=b"v", ExpectedBucketOwner=owner)
    assert s3.get_object(Bucket="owned", Key="k", ExpectedBucketOwner=owner)["Body"].read() == b"v"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="owned", Key="k", Body=b"overwritten", ExpectedBucketOwner="someone-else")
    assert code(err) == "AccessDenied"
    assert s3.get_object(Bucket="owned", Key="k")["Body"].read() == b"v"


def test_get_object_attributes(mesh, s3):
    s3.create_bucket(Bucket="attrs", CreateBucketConfiguration={"LocationConstraint": "eu-wide"})
    put = s3.put_object(Bucket="attrs", Key="one", Body=b"x" * 1234)
    got = s3.get_object_attributes(Bucket="attrs", Key="one", ObjectAttributes=["ETag", "ObjectSize", "StorageClass"])
    assert (got["ETag"], got["ObjectSize"], got["StorageClass"]) == (put["ETag"].strip('"'), 1234, "STANDARD")
    upload = s3.create_multipart_upload(Bucket="attrs", Key="multi")["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="attrs", Key="multi", UploadId=upload, PartNumber=n,
                                                      Body=body)["ETag"]}
             for n, body in ((1, b"a" * (5 << 20)), (2, b"b"))]
    s3.complete_multipart_upload(Bucket="attrs", Key="multi", UploadId=upload, MultipartUpload={"Parts": parts})
    got = s3.get_object_attributes(Bucket="attrs", Key="multi", ObjectAttributes=["ObjectParts", "ObjectSize"])
    assert got["ObjectParts"]["TotalPartsCount"] == 2 and got["ObjectSize"] == (5 << 20) + 1
    with pytest.raises(ClientError) as err:
        s3.get_object_attributes(Bucket="attrs", Key="absent", ObjectAttributes=["ETag"])
    assert code(err) == "NoSuchKey"


def test_versioning_through_boto3(mesh, s3):
    """Enable versioning, overwrite, delete (a marker), read the old version, list versions, delete a
    version and the marker; the noncurrent versions rest in France only."""
    bucket = "fr-versions"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "france-only"})
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="before", Body=b"unversioned")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    first_body = bytes(range(256)) * (2 * CHUNK // 256 + 3)  # several chunks
    first = s3.put_object(Bucket=bucket, Key="doc", Body=first_body)
    second = s3.put_object(Bucket=bucket, Key="doc", Body=b"second")
    v1, v2 = first["VersionId"], second["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)
    got = s3.get_object(Bucket=bucket, Key="doc")
    assert got["Body"].read() == b"second" and got["VersionId"] == v2
    old = s3.get_object(Bucket=bucket, Key="doc", VersionId=v1)
    assert old["Body"].read() == first_body and old["VersionId"] == v1 and old["ETag"] == first["ETag"]
    assert s3.head_object(Bucket=bucket, Key="doc", VersionId=v1)["ContentLength"] == len(first_body)
    assert s3.get_object_attributes(Bucket=bucket, Key="doc", ObjectAttributes=["ETag"])["VersionId"] == v2
    copied = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "doc", "VersionId": v1})
    assert copied["CopySourceVersionId"] == v1
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == first_body

    marker = s3.delete_object(Bucket=bucket, Key="doc")
    assert marker["DeleteMarker"] and marker["VersionId"] not in (v1, v2)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="doc")
    assert code(err) == "NoSuchKey"
    assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    assert "doc" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

    listing = s3.list_object_versions(Bucket=bucket)
    versions = [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listing["Versions"]]
    assert versions == [("before", "null", True), ("copy", copied["VersionId"], True), ("doc", v2, False),
                        ("doc", v1, False)]
    assert [(m["Key"], m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == \
        [("doc", marker["VersionId"], True)]
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2, KeyMarker="copy",
                                   VersionIdMarker=copied["VersionId"])
    assert page["IsTruncated"] and page["NextKeyMarker"] == "doc"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="doc", VersionId="0" * 24)
    assert code(err) == "NoSuchVersion"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="doc", VersionId="../" * 400)
    assert code(err) == "InvalidArgument"

    # the noncurrent versions (and the marker) rest on French nodes only, as the nodes' inventories say
    inventories, unreachable = fetch_inventories(mesh.layout, mesh.admin_profile)
    assert not unreachable
    holders = {n for n, inv in inventories.items() if inv.keys.get(bucket) or inv.refs.get(bucket)}
    assert holders and holders <= FRENCH

    s3.delete_object(Bucket=bucket, Key="doc", VersionId=v2)
    s3.delete_object(Bucket=bucket, Key="doc", VersionId=marker["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == first_body  # v1 is current again
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="doc", VersionId=v2)
    assert code(err) == "NoSuchVersion"
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "doc", "VersionId": v1}, {"Key": "before", "VersionId": "null"},
        {"Key": "copy", "VersionId": copied["VersionId"]}]})
    assert sorted((d["Key"], d["VersionId"]) for d in answer["Deleted"]) == \
        [("before", "null"), ("copy", copied["VersionId"]), ("doc", v1)]
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p" * 1000)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == [done["VersionId"]]
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=bucket)
    assert code(err) == "BucketNotEmpty"
    s3.delete_object(Bucket=bucket, Key="mp", VersionId=done["VersionId"])
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="null", Body=b"n")  # as S3: the null version
    assert s3.head_object(Bucket=bucket, Key="null", VersionId="null")["VersionId"] == "null"
    s3.delete_object(Bucket=bucket, Key="null", VersionId="null")
    s3.delete_bucket(Bucket=bucket)

def test_tags_of_a_given_version_through_boto3(mesh, s3):
    """Get/Put/DeleteObjectTagging with a VersionId: each version keeps its own tags; the current
    one's are the key's; a delete marker has none (405), an unknown version is NoSuchVersion."""
    bucket = "fr-version-tags"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "france-only"})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="scan", Body=b"one", Tagging="stage=raw")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="scan", Body=b"two", Tagging="stage=clean")["VersionId"]

    def tags(**version) -> dict[str, str]:
        answer = s3.get_object_tagging(Bucket=bucket, Key="scan", **version)
        if version:
            assert answer["VersionId"] == version["VersionId"]
        return {t["Key"]: t["Value"] for t in answer["TagSet"]}

    assert tags(VersionId=v1) == {"stage": "raw"} and tags(VersionId=v2) == {"stage": "clean"} == tags()
    put = s3.put_object_tagging(Bucket=bucket, Key="scan", VersionId=v1,
                                Tagging={"TagSet": [{"Key": "stage", "Value": "archived"}]})
    assert put["VersionId"] == v1
    assert tags(VersionId=v1) == {"stage": "archived"} and tags() == {"stage": "clean"}
    s3.put_object_tagging(Bucket=bucket, Key="scan", VersionId=v2, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    assert tags() == {"a": "b"} == tags(VersionId=v2)
    assert s3.delete_object_tagging(Bucket=bucket, Key="scan", VersionId=v1)["VersionId"] == v1
    assert tags(VersionId=v1) == {} and tags() == {"a": "b"}
    assert s3.get_object(Bucket=bucket, Key="scan", VersionId=v1)["Body"].read() == b"one"  # content untouched
    marker = s3.delete_object(Bucket=bucket, Key="scan")["VersionId"]
    with pytest.raises(ClientError) as err:
        s3.get_object_tagging(Bucket=bucket, Key="scan", VersionId=marker)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    with pytest.raises(ClientError) as err:
        s3.put_object_tagging(Bucket=bucket, Key="scan", VersionId="0" * 24, Tagging={"TagSet": []})
    assert code(err) == "NoSuchVersion"

def test_acls_are_the_owners_alone_and_a_public_one_is_refused_not_ignored(mesh, s3):
    """ACLs as S3's "bucket owner enforced": reading one says the bucket's owner has full control;
    setting private or bucket-owner-full-control (clients' defaults) is accepted; a public ACL on an
    object or a grant to another account is AccessControlListNotSupported and nothing is stored; a
    bucket's public-read (a policy in other words) only once its owner lifted BlockPublicAcls."""
    bucket = "acl-check"
    s3.create_bucket(Bucket=bucket, ACL="private")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    for answer in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="k")):
        owner = answer["Owner"]["ID"]
        assert owner and [(g["Grantee"]["ID"], g["Grantee"]["Type"], g["Permission"]) for g in answer["Grants"]] == \
            [(owner, "CanonicalUser", "FULL_CONTROL")]
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    mine = {"Grantee": {"ID": owner["ID"], "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={"Owner": owner, "Grants": [mine]})
    refused = [
        lambda: s3.put_object(Bucket=bucket, Key="public", Body=b"x", ACL="public-read"),
        lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write"),
        lambda: s3.put_object_acl(Bucket=bucket, Key="k", GrantRead='id="someone-else"'),
        lambda: s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={"Owner": owner, "Grants": [
            {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
             "Permission": "READ"}]}),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="mp", ACL="authenticated-read"),
    ]
    for call in refused:
        with pytest.raises(ClientError) as err:
            call()
        assert code(err) == "AccessControlListNotSupported"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["k"] and "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_object_acl(Bucket=bucket, Key="absent")
    assert code(err) == "NoSuchKey"

    # ownership controls say the same and cannot be changed; the public access block (all on for a
    # new bucket) is its owner's to lift, and a public bucket ACL waits for BlockPublicAcls to go
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    enforced = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=enforced)
    with pytest.raises(ClientError) as err:
        s3.put_bucket_ownership_controls(Bucket=bucket,
                                         OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    assert code(err) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.delete_bucket_ownership_controls(Bucket=bucket)
    assert code(err) == "NotImplemented"
    blocks = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == \
        dict.fromkeys(blocks, True)
    with pytest.raises(ClientError) as err:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert code(err) == "AccessDenied"
    s3.delete_public_access_block(Bucket=bucket)
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == \
        dict.fromkeys(blocks, False)
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    from botocore import UNSIGNED
    anonymous = boto3.client("s3", **mesh.s3_client_kwargs(1), region_name="us-east-1",
                             config=CONFIG.merge(Config(signature_version=UNSIGNED)))

    def anonymous_reads() -> bool:
        try:
            return anonymous.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
        except ClientError as err:
            assert err.response["Error"]["Code"] == "AccessDenied"
            return False

    # Through another node: its copy of the bucket's rules is a few seconds old at most.
    eventually(anonymous_reads, timeout=15, what="an anonymous read of a public-read bucket")
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    eventually(lambda: not anonymous_reads(), timeout=15, what="the bucket private again")


def test_object_lock_through_boto3(mesh, s3):
    """A bucket created with object lock: its versioning stays Enabled, a COMPLIANCE version cannot
    be removed by anyone before its date, a GOVERNANCE one only by the owner (a key for all its
    buckets) asking to bypass, never by an application's bucket-limited key,
    a legal hold keeps a version whatever its retention; the lock headers come back on reads; a
    bucket without lock refuses lock headers (nothing stored)."""

    bucket = "fr-locked"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "france-only"},
                     ObjectLockEnabledForBucket=True)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    configuration = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert configuration == {"ObjectLockEnabled": "Enabled"}
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    rule = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["Rule"]
    assert rule == {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}
    until = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=30)
    comp = s3.put_object(Bucket=bucket, Key="backup", Body=b"day one", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=until)["VersionId"]
    head = s3.head_object(Bucket=bucket, Key="backup", VersionId=comp)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] == until
    gov = s3.put_object(Bucket=bucket, Key="backup", Body=b"day two")["VersionId"]  # the default retention
    assert s3.get_object_retention(Bucket=bucket, Key="backup", VersionId=gov)["Retention"]["Mode"] == "GOVERNANCE"
    admin_key = mesh.new_key("demo", "admin").credentials
    admin = s3_client(mesh, admin_key.key_id, admin_key.secret, node=1)
    app_key = mesh.new_key("demo", "read-write", buckets=(bucket,)).credentials
    app = s3_client(mesh, app_key.key_id, app_key.secret)
    for client, bypass, version in ((app, True, gov), (s3, False, gov), (admin, False, gov), (admin, True, comp),
                                    (s3, True, comp)):
        with pytest.raises(ClientError) as err:
            client.delete_object(Bucket=bucket, Key="backup", VersionId=version, BypassGovernanceRetention=bypass)
        assert code(err) == "AccessDenied", (client, bypass, version)
    with pytest.raises(ClientError) as err:  # COMPLIANCE never shortens, whoever asks
        earlier = until - datetime.timedelta(days=1)
        admin.put_object_retention(Bucket=bucket, Key="backup", VersionId=comp, BypassGovernanceRetention=True,
                                   Retention={"Mode": "COMPLIANCE", "RetainUntilDate": earlier})
    assert code(err) == "AccessDenied"
    s3.put_object_retention(Bucket=bucket, Key="backup", VersionId=comp,  # lengthening is anyone's right
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until + datetime.timedelta(days=1)})
    s3.put_object_legal_hold(Bucket=bucket, Key="backup", VersionId=gov, LegalHold={"Status": "ON"})
    assert s3.get_object_legal_hold(Bucket=bucket, Key="backup", VersionId=gov)["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as err:  # the hold keeps it even from the admin's bypass
        admin.delete_object(Bucket=bucket, Key="backup", VersionId=gov, BypassGovernanceRetention=True)
    assert code(err) == "AccessDenied"
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "backup", "VersionId": comp}]})
    assert [e["Code"] for e in answer.get("Errors", [])] == ["AccessDenied"]
    s3.put_object_legal_hold(Bucket=bucket, Key="backup", VersionId=gov, LegalHold={"Status": "OFF"})
    admin.delete_object(Bucket=bucket, Key="backup", VersionId=gov, BypassGovernanceRetention=True)
    assert s3.delete_object(Bucket=bucket, Key="backup")["DeleteMarker"]  # a marker is always allowed
    assert s3.get_object(Bucket=bucket, Key="backup", VersionId=comp)["Body"].read() == b"day one"
    with pytest.raises(ClientError) as err:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert code(err) == "InvalidBucketState"
    plain = "fr-unlocked"
    s3.create_bucket(Bucket=plain, CreateBucketConfiguration={"LocationConstraint": "france-only"})
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=plain, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON")
    assert code(err) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.get_object_lock_configuration(Bucket=plain)
    assert code(err) == "ObjectLockConfigurationNotFoundError"
    assert "Contents" not in s3.list_objects_v2(Bucket=plain)


@pytest.fixture(scope="module")
def sweeping_mesh(tmp_path_factory):
    """A mesh whose nodes sweep lifecycle rules every second (the default is an hour)."""
    m = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("lifecycle"),
                  extra_args=("--lifecycle-interval", "1"), s3=True, s3_default_policy="eu-wide")
    with m:
        yield m


def test_lifecycle_through_boto3(sweeping_mesh):
    """Put, get and delete a bucket's lifecycle rules; a rule whose expiration date has passed
    expires the matching objects at the next sweep of the bucket's leading node, the others stay."""
    creds = sweeping_mesh.profile.credentials
    s3 = s3_client(sweeping_mesh, creds.key_id, creds.secret)
    bucket = "fr-lifecycle"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "france-only"})
    for key in ("tmp/a", "tmp/b", "keep/c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    with pytest.raises(ClientError) as err:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code(err) == "NoSuchLifecycleConfiguration"
    rules = [{"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
              "Expiration": {"Date": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)}},
             {"ID": "uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
              "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [(r["ID"], r["Status"], r["Filter"]) for r in got] == [("tmp", "Enabled", {"Prefix": "tmp/"}),
                                                                    ("uploads", "Enabled", {})]  # all keys
    assert got[0]["Expiration"]["Date"] == datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)

    def keys() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

    eventually(lambda: keys() == ["keep/c"], timeout=30, what="the expired objects gone")
    # the nodes' status says what their sweeps did (one node leads the bucket and swept it)
    with sweeping_mesh.admin() as admin:
        answers = admin.statuses(timeout=5)
    leaders = [a.lifecycle for a in answers.values() if not isinstance(a, str) and a.lifecycle.expired]
    assert sum(c.expired for c in leaders) >= 2 and all(c.sweeps >= 1 for c in leaders)
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code(err) == "NoSuchLifecycleConfiguration"
    for storage_class, refusal in (("GLACIER", "read at once"), ("STANDARD_IA", "names no cold policy")):
        cold = {"ID": "cold", "Status": "Enabled", "Filter": {},
                "Transitions": [{"Days": 30, "StorageClass": storage_class}]}
        with pytest.raises(ClientError) as err:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [cold]})
        assert code(err) == "InvalidArgument" and refusal in str(err.value)
    assert keys() == ["keep/c"]
