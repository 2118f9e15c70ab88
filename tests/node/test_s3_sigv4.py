"""SigV4 of the S3 front door checked against botocore's own signer (what boto3 and aws-cli send)."""

from __future__ import annotations

import datetime
import hashlib
from urllib.parse import unquote, urlsplit

import pytest

from maillage.node.s3.errors import S3Error
from maillage.node.s3.sigv4 import ANONYMOUS, verify
from maillage.node.s3.xml import location_constraint
from maillage.proto.trust.access import AccessKey
from maillage.testing.secret_keys import SecretKeys

botocore = pytest.importorskip("botocore")
boto3 = pytest.importorskip("boto3")
from botocore.auth import S3SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

KEY = AccessKey(key_id="MKTESTKEY0000000001", secret="s3cr3t/with+chars", tenant="demo", role="read-write")


key_of = SecretKeys(KEY)


def signed(method: str, url: str, body: bytes = b"", secret: str = KEY.secret, headers=None, context=None):
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    request.context.update(context or {})
    S3SigV4Auth(Credentials(KEY.key_id, secret), "s3", "us-east-1").add_auth(request)
    parts = urlsplit(request.url)
    merged: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        merged.setdefault(name.lower(), []).append(value if isinstance(value, str) else value.decode())
    merged.setdefault("host", [parts.netloc])
    return method, unquote(parts.path), parts.query, merged


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9000/",
    "http://127.0.0.1:9000/bucket?list-type=2&prefix=a%2Fb&delimiter=%2F&max-keys=2",
    "http://127.0.0.1:9000/bucket/some%20key/with%2Bplus%26and%3Dutf8-%C3%A9",
    "http://127.0.0.1:9000/bucket?location",
])
def test_botocore_signatures_verify(url):
    verified = verify(*signed("GET", url), key_of)
    assert verified.key == KEY.info() and verified.payload_sha256 is not None


def test_a_signed_body_hash_is_returned_for_checking():
    method, path, query, headers = signed("PUT", "http://127.0.0.1:9000/bucket/key", b"hello")
    assert verify(method, path, query, headers, key_of).payload_sha256 == headers["x-amz-content-sha256"][0]


def test_refusals():
    method, path, query, headers = signed("GET", "http://127.0.0.1:9000/bucket", secret="wrong")
    with pytest.raises(S3Error) as err:
        verify(method, path, query, headers, key_of)
    assert err.value.code == "SignatureDoesNotMatch" and "wrong" not in err.value.message
    method, path, query, headers = signed("GET", "http://127.0.0.1:9000/bucket")
    with pytest.raises(S3Error) as err:  # another path than the one signed
        verify(method, "/other", query, headers, key_of)
    assert err.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as err:
        verify(method, path, query, headers, SecretKeys())
    assert err.value.code == "InvalidAccessKeyId"
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=16)
    with pytest.raises(S3Error) as err:
        verify(method, path, query, headers, key_of, now=later)
    assert err.value.code == "RequestTimeTooSkewed"
    anonymous = {k: v for k, v in headers.items() if k != "authorization"}
    assert verify(method, path, query, anonymous, key_of) is ANONYMOUS  # the rule table and bucket policies decide
    sigv4a = {**headers, "x-amz-content-sha256": ["STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"]}
    with pytest.raises(S3Error) as err:
        verify(method, path, query, sigv4a, key_of)
    assert err.value.code == "NotImplemented"


def test_location_constraint_parsing_is_hardened():
    body = (b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<LocationConstraint>france-only</LocationConstraint></CreateBucketConfiguration>")
    assert location_constraint(body) == "france-only"
    assert location_constraint(b"") == ""
    for bad in (b"<CreateBucketConfiguration>", b"<Other/>",
                b'<!DOCTYPE x [<!ENTITY e "boom">]><CreateBucketConfiguration><LocationConstraint>&e;'
                b"</LocationConstraint></CreateBucketConfiguration>"):
        with pytest.raises(S3Error) as err:
            location_constraint(bad)
        assert err.value.code == "MalformedXML"


# ----- streaming uploads: the seed signature --------------------------------------------------

AWS_KEY = AccessKey(key_id="AKIAIOSFODNN7EXAMPLE", secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    tenant="demo", role="read-write")
AWS_TIME = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)


