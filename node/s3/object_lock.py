"""S3 object lock at the door: the lock headers of writes and reads, the bypass header, and the
ObjectLockConfiguration, Retention and LegalHold documents with their six operations. The model
(what a retention forbids, who may bypass it) is `node/object_lock.py`'s:
this module parses and renders only, strictly (anything else is MalformedXML or InvalidArgument).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from maillage.node.errors import InvalidArgument
from maillage.node.object_lock import (
    LEGAL_HOLD,
    MODES,
    RETENTION,
    LockConfig,
    Retention,
    legal_hold_of,
    retention_of,
)
from maillage.node.s3 import payload, versioning, xml
from maillage.node.s3.common import Call, Services, xml_response
from maillage.node.s3.errors import S3Error

__all__ = ["requested", "object_headers", "bypass_asked", "get_configuration", "put_configuration",
           "get_retention", "put_retention", "get_legal_hold", "put_legal_hold", "BUCKET_HEADER"]

MAX_DOCUMENT = 4 * 1024
BUCKET_HEADER = "x-amz-bucket-object-lock-enabled"  # CreateBucket: the bucket has lock from its start
MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"


def _date(value: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 date-time (S3 sends `2030-01-01T00:00:00.000Z`)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise S3Error("InvalidArgument", f"not an ISO 8601 date: {value[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


_LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last date ISO 8601 writes here


def _iso(ms: int) -> str:
    return xml.iso8601(min(max(ms, 0), _LAST_MS) / 1000)


def _retention(mode: str, until: str, code: str = "InvalidArgument") -> Retention:
    """`code`: the error of a bad value, InvalidArgument in a header, MalformedXML in a document."""
    if mode not in MODES:
        raise S3Error(code, f"object lock mode {mode[:20]!r}: use GOVERNANCE or COMPLIANCE")
    return Retention(mode, _date(until))


def _hold(status: str, code: str = "InvalidArgument") -> bool:
    if status not in ("ON", "OFF"):
        raise S3Error(code, f"legal hold status {status[:20]!r}: use ON or OFF")
    return status == "ON"


def requested(headers: Mapping[str, str]) -> dict[str, str]:
    """The retention and legal hold a write asks for its new version (manifest attributes)."""
    attributes: dict[str, str] = {}
    mode, until = headers.get(MODE_HEADER), headers.get(UNTIL_HEADER)
    if (mode is None) != (until is None):
        raise S3Error("InvalidArgument", f"{MODE_HEADER} and {UNTIL_HEADER} go together")
    if mode is not None and until is not None:
        attributes[RETENTION] = _retention(mode, until).encode()
    if HOLD_HEADER in headers and _hold(headers[HOLD_HEADER]):
        attributes[LEGAL_HOLD] = "ON"
    return attributes


def object_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """The lock headers of a GET or HEAD answer (none for a version without lock)."""
    headers = {}
    if (retention := retention_of(attributes)) is not None:
        headers[MODE_HEADER] = retention.mode
        headers[UNTIL_HEADER] = _iso(retention.until_ms)
    if legal_hold_of(attributes):
        headers[HOLD_HEADER] = "ON"
    return headers


def bypass_asked(headers: Mapping[str, str]) -> bool:
    return headers.get(BYPASS_HEADER, "").strip().lower() == "true"


def configuration_from_document(body: bytes) -> LockConfig:
    """An ObjectLockConfiguration: ObjectLockEnabled Enabled, and maybe a Rule's DefaultRetention."""
    root = xml.parse(body, "ObjectLockConfiguration", MAX_DOCUMENT)
    found = xml.children(root, {"ObjectLockEnabled", "Rule"}, "an ObjectLockConfiguration")
    if xml.text(xml.one(found, "ObjectLockEnabled", "an ObjectLockConfiguration")) != "Enabled":
        raise S3Error("MalformedXML", "ObjectLockEnabled must be Enabled (object lock is never disabled)")
    rule = xml.one(found, "Rule", "an ObjectLockConfiguration")
    if rule is None:
        return LockConfig()
    retention = xml.one(xml.children(rule, {"DefaultRetention"}, "a Rule"), "DefaultRetention", "a Rule")
    if retention is None:
        raise S3Error("MalformedXML", "a Rule holds one DefaultRetention")
    default = xml.fields(retention, {"Mode", "Days", "Years"}, "a DefaultRetention")
    if "Mode" not in default:
        raise S3Error("MalformedXML", "a DefaultRetention holds a Mode and Days or Years")
    if default["Mode"] not in MODES:
        raise S3Error("MalformedXML", f"object lock mode {default['Mode'][:20]!r}: use GOVERNANCE or COMPLIANCE")
    if ("Days" in default) == ("Years" in default):
        raise S3Error("MalformedXML", "a DefaultRetention gives Days or Years, one of them")
    try:
        days, years = (int(default.get(n, "0")) for n in ("Days", "Years"))
    except ValueError:
        raise S3Error("InvalidRetentionPeriod", "Days and Years are whole numbers") from None
    if days < 0 or years < 0 or days + years == 0:
        raise S3Error("InvalidRetentionPeriod", "a default retention is at least one day or one year")
    try:
        return LockConfig(default["Mode"], days=days, years=years)
    except InvalidArgument as exc:
        raise S3Error("InvalidRetentionPeriod", str(exc)) from None


