"""Manifests and bucket records, and their versioned binary codec.

A manifest is one version of one object: its chunk list (or inline bytes for small objects), its
user-visible attributes, and the ``(version, writer)`` pair that orders it against other versions
of the same key (last writer wins; ``writer``, the coordinator's node id, breaks ties between two
coordinators that picked the same HLC value).

The encoding is hand-written binary rather than JSON or pickle: it is compact (a 4 MiB object's
manifest is ~50 bytes plus the key), exact for binary digests and inline data, cannot execute code
when read, and starts with a format version byte that readers check. Every length is explicit and
every decode checks it has consumed exactly the whole record, so a truncated or padded value is
rejected with :class:`CorruptRecord` instead of being half-read.

Names: bucket names are ``[a-z0-9.-]{1,63}``; object keys are non-empty UTF-8 of at most 1024
bytes without NUL (NUL separates fields in the metadata key layout, see ``metadata.py``).

Generations: a bucket is the pair (name, generation). The generation is a unique id made when the
bucket is created (lowercase hex, at most 64 characters: ``secrets.token_hex(16)`` in practice),
so a name deleted and created again is another bucket, with another policy perhaps: its index
never mixes with the old one's. A bucket record is never replaced by one of another policy or
generation; deleting a bucket writes a :class:`BucketTombstone` of that generation.

Formats and what old records read as:

* manifest format 2 = format 1 + the bucket generation at the end. A format-1 manifest (written
  before generations existed) reads as generation ``""``.
* bucket record format 2 = format 1 + the generation at the end. A format-1 record reads as
  generation ``""``, which is the generation of every manifest of format 1: an existing data
  directory keeps its buckets and their objects.
* bucket tombstone format 1: name, generation, policy, deleted-at version.
* manifest format 3 (written when the store has data keys: encryption at rest) = the fields of
  format 2 that stay in clear (version, writer, bucket, key, size, etag, content type, chunk list,
  deleted flag, generation), then one byte: 0 when the manifest has nothing secret (no user
  metadata, no inline bytes), else 1 followed by the 8-byte id of the tenant's data key and the
  sealed secret part (user metadata and inline bytes, encoded as in format 2), AES-256-GCM with
  every byte before it (and the key id) as associated data: the secret part of one record cannot
  be moved under another key, version or bucket. Key names, sizes and versions stay in clear
  (ordered listings and last-writer-wins read them); see ``keys.py`` for the keys. Formats 1 and
  2 still read.
* manifest formats 4 (clear) and 5 (sealed) = formats 2 and 3 plus the object's *attributes*: the
  standard headers S3 stores with an object (cache-control, content-disposition, ...) and its S3
  ETag (the MD5 S3 tools compare), name/value pairs encoded like user metadata; in format 4 after
  the generation, in format 5 at the end of the secret part. Formats 1 to 3 read with no attributes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Protocol

from maillage.proto.frame import DIGEST_SIZE
from maillage.storage.errors import CorruptFrame, CorruptRecord, InvalidName

__all__ = [
    "ChunkRef",
    "Manifest",
    "BucketRecord",
    "BucketTombstone",
    "MANIFEST_FORMAT",
    "MANIFEST_SEALED_FORMAT",
    "RecordKeys",
    "BUCKET_FORMAT",
    "BUCKET_TOMBSTONE_FORMAT",
    "MAX_KEY_BYTES",
    "encode_manifest",
    "decode_manifest",
    "manifest_order",
    "encode_bucket",
    "decode_bucket",
    "encode_bucket_tombstone",
    "decode_bucket_tombstone",
    "validate_bucket_name",
    "validate_generation",
    "validate_key",
]

MANIFEST_FORMAT = 4  # format 2 + attributes; reads 1 (no generation: ""), 2 and 4
MANIFEST_SEALED_FORMAT = 5  # format 4 with user metadata, attributes and inline bytes encrypted; reads 3
_OLD_SEALED_FORMAT = 3  # format 5 without attributes
_READABLE_MANIFESTS = (1, 2, _OLD_SEALED_FORMAT, MANIFEST_FORMAT, MANIFEST_SEALED_FORMAT)
_KEY_ID_SIZE = 8
_SEALED_AAD = b"maillage manifest v3"
BUCKET_FORMAT = 2  # reads 1 (no generation: "") and 2
BUCKET_TOMBSTONE_FORMAT = 1
MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"[a-z0-9.-]{1,63}")
_GENERATION_RE = re.compile(r"[0-9a-f]{0,64}")
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of an object: its digest and its plain length."""

    digest: bytes
    length: int

    __module__ = "maillage.storage"


