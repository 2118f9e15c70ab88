"""Checks on names and sizes that every request passes before anything is stored.

Rules follow S3 where users expect them (bucket names), and are tighter where the store needs it:
keys may not hold NUL (the metadata store separates fields with it) and metadata is bounded so a
manifest stays small enough to replicate in one message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from maillage.node.errors import InvalidBucketName, InvalidKey, InvalidRequest, MetadataTooLarge

MAX_KEY_BYTES = 1024
#: Keys beginning with this character are the store's own (multipart uploads in progress, versions of
#: versioned buckets and their state, see `data/versions.py` and
#: `coordinator.py`): users can neither write, read nor list them, and every one of them sorts below
#: any key a user may write.
RESERVED_PREFIX = "\x01"
VERSION_SLOTS = RESERVED_PREFIX + "v/"  # + key + "\x01" + slot: one version of a key (`data/versions.py`)
MAX_METADATA_BYTES = 2048
MAX_CONTENT_TYPE = 255
#: A listing page holds at most this many entries (larger requests are clamped, as S3 does)...
MAX_LIST_PAGE = 1000
#: ...and a request for more than this is not a mistake to round down but a malformed request.
ABSURD_LIMIT = 1_000_000
#: Digests one HasChunks call may ask about.
MAX_DIGESTS_PER_CALL = 10_000
DIGEST_BYTES = 32

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_META_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def check_bucket_name(name: str) -> None:
    if not _BUCKET.match(name):
        raise InvalidBucketName(
            f"bucket name {name!r} is invalid: use 3-63 characters among a-z, 0-9, '.' and '-', "
            "starting and ending with a letter or digit")
    if ".." in name or _IPV4.match(name):
        raise InvalidBucketName(f"bucket name {name!r} is invalid: no '..' and not an IP address")


_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_tenant(name: str) -> None:
    """A tenant name as the access document allows it, or empty (not known)."""
    if name and not _TENANT.match(name):
        raise InvalidRequest(f"tenant name {name[:64]!r} is invalid: use 1-63 characters among A-Z, a-z, "
                             "0-9, '.', '_' and '-', starting with a letter or digit")


def check_key(key: str) -> None:
    """A key a user may name (put, get, delete, copy): never one of the reserved space."""
    if not key:
        raise InvalidKey("object key is empty")
    if key.startswith(RESERVED_PREFIX):
        raise InvalidKey("object key starts with the control character U+0001, which this store reserves "
                         "for its own records (multipart uploads in progress): choose another first character")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is {size} bytes in UTF-8, the limit is {MAX_KEY_BYTES}")
    if "\x00" in key:
        raise InvalidKey("object key contains a NUL character")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey(f"object key is not valid UTF-8 text: {exc.reason}") from exc


def check_metadata(metadata: Mapping[str, str], content_type: str) -> None:
    for name in metadata:
        if not _META_NAME.match(name):
            raise MetadataTooLarge(
                f"user metadata name {name!r} is invalid: use lowercase letters, digits, '-' and '_'")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise MetadataTooLarge(
            f"user metadata is {size} bytes, the limit is {MAX_METADATA_BYTES}")
    if len(content_type) > MAX_CONTENT_TYPE:
        raise MetadataTooLarge(f"content type is {len(content_type)} characters, the limit is {MAX_CONTENT_TYPE}")


def check_attributes(attributes: Mapping[str, str]) -> None:
    """Stored headers and S3 ETag (Manifest.attributes): bounded like user metadata."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
    if size > MAX_METADATA_BYTES:
        raise MetadataTooLarge(f"stored headers are {size} bytes, the limit is {MAX_METADATA_BYTES}")


def page_limit(value: int, what: str = "limit") -> int:
    """A caller's page size: 0 means the default (the largest page), larger ones are clamped to
    `MAX_LIST_PAGE`, absurd ones refused."""
    if value < 0 or value > ABSURD_LIMIT:
        raise InvalidRequest(f"{what} {value} is out of range: ask for 1..{MAX_LIST_PAGE} entries per page")
    return min(value or MAX_LIST_PAGE, MAX_LIST_PAGE)


def check_digest(digest: bytes) -> None:
    if len(digest) != DIGEST_BYTES:
        raise InvalidRequest(f"a chunk digest is {DIGEST_BYTES} bytes (BLAKE3), got {len(digest)}")


def check_digests(digests: Sequence[bytes]) -> None:
    if len(digests) > MAX_DIGESTS_PER_CALL:
        raise InvalidRequest(f"{len(digests)} digests in one call, the limit is {MAX_DIGESTS_PER_CALL}")
    for d in digests:
        check_digest(d)


def check_groups(groups: Sequence[Any], bits: int) -> None:
    """Anti-entropy groups a caller names: a partition the layout has."""
    if len(groups) > MAX_DIGESTS_PER_CALL:
        raise InvalidRequest(f"{len(groups)} groups in one call, the limit is {MAX_DIGESTS_PER_CALL}")
    for g in groups:
        if not g.is_index and not 0 <= g.partition < 1 << bits:
            raise InvalidRequest(f"partition {g.partition} does not exist: the layout has {1 << bits}")
