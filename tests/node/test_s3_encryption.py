"""SSE as S3 clients ask for it: AES256 (what every object has at rest) passes, SSE-KMS and SSE-C
are refused with words, and bucket encryption documents are parsed strictly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.node.s3 import encryption, xml
from maillage.node.s3.errors import S3Error


def test_aes256_or_nothing_passes():
    encryption.check_request({})
    encryption.check_request({"x-amz-server-side-encryption": "AES256"})


@pytest.mark.parametrize("headers, code", [
    ({"x-amz-server-side-encryption": "aws:kms"}, "NotImplemented"),
    ({"x-amz-server-side-encryption": "aws:kms:dsse"}, "NotImplemented"),
    ({"x-amz-server-side-encryption": "ROT13"}, "InvalidArgument"),
    ({"x-amz-server-side-encryption-customer-algorithm": "AES256"}, "NotImplemented"),
    ({"x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256"}, "NotImplemented"),
])
def test_what_cannot_be_honoured_is_refused(headers, code):
    with pytest.raises(S3Error) as err:
        encryption.check_request(headers)
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
