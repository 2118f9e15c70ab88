"""Which S3 operation a request is, and which bucket and key it names (path- and virtual-host-style)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.s3 import acl, buckets, cors, lifecycle, multipart, object_lock, objects, policy, post_object, routes
from maillage.node.s3.common import query_integer
from maillage.node.s3.errors import S3Error
from maillage.node.s3.server import S3Server
from maillage.node.service.rules import OPERATIONS, S3_OPERATIONS
from maillage.testing.examples import examples

CASES = [
    ("GET", "", "", {}, {}, buckets.list_buckets),
    ("PUT", "b", "", {}, {}, buckets.create_bucket),
    ("GET", "b", "", {"location": ""}, {}, buckets.get_bucket_location),
    ("GET", "b", "", {"list-type": "2"}, {}, buckets.list_objects),
    ("GET", "b", "", {"marker": "x"}, {}, buckets.list_objects),
    ("GET", "b", "", {"uploads": ""}, {}, multipart.list_uploads),
    ("POST", "b", "", {"delete": ""}, {}, buckets.delete_objects),
    ("PUT", "b", "k", {}, {}, objects.put_object),
    ("PUT", "b", "k", {}, {"x-amz-copy-source": "/b/j"}, objects.copy_object),
    ("PUT", "b", "k", {"partNumber": "1", "uploadId": "u"}, {}, multipart.upload_part),
    ("PUT", "b", "k", {"partNumber": "1", "uploadId": "u"}, {"x-amz-copy-source": "/b/j"}, multipart.upload_part_copy),
    ("POST", "b", "k", {"uploads": ""}, {}, multipart.create_upload),
    ("POST", "b", "k", {"uploadId": "u"}, {}, multipart.complete_upload),
    ("GET", "b", "k", {"uploadId": "u"}, {}, multipart.list_parts),
    ("DELETE", "b", "k", {"uploadId": "u"}, {}, multipart.abort_upload),
    ("GET", "b", "k", {"response-content-type": "text/plain"}, {}, objects.get_object),
    ("HEAD", "b", "k", {}, {}, objects.head_object),
    ("DELETE", "b", "k", {}, {}, objects.delete_object),
    ("GET", "b", "", {"encryption": ""}, {}, buckets.get_bucket_encryption),
    ("PUT", "b", "", {"encryption": ""}, {}, buckets.put_bucket_encryption),
    ("DELETE", "b", "", {"encryption": ""}, {}, buckets.delete_bucket_encryption),
    ("GET", "b", "k", {"attributes": ""}, {}, objects.get_object_attributes),
    ("GET", "b", "k", {"tagging": ""}, {}, objects.get_object_tagging),
    ("PUT", "b", "k", {"tagging": ""}, {}, objects.put_object_tagging),
    ("DELETE", "b", "k", {"tagging": ""}, {}, objects.delete_object_tagging),
    ("GET", "b", "", {"tagging": ""}, {}, buckets.get_bucket_tagging),
    ("PUT", "b", "", {"tagging": ""}, {}, buckets.put_bucket_tagging),
    ("DELETE", "b", "", {"tagging": ""}, {}, buckets.delete_bucket_tagging),
    ("GET", "b", "", {"versioning": ""}, {}, buckets.get_bucket_versioning),
    ("PUT", "b", "", {"versioning": ""}, {}, buckets.put_bucket_versioning),
    ("GET", "b", "", {"versions": "", "version-id-marker": "null"}, {}, buckets.list_object_versions),
    ("GET", "b", "k", {"versionId": "null"}, {}, objects.get_object),
    ("HEAD", "b", "k", {"versionId": "null"}, {}, objects.head_object),
    ("DELETE", "b", "k", {"versionId": "null"}, {}, objects.delete_object),
    ("GET", "b", "", {"lifecycle": ""}, {}, lifecycle.get_lifecycle),
    ("PUT", "b", "", {"lifecycle": ""}, {}, lifecycle.put_lifecycle),
    ("DELETE", "b", "", {"lifecycle": ""}, {}, lifecycle.delete_lifecycle),
    ("GET", "b", "", {"object-lock": ""}, {}, object_lock.get_configuration),
    ("PUT", "b", "", {"object-lock": ""}, {}, object_lock.put_configuration),
    ("GET", "b", "k", {"retention": ""}, {}, object_lock.get_retention),
    ("PUT", "b", "k", {"retention": "", "versionId": "null"}, {}, object_lock.put_retention),
    ("GET", "b", "k", {"legal-hold": ""}, {}, object_lock.get_legal_hold),
    ("PUT", "b", "k", {"legal-hold": ""}, {}, object_lock.put_legal_hold),
    ("GET", "b", "", {"acl": ""}, {}, acl.get_bucket_acl),
    ("PUT", "b", "", {"acl": ""}, {}, acl.put_bucket_acl),
    ("GET", "b", "k", {"acl": ""}, {}, acl.get_object_acl),
    ("PUT", "b", "k", {"acl": ""}, {}, acl.put_object_acl),
    ("GET", "b", "", {"ownershipControls": ""}, {}, acl.get_ownership_controls),
    ("PUT", "b", "", {"ownershipControls": ""}, {}, acl.put_ownership_controls),
    ("GET", "b", "", {"publicAccessBlock": ""}, {}, acl.get_public_access_block),
    ("PUT", "b", "", {"publicAccessBlock": ""}, {}, acl.put_public_access_block),
    ("DELETE", "b", "", {"publicAccessBlock": ""}, {}, acl.delete_public_access_block),
    ("GET", "b", "", {"policy": ""}, {}, policy.get_policy),
    ("PUT", "b", "", {"policy": ""}, {}, policy.put_policy),
    ("DELETE", "b", "", {"policy": ""}, {}, policy.delete_policy),
    ("GET", "b", "", {"policyStatus": ""}, {}, policy.get_policy_status),
    ("POST", "b", "", {}, {"Content-Type": "multipart/form-data; boundary=x"}, post_object.post_object),
    ("GET", "b", "", {"cors": ""}, {}, cors.get_cors),
    ("PUT", "b", "", {"cors": ""}, {}, cors.put_cors),
    ("DELETE", "b", "", {"cors": ""}, {}, cors.delete_cors),
]


@pytest.mark.parametrize(("method", "bucket", "key", "query", "headers", "handler"), CASES)
def test_operations(method, bucket, key, query, headers, handler) -> None:
    route = routes.operation(method, bucket, key, query, headers)
    assert route.handler is handler
    assert route.operation in OPERATIONS  # named as in the rule table both doors share


def test_every_s3_route_is_an_operation_of_the_rule_table() -> None:
    assert {r.operation for r in routes.ROUTES.values()} == S3_OPERATIONS
    assert all(name == route.operation for name, route in routes.ROUTES.items())
    assert S3_OPERATIONS <= set(OPERATIONS)


@pytest.mark.parametrize(("method", "bucket", "key", "query", "code"), [
    ("GET", "b", "", {"website": ""}, "NotImplemented"),  # an operation not served is said, not ignored
    ("POST", "b", "", {"cors": ""}, "MethodNotAllowed"),
    ("POST", "b", "k", {"restore": ""}, "NotImplemented"),
    ("DELETE", "b", "k", {"retention": ""}, "MethodNotAllowed"),  # a retention is shortened, not deleted
    ("DELETE", "b", "", {"versioning": ""}, "MethodNotAllowed"),  # never a DeleteBucket
    ("POST", "b", "", {"policy": ""}, "MethodNotAllowed"),
    ("DELETE", "b", "", {"policyStatus": ""}, "MethodNotAllowed"),  # never a DeleteBucket
    ("POST", "b", "", {"tagging": ""}, "MethodNotAllowed"),  # no such operation on a bucket's tags
    ("POST", "b", "k", {}, "MethodNotAllowed"),
    ("DELETE", "", "", {}, "MethodNotAllowed"),
])
def test_refusals(method, bucket, key, query, code) -> None:
    with pytest.raises(S3Error) as err:
        routes.operation(method, bucket, key, query, {})
    assert err.value.code == code


@pytest.mark.parametrize(("host", "path", "expected"), [
    ("s3.example.org", "/photos/2026/a b.jpg", ("photos", "2026/a b.jpg")),
    ("photos.s3.example.org", "/2026/a b.jpg", ("photos", "2026/a b.jpg")),
    ("photos.s3.example.org:9000", "/", ("photos", "")),
    ("127.0.0.1:9000", "/photos", ("photos", "")),
    ("s3.example.org", "/", ("", "")),
    ("127.0.0.1:9000", "/%2561bc/k", ("%61bc", "k")),  # decoded once (aiohttp), never twice
])
def test_path_and_virtual_host_addressing(host, path, expected) -> None:
    server = S3Server("127.0.0.1:0", services=None, access=None, domain="s3.example.org")  # type: ignore[arg-type]
    request = make_mocked_request("GET", path, headers={"Host": host})
    assert server.address_of(request) == expected


def test_an_error_about_a_key_with_control_characters_is_still_parseable_xml() -> None:
    import xml.etree.ElementTree as ET

    from maillage.node.s3 import xml
    doc = ET.fromstring(xml.error_document("InvalidArgument", "key '\x01x\x1f' is refused", "/b/\x01x\x1f", "R1"))
    assert doc.findtext("Resource") == "/b/%01x%1F"
    assert doc.findtext("Code") == "InvalidArgument" and "\ufffd" in doc.findtext("Message")


_XML_BODIES = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda root, inner: f"<{root}>{inner}</{root}>".encode(),
              st.sampled_from(["Delete", "CompleteMultipartUpload", "CreateBucketConfiguration",
                               "PublicAccessBlockConfiguration", "x"]),
              st.text(alphabet="<>/&;!?\"' aKeyPartNumberETagObjectQuiet0123456789", max_size=200)))


@given(_XML_BODIES)
@settings(max_examples=examples(3), deadline=None)
def test_request_xml_parsers_answer_a_result_or_an_s3_error(body: bytes) -> None:
    """Hostile bodies for every XML a request can carry: parsed, or refused with an S3 error
    (MalformedXML for anything not well-formed or of the wrong shape), never another exception."""
    from maillage.node.s3 import multipart, xml
    for parse in (xml.location_constraint, lambda b: xml.delete_request(b, 1000, 4096), multipart.complete_request,
                  acl.access_block_from_document):
        try:
            parse(body)
        except S3Error as err:
            assert err.code == "MalformedXML", (err.code, err.message)


@pytest.mark.parametrize("value, expected", [(None, 7), ("", 7), ("5", 5), (" 12 ", 12), ("2000", 1000), ("0", 0)])
def test_query_integers_take_non_negative_numbers_capped(value, expected) -> None:
    q = {} if value is None else {"max-keys": value}
    assert query_integer(q, "max-keys", 7, largest=1000) == expected


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "+5", "1_000", "9" * 10])
def test_other_query_integers_are_invalid_arguments(value) -> None:
    with pytest.raises(S3Error) as err:
        query_integer({"max-parts": value}, "max-parts", 1000)
    assert err.value.code == "InvalidArgument" and "max-parts" in str(err.value)
