"""A door outside a bucket's policy passes its requests on (issue 22): boto3 through a German
node's S3 door works on a France-only bucket from end to end, every answer coming from a French
node (X-Maillage-Forwarded-To), and nothing of the bucket rests on a German node, its log
included. A forwarded request is never forwarded again; a request whose signature does not verify
is refused at the German door itself. The SDK, whose cached policy went stale, retries inside the
policy it reads again.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from maillage.client import Client
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import CHUNK
from .helpers import inventory

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)
GERMAN = ("munich-1", "nuremberg-1")
FRENCH = ("paris-1", "paris-2", "toulouse-1", "montpellier-1")
FORWARDED_TO = "x-maillage-forwarded-to"
# Key names that must never rest in Germany, logs included.
SECRET_KEYS = ("dossier-zq7/scan-1.bin", "dossier-zq7/petit.txt", "dossier-zq7/copie.bin", "dossier-zq7/mpu.bin")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """The demo's six sites (four French, two German), each node serving S3 over TLS."""
    with LocalMesh(make_layout(), tmp_path_factory.mktemp("s3forward"), extra_args=("--chunk-size", str(CHUNK)),
                   s3=True) as m:
        yield m


def door(mesh: LocalMesh, node: str, *, secret: str | None = None, seen: list | None = None):
    key = mesh.profile.credentials
    s3 = boto3.client("s3", **mesh.s3_client_kwargs(node), aws_access_key_id=key.key_id,
                      aws_secret_access_key=secret or key.secret, region_name="us-east-1", config=CONFIG)
    if seen is not None:  # every answer's headers, in order
        s3.meta.events.register("after-call.s3.*", lambda http_response, **_: seen.append(http_response.headers))
    return s3


def access_lines(mesh: LocalMesh, node: str) -> list[dict]:
    return [json.loads(line) for line in mesh.access_log(node).read_text().splitlines()]


def german_holdings(mesh: LocalMesh, bucket: str) -> dict[str, list]:
    """What each German node's own inventory holds of `bucket` (keys and chunk references)."""
    out = {}
    for node in GERMAN:
        inv = inventory(mesh, mesh.address(node), bucket)
        out[node] = [(b.bucket, list(b.keys), len(b.chunks)) for b in inv.buckets if b.bucket == bucket]
    return out


def test_a_german_door_serves_a_france_only_bucket_from_france(mesh: LocalMesh) -> None:
    seen: list = []
    s3 = door(mesh, "munich-1", seen=seen)
    bucket = "fr-via-de"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "france-only"})
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "france-only"  # answered here
    s3.head_bucket(Bucket=bucket)

    big = bytes(range(256)) * (3 * CHUNK // 256 + 99)  # several chunks, aws-chunked with a CRC trailer
    put = s3.put_object(Bucket=bucket, Key=SECRET_KEYS[0], Body=big, Metadata={"ward": "b2"})
    s3.put_object(Bucket=bucket, Key=SECRET_KEYS[1], Body=b"petit", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key=SECRET_KEYS[0])
    assert got["Body"].read() == big and got["ETag"] == put["ETag"] and got["Metadata"] == {"ward": "b2"}
    part = s3.get_object(Bucket=bucket, Key=SECRET_KEYS[0], Range=f"bytes={CHUNK - 3}-{CHUNK + 3}")
    assert part["Body"].read() == big[CHUNK - 3:CHUNK + 4] and part["ResponseMetadata"]["HTTPStatusCode"] == 206
    head = s3.head_object(Bucket=bucket, Key=SECRET_KEYS[1])
    assert head["ContentLength"] == 5 and head["ContentType"] == "text/plain"
    with pytest.raises(ClientError) as err:  # an error document comes back as the French door wrote it
        s3.head_object(Bucket=bucket, Key="dossier-zq7/absent")
    assert err.value.response["Error"]["Code"] == "404"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="dossier-zq7/absent")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    s3.copy_object(Bucket=bucket, Key=SECRET_KEYS[2], CopySource={"Bucket": bucket, "Key": SECRET_KEYS[1]})

    upload = s3.create_multipart_upload(Bucket=bucket, Key=SECRET_KEYS[3])["UploadId"]
    first, last = b"a" * (5 * 1024 * 1024), b"z" * 1000
    etags = [s3.upload_part(Bucket=bucket, Key=SECRET_KEYS[3], UploadId=upload, PartNumber=n, Body=body)["ETag"]
             for n, body in ((1, first), (2, last))]
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key=SECRET_KEYS[3], UploadId=upload)["Parts"]] \
        == [1, 2]
    s3.complete_multipart_upload(Bucket=bucket, Key=SECRET_KEYS[3], UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in zip((1, 2), etags)]})
    assert s3.get_object(Bucket=bucket, Key=SECRET_KEYS[3])["Body"].read() == first + last

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dossier-zq7/")
    assert [o["Key"] for o in listed["Contents"]] == sorted(SECRET_KEYS)
    assert s3.list_objects(Bucket=bucket, Delimiter="/")["CommonPrefixes"] == [{"Prefix": "dossier-zq7/"}]

    # Every answer about the bucket's data came from a French node; those about its record did not.
    forwarded = [h.get(FORWARDED_TO) for h in seen]
    assert forwarded[0] in FRENCH  # CreateBucket (its LocationConstraint read here, then passed on)
    assert forwarded[1] is None and forwarded[2] is None  # GetBucketLocation, HeadBucket
    assert all(f in FRENCH for f in forwarded[3:]), forwarded
    assert len(set(forwarded[3:])) > 1  # spread over the French doors

    # Nothing of it rests on a German node: neither keys nor chunks (their own inventories), nor a
    # key name in their logs.
    assert german_holdings(mesh, bucket) == {node: [] for node in GERMAN}
    for node in GERMAN:
        log = (mesh.log_dir / f"{node}.log").read_text(errors="replace")
        assert not [k for k in (*SECRET_KEYS, "dossier-zq7") if k in log], node
        assert not [k for k in (*SECRET_KEYS, "dossier-zq7") if k in mesh.access_log(node).read_text()], node

    # The access logs tell one story: each request the German door passed on is a line there
    # without names, and a line with the same request id, bucket and key at the French door that served it.
    passed_on = [e for e in access_lines(mesh, "munich-1") if e.get("forwarded_to")]
    assert len(passed_on) >= len(forwarded) - 3 and all("key" not in e and "bucket" not in e for e in passed_on)
    served = {e["request_id"]: e for node in FRENCH for e in access_lines(mesh, node)}
    for entry in passed_on:
        there = served[entry["request_id"]]
        assert there["bucket"] == bucket and there["status"] == entry["status"], (entry, there)
    assert {served[e["request_id"]]["key"] for e in passed_on if e["method"] == "PUT"} >= set(SECRET_KEYS[:2])

    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in SECRET_KEYS[:3]]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == sorted(SECRET_KEYS[:3])
    s3.delete_object(Bucket=bucket, Key=SECRET_KEYS[3])
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as err:  # (munich-1 may remember the record for a few seconds)
        door(mesh, "paris-2").head_bucket(Bucket=bucket)
    assert err.value.response["Error"]["Code"] == "404"
    assert german_holdings(mesh, bucket) == {node: [] for node in GERMAN}


