"""Object tag sets: S3's rules enforced, one canonical stored form, hostile documents refused cleanly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maillage.node.s3 import tagging
from maillage.node.s3.errors import S3Error


def doc(*pairs: tuple[str, str]) -> bytes:
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>{tags}</TagSet></Tagging>'.encode()


def test_a_header_and_a_document_give_the_same_canonical_tag_set():
    from_header = tagging.from_header("project=x%2Fy&empty=&team=care%20home")
    from_doc = tagging.from_document(doc(("team", "care home"), ("project", "x/y"), ("empty", "")))
    assert from_header == from_doc == {"project": "x/y", "empty": "", "team": "care home"}
    stored = tagging.encode(from_doc)
    assert stored == tagging.encode(from_header) == "empty=&project=x%2Fy&team=care+home"
    assert tagging.decode({tagging.TAGS_ATTRIBUTE: stored}) == from_doc
    assert tagging.count({tagging.TAGS_ATTRIBUTE: stored}) == 3 and tagging.decode({}) == {}


@pytest.mark.parametrize("header", [
    "&".join(f"k{i}=v" for i in range(11)),  # 11 tags
    "a=1&a=2",                                # a key twice
    "=v",                                     # an empty key
    "k" * 129 + "=v",                         # a key too long
    "k=" + "v" * 257,                         # a value too long
    "k=<script>",                             # characters S3 refuses
    "novalue&&",                              # not a URL-encoded set
])
def test_bad_headers_are_invalid_tag(header):
    with pytest.raises(S3Error) as err:
        tagging.from_header(header)
    assert err.value.code == "InvalidTag"


@pytest.mark.parametrize("body, code", [
    (b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>", "MalformedXML"),  # no Value
    (b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value><Value>2</Value></Tag></TagSet></Tagging>", "MalformedXML"),
    (b"<Tagging></Tagging>", "MalformedXML"),
    (b"<Tagging><TagSet><Other/></TagSet></Tagging>", "MalformedXML"),
    (b'<!DOCTYPE x [<!ENTITY e "boom">]><Tagging><TagSet/></Tagging>', "MalformedXML"),
    (b"<Tagging><TagSet>" + b"<Tag><Key>k</Key><Value>v</Value></Tag>" * 11 + b"</TagSet></Tagging>", "InvalidTag"),
    (b"<Tagging><TagSet>" + b"<Tag><Key>k</Key><Value>v</Value></Tag>" * 2 + b"</TagSet></Tagging>", "InvalidTag"),
    (b"x" * (tagging.MAX_DOCUMENT + 1), "MalformedXML"),
])
def test_bad_documents_are_refused_with_s3_codes(body, code):
    with pytest.raises(S3Error) as err:
        tagging.from_document(body)
    assert err.value.code == code


@given(st.binary(max_size=2000))
def test_any_body_is_a_tag_set_or_an_s3_error(body):
    try:
        tags = tagging.from_document(body)
    except S3Error as err:
        assert err.code in ("MalformedXML", "InvalidTag")
    else:
        assert len(tags) <= tagging.MAX_TAGS


_TAG_TEXT = st.text(alphabet=st.sampled_from("abcXYZ019 +-=._:/@é"), max_size=20)


@given(st.dictionaries(_TAG_TEXT.filter(bool), _TAG_TEXT, max_size=10))
def test_a_valid_tag_set_survives_header_document_and_storage(tags):
    stored = tagging.encode(tags)
    assert tagging.decode({tagging.TAGS_ATTRIBUTE: stored}) == tags
    assert tagging.from_header(stored) == tags
    rendered = tagging.document(tags)
    from maillage.node.s3 import xml
    assert tagging.from_document(xml.document(rendered)) == tags