def aws_example_headers(mode: str, signed_headers: str, seed: str, **extra: str) -> dict[str, list[str]]:
    """The request of AWS's documented streaming examples (sigv4-streaming, sigv4-streaming-trailers)."""
    headers = {"host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
               "x-amz-storage-class": "REDUCED_REDUNDANCY", "x-amz-content-sha256": mode,
               "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": "66560", "content-length": "66824", **extra,
               "authorization": f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                                f"SignedHeaders={signed_headers},Signature={seed}"}
    return {k: [v] for k, v in headers.items()}


def test_the_aws_streaming_examples_seed_signatures_verify():
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    headers = aws_example_headers(
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-decoded-content-length;x-amz-storage-class", seed)
    verified = verify("PUT", "/examplebucket/chunkObject.txt", "", headers, SecretKeys(AWS_KEY), now=AWS_TIME)
    assert verified.streaming and verified.signed_chunks and not verified.has_trailer
    assert verified.signature == seed and verified.payload_sha256 is None
    assert verified.scope == "20130524/us-east-1/s3/aws4_request" and verified.timestamp == "20130524T000000Z"
    # the first chunk's documented signature (65536 bytes of 'a'), chained from the seed
    chunk = hashlib.sha256(b"a" * 65536).hexdigest()
    assert verified.chunk_signature(seed, chunk) == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    assert "signing_key" not in repr(verified) and AWS_KEY.secret not in repr(verified)

    trailer_seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    headers = aws_example_headers(
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "content-encoding;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer", trailer_seed,
        **{"x-amz-trailer": "x-amz-checksum-crc32c"})
    verified = verify("PUT", "/examplebucket/chunkObject.txt", "", headers, SecretKeys(AWS_KEY), now=AWS_TIME)
    assert verified.has_trailer and verified.signed_chunks and verified.signature == trailer_seed


def test_botocore_unsigned_trailer_uploads_verify():
    method, path, query, headers = signed(
        "PUT", "https://127.0.0.1:9000/bucket/key", b"",
        headers={"Content-Encoding": "aws-chunked", "X-Amz-Trailer": "x-amz-checksum-crc32",
                 "X-Amz-Decoded-Content-Length": "5"},
        # what botocore's checksum step sets for a trailer checksum (HTTPS, default settings)
        context={"checksum": {"request_algorithm": {"in": "trailer", "name": "x-amz-checksum-crc32",
                                                    "algorithm": "crc32"}}})
    assert headers["x-amz-content-sha256"] == ["STREAMING-UNSIGNED-PAYLOAD-TRAILER"]
    verified = verify(method, path, query, headers, key_of)
    assert verified.streaming and verified.has_trailer and not verified.signed_chunks


# ----- presigned URLs ---------------------------------------------------------------------------

def presigned_url(method: str, params: dict, expires: int = 3600, secret: str = KEY.secret) -> str:
    client = boto3.client("s3", endpoint_url="https://127.0.0.1:9000", aws_access_key_id=KEY.key_id,
                          aws_secret_access_key=secret, region_name="eu-west-3",
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    return client.generate_presigned_url(method, Params=params, ExpiresIn=expires)


def presigned(url: str, method: str = "GET"):
    parts = urlsplit(url)
    return method, unquote(parts.path), parts.query, {"host": [parts.netloc]}


def test_presigned_urls_verify():
    url = presigned_url("get_object", {"Bucket": "bucket", "Key": "dir/a key+é.txt"})
    verified = verify(*presigned(url), key_of)
    assert verified.key == KEY.info() and verified.presigned and verified.payload_sha256 is None
    assert not verified.streaming
    put = presigned_url("put_object", {"Bucket": "bucket", "Key": "up"}, expires=604800)
    assert verify(*presigned(put, "PUT"), key_of).key == KEY.info()
    listing = presigned_url("list_objects_v2", {"Bucket": "bucket", "Prefix": "a/b&c", "Delimiter": "/"})
    assert verify(*presigned(listing), key_of).key == KEY.info()


def test_an_expired_presigned_url_is_refused():
    url = presigned_url("get_object", {"Bucket": "bucket", "Key": "k"}, expires=60)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=120)
    with pytest.raises(S3Error) as err:
        verify(*presigned(url), key_of, now=later)
    assert err.value.code == "AccessDenied" and err.value.message == "Request has expired"
    assert err.value.status == 403


def test_a_tampered_presigned_url_is_refused():
    url = presigned_url("get_object", {"Bucket": "bucket", "Key": "k"}, expires=60)
    method, path, query, headers = presigned(url)
    for changed in (("GET", "/bucket/other", query), ("PUT", path, query),
                    ("GET", path, query.replace("X-Amz-Expires=60", "X-Amz-Expires=600")),
                    ("GET", path, query + "&response-content-type=text%2Fhtml")):
        with pytest.raises(S3Error) as err:
            verify(changed[0], changed[1], changed[2], headers, key_of)
        assert err.value.code == "SignatureDoesNotMatch", changed
    with pytest.raises(S3Error) as err:
        verify(method, path, query, {"host": ["evil.example:9000"]}, key_of)
    assert err.value.code == "SignatureDoesNotMatch"
    wrong = presigned_url("get_object", {"Bucket": "bucket", "Key": "k"}, secret="not-the-secret")
    with pytest.raises(S3Error) as err:
        verify(*presigned(wrong), key_of)
    assert err.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as err:
        verify(*presigned(url), SecretKeys())
    assert err.value.code == "InvalidAccessKeyId"


@pytest.mark.parametrize("edit", [
    lambda q: q.replace("X-Amz-Expires=60", "X-Amz-Expires=604801"),
    lambda q: q.replace("X-Amz-Expires=60", "X-Amz-Expires=-5"),
    lambda q: q.replace("X-Amz-Expires=60", "X-Amz-Expires=soon"),
    lambda q: q.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
    lambda q: "&".join(p for p in q.split("&") if not p.startswith("X-Amz-Date=")),
    lambda q: "&".join(p for p in q.split("&") if not p.startswith("X-Amz-SignedHeaders=")),
    lambda q: q + "&X-Amz-Signature=" + "0" * 64,
    lambda q: q.replace("X-Amz-Date=2", "X-Amz-Date=x2"),
    lambda q: q.replace("%2Faws4_request", "%2Fsomething"),
    lambda q: q.replace("%2Fs3%2F", "%2Fsts%2F"),
    lambda q: q.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-amz-date"),
    lambda q: q[:-3],  # a signature of 61 digits
], ids=["expires>week", "expires<0", "expires-nan", "algorithm", "no-date", "no-signed-headers", "two-signatures",
        "bad-date", "bad-credential", "not-s3", "host-unsigned", "short-signature"])
def test_a_malformed_presigned_url_is_a_query_parameters_error(edit):
    url = presigned_url("get_object", {"Bucket": "bucket", "Key": "k"}, expires=60)
    method, path, query, headers = presigned(url)
    with pytest.raises(S3Error) as err:
        verify(method, path, edit(query), headers, key_of)
    assert err.value.code == "AuthorizationQueryParametersError" and err.value.status == 400


def test_presigned_and_authorization_together_are_refused():
    url = presigned_url("get_object", {"Bucket": "bucket", "Key": "k"})
    method, path, query, headers = presigned(url)
    with pytest.raises(S3Error) as err:
        verify(method, path, query, {**headers, "authorization": ["AWS4-HMAC-SHA256 Credential=x"]}, key_of)
    assert err.value.code == "InvalidArgument"
