"""S3 XML: responses built with the standard library, request bodies parsed with defusedxml."""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterable, Mapping
from urllib.parse import quote

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]

from maillage.node.s3.errors import S3Error

__all__ = ["NS", "document", "error_document", "iso8601", "location_constraint", "sub"]

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BODY = 64 * 1024


def iso8601(seconds: float) -> str:
    t = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def sub(parent: ET.Element, tag: str, text: str | int | bool | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if isinstance(text, bool):
        element.text = "true" if text else "false"
    elif text is not None:
        element.text = str(text)
    return element


def root(tag: str) -> ET.Element:
    return ET.Element(tag, xmlns=NS)


def document(element: ET.Element) -> bytes:
    return ET.tostring(element, encoding="utf-8", xml_declaration=True)


# Characters XML 1.0 cannot carry at all (S3 keys may hold them: a listing asks encoding-type=url).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def error_document(code: str, message: str, resource: str, request_id: str) -> bytes:
    """An S3 error; the resource is percent-encoded and the message cleaned when they hold
    characters XML cannot carry, so a client can always parse the error."""
    if _NOT_XML.search(resource):
        resource = quote(resource, safe="/")
    error = ET.Element("Error")
    for tag, text in (("Code", code), ("Message", _NOT_XML.sub("\ufffd", message)), ("Resource", resource),
                      ("RequestId", request_id)):
        sub(error, tag, text)
    return document(error)


def local_name(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes, expect: str, limit: int = MAX_XML_BODY) -> ET.Element:
    """A request's XML body, whose root must be `expect` (MalformedXML otherwise, or when it is
    larger than `limit` bytes, not well-formed, or uses entities or a DTD)."""
    if len(body) > limit:
        raise S3Error("MalformedXML", f"the XML body is {len(body)} bytes, more than {limit}")
    try:
        element: ET.Element = SafeET.fromstring(body)
    except Exception as exc:  # ParseError or defusedxml's refusals (entities, DTDs)
        raise S3Error("MalformedXML", f"the XML body is not well-formed or not allowed: {exc}") from None
    if local_name(element.tag) != expect:
        raise S3Error("MalformedXML", f"expected {expect}, got {local_name(element.tag)[:40]}")
    return element


def children(element: ET.Element, allowed: Collection[str], where: str) -> dict[str, list[ET.Element]]:
    """An element's children by name, each among `allowed` (MalformedXML otherwise; `where` names
    the element in the message)."""
    found: dict[str, list[ET.Element]] = {}
    for child in element:
        name = local_name(child.tag)
        if name not in allowed:
            raise S3Error("MalformedXML", f"{where} does not take {name[:40]}")
        found.setdefault(name, []).append(child)
    return found


def one(found: Mapping[str, list[ET.Element]], name: str, where: str) -> ET.Element | None:
    """The child `name` of a `children` result (None: absent; MalformedXML when given twice)."""
    elements = found.get(name, [])
    if len(elements) > 1:
        raise S3Error("MalformedXML", f"{where} gives {name} twice")
    return elements[0] if elements else None


def text(element: ET.Element | None) -> str | None:
    """An element's text, stripped ("" when empty, None when there is no element)."""
    return None if element is None else (element.text or "").strip()


def fields(element: ET.Element, allowed: Collection[str], where: str) -> dict[str, str]:
    """The texts of an element's children by name, each among `allowed` and given once."""
    found = children(element, allowed, where)
    return {name: text(one(found, name, where)) or "" for name in found}


def location_constraint(body: bytes) -> str:
    """The LocationConstraint of a CreateBucketConfiguration body ("" when absent or empty)."""
    if not body.strip():
        return ""
    for child in parse(body, "CreateBucketConfiguration"):
        if local_name(child.tag) == "LocationConstraint":
            return (child.text or "").strip()
    return ""


def elements(parent: ET.Element, tag: str, texts: Iterable[str]) -> None:
    for text in texts:
        sub(sub(parent, tag), "Prefix", text)


def delete_request(body: bytes, limit: int, body_limit: int) -> tuple[list[tuple[str, str | None]], bool]:
    """The (key, version id or None) pairs (at most `limit`) and the Quiet flag of a DeleteObjects
    body (<Delete><Object><Key>...<VersionId>...)."""
    keys: list[tuple[str, str | None]] = []
    quiet = False
    for child in parse(body, "Delete", body_limit):
        tag = local_name(child.tag)
        if tag == "Quiet":
            quiet = (child.text or "").strip().lower() == "true"
        elif tag == "Object":
            key = next((c.text for c in child if local_name(c.tag) == "Key"), None)
            if not key:
                raise S3Error("MalformedXML", "an Object of the Delete request has no Key")
            version = next(((c.text or "").strip() for c in child if local_name(c.tag) == "VersionId"), None)
            keys.append((key, version))
    if not keys:
        raise S3Error("MalformedXML", "the Delete request names no Object")
    if len(keys) > limit:
        raise S3Error("MalformedXML", f"the Delete request names {len(keys)} objects, the limit is {limit}")
    return keys, quiet


def person(parent: ET.Element, tag: str, tenant: str) -> None:
    """An Owner or Initiator element: the tenant, as its ID and display name."""
    element = sub(parent, tag)
    sub(element, "ID", tenant)
    sub(element, "DisplayName", tenant)


def key_encoder(query: Mapping[str, str]) -> Callable[[str], str]:
    """How a listing writes keys and prefixes: as they are, or URL-encoded (encoding-type=url)."""
    encoding = query.get("encoding-type", "")
    if encoding not in ("", "url"):
        raise S3Error("InvalidArgument", f"encoding-type {encoding[:20]!r}: only 'url' is supported")
    if encoding:
        return lambda text: quote(text, safe="/")
    return lambda text: text
