"""SSE as S3 clients ask for it: AES256 (what every object has at rest) passes, SSE-KMS is refused
with words, SSE-C where it is not served or over plain HTTP too, and bucket encryption documents
are parsed strictly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.node.s3 import encryption, xml
from maillage.node.s3.errors import S3Error

CUSTOMER = {"x-amz-server-side-encryption-customer-algorithm": "AES256"}
SOURCE_CUSTOMER = {"x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256"}


def test_aes256_or_nothing_passes():
    encryption.check_request({}, "PutObject", secure=False)
    encryption.check_request({"x-amz-server-side-encryption": "AES256"}, "PutObject", secure=False)
    encryption.check_request(CUSTOMER, "GetObject", secure=True)
    encryption.check_request(SOURCE_CUSTOMER, "CopyObject", secure=True)


@pytest.mark.parametrize("headers, operation, secure, code", [
    ({"x-amz-server-side-encryption": "aws:kms"}, "PutObject", True, "NotImplemented"),
    ({"x-amz-server-side-encryption": "aws:kms:dsse"}, "PutObject", True, "NotImplemented"),
    ({"x-amz-server-side-encryption": "ROT13"}, "PutObject", True, "InvalidArgument"),
    (CUSTOMER, "PutObject", False, "InvalidRequest"),
    (SOURCE_CUSTOMER, "CopyObject", False, "InvalidRequest"),
    (SOURCE_CUSTOMER, "PutObjectTagging", True, "NotImplemented"),
    ({**CUSTOMER, "x-amz-server-side-encryption": "AES256"}, "PutObject", True, "InvalidArgument"),
])
def test_what_cannot_be_honoured_is_refused(headers, operation, secure, code):
    with pytest.raises(S3Error) as err:
        encryption.check_request(headers, operation, secure=secure)
    assert err.value.code == code


def test_the_bucket_default_is_aes256_and_only_aes256_is_accepted():
    shown = xml.document(encryption.bucket_document())
    assert b"<SSEAlgorithm>AES256</SSEAlgorithm>" in shown
    encryption.check_bucket_document(shown)  # what it shows, it takes back
    kms = shown.replace(b"AES256", b"aws:kms")
    with pytest.raises(S3Error) as err:
        encryption.check_bucket_document(kms)
    assert err.value.code == "NotImplemented"
    with pytest.raises(S3Error) as err:
        encryption.check_bucket_document(b"<ServerSideEncryptionConfiguration/>")
    assert err.value.code == "MalformedXML"


@given(st.binary(max_size=2000))
def test_any_body_is_accepted_or_an_s3_error(body):
    try:
        encryption.check_bucket_document(body)
    except S3Error as err:
        assert err.code in ("MalformedXML", "NotImplemented")
