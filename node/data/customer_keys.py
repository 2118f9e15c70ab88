"""SSE-C: an object encrypted with a key its owner sends on every request and no node keeps.

Every byte at rest is already sealed with the tenant's data keys (`storage/keys.py`); an object
written with a customer key is encrypted with it too, before it reaches the chunker, so a node
holds only ciphertext it cannot read without the key, and the tenant's keys alone do not open it.

- The cipher is AES-256 in counter mode: a byte's keystream depends only on its offset, so a
  range is read without the bytes before it and the size stays the object's.
- Each write draws a random 16-byte nonce; a multipart upload draws one at creation and each part
  `n` of length `L` runs its own counter from `segment_iv(nonce, n, L)`. A completed object's part
  table (`parts.py`, every completed upload has one) says where each part's counter starts. A part
  sent again with the same length and other bytes would reuse its counter; those bytes are still
  sealed with the tenant's key at rest.
- What rests with the version is only the nonce and a check value (`CHECK`: an HMAC of the nonce
  under the key), so a request with the wrong key is refused before any byte is decrypted, and the
  key itself, even its MD5, is never written anywhere.

Nothing here knows HTTP: the S3 door parses the headers into a `CustomerKey`.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

import blake3
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from maillage.node.data.parts import Segment
from maillage.node.errors import InvalidRequest

__all__ = ["ALGORITHM", "ATTRIBUTES", "CustomerKey", "KeyRequired", "NotEncryptedWithKey", "WrongKey", "decrypt_range",
           "encrypt", "is_encrypted", "nonce_of", "require"]

ALGORITHM = "AES256"            # the only one S3 defines for SSE-C
KEY_BYTES = 32
ALGORITHM_ATTRIBUTE = "sse-c"   # attributes of a version written with a customer key
NONCE = "sse-c-nonce"
CHECK = "sse-c-check"
ATTRIBUTES = (ALGORITHM_ATTRIBUTE, NONCE, CHECK)
_CHECK_CONTEXT = b"maillage sse-c check v1"
_IV_CONTEXT = b"maillage sse-c iv v1"
_BLOCK = 16


class WrongKey(InvalidRequest):
    """The key sent is not the one the object was written with (S3: 400, as S3 answers it)."""


class KeyRequired(InvalidRequest):
    """The object was written with a customer key and the request sends none (S3: 400)."""


class NotEncryptedWithKey(InvalidRequest):
    """A customer key was sent for an object written without one (S3: 400)."""


@dataclass(frozen=True, repr=False)
class CustomerKey:
    """A customer's 256-bit key, as sent with one request; `md5` is the base64 MD5 the client sent
    with it (checked), echoed in answers as S3 does."""

    key: bytes
    md5: str

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise InvalidRequest(f"a customer key is {KEY_BYTES} bytes (AES-256), got {len(self.key)}")

    def __repr__(self) -> str:   # never in a log or a traceback
        return "CustomerKey(<hidden>)"

    @classmethod
    def parse(cls, algorithm: str, key_b64: str, md5_b64: str) -> CustomerKey:
        """The key of a request's three headers: algorithm AES256, the key and its MD5 in base64."""
        if algorithm != ALGORITHM:
            raise InvalidRequest(f"the customer key algorithm must be {ALGORITHM}")
        try:
            key = base64.b64decode(key_b64.strip(), validate=True) if len(key_b64) <= 64 else b""
            md5 = base64.b64decode(md5_b64.strip(), validate=True) if len(md5_b64) <= 32 else b""
        except ValueError:
            raise InvalidRequest("the customer key or its MD5 is not base64") from None
        if len(key) != KEY_BYTES:
            raise InvalidRequest(f"the customer key must be {KEY_BYTES} bytes (256 bits) in base64")
        if not hmac.compare_digest(hashlib.md5(key, usedforsecurity=False).digest(), md5):
            raise InvalidRequest("the customer key's MD5 does not match the key sent")
        return cls(key, md5_b64.strip())

    def _check_value(self, nonce: bytes) -> str:
        return base64.b64encode(hmac.digest(self.key, _CHECK_CONTEXT + nonce, "sha256")[:16]).decode()

    def new_attributes(self) -> dict[str, str]:
        """The attributes of a new version (or upload) under this key: a fresh nonce and its check."""
        nonce = os.urandom(_BLOCK)
        return {ALGORITHM_ATTRIBUTE: ALGORITHM, NONCE: base64.b64encode(nonce).decode(),
                CHECK: self._check_value(nonce)}

    def check(self, attributes: Mapping[str, str]) -> bytes:
        """The nonce of a version written under this key; WrongKey if it was another key."""
        nonce = nonce_of(attributes)
        if not hmac.compare_digest(self._check_value(nonce), attributes.get(CHECK, "")):
            raise WrongKey("the customer key sent is not the one this object was written with")
        return nonce

    def cipher(self, iv: bytes, offset: int = 0) -> _Keystream:
        return _Keystream(self.key, iv, offset)


