"""Every S3 operation, called by every kind of caller, answers as the one rule table says.

The expected answer is computed from `maillage.node.service.rules` (the table the gRPC gate uses
too) and the bucket check of the service layer (`Caller.require`), never written out by hand: a
caller the table refuses gets 403, any other gets past authorization (its answer may still be an
S3 error of the operation itself: NoSuchUpload for a made-up upload id, BucketNotEmpty...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import urllib3

from maillage.node.errors import AccessDenied
from maillage.node.service.rules import OPERATIONS, S3_OPERATIONS, admit
from maillage.node.service.tenancy import Caller
from maillage.proto.trust.access import AccessKey, revoke_key
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import CHUNK, POLICIES, SITES

boto3 = pytest.importorskip("boto3")
from botocore import UNSIGNED  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

pytestmark = pytest.mark.timeout(240)

BUCKET, POLICY, OWNER = "rules-target", "france-only", "hospital"
UPLOAD = "0" * 32  # an upload id that names no upload
CONFIG = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("s3rules"),
                  extra_args=("--chunk-size", str(CHUNK)), s3=True, s3_default_policy="eu-wide")
    with m:
        yield m


Kind = tuple[Any, Caller | None]  # (boto3 client, the caller the node should see; None: nobody)


@pytest.fixture(scope="module")
def kinds(mesh: LocalMesh) -> dict[str, Kind]:
    def client(key_id: str | None = None, secret: str | None = None) -> Any:
        config = Config(signature_version=UNSIGNED if key_id is None else "s3v4", **CONFIG)
        return boto3.client("s3", **mesh.s3_client_kwargs(0), aws_access_key_id=key_id or "x",
                            aws_secret_access_key=secret or "x", region_name="us-east-1", config=config)

    def kind(profile: Any, tenant: str, role: str, buckets: tuple[str, ...] = ()) -> Kind:
        c = profile.credentials
        return client(c.key_id, c.secret), Caller(key=AccessKey(c.key_id, c.secret, tenant, role, buckets))

    owner = mesh.new_key(OWNER)
    revoked = mesh.new_key(OWNER)
    with mesh.admin() as admin:
        admin.edit_access(lambda doc: revoke_key(doc, revoked.credentials.key_id))
    admin_tenant = mesh.admin_profile
    kinds = {
        "anonymous": (client(), None),
        "revoked key": (client(revoked.credentials.key_id, revoked.credentials.secret), None),
        "another tenant": kind(mesh.new_key("housing"), "housing", "read-write"),
        "read-only key": kind(mesh.new_key(OWNER, "read-only"), OWNER, "read-only"),
        "key limited to another bucket": kind(mesh.new_key(OWNER, "read-write", ("elsewhere",)), OWNER,
                                              "read-write", ("elsewhere",)),
        "admin key": (client(admin_tenant.credentials.key_id, admin_tenant.credentials.secret),
                      Caller(key=_admin_key(mesh))),
        "owner": kind(owner, OWNER, "read-write"),
    }
    s3 = kinds["owner"][0]
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": POLICY})
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"kept: the bucket is never empty")
    return kinds


def _admin_key(mesh: LocalMesh) -> AccessKey:
    with mesh.admin() as admin:
        doc = admin.access()
    key = doc.key(mesh.admin_profile.credentials.key_id)
    assert key is not None
    return key


SOURCE = {"Bucket": BUCKET, "Key": "k"}
def post_form(s3: Any, kind: str) -> None:
    """PostObject: the form this client signs (boto3's generate_presigned_post, no policy at all
    when unsigned), sent as a browser sends it; an error answer raised as boto3's ClientError.
    (TLS unverified: this walk is about who is admitted, tests/cluster/test_s3_tls.py about TLS.)"""
    signed = s3.generate_presigned_post(BUCKET, "posted", ExpiresIn=300)
    answer = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False).request(
        "POST", signed["url"], fields=[*signed["fields"].items(), ("file", ("f", b"x"))])
    if answer.status >= 300:
        text = answer.data.decode()
        error = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""
        raise ClientError({"Error": {"Code": error}, "ResponseMetadata": {"HTTPStatusCode": answer.status}},
                          "PostObject")


CALLS: dict[str, Callable[[Any, str], Any]] = {
    "ListBuckets": lambda s3, kind: s3.list_buckets(),
    "CreateBucket": lambda s3, kind: s3.create_bucket(
        Bucket=f"new-{abs(hash(kind)) % 10**8}", CreateBucketConfiguration={"LocationConstraint": POLICY}),
    "HeadBucket": lambda s3, kind: s3.head_bucket(Bucket=BUCKET),
    "DeleteBucket": lambda s3, kind: s3.delete_bucket(Bucket=BUCKET),  # never empty: BucketNotEmpty if allowed
    "GetBucketLocation": lambda s3, kind: s3.get_bucket_location(Bucket=BUCKET),
    "ListObjects": lambda s3, kind: s3.list_objects_v2(Bucket=BUCKET),
    "DeleteObjects": lambda s3, kind: s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "absent"}]}),
    "ListMultipartUploads": lambda s3, kind: s3.list_multipart_uploads(Bucket=BUCKET),
    "PutObject": lambda s3, kind: s3.put_object(Bucket=BUCKET, Key="written", Body=b"x"),
    "CopyObject": lambda s3, kind: s3.copy_object(Bucket=BUCKET, Key="copied", CopySource=SOURCE),
    "GetObject": lambda s3, kind: s3.get_object(Bucket=BUCKET, Key="k")["Body"].read(),
    "HeadObject": lambda s3, kind: s3.head_object(Bucket=BUCKET, Key="k"),
    "DeleteObject": lambda s3, kind: s3.delete_object(Bucket=BUCKET, Key="absent"),
    "CreateMultipartUpload": lambda s3, kind: s3.create_multipart_upload(Bucket=BUCKET, Key="m"),
    "UploadPart": lambda s3, kind: s3.upload_part(Bucket=BUCKET, Key="m", UploadId=UPLOAD, PartNumber=1, Body=b"x"),
    "UploadPartCopy": lambda s3, kind: s3.upload_part_copy(Bucket=BUCKET, Key="m", UploadId=UPLOAD, PartNumber=1,
                                                            CopySource=SOURCE),
    "CompleteMultipartUpload": lambda s3, kind: s3.complete_multipart_upload(
        Bucket=BUCKET, Key="m", UploadId=UPLOAD, MultipartUpload={"Parts": [{"ETag": '"x"', "PartNumber": 1}]}),
    "AbortMultipartUpload": lambda s3, kind: s3.abort_multipart_upload(Bucket=BUCKET, Key="m", UploadId=UPLOAD),
    "ListParts": lambda s3, kind: s3.list_parts(Bucket=BUCKET, Key="m", UploadId=UPLOAD),
    "GetObjectAttributes": lambda s3, kind: s3.get_object_attributes(Bucket=BUCKET, Key="k", ObjectAttributes=["ETag"]),
    "GetObjectTagging": lambda s3, kind: s3.get_object_tagging(Bucket=BUCKET, Key="k"),
    "PutObjectTagging": lambda s3, kind: s3.put_object_tagging(
        Bucket=BUCKET, Key="k", Tagging={"TagSet": [{"Key": "by", "Value": kind.replace(" ", "-")}]}),
    "DeleteObjectTagging": lambda s3, kind: s3.delete_object_tagging(Bucket=BUCKET, Key="k"),
    "GetBucketEncryption": lambda s3, kind: s3.get_bucket_encryption(Bucket=BUCKET),
    "PutBucketEncryption": lambda s3, kind: s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}),
    "DeleteBucketEncryption": lambda s3, kind: s3.delete_bucket_encryption(Bucket=BUCKET),
    "GetBucketVersioning": lambda s3, kind: s3.get_bucket_versioning(Bucket=BUCKET),
    "PutBucketVersioning": lambda s3, kind: s3.put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"}),
    "ListObjectVersions": lambda s3, kind: s3.list_object_versions(Bucket=BUCKET),
    "GetBucketTagging": lambda s3, kind: s3.get_bucket_tagging(Bucket=BUCKET),   # NoSuchTagSet when allowed
    "PutBucketTagging": lambda s3, kind: s3.put_bucket_tagging(
        Bucket=BUCKET, Tagging={"TagSet": [{"Key": "by", "Value": kind.replace(" ", "-")}]}),
    "DeleteBucketTagging": lambda s3, kind: s3.delete_bucket_tagging(Bucket=BUCKET),
    "GetBucketAcl": lambda s3, kind: s3.get_bucket_acl(Bucket=BUCKET),
    "PutBucketAcl": lambda s3, kind: s3.put_bucket_acl(Bucket=BUCKET, ACL="private"),
    "GetObjectAcl": lambda s3, kind: s3.get_object_acl(Bucket=BUCKET, Key="k"),
    "PutObjectAcl": lambda s3, kind: s3.put_object_acl(Bucket=BUCKET, Key="k", ACL="bucket-owner-full-control"),
    "GetBucketOwnershipControls": lambda s3, kind: s3.get_bucket_ownership_controls(Bucket=BUCKET),
    "PutBucketOwnershipControls": lambda s3, kind: s3.put_bucket_ownership_controls(
        Bucket=BUCKET, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}),
    "GetPublicAccessBlock": lambda s3, kind: s3.get_public_access_block(Bucket=BUCKET),
    "PutPublicAccessBlock": lambda s3, kind: s3.put_public_access_block(
        Bucket=BUCKET, PublicAccessBlockConfiguration=dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True)),
    "DeletePublicAccessBlock": lambda s3, kind: s3.delete_public_access_block(Bucket=BUCKET),
    # A policy granting nobody here anything: the walk's answers stay the table's.
    "PutBucketPolicy": lambda s3, kind: s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "no-such-tenant"}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{BUCKET}/*"}]})),
    "GetBucketPolicy": lambda s3, kind: s3.get_bucket_policy(Bucket=BUCKET),
    "GetBucketPolicyStatus": lambda s3, kind: s3.get_bucket_policy_status(Bucket=BUCKET),
    "DeleteBucketPolicy": lambda s3, kind: s3.delete_bucket_policy(Bucket=BUCKET),
    "GetBucketLifecycleConfiguration": lambda s3, kind: s3.get_bucket_lifecycle_configuration(Bucket=BUCKET),
    "PutBucketLifecycleConfiguration": lambda s3, kind: s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET, LifecycleConfiguration={"Rules": [
            {"ID": "r", "Status": "Disabled", "Filter": {"Prefix": "none/"}, "Expiration": {"Days": 1}}]}),
    "DeleteBucketLifecycle": lambda s3, kind: s3.delete_bucket_lifecycle(Bucket=BUCKET),
    "PostObject": post_form,
    "PutBucketCors": lambda s3, kind: s3.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={
        "CORSRules": [{"AllowedOrigins": ["https://app.example.org"], "AllowedMethods": ["GET"]}]}),
    "GetBucketCors": lambda s3, kind: s3.get_bucket_cors(Bucket=BUCKET),
    "DeleteBucketCors": lambda s3, kind: s3.delete_bucket_cors(Bucket=BUCKET),
    # BUCKET has no object lock (its versioning is never Enabled here): an allowed caller gets
    # ObjectLockConfigurationNotFoundError, InvalidBucketState or InvalidRequest, never a refusal.
    "GetObjectLockConfiguration": lambda s3, kind: s3.get_object_lock_configuration(Bucket=BUCKET),
    "PutObjectLockConfiguration": lambda s3, kind: s3.put_object_lock_configuration(
        Bucket=BUCKET, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}),
    "GetObjectRetention": lambda s3, kind: s3.get_object_retention(Bucket=BUCKET, Key="k"),
    "PutObjectRetention": lambda s3, kind: s3.put_object_retention(
        Bucket=BUCKET, Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": "2099-01-01T00:00:00Z"}),
    "GetObjectLegalHold": lambda s3, kind: s3.get_object_legal_hold(Bucket=BUCKET, Key="k"),
    "PutObjectLegalHold": lambda s3, kind: s3.put_object_legal_hold(
        Bucket=BUCKET, Key="k", LegalHold={"Status": "ON"}),
}
REFUSALS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}



def test_every_s3_operation_is_walked() -> None:
    assert set(CALLS) == S3_OPERATIONS


def refused_by_the_table(operation: str, caller: Caller | None) -> bool:
    """What the rule table and the service layer's bucket check say of this caller."""
    if caller is None:
        return True  # no valid signature: nobody
    rule = OPERATIONS[operation]
    try:
        admit(operation, rule, caller)
        if rule.bucket is not None:  # CreateBucket: a new bucket, the caller's tenant's
            new = operation == "CreateBucket"
            caller.require(rule.bucket, "new-bucket" if new else BUCKET, caller.tenant if new else OWNER)
        if operation in ("CopyObject", "UploadPartCopy"):
            caller.require("read", BUCKET, OWNER)  # the source
    except AccessDenied:
        return True
    return False


@pytest.mark.parametrize("operation", sorted(S3_OPERATIONS))
def test_each_caller_gets_what_the_table_says(kinds: dict[str, Kind], operation: str) -> None:
    wrong = []
    for kind, (s3, caller) in kinds.items():
        try:
            CALLS[operation](s3, kind)
            answer = "OK"
        except ClientError as err:
            answer = err.response["Error"]["Code"] or str(err.response["ResponseMetadata"]["HTTPStatusCode"])
            if err.response["ResponseMetadata"]["HTTPStatusCode"] == 403 and answer not in REFUSALS:
                answer = "AccessDenied"  # a HEAD's 403 carries no body
        expected = refused_by_the_table(operation, caller)
        if (answer in REFUSALS) != expected:
            wrong.append(f"{kind}: {answer} (the table says {'refused' if expected else 'allowed'})")
    assert not wrong, f"{operation}: " + "; ".join(wrong)
