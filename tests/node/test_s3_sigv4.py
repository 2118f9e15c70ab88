"""SigV4 of the S3 front door checked against botocore's own signer (what boto3 and aws-cli send)."""

from __future__ import annotations

import datetime
from urllib.parse import unquote, urlsplit

import pytest

from maillage.node.s3.errors import S3Error
from maillage.node.s3.sigv4 import verify
from maillage.node.s3.xml import location_constraint
from maillage.proto.access import AccessKey

botocore = pytest.importorskip("botocore")
from botocore.auth import S3SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

KEY = AccessKey(key_id="MKTESTKEY0000000001", secret="s3cr3t/with+chars", tenant="demo", role="read-write")


def key_of(key_id: str):
    return KEY if key_id == KEY.key_id else None


def signed(method: str, url: str, body: bytes = b"", secret: str = KEY.secret, headers=None):
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
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
    assert verified.key == KEY and verified.payload_sha256 is not None


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
        verify(method, path, query, headers, lambda _k: None)
    assert err.value.code == "InvalidAccessKeyId"
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=16)
    with pytest.raises(S3Error) as err:
        verify(method, path, query, headers, key_of, now=later)
    assert err.value.code == "RequestTimeTooSkewed"
    anonymous = {k: v for k, v in headers.items() if k != "authorization"}
    with pytest.raises(S3Error) as err:
        verify(method, path, query, anonymous, key_of)
    assert err.value.code == "AccessDenied"
    streaming = {**headers, "x-amz-content-sha256": ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD"]}
    with pytest.raises(S3Error) as err:
        verify(method, path, query, streaming, key_of)
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