def configuration_document(config: LockConfig) -> ET.Element:
    root = xml.root("ObjectLockConfiguration")
    xml.sub(root, "ObjectLockEnabled", "Enabled")
    if config.mode:
        default = xml.sub(xml.sub(root, "Rule"), "DefaultRetention")
        xml.sub(default, "Mode", config.mode)
        if config.days:
            xml.sub(default, "Days", config.days)
        else:
            xml.sub(default, "Years", config.years)
    return root


def retention_from_document(body: bytes) -> Retention | None:
    """A Retention document: Mode and RetainUntilDate, or empty (remove the retention)."""
    root = xml.parse(body, "Retention", MAX_DOCUMENT)
    fields = xml.fields(root, {"Mode", "RetainUntilDate"}, "a Retention")
    if not fields:
        return None
    if set(fields) != {"Mode", "RetainUntilDate"}:
        raise S3Error("MalformedXML", "a Retention gives both its Mode and its RetainUntilDate")
    return _retention(fields["Mode"], fields["RetainUntilDate"], "MalformedXML")


def legal_hold_from_document(body: bytes) -> bool:
    root = xml.parse(body, "LegalHold", MAX_DOCUMENT)
    fields = xml.fields(root, {"Status"}, "a LegalHold")
    if set(fields) != {"Status"}:
        raise S3Error("MalformedXML", "a LegalHold holds one Status")
    return _hold(fields["Status"], "MalformedXML")


# ----- operations ----------------------------------------------------------------------------

async def get_configuration(s: Services, call: Call) -> web.StreamResponse:
    config = await s.service.bucket_lock(call.caller, call.bucket)
    if config is None:
        raise S3Error("ObjectLockConfigurationNotFoundError", f"bucket {call.bucket!r} has no object lock")
    return xml_response(configuration_document(config))


async def put_configuration(s: Services, call: Call) -> web.StreamResponse:
    config = configuration_from_document(await payload.small_body(call, MAX_DOCUMENT))
    await s.service.set_bucket_lock(call.caller, call.bucket, config)
    return web.Response(status=200)


async def get_retention(s: Services, call: Call) -> web.StreamResponse:
    vid = versioning.asked_version(call.request.query)
    retention = await s.service.retention(call.caller, call.bucket, call.key, vid)
    if retention is None:
        raise S3Error("NoSuchObjectLockConfiguration", "the version has no retention")
    root = xml.root("Retention")
    xml.sub(root, "Mode", retention.mode)
    xml.sub(root, "RetainUntilDate", _iso(retention.until_ms))
    return xml_response(root)


async def put_retention(s: Services, call: Call) -> web.StreamResponse:
    retention = retention_from_document(await payload.small_body(call, MAX_DOCUMENT))
    await s.service.set_retention(call.caller, call.bucket, call.key, versioning.asked_version(call.request.query),
                                  retention, bypass_governance=bypass_asked(call.request.headers))
    return web.Response(status=200)


async def get_legal_hold(s: Services, call: Call) -> web.StreamResponse:
    on = await s.service.legal_hold(call.caller, call.bucket, call.key, versioning.asked_version(call.request.query))
    root = xml.root("LegalHold")
    xml.sub(root, "Status", "ON" if on else "OFF")
    return xml_response(root)


async def put_legal_hold(s: Services, call: Call) -> web.StreamResponse:
    on = legal_hold_from_document(await payload.small_body(call, MAX_DOCUMENT))
    await s.service.set_legal_hold(call.caller, call.bucket, call.key, versioning.asked_version(call.request.query), on)
    return web.Response(status=200)