@dataclass(frozen=True)
class Manifest:
    """One version of one object (or its tombstone when ``deleted``)."""

    bucket: str
    key: str
    version: int
    size: int
    etag: str
    content_type: str = "application/octet-stream"
    user_metadata: tuple[tuple[str, str], ...] = ()
    chunks: tuple[ChunkRef, ...] = ()
    inline: bytes | None = None
    deleted: bool = False
    writer: str = ""
    generation: str = ""  # of the bucket this manifest belongs to
    # Stored headers S3 serves with the object and its S3 ETag (see the module docstring).
    attributes: tuple[tuple[str, str], ...] = ()

    __module__ = "maillage.storage"

    @property
    def order(self) -> tuple[int, str]:
        """The last-writer-wins order: larger wins."""
        return (self.version, self.writer)


@dataclass(frozen=True)
class BucketRecord:
    """A bucket: its name, its residency policy, its creation version, owner and generation
    (the unique id of this creation of the name; ``""`` for buckets made before generations)."""

    name: str
    policy: str
    created: int
    owner: str = ""
    generation: str = ""

    __module__ = "maillage.storage"

    def same_bucket(self, other: BucketRecord) -> bool:
        """Whether ``other`` names this very bucket: same name, generation and policy."""
        return (self.name, self.generation, self.policy) == (other.name, other.generation, other.policy)


@dataclass(frozen=True)
class BucketTombstone:
    """A deleted bucket generation: it wins over any record of that (name, generation), so a
    node that missed the delete cannot bring the bucket back. ``policy`` is the deleted
    record's (a tombstone rests only where the bucket's record could); ``deleted`` is the HLC
    version of the delete."""

    name: str
    generation: str
    policy: str
    deleted: int

    __module__ = "maillage.storage"


def validate_bucket_name(name: str) -> bytes:
    """Return the encoded bucket name, or raise :class:`InvalidName`."""
    if not isinstance(name, str) or not _BUCKET_RE.fullmatch(name):
        raise InvalidName(
            f"invalid bucket name {name!r}: use 1-63 characters among a-z, 0-9, '.' and '-'"
        )
    return name.encode("ascii")


def validate_generation(generation: str) -> bytes:
    """Return the encoded bucket generation, or raise :class:`InvalidName`."""
    if not isinstance(generation, str) or not _GENERATION_RE.fullmatch(generation):
        raise InvalidName(f"invalid bucket generation {generation!r}: use at most 64 characters among 0-9, a-f")
    return generation.encode("ascii")


def validate_key(key: str) -> bytes:
    """Return the UTF-8 object key, or raise :class:`InvalidName`."""
    if not isinstance(key, str) or not key:
        raise InvalidName("object key must be a non-empty string")
    if "\x00" in key:
        raise InvalidName(f"object key {key!r} contains a NUL character, which is not allowed")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidName(f"object key {key!r} is not valid Unicode text: {exc}") from exc
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidName(f"object key is {len(raw)} bytes in UTF-8, the limit is {MAX_KEY_BYTES}")
    return raw


