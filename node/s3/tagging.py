"""Object tags (S3 tagging): parsed strictly, kept canonical in the object's manifest.

A tag set is at most 10 pairs, keys of 1 to 128 characters and values of at most 256, unique keys,
from letters, digits, white space and ``+ - = . _ : / @`` (S3's rules). It arrives as the
``x-amz-tagging`` header of a write (URL-encoded ``k=v&k2=v2``) or a PutObjectTagging document, and
rests as the manifest attribute ``tags`` in one canonical form (URL-encoded, sorted by key), so it
is replicated, repaired and kept inside the bucket's policy with the object. Anything else is
InvalidTag or MalformedXML, never a stored surprise.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

from maillage.node.data.coordinator import TAGS_ATTRIBUTE, tags_of
from maillage.node.s3 import xml
from maillage.node.s3.errors import S3Error

__all__ = ["TAGS_ATTRIBUTE", "count", "decode", "document", "encode", "from_document", "from_header"]

MAX_TAGS = 10
MAX_KEY = 128
MAX_VALUE = 256
MAX_DOCUMENT = 16 * 1024
_ALLOWED = re.compile(r"[\w\s+\-=.:/@]*")


def _checked(pairs: list[tuple[str, str]]) -> dict[str, str]:
    if len(pairs) > MAX_TAGS:
        raise S3Error("InvalidTag", f"{len(pairs)} tags given; an object has at most {MAX_TAGS}")
    tags: dict[str, str] = {}
    for key, value in pairs:
        if not 1 <= len(key) <= MAX_KEY:
            raise S3Error("InvalidTag", f"a tag key has 1 to {MAX_KEY} characters (got {len(key)})")
        if len(value) > MAX_VALUE:
            raise S3Error("InvalidTag", f"a tag value has at most {MAX_VALUE} characters (got {len(value)})")
        if not (_ALLOWED.fullmatch(key) and _ALLOWED.fullmatch(value)):
            raise S3Error("InvalidTag", "tags hold letters, digits, spaces and + - = . _ : / @ only")
        if key in tags:
            raise S3Error("InvalidTag", f"tag key {key[:40]!r} is given twice")
        tags[key] = value
    return tags


def from_header(value: str) -> dict[str, str]:
    """The tag set of an ``x-amz-tagging`` header."""
    try:
        pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=bool(value), max_num_fields=MAX_TAGS + 1)
    except ValueError as exc:
        raise S3Error("InvalidTag", f"x-amz-tagging is not a URL-encoded tag set: {str(exc)[:80]}") from None
    return _checked(pairs)


def from_document(body: bytes) -> dict[str, str]:
    """The tag set of a PutObjectTagging body: <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>."""
    root = xml.parse(body, "Tagging", MAX_DOCUMENT)
    sets = [c for c in root if xml.local_name(c.tag) == "TagSet"]
    if len(sets) != 1:
        raise S3Error("MalformedXML", "a Tagging document holds one TagSet")
    pairs: list[tuple[str, str]] = []
    for tag in sets[0]:
        if xml.local_name(tag.tag) != "Tag":
            raise S3Error("MalformedXML", f"a TagSet holds Tag elements, not {xml.local_name(tag.tag)[:40]}")
        fields = {xml.local_name(c.tag): c.text or "" for c in tag}
        if set(fields) != {"Key", "Value"} or len(tag) != 2:
            raise S3Error("MalformedXML", "a Tag holds one Key and one Value")
        pairs.append((fields["Key"], fields["Value"]))
        if len(pairs) > MAX_TAGS:
            break
    return _checked(pairs)


def encode(tags: Mapping[str, str]) -> str:
    """The canonical stored form (sorted, URL-encoded)."""
    return urlencode(sorted(tags.items()))


def decode(attributes: Mapping[str, str]) -> dict[str, str]:
    """The tag set of a manifest's attributes ({} when it has none)."""
    return tags_of(attributes)


def count(attributes: Mapping[str, str]) -> int:
    return len(decode(attributes))


def document(tags: Mapping[str, str]) -> ET.Element:
    root = xml.root("Tagging")
    tag_set = xml.sub(root, "TagSet")
    for key, value in sorted(tags.items()):
        tag = xml.sub(tag_set, "Tag")
        xml.sub(tag, "Key", key)
        xml.sub(tag, "Value", value)
    return root
