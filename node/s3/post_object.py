"""POST object: a browser uploads a file with an HTML form (`multipart/form-data` to the bucket's
URL), signed beforehand by the bucket owner's application as a policy document (boto3's
`generate_presigned_post`), so the browser never holds a secret.

The form's fields come before its `file`; they are read first, bounded (`MAX_FIELDS_BYTES`,
`MAX_FIELDS`), and the request is authenticated by them: the policy (base64 JSON) signed with the
SigV4 derived key of `x-amz-credential` (the node holds no secret, as for every request), not
expired, and every condition of it met: `{"field": value}` and `["eq", "$field", value]`,
`["starts-with", "$field", prefix]`, `["content-length-range", min, max]`; and every field of the
form (but `policy`, `x-amz-signature`, `file` and `x-ignore-*`) named by a condition, so a form
cannot add what the signer did not allow. The key that signed is the caller, admitted by the rule
table as any writer; then the file streams into a PutObject, its size checked on the way (the
object is written only once the whole file is in).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import BodyPartReader, web

from maillage.node.data.coordinator import Upload
from maillage.node.s3 import objects, xml
from maillage.node.s3.common import Call, Services, xml_response
from maillage.node.s3.errors import S3Error
from maillage.node.s3.payload import BODY_TAKEN
from maillage.node.s3.sigv4 import CREDENTIAL, Keys, Verified, derived_key
from maillage.proto.trust.access import KeyInfo
from maillage.proto.trust.requestauth import ALGORITHM

__all__ = ["FORM", "Form", "read_form", "authorize", "authenticate", "post_object", "MAX_FIELDS_BYTES"]

MAX_FIELDS_BYTES = 64 * 1024   # every field but the file, together (S3's policy alone is up to 20 KB)
MAX_FIELDS = 64
READ_PIECE = 256 * 1024
_NOT_CONDITIONED = frozenset({"policy", "x-amz-signature", "file"})
_STORED = {name.lower(): name for name in objects.STORED_HEADERS}


@dataclass
class Form:
    """A POST object form's fields (names lower-cased, as S3 compares them) and its file part."""

    fields: dict[str, str]
    file: BodyPartReader
    filename: str = ""
    min_size: int = 0
    max_size: int | None = None
    conditions: list[Any] = field(default_factory=list)


#: Key of the request's mapping: the form `authenticate` read (its file still to stream).
FORM = web.RequestKey("post_form", Form)


def _malformed(message: str) -> S3Error:
    return S3Error("MalformedPOSTRequest", f"the body of the POST request is not well-formed "
                                           f"multipart/form-data: {message}")