def test_a_forwarded_request_is_never_forwarded_again(mesh: LocalMesh) -> None:
    """A request marked as forwarded reaching a node outside the policy is answered 503 there, not
    passed on (two outside nodes cannot pass it back and forth); inside, it is served."""
    door(mesh, "paris-1").create_bucket(Bucket="fr-loop", CreateBucketConfiguration={"LocationConstraint":
                                                                                    "france-only"})
    for node, served in (("nuremberg-1", False), ("toulouse-1", True)):
        seen: list = []
        s3 = door(mesh, node, seen=seen)
        s3.meta.events.register("before-send.s3.*", lambda request, **_: request.headers.__setitem__(
            "X-Maillage-Forwarded-By", "munich-1"))
        if served:
            s3.put_object(Bucket="fr-loop", Key="k", Body=b"x")
        else:
            with pytest.raises(ClientError) as err:
                s3.put_object(Bucket="fr-loop", Key="k", Body=b"x")
            assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
            assert "outside" in err.value.response["Error"]["Message"]
        assert seen[-1].get(FORWARDED_TO) is None


def test_a_bad_signature_is_refused_at_the_german_door(mesh: LocalMesh) -> None:
    door(mesh, "paris-1").create_bucket(Bucket="fr-auth", CreateBucketConfiguration={"LocationConstraint":
                                                                                    "france-only"})
    good: list = []
    door(mesh, "munich-1", seen=good).put_object(Bucket="fr-auth", Key="k", Body=b"x")
    assert good[-1].get(FORWARDED_TO) in FRENCH
    for bucket in ("fr-auth", "no-such-bucket"):
        seen: list = []
        s3 = door(mesh, "munich-1", secret="not-the-secret", seen=seen)
        for method, extra in (("put_object", {"Body": b"forged"}), ("get_object", {})):
            with pytest.raises(ClientError) as err:
                getattr(s3, method)(Bucket=bucket, Key="k", **extra)
            assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
            assert seen[-1].get(FORWARDED_TO) is None  # answered by munich-1 itself
    presigned = door(mesh, "munich-1", secret="not-the-secret").generate_presigned_url(
        "get_object", Params={"Bucket": "fr-auth", "Key": "k"}, ExpiresIn=60)
    context = ssl.create_default_context(cafile=str(mesh.s3_ca_file))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(presigned, context=context, timeout=10)
    assert refused.value.code == 403 and refused.value.headers.get(FORWARDED_TO) is None


def test_the_sdk_retries_inside_the_policy_it_reads_again(mesh: LocalMesh) -> None:
    """An SDK that cached a bucket as eu-wide, made again France-only by another client: its PUTs
    (small and streamed) first go to munich-1 (its own site), which answers OutsideTerritory; the
    SDK reads the policy again and writes in France."""
    big = b"q" * (2 * CHUNK + 5)
    with Client(profile=mesh.profile, site="munich-1") as stale, Client(profile=mesh.profile) as other:
        for bucket in ("sdk-stale-1", "sdk-stale-2"):
            stale.create_bucket(bucket, "eu-wide")
            stale.put_object(bucket, "old", b"old")
            other.delete_object(bucket, "old")
            other.delete_bucket(bucket)
            other.create_bucket(bucket, "france-only")
        stale.put_object("sdk-stale-1", "small", b"small bytes")  # PutSmallObject
        stale.put_object("sdk-stale-2", "big", big)               # PutObject, streamed (above INLINE_MAX)
        assert stale.get_object("sdk-stale-1", "small").read() == b"small bytes"
        assert stale.get_object("sdk-stale-2", "big").read() == big
        assert stale.head_bucket("sdk-stale-2").policy == "france-only"
    for bucket in ("sdk-stale-1", "sdk-stale-2"):
        assert german_holdings(mesh, bucket) == {node: [] for node in GERMAN}