def is_encrypted(attributes: Mapping[str, str]) -> bool:
    return ALGORITHM_ATTRIBUTE in attributes


def require(key: CustomerKey | None, attributes: Mapping[str, str]) -> bytes | None:
    """The nonce to read a version with: None for a version written without a customer key (and
    no key sent); KeyRequired, NotEncryptedWithKey or WrongKey otherwise."""
    if not is_encrypted(attributes):
        if key is not None:
            raise NotEncryptedWithKey("this object was not written with a customer key: send none")
        return None
    if key is None:
        raise KeyRequired("this object was written with a customer key (SSE-C): send the same key to read it")
    return key.check(attributes)


def nonce_of(attributes: Mapping[str, str]) -> bytes:
    """The nonce in a version's (or upload's) attributes, unchecked."""
    try:
        nonce = base64.b64decode(attributes.get(NONCE, ""), validate=True)
    except ValueError:
        nonce = b""
    if len(nonce) != _BLOCK:
        raise InvalidRequest("this object's customer-key nonce is damaged")
    return nonce


def segment_iv(nonce: bytes, number: int, length: int) -> bytes:
    """The first counter block of segment `number` (0: an object written whole, its length not
    used; n: part n, of `length` bytes)."""
    return blake3.blake3(_IV_CONTEXT + nonce + number.to_bytes(4, "big")
                         + (length if number else 0).to_bytes(8, "big")).digest(_BLOCK)


class _Keystream:
    """AES-256-CTR from byte `offset` of a segment whose first counter block is `iv`."""

    def __init__(self, key: bytes, iv: bytes, offset: int) -> None:
        counter = (int.from_bytes(iv, "big") + offset // _BLOCK) % (1 << 128)
        self._ctx = Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(_BLOCK, "big"))).encryptor()
        if offset % _BLOCK:
            self._ctx.update(bytes(offset % _BLOCK))

    def apply(self, data: bytes | memoryview) -> bytes:
        """Encrypt or decrypt (the same in counter mode) the next bytes."""
        return self._ctx.update(data)


# ----- streams --------------------------------------------------------------------------------

async def encrypt(pieces: AsyncIterator[bytes], key: CustomerKey, nonce: bytes, number: int = 0,
                  length: int = 0) -> AsyncIterator[bytes]:
    """A write's body encrypted: the whole object (number 0) or part `number` of `length` bytes."""
    stream = key.cipher(segment_iv(nonce, number, length))
    async for piece in pieces:
        yield stream.apply(piece)


async def decrypt_range(pieces: AsyncIterator[bytes], key: CustomerKey, nonce: bytes, parts: Iterable[Segment],
                        first: int) -> AsyncIterator[bytes]:
    """The stored bytes from offset `first` on, decrypted: each segment by its own counter,
    started at the range's offset in it."""
    ahead = collections.deque(s for s in parts if s.start + s.length > first)
    position, end = first, first
    stream: _Keystream | None = None
    async for piece in pieces:
        out = []
        view = memoryview(piece)
        while view:
            if stream is None or position >= end:
                if not ahead:
                    raise InvalidRequest("this object holds more bytes than its part table says")
                seg = ahead.popleft()
                stream, end = key.cipher(segment_iv(nonce, seg.number, seg.length), position - seg.start), \
                    seg.start + seg.length
            take = min(len(view), end - position)
            out.append(stream.apply(view[:take]))
            view, position = view[take:], position + take
        yield b"".join(out)