async def read_form(request: web.Request) -> Form:
    """The fields before the file, bounded; the file part left to stream."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as err:  # aiohttp's words for a bad Content-Type
        raise _malformed(str(err)[:80]) from None
    fields: dict[str, str] = {}
    budget = MAX_FIELDS_BYTES
    while True:
        try:
            part = await reader.next()
        except ValueError as err:
            raise _malformed(str(err)[:80]) from None
        if part is None:
            raise S3Error("InvalidArgument", "POST requires exactly one file upload per request (no file field)")
        if not isinstance(part, BodyPartReader) or not part.name:
            raise _malformed("a part without a field name")
        name = part.name.lower()
        if name == "file":
            return Form(fields, part, part.filename or "")
        if name in fields or len(fields) >= MAX_FIELDS:
            raise S3Error("InvalidArgument", f"form field {name[:40]!r} given twice, or more than {MAX_FIELDS} fields")
        value = bytearray()
        while chunk := await part.read_chunk(min(READ_PIECE, budget + 1)):
            value += chunk
            budget -= len(chunk)
            if budget < 0:
                raise S3Error("MaxPostPreDataLengthExceeded", f"the form's fields before the file exceed "
                                                              f"{MAX_FIELDS_BYTES} bytes")
        try:
            fields[name] = value.decode()
        except UnicodeDecodeError:
            raise S3Error("InvalidArgument", f"form field {name[:40]!r} is not UTF-8") from None


def _signer(keys: Keys, fields: Mapping[str, str]) -> KeyInfo:
    """The active key whose derived key signed the policy (x-amz-signature over the base64 policy)."""
    if "awsaccesskeyid" in fields or "signature" in fields:
        raise S3Error("InvalidRequest", f"this form is signed with Signature Version 2, which is not supported: "
                                        f"sign its policy with {ALGORITHM} (boto3: generate_presigned_post)")
    if fields.get("x-amz-algorithm") != ALGORITHM:
        raise S3Error("InvalidArgument", f"x-amz-algorithm must be {ALGORITHM}")
    credential = CREDENTIAL.match(fields.get("x-amz-credential", ""))
    if credential is None or credential["service"] != "s3":
        raise S3Error("InvalidArgument", "x-amz-credential must be <key id>/<yyyymmdd>/<region>/s3/aws4_request")
    if not fields.get("x-amz-date", "").startswith(credential["date"]):
        raise S3Error("InvalidArgument", "x-amz-date must be the credential's date (yyyymmddThhmmssZ)")
    key, derived = derived_key(keys, credential, "AccessDenied")
    expected = hmac.new(derived, fields.get("policy", "").encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("x-amz-signature", "")):
        raise S3Error("SignatureDoesNotMatch", "the form's policy signature does not match: check the secret key")
    return key


def _policy(text: str, now: datetime.datetime) -> list[Any]:
    """The conditions of a base64 policy document that has not expired."""
    try:
        document = json.loads(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise S3Error("InvalidPolicyDocument", "the policy is not base64-encoded JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("conditions"), list):
        raise S3Error("InvalidPolicyDocument", "the policy is a JSON object with expiration and conditions")
    try:
        expires = datetime.datetime.fromisoformat(str(document.get("expiration", "")).replace("Z", "+00:00"))
    except ValueError:
        raise S3Error("InvalidPolicyDocument", "the policy's expiration is not an ISO 8601 date") from None
    if expires.tzinfo is None or expires <= now:
        raise S3Error("AccessDenied", "Invalid according to Policy: Policy expired.")
    return document["conditions"]


def authorize(form: Form, keys: Keys, bucket: str, now: datetime.datetime | None = None) -> KeyInfo:
    """The key that signed the form, once its policy holds for the form's fields (the size range
    is kept on `form` for the file)."""
    fields = form.fields
    if "policy" not in fields:
        raise S3Error("AccessDenied", "a POST object form without a policy is anonymous, and anonymous uploads "
                                      "are not allowed")
    key = _signer(keys, fields)
    values = {**fields, "bucket": bucket}
    covered: set[str] = set()
    for condition in _policy(fields["policy"], now or datetime.datetime.now(datetime.UTC)):
        if isinstance(condition, dict) and len(condition) == 1:
            ((name, expected),) = condition.items()
            operator, name = "eq", str(name).lower()
        elif isinstance(condition, list) and len(condition) == 3 and condition[0] == "content-length-range":
            try:
                form.min_size, form.max_size = int(condition[1]), int(condition[2])
            except (TypeError, ValueError):
                raise S3Error("InvalidPolicyDocument", "content-length-range takes two integers") from None
            continue
        elif isinstance(condition, list) and len(condition) == 3 and condition[0] in ("eq", "starts-with") \
                and isinstance(condition[1], str) and condition[1].startswith("$"):
            operator, name, expected = condition[0], condition[1][1:].lower(), condition[2]
        else:
            raise S3Error("InvalidPolicyDocument", f"condition {str(condition)[:80]!r} is not understood")
        actual, expected = values.get(name, ""), str(expected)
        if not (actual == expected if operator == "eq" else actual.startswith(expected)):
            raise S3Error("AccessDenied", f"Invalid according to Policy: Policy Condition failed: "
                                          f"[\"{operator}\", \"${name}\", \"{expected[:80]}\"]")
        covered.add(name)
    extra = [n for n in fields if n not in covered and n not in _NOT_CONDITIONED and not n.startswith("x-ignore-")]
    if extra:
        raise S3Error("AccessDenied", f"Invalid according to Policy: Extra input fields: {', '.join(extra)[:120]}")
    return key


async def _file(form: Form) -> AsyncIterator[bytes]:
    """The file's bytes, its size held to the policy's content-length-range on the way."""
    size = 0
    while piece := await form.file.read_chunk(READ_PIECE):
        size += len(piece)
        if form.max_size is not None and size > form.max_size:
            raise S3Error("EntityTooLarge", f"the file is larger than the policy's {form.max_size} bytes; "
                                            "nothing was written")
        yield piece
    if size < form.min_size:
        raise S3Error("EntityTooSmall", f"the file is smaller than the policy's {form.min_size} bytes; "
                                        "nothing was written")


def _upload(form: Form) -> Upload:
    fields = form.fields
    key = fields.get("key", "")
    if not key:
        raise S3Error("InvalidArgument", "the form names no key")
    if any(name.startswith("x-amz-server-side-encryption-customer") for name in fields):
        raise S3Error("NotImplemented", "POST object with a customer-provided key (SSE-C) is not served")
    return Upload(key=key.replace("${filename}", form.filename),
                  content_type=fields.get("content-type") or "application/octet-stream",
                  user_metadata={n[len("x-amz-meta-"):]: v for n, v in fields.items() if n.startswith("x-amz-meta-")},
                  attributes={n: v for n, v in fields.items() if n in _STORED and v})


async def authenticate(request: web.Request, keys: Keys, bucket: str) -> Verified:
    """Read the form's fields (the file left to stream, kept with the request as `FORM`) and
    answer the key that signed its policy, as the door's authentication step."""
    request[BODY_TAKEN] = True   # never forwarded from here on: the fields are read
    form = await read_form(request)
    request[FORM] = form
    return Verified(authorize(form, keys, bucket), None)


async def post_object(s: Services, call: Call) -> web.StreamResponse:
    """Store the file of a form `authenticate` took, then answer as the form asks:
    success_action_redirect, or success_action_status 200, 201 (with a document) or 204."""
    form = call.request[FORM]
    upload = _upload(form)
    manifest, _sites = await s.service.put_object(call.caller, call.bucket, upload, objects.md5_stream(_file(form)))
    etag = objects.etag(manifest)
    headers = {"ETag": etag, "Location": f"/{call.bucket}/{quote(upload.key)}"}
    redirect = form.fields.get("success_action_redirect") or form.fields.get("redirect")
    if redirect and redirect.startswith(("http://", "https://")):
        sep = "&" if "?" in redirect else "?"
        headers["Location"] = redirect + sep + urlencode({"bucket": call.bucket, "key": upload.key, "etag": etag})
        return web.Response(status=303, headers=headers)
    status = form.fields.get("success_action_status", "204")
    if status == "201":
        root = xml.root("PostResponse")
        for tag, text in (("Location", headers["Location"]), ("Bucket", call.bucket), ("Key", upload.key),
                          ("ETag", etag)):
            xml.sub(root, tag, text)
        response = xml_response(root, status=201)
        response.headers.update(headers)
        return response
    return web.Response(status=200 if status == "200" else 204, headers=headers)
