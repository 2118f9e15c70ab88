"""The raw-bytes methods (see the header of maillage.proto) and the PutObject stream's framing.

They are registered without (de)serializers so a chunk crosses gRPC as the bytes it is, instead of
being copied into and out of a protobuf message. A PutObject stream is one header message, any
number of data messages and one trailer, each a tag byte and its payload; a PutSmallObject request
is the same three in one message, for an object of at most INLINE_MAX bytes (one message each way
costs the SDK much less than a stream of three). The encoders (used by the SDK) and the decoders
(used by the node) sit side by side here so they cannot drift apart.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from maillage.proto import maillage_pb2 as pb

__all__ = [
    "SERVICE", "PUT_CHUNK", "GET_CHUNK", "PUT_OBJECT", "PUT_SMALL_OBJECT", "POLICY_KEY", "TENANT_KEY",
    "TAG_HEADER", "TAG_DATA", "TAG_TRAILER", "StreamError", "header_message", "data_message", "trailer_message",
    "read_header", "read_message", "small_object_message", "read_small_object", "chunk_request",
    "read_chunk_request",
]

SERVICE = "maillage.v1.Bulk"
PUT_CHUNK = f"/{SERVICE}/PutChunk"
GET_CHUNK = f"/{SERVICE}/GetChunk"
PUT_OBJECT = f"/{SERVICE}/PutObject"
PUT_SMALL_OBJECT = f"/{SERVICE}/PutSmallObject"

# A GetChunk request is the chunk's 32-byte digest, followed for a client by the name of the bucket
# it reads the chunk for (UTF-8): the node serves a client only chunks it holds for that bucket's
# policy and owner, to a caller who may read that bucket. A node (repair) sends the digest alone.
DIGEST_BYTES = 32
_BUCKET_NAME_MAX = 63


def chunk_request(digest: bytes, bucket: str = "") -> bytes:
    """The GetChunk request for `digest`, read for `bucket` (a client's) or for a node ("")."""
    return bytes(digest) + bucket.encode("utf-8")


def read_chunk_request(raw: bytes) -> tuple[bytes, str]:
    """(digest, bucket) of a GetChunk request; StreamError for one of another shape."""
    if not DIGEST_BYTES <= len(raw) <= DIGEST_BYTES + _BUCKET_NAME_MAX:
        raise StreamError(f"a GetChunk request is a digest of {DIGEST_BYTES} bytes and a bucket name of at "
                          f"most {_BUCKET_NAME_MAX} bytes, not {len(raw)} bytes")
    try:
        bucket = bytes(raw[DIGEST_BYTES:]).decode("utf-8")
    except UnicodeDecodeError:
        raise StreamError("the bucket name of a GetChunk request is not UTF-8") from None
    return bytes(raw[:DIGEST_BYTES]), bucket


# Metadata key carried next to a PutChunk's raw bytes: the policy the chunk is held for.
POLICY_KEY = "x-maillage-policy"
# Metadata key of the tenant whose data key seals the chunk at rest: sent with a PutChunk (the
# bucket owner; empty or absent: not known, the policy's key seals it), and in a GetChunk reply's
# trailing metadata to a node (the tenant whose key sealed the file there), so repair re-seals a
# copy with the same tenant's key.
TENANT_KEY = "x-maillage-tenant"

# First byte of every PutObject stream message.
TAG_HEADER = 0x01
TAG_DATA = 0x02
TAG_TRAILER = 0x03


class StreamError(ValueError):
    """A PutObject stream that does not follow the framing (the node answers INVALID_ARGUMENT)."""


def header_message(header: pb.PutObjectHeader) -> bytes:
    return bytes([TAG_HEADER]) + header.SerializeToString()


def data_message(piece: bytes | bytearray | memoryview) -> bytes:
    return b"".join((bytes([TAG_DATA]), piece))


def trailer_message(blake3_digest: bytes) -> bytes:
    return bytes([TAG_TRAILER]) + pb.PutObjectTrailer(blake3=blake3_digest).SerializeToString()


def read_header(message: bytes | None) -> pb.PutObjectHeader:
    """The header of a stream, from its first message."""
    if not message or message[0] != TAG_HEADER:
        raise StreamError("a PutObject stream must start with its header message")
    return _parse(pb.PutObjectHeader, message, "header")


def read_message(message: bytes) -> memoryview | pb.PutObjectTrailer:
    """A later message: a data piece (without copying it) or the trailer."""
    tag = message[0] if message else None
    if tag == TAG_DATA:
        return memoryview(message)[1:]
    if tag == TAG_TRAILER:
        return _parse(pb.PutObjectTrailer, message, "trailer")
    raise StreamError(f"unexpected PutObject message with tag {tag!r}")


def small_object_message(header: pb.PutObjectHeader, data: bytes | bytearray | memoryview,
                         blake3_digest: bytes) -> bytes:
    """The one request of a PutSmallObject call (the caller keeps `data` within INLINE_MAX)."""
    return pb.PutSmallObjectRequest(header=header, data=bytes(data), blake3=blake3_digest).SerializeToString()


def read_small_object(message: bytes, limit: int) -> pb.PutSmallObjectRequest:
    """A PutSmallObject request, refused (StreamError) when it does not parse or carries more than
    `limit` bytes of object data."""
    try:
        request = pb.PutSmallObjectRequest.FromString(message)
    except DecodeError as exc:
        raise StreamError(f"the PutSmallObject request does not parse: {exc}") from None
    if len(request.data) > limit:
        raise StreamError(f"PutSmallObject carries {len(request.data)} bytes, more than the {limit} it takes; "
                          "send larger objects with the PutObject stream")
    return request


_M = TypeVar("_M", bound=Message)


def _parse(cls: type[_M], message: bytes, what: str) -> _M:
    try:
        return cls.FromString(message[1:])
    except DecodeError as exc:
        raise StreamError(f"the PutObject {what} message does not parse: {exc}") from None
