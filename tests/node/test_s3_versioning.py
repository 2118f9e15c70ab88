"""The S3 door's versioning parts: the versioning document parsed strictly, version ids and
copy sources validated (bounded, hex or "null"), hostile documents and ids refused with S3 errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.node.s3 import objects, versioning, xml
from maillage.node.s3.errors import S3Error

VID = "0123456789abcdef01234567"


def _document(*fields: tuple[str, str]) -> bytes:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields)
    return f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>'.encode()


def test_the_document_names_enabled_or_suspended():
    assert versioning.status_from_document(_document(("Status", "Enabled"))) == "Enabled"
    assert versioning.status_from_document(_document(("Status", "Suspended"), ("MfaDelete", "Disabled"))) == "Suspended"
    for body, code in ((_document(("Status", "Off")), "MalformedXML"), (_document(), "MalformedXML"),
                       (_document(("Status", "Enabled"), ("Evil", "x")), "MalformedXML"),
                       (_document(("Status", "Enabled"), ("MfaDelete", "Enabled")), "NotImplemented"),
                       (b"<Other><Status>Enabled</Status></Other>", "MalformedXML")):
        with pytest.raises(S3Error) as err:
            versioning.status_from_document(body)
        assert err.value.code == code


@given(st.one_of(st.binary(max_size=600), st.builds(
    lambda inner: f"<VersioningConfiguration>{inner}</VersioningConfiguration>".encode(),
    st.text(alphabet="<>/&;!?\"' StatusEnabledSuspendedMfaDelete", max_size=200))))
def test_any_document_is_a_status_or_an_s3_error(body):
    try:
        assert versioning.status_from_document(body) in ("Enabled", "Suspended")
    except S3Error as err:
        assert err.code in ("MalformedXML", "NotImplemented")


def test_a_larger_document_is_refused_before_it_is_parsed():
    with pytest.raises(S3Error):
        versioning.status_from_document(_document(("Status", "Enabled" + " " * versioning.MAX_DOCUMENT)))


@given(st.text(max_size=3000))
def test_a_version_id_is_24_hex_digits_or_null(value):
    try:
        assert versioning.asked_version({"versionId": value}) == value
        assert value == "null" or (len(value) == 24 and set(value) <= set("0123456789abcdef"))
    except S3Error as err:
        assert err.code == "InvalidArgument" and len(err.message) < 200


def test_copy_sources_name_a_version_or_none():
    assert objects.copy_source("/b/k") == ("b", "k", None)
    assert objects.copy_source(f"b/dir%2Fk?versionId={VID}") == ("b", "dir/k", VID)
    assert objects.copy_source("/b/k?versionId=null") == ("b", "k", "null")
    for bad in ("/b/k?versionId=../x", "/b/k?acl=1", f"/b/k?versionId={VID}0"):
        with pytest.raises(S3Error) as err:
            objects.copy_source(bad)
        assert err.value.code == "InvalidArgument"


def test_delete_requests_carry_version_ids():
    body = (f"<Delete><Object><Key>a</Key><VersionId>{VID}</VersionId></Object>"
            "<Object><Key>b</Key></Object></Delete>").encode()
    assert xml.delete_request(body, 10, 4096) == ([("a", VID), ("b", None)], False)
