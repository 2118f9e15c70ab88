"""S3 versioning at the door: the `versionId` a request names, the version headers of object
answers, and the versioning document (the operations on buckets are in `buckets.py`, on objects in
`objects.py`). The model (slots, null version, delete markers) is the service layer's,
`node/data/versions.py`: this module parses and renders only."""

from __future__ import annotations

from collections.abc import Mapping

from maillage.node.data.versions import NULL, Deleted, DeleteMarker, check_version_id, version_id
from maillage.node.errors import InvalidArgument
from maillage.node.s3 import xml
from maillage.node.s3.errors import S3Error
from maillage.storage import Manifest

__all__ = ["asked_version", "version_headers", "written_headers", "deleted_headers", "marker_error",
           "status_from_document",
           "check_marker", "MAX_DOCUMENT", "HEADER", "MARKER_HEADER"]

MAX_DOCUMENT = 4 * 1024
HEADER = "x-amz-version-id"
MARKER_HEADER = "x-amz-delete-marker"


def asked_version(query: Mapping[str, str]) -> str | None:
    """The `versionId` a request names (validated: bounded, hex or "null"), None when it names none."""
    return check_marker(query["versionId"]) if "versionId" in query else None


def version_headers(m: Manifest) -> dict[str, str]:
    """The version id of an object read (none for an object written before versioning)."""
    vid = version_id(m)
    return {} if vid is None else {HEADER: vid}


def written_headers(m: Manifest) -> dict[str, str]:
    """The version id of a write's answer: as S3, none for a null version (a Suspended bucket's)."""
    vid = version_id(m)
    return {} if vid is None or vid == NULL else {HEADER: vid}


def deleted_headers(deleted: Deleted) -> dict[str, str]:
    headers = {} if deleted.version_id is None else {HEADER: deleted.version_id}
    if deleted.marker:
        headers[MARKER_HEADER] = "true"
    return headers


def marker_error(exc: DeleteMarker) -> S3Error:
    """A delete marker read: 404 NoSuchKey for the key's current, 405 when named by its version id."""
    headers = {MARKER_HEADER: "true", HEADER: exc.version_id}
    if exc.asked:
        return S3Error("MethodNotAllowed", "the version named is a delete marker", headers=headers)
    return S3Error("NoSuchKey", str(exc), headers=headers)


def check_marker(value: str) -> str:
    """A version-id-marker of a listing, validated like a version id."""
    try:
        return check_version_id(value)
    except InvalidArgument as exc:
        raise S3Error("InvalidArgument", str(exc)) from None


def status_from_document(body: bytes) -> str:
    """The Status of a PutBucketVersioning document (Enabled or Suspended; MFA delete refused)."""
    root = xml.parse(body, "VersioningConfiguration", MAX_DOCUMENT)
    fields = {xml.local_name(child.tag): (child.text or "").strip() for child in root}
    unknown = set(fields) - {"Status", "MfaDelete"}
    if unknown:
        raise S3Error("MalformedXML",
                      f"unknown element(s) {', '.join(sorted(unknown))[:80]} in VersioningConfiguration")
    if fields.get("MfaDelete", "Disabled") != "Disabled":
        raise S3Error("NotImplemented", "MFA delete is not served: leave MfaDelete out or Disabled")
    status = fields.get("Status", "")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("MalformedXML", f"versioning Status {status[:20]!r}: use Enabled or Suspended")
    return status