_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_U64S = struct.Struct(">Q")
_REF = struct.Struct(">32sQ")


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self.parts.append(_U8.pack(v))

    def u32(self, v: int) -> None:
        self.parts.append(_U32.pack(v))

    def u64(self, v: int, what: str) -> None:
        if not 0 <= v <= _U64:
            raise ValueError(f"{what} {v} does not fit in an unsigned 64-bit integer")
        self.parts.append(_U64S.pack(v))

    def blob(self, b: bytes) -> None:
        self.parts += (_U32.pack(len(b)), b)

    def text(self, s: str) -> None:
        b = s.encode("utf-8")
        self.parts += (_U32.pack(len(b)), b)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    __slots__ = ("data", "pos", "what", "size")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.size = len(self.data)
        self.what = what

    def _short(self) -> CorruptRecord:
        return CorruptRecord(f"{self.what} record is truncated")

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > self.size:
            raise self._short()
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        if self.pos >= self.size:
            raise self._short()
        self.pos += 1
        return self.data[self.pos - 1]

    def u32(self) -> int:
        if self.pos + 4 > self.size:
            raise self._short()
        v: int
        (v,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return v

    def u64(self) -> int:
        if self.pos + 8 > self.size:
            raise self._short()
        v: int
        (v,) = _U64S.unpack_from(self.data, self.pos)
        self.pos += 8
        return v

    def ref(self) -> ChunkRef:
        if self.pos + 40 > self.size:
            raise self._short()
        digest, length = _REF.unpack_from(self.data, self.pos)
        self.pos += 40
        return ChunkRef(digest, length)

    def blob(self) -> bytes:
        return self._take(self.u32())

    def text(self) -> str:
        try:
            return self._take(self.u32()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptRecord(f"{self.what} record holds invalid UTF-8") from exc

    def flag(self) -> bool:
        v = self.u8()
        if v > 1:
            raise CorruptRecord(f"{self.what} record has a bad boolean byte {v}")
        return v == 1

    def end(self) -> None:
        if self.pos != self.size:
            raise CorruptRecord(f"{self.what} record has {self.size - self.pos} trailing bytes")


class RecordKeys(Protocol):
    """What the record codec needs of the data keys (:class:`~maillage.storage.DataKeys`)."""

    def tenant_key(self, tenant: str) -> bytes: ...

    def encrypt(self, key_id: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytes: ...

    def decrypt(self, key_id: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes: ...


def _encode_pairs(w: _Writer, pairs: tuple[tuple[str, str], ...]) -> None:
    w.u32(len(pairs))
    for k, v in pairs:
        w.text(k)
        w.text(v)


def _decode_pairs(r: _Reader) -> tuple[tuple[str, str], ...]:
    return tuple((r.text(), r.text()) for _ in range(r.u32()))


def _encode_secret(w: _Writer, m: Manifest) -> None:
    _encode_pairs(w, m.user_metadata)
    if m.inline is None:
        w.u8(0)
    else:
        w.u8(1)
        w.blob(bytes(m.inline))
    _encode_pairs(w, m.attributes)


def _encode_refs(w: _Writer, chunks: tuple[ChunkRef, ...]) -> None:
    w.u32(len(chunks))
    for c in chunks:
        if len(c.digest) != DIGEST_SIZE:
            raise ValueError(f"chunk digest must be {DIGEST_SIZE} bytes, got {len(c.digest)}")
        if not 0 <= c.length <= _U64:
            raise ValueError(f"chunk length {c.length} does not fit in an unsigned 64-bit integer")
        w.parts.append(_REF.pack(bytes(c.digest), c.length))


def encode_manifest(m: Manifest, keys: RecordKeys | None = None, tenant: str = "") -> bytes:
    """Encode ``m`` (format version byte first). Raises ValueError/InvalidName on bad fields.

    With ``keys``: format 3, user metadata and inline bytes encrypted with ``tenant``'s data key
    (the owner of the bucket); without: format 2, everything in clear."""
    validate_bucket_name(m.bucket)
    validate_generation(m.generation)
    validate_key(m.key)
    if keys is not None:
        return _encode_sealed(m, keys, tenant)
    w = _Writer()
    w.u8(MANIFEST_FORMAT)
    w.u64(m.version, "version")  # version and writer first: the committer reads only these
    w.text(m.writer)
    w.text(m.bucket)
    w.text(m.key)
    w.u64(m.size, "size")
    w.text(m.etag)
    w.text(m.content_type)
    _encode_pairs(w, m.user_metadata)
    _encode_refs(w, m.chunks)
    if m.inline is None:
        w.u8(0)
    else:
        w.u8(1)
        w.blob(bytes(m.inline))
    w.u8(1 if m.deleted else 0)
    w.text(m.generation)
    _encode_pairs(w, m.attributes)
    return w.getvalue()


def _encode_sealed(m: Manifest, keys: RecordKeys, tenant: str) -> bytes:
    w = _Writer()
    w.u8(MANIFEST_SEALED_FORMAT)
    w.u64(m.version, "version")  # version and writer first, as in format 2
    w.text(m.writer)
    w.text(m.bucket)
    w.text(m.key)
    w.u64(m.size, "size")
    w.text(m.etag)
    w.text(m.content_type)
    _encode_refs(w, m.chunks)
    w.u8(1 if m.deleted else 0)
    w.text(m.generation)
    if not m.user_metadata and m.inline is None and not m.attributes:
        w.u8(0)  # nothing secret: no key needed
        return w.getvalue()
    w.u8(1)
    secret = _Writer()
    _encode_secret(secret, m)
    key_id = keys.tenant_key(tenant)
    clear = w.getvalue()
    sealed = keys.encrypt(key_id, secret.getvalue(), _SEALED_AAD + clear + key_id)
    return b"".join((clear, key_id, _U32.pack(len(sealed)), sealed))


def _manifest_format(r: _Reader) -> int:
    fmt = r.u8()
    if fmt not in _READABLE_MANIFESTS:
        raise CorruptRecord(f"unsupported manifest format {fmt} (this node reads 1 to {MANIFEST_SEALED_FORMAT})")
    return fmt


def _decode_sealed(r: _Reader, keys: RecordKeys | None, fmt: int) -> Manifest:
    version = r.u64()
    writer = r.text()
    bucket = r.text()
    key = r.text()
    size = r.u64()
    etag = r.text()
    content_type = r.text()
    chunks = tuple(r.ref() for _ in range(r.u32()))
    deleted = r.flag()
    generation = r.text()
    meta: tuple[tuple[str, str], ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    inline = None
    if r.flag():
        clear = r.data[:r.pos]
        key_id = r._take(_KEY_ID_SIZE)
        sealed = r.blob()
        if keys is None:
            raise CorruptRecord(f"manifest of {bucket}/{key} is encrypted and this store has no data keys")
        try:
            secret = keys.decrypt(key_id, sealed, _SEALED_AAD + clear + key_id)
        except CorruptFrame as exc:
            raise CorruptRecord(f"manifest record's encrypted part: {exc}") from None
        s = _Reader(secret, "manifest (encrypted part)")
        meta = _decode_pairs(s)
        inline = s.blob() if s.flag() else None
        if fmt == MANIFEST_SEALED_FORMAT:
            attributes = _decode_pairs(s)
        s.end()
    r.end()
    return Manifest(bucket=bucket, key=key, version=version, size=size, etag=etag, content_type=content_type,
                    user_metadata=meta, chunks=chunks, inline=inline, deleted=deleted, writer=writer,
                    generation=generation, attributes=attributes)


def decode_manifest(b: bytes, keys: RecordKeys | None = None) -> Manifest:
    """Decode a manifest (format 1 reads as generation ""; format 3 needs the ``keys`` that
    sealed it); raises :class:`CorruptRecord` on anything malformed or failing authentication."""
    r = _Reader(b, "manifest")
    fmt = _manifest_format(r)
    if fmt in (_OLD_SEALED_FORMAT, MANIFEST_SEALED_FORMAT):
        return _decode_sealed(r, keys, fmt)
    version = r.u64()
    writer = r.text()
    bucket = r.text()
    key = r.text()
    size = r.u64()
    etag = r.text()
    content_type = r.text()
    meta = _decode_pairs(r)
    n = r.u32()
    chunks = []
    for _ in range(n):
        chunks.append(r.ref())
    inline = r.blob() if r.flag() else None
    deleted = r.flag()
    generation = r.text() if fmt >= 2 else ""
    attributes = _decode_pairs(r) if fmt == MANIFEST_FORMAT else ()
    r.end()
    return Manifest(
        bucket=bucket,
        key=key,
        version=version,
        size=size,
        etag=etag,
        content_type=content_type,
        user_metadata=meta,
        chunks=tuple(chunks),
        inline=inline,
        deleted=deleted,
        writer=writer,
        generation=generation,
        attributes=attributes,
    )


def manifest_order(b: bytes) -> tuple[int, str]:
    """``(version, writer)`` of an encoded manifest without decoding the rest."""
    r = _Reader(b, "manifest")
    _manifest_format(r)
    return r.u64(), r.text()


def encode_bucket(rec: BucketRecord) -> bytes:
    """Encode a bucket record (format version byte first; format 2 ends with the generation)."""
    validate_bucket_name(rec.name)
    validate_generation(rec.generation)
    w = _Writer()
    w.u8(BUCKET_FORMAT)
    w.text(rec.name)
    w.text(rec.policy)
    w.u64(rec.created, "created")
    w.text(rec.owner)
    w.text(rec.generation)
    return w.getvalue()


def decode_bucket(b: bytes) -> BucketRecord:
    """Decode a bucket record (format 1 reads as generation ""); raises :class:`CorruptRecord`
    on anything malformed."""
    r = _Reader(b, "bucket")
    fmt = r.u8()
    if fmt not in (1, BUCKET_FORMAT):
        raise CorruptRecord(f"unsupported bucket record format {fmt} (this node reads 1 to {BUCKET_FORMAT})")
    name, policy, created, owner = r.text(), r.text(), r.u64(), r.text()
    generation = r.text() if fmt >= 2 else ""
    r.end()
    return BucketRecord(name=name, policy=policy, created=created, owner=owner, generation=generation)


def encode_bucket_tombstone(t: BucketTombstone) -> bytes:
    """Encode a bucket tombstone (format version byte first)."""
    validate_bucket_name(t.name)
    validate_generation(t.generation)
    w = _Writer()
    w.u8(BUCKET_TOMBSTONE_FORMAT)
    w.text(t.name)
    w.text(t.generation)
    w.text(t.policy)
    w.u64(t.deleted, "deleted")
    return w.getvalue()


def decode_bucket_tombstone(b: bytes) -> BucketTombstone:
    """Decode a bucket tombstone; raises :class:`CorruptRecord` on anything malformed."""
    r = _Reader(b, "bucket tombstone")
    fmt = r.u8()
    if fmt != BUCKET_TOMBSTONE_FORMAT:
        raise CorruptRecord(f"unsupported bucket tombstone format {fmt} (this node reads {BUCKET_TOMBSTONE_FORMAT})")
    t = BucketTombstone(name=r.text(), generation=r.text(), policy=r.text(), deleted=r.u64())
    r.end()
    return t
