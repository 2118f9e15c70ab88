"""S3 lifecycle at the door: the LifecycleConfiguration document, parsed strictly into the service
layer's model (`node/data/lifecycle.py`) and rendered back, and its three operations. A rule's
Transition (one, by Days) moves current versions to STANDARD_IA or GLACIER_IR: their chunks go to
the bucket policy's cold policy (`proto/storage_class.py`); a Transition by Date and
NoncurrentVersionTransition are NotImplemented; two Transitions in one rule, and anything unknown,
are MalformedXML.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime

from aiohttp import web

from maillage.node.data.lifecycle import Filter, LifecycleConfig, Rule
from maillage.node.errors import InvalidArgument
from maillage.node.s3 import payload, xml
from maillage.node.s3.common import Call, Services, xml_response
from maillage.node.s3.errors import S3Error

__all__ = ["config_from_document", "config_document", "get_lifecycle", "put_lifecycle", "delete_lifecycle"]

MAX_DOCUMENT = 64 * 1024
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T|\Z)")
_RULE_FIELDS = {"ID", "Filter", "Prefix", "Status", "Expiration", "NoncurrentVersionExpiration",
                "AbortIncompleteMultipartUpload", "Transition", "NoncurrentVersionTransition"}


def _int(element: ET.Element | None, name: str) -> int | None:
    text = xml.text(element)
    if text is None:
        return None
    if not text.isdigit() or len(text) > 9:
        raise S3Error("InvalidArgument", f"{name} is a whole number (got {text[:20]!r})")
    return int(text)


def _date_ms(text: str) -> int:
    """An Expiration Date: ISO 8601, at midnight UTC (as S3 requires), e.g. 2030-01-01T00:00:00Z."""
    bad = S3Error("InvalidArgument", f"Expiration Date is an ISO 8601 date at midnight UTC, e.g. "
                                     f"2030-01-01T00:00:00Z (got {text[:40]!r})")
    if not _DATE.match(text):
        raise bad
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise bad from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ms = int(when.timestamp() * 1000)
    if ms % 86_400_000:
        raise bad
    return ms


def _tag(element: ET.Element) -> tuple[str, str]:
    fields = xml.children(element, {"Key", "Value"}, "a Tag")
    key, value = xml.text(xml.one(fields, "Key", "a Tag")), xml.text(xml.one(fields, "Value", "a Tag"))
    if key is None:
        raise S3Error("MalformedXML", "a Tag has a Key")
    return key, value or ""


def _filter(element: ET.Element) -> Filter:
    fields = xml.children(element, {"Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And"}, "a Filter")
    if "And" in fields and len(fields) > 1:
        raise S3Error("MalformedXML", "a Filter holds its conditions in And, or directly, not both")
    # Several conditions directly in a Filter (S3 wants them in And) are taken as And, as RGW does.
    if "And" in fields:
        element = fields["And"][0]
        fields = xml.children(element, {"Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"}, "an And")
    tags = tuple(_tag(t) for t in fields.get("Tag", []))
    if len(tags) > 10 or len({k for k, _ in tags}) != len(tags):
        raise S3Error("InvalidArgument", "a lifecycle filter names at most 10 tags, each key once")
    return Filter(prefix=xml.text(xml.one(fields, "Prefix", "a Filter")) or "", tags=tags,
                  size_greater_than=_int(xml.one(fields, "ObjectSizeGreaterThan", "a Filter"), "ObjectSizeGreaterThan"),
                  size_less_than=_int(xml.one(fields, "ObjectSizeLessThan", "a Filter"), "ObjectSizeLessThan"))


def _rule(element: ET.Element) -> Rule:
    f = xml.children(element, _RULE_FIELDS, "a lifecycle Rule")
    if "NoncurrentVersionTransition" in f:
        raise S3Error("NotImplemented", "NoncurrentVersionTransition is not served: a Transition moves current "
                                        "versions")
    status = xml.text(xml.one(f, "Status", "a Rule"))
    if status not in ("Enabled", "Disabled"):
        raise S3Error("MalformedXML", "a lifecycle Rule's Status is Enabled or Disabled")
    filter_element, prefix = xml.one(f, "Filter", "a Rule"), xml.text(xml.one(f, "Prefix", "a Rule"))
    if filter_element is not None and prefix is not None:
        raise S3Error("MalformedXML", "a lifecycle Rule gives a Filter or a Prefix, not both")
    rule_filter = _filter(filter_element) if filter_element is not None else Filter(prefix=prefix or "")
    kwargs: dict = {"rule_prefix": filter_element is None}
    if (expiration := xml.one(f, "Expiration", "a Rule")) is not None:
        e = xml.children(expiration, {"Days", "Date", "ExpiredObjectDeleteMarker"}, "an Expiration")
        kwargs["expiration_days"] = _int(xml.one(e, "Days", "an Expiration"), "Days")
        if (date := xml.text(xml.one(e, "Date", "an Expiration"))) is not None:
            kwargs["expiration_date_ms"] = _date_ms(date)
        marker = xml.text(xml.one(e, "ExpiredObjectDeleteMarker", "an Expiration"))
        if marker not in (None, "true", "false"):
            raise S3Error("MalformedXML", "ExpiredObjectDeleteMarker is true or false")
        kwargs["expired_object_delete_marker"] = marker == "true"
    if (noncurrent := xml.one(f, "NoncurrentVersionExpiration", "a Rule")) is not None:
        n = xml.children(noncurrent, {"NoncurrentDays", "NewerNoncurrentVersions"}, "a NoncurrentVersionExpiration")
        kwargs["noncurrent_days"] = _int(xml.one(n, "NoncurrentDays", "it"), "NoncurrentDays")
        if kwargs["noncurrent_days"] is None:
            raise S3Error("MalformedXML", "a NoncurrentVersionExpiration gives NoncurrentDays")
        kwargs["newer_noncurrent"] = _int(xml.one(n, "NewerNoncurrentVersions", "it"), "NewerNoncurrentVersions") or 0
    if (abort := xml.one(f, "AbortIncompleteMultipartUpload", "a Rule")) is not None:
        a = xml.children(abort, {"DaysAfterInitiation"}, "an AbortIncompleteMultipartUpload")
        kwargs["abort_multipart_days"] = _int(xml.one(a, "DaysAfterInitiation", "it"), "DaysAfterInitiation")
        if kwargs["abort_multipart_days"] is None:
            raise S3Error("MalformedXML", "an AbortIncompleteMultipartUpload gives DaysAfterInitiation")
    if (transition := xml.one(f, "Transition", "a Rule")) is not None:
        t = xml.children(transition, {"Days", "Date", "StorageClass"}, "a Transition")
        if "Date" in t:
            raise S3Error("NotImplemented", "a Transition by Date is not served: give Days")
        kwargs["transition_days"] = _int(xml.one(t, "Days", "a Transition"), "Days")
        kwargs["transition_class"] = xml.text(xml.one(t, "StorageClass", "a Transition")) or ""
    try:
        return Rule(id=xml.text(xml.one(f, "ID", "a Rule")) or "", enabled=status == "Enabled", filter=rule_filter,
                    **kwargs)
    except InvalidArgument as exc:
        raise S3Error("InvalidArgument", str(exc)) from None


def config_from_document(body: bytes) -> LifecycleConfig:
    root = xml.parse(body, "LifecycleConfiguration", MAX_DOCUMENT)
    rules = xml.children(root, {"Rule"}, "a LifecycleConfiguration").get("Rule", [])
    if len(rules) > 1000:
        raise S3Error("InvalidArgument", "too many lifecycle rules")
    try:
        parsed = [_rule(r) for r in rules]
        taken = {r.id for r in parsed}
        for i, r in enumerate(parsed):  # a rule without ID gets one, as S3 gives it
            if not r.id:
                n = next(n for n in range(i + 1, i + 2 + len(parsed)) if f"rule-{n}" not in taken)
                taken.add(f"rule-{n}")
                parsed[i] = replace(r, id=f"rule-{n}")
        return LifecycleConfig(tuple(parsed))
    except InvalidArgument as exc:
        raise S3Error("InvalidArgument", str(exc)) from None


def _filter_element(parent: ET.Element, f: Filter) -> None:
    sizes = [(name, value) for name, value in (("ObjectSizeGreaterThan", f.size_greater_than),
                                               ("ObjectSizeLessThan", f.size_less_than)) if value is not None]
    if bool(f.prefix) + len(f.tags) + len(sizes) > 1:
        parent = xml.sub(parent, "And")
    if f.prefix:
        xml.sub(parent, "Prefix", f.prefix)
    for key, value in f.tags:
        tag = xml.sub(parent, "Tag")
        xml.sub(tag, "Key", key)
        xml.sub(tag, "Value", value)
    for name, size in sizes:
        xml.sub(parent, name, size)


def config_document(config: LifecycleConfig) -> ET.Element:
    root = xml.root("LifecycleConfiguration")
    for rule in config.rules:
        r = xml.sub(root, "Rule")
        if rule.id:
            xml.sub(r, "ID", rule.id)
        if rule.rule_prefix:  # given in S3's older form: answered the same
            xml.sub(r, "Prefix", rule.filter.prefix)
        else:
            _filter_element(xml.sub(r, "Filter"), rule.filter)
        xml.sub(r, "Status", "Enabled" if rule.enabled else "Disabled")
        if rule.expiration_days is not None or rule.expiration_date_ms is not None or rule.expired_object_delete_marker:
            e = xml.sub(r, "Expiration")
            if rule.expiration_days is not None:
                xml.sub(e, "Days", rule.expiration_days)
            if rule.expiration_date_ms is not None:
                xml.sub(e, "Date", xml.iso8601(rule.expiration_date_ms / 1000))
            if rule.expired_object_delete_marker:
                xml.sub(e, "ExpiredObjectDeleteMarker", "true")
        if rule.transition_days is not None:
            t = xml.sub(r, "Transition")
            xml.sub(t, "Days", rule.transition_days)
            xml.sub(t, "StorageClass", rule.transition_class)
        if rule.noncurrent_days is not None:
            n = xml.sub(r, "NoncurrentVersionExpiration")
            xml.sub(n, "NoncurrentDays", rule.noncurrent_days)
            if rule.newer_noncurrent:
                xml.sub(n, "NewerNoncurrentVersions", rule.newer_noncurrent)
        if rule.abort_multipart_days is not None:
            xml.sub(xml.sub(r, "AbortIncompleteMultipartUpload"), "DaysAfterInitiation", rule.abort_multipart_days)
    return root


# ----- operations ----------------------------------------------------------------------------

async def get_lifecycle(s: Services, call: Call) -> web.StreamResponse:
    config = await s.service.bucket_lifecycle(call.caller, call.bucket)
    if config is None:
        raise S3Error("NoSuchLifecycleConfiguration", f"bucket {call.bucket!r} has no lifecycle configuration")
    return xml_response(config_document(config))


async def put_lifecycle(s: Services, call: Call) -> web.StreamResponse:
    config = config_from_document(await payload.small_body(call, MAX_DOCUMENT))
    await s.service.set_bucket_lifecycle(call.caller, call.bucket, config, "PutBucketLifecycleConfiguration")
    return web.Response(status=200)


async def delete_lifecycle(s: Services, call: Call) -> web.StreamResponse:
    await s.service.set_bucket_lifecycle(call.caller, call.bucket, None, "DeleteBucketLifecycle")
    return web.Response(status=204)
