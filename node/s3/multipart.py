"""S3 multipart uploads (Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
ListMultipartUploads). Not served yet: every operation answers NotImplemented."""

from __future__ import annotations

from aiohttp import web

from .common import Call, Services
from .errors import S3Error

__all__ = ["create_upload", "upload_part", "upload_part_copy", "complete_upload", "abort_upload",
           "list_parts", "list_uploads"]


async def _not_yet(s: Services, call: Call) -> web.StreamResponse:
    raise S3Error("NotImplemented", "multipart uploads are not supported yet")


create_upload = upload_part = upload_part_copy = complete_upload = abort_upload = list_parts = list_uploads = _not_yet
