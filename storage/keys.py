"""Keys for encryption at rest: the node key that wraps, the data keys that encrypt.

Two levels, as usual for data at rest:

* the **node key** (key-encryption key): 32 random bytes in a file OUTSIDE the data directory
  (by default ``<trust dir>/data.key``, created mode 0600 with ``O_EXCL`` on the node's first
  start). It only wraps data keys, so stealing a data directory (a disk, a backup) without the key
  file yields ciphertext. :class:`KeyWrapper` is the seam where a KMS or an HSM plugs in instead of
  :class:`NodeKey` (wrap and unwrap 32-byte keys, and name the wrapping key);
* **data keys** (data-encryption keys): random 32-byte keys, each stored in the metadata store
  wrapped (AES-256-GCM) by the node key, unwrapped once when the node opens its stores and kept in
  memory only (:class:`DataKeys`). Keys are never logged, never in a ``repr``, never in an error.

Which data key encrypts what:

* one key per **tenant** for what a manifest record carries in secret: inline object bytes and
  user metadata (the tenant is the owner of the manifest's bucket record), and for chunk files:
  chunk names are keyed per (tenant, policy) (keyed BLAKE3, ``proto/naming.py``), so a chunk file
  belongs to one tenant, the owner of the bucket that stored it (``ChunkStore.put(..., tenant)``;
  repair copies a file's tenant with it, ``ChunkStore.tenant_of``);
* one key per **policy** for chunk files whose tenant is not known (put without one) or whose name
  is not keyed (written before the naming secret existed: such a file may be shared by the
  buckets of several tenants of one policy, so no tenant's key may seal it).

Files sealed with a policy key before tenant keys still read: every key of the node is loaded,
and a file names its key. A chunk shared by two policies on one node (an unkeyed name) is one
file, encrypted with the key of the policy that stored it first.

Formats (each carries a format byte and the id of its key, so keys can rotate later):

* wrapped key record, stored under ``K <key id>`` in the metadata store (see ``metadata.py``)::

      u8   format (1)
      8    id of the wrapping key (the node key's fingerprint, :attr:`KeyWrapper.key_id`)
      u8   scope kind: b"t" tenant, b"p" policy
      u32  length, then the scope name (UTF-8)
      u64  created (unix ms; the newest key of a scope encrypts, every key decrypts)
      ...  the wrapped key: 12-byte nonce + AES-256-GCM(node key, data key) + 16-byte tag,
           associated data = "maillage data key v1" + key id + every byte above

* a sealed value (chunk file body, secret part of a manifest): 24-byte nonce + AES-256-GCM
  ciphertext + 16-byte tag. The first 12 nonce bytes derive a key for this value alone
  (keyed BLAKE3 of them under the data key), the last 12 are the GCM nonce. Why: with one
  long-lived key per tenant, random 96-bit GCM nonces are safe only for about 2^32 encryptions
  (busy tenants write that many manifests in months); with a fresh derived key per value, a
  collision needs 192 random bits to repeat.

Rotation (not yet a command): a new key of a scope is a new record with a later ``created``; it
encrypts from then on while older keys keep decrypting. Rotating the node key = rewrapping every
record under the new key (records name their wrapping key, so a store can hold both meanwhile).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from maillage.storage.errors import CorruptFrame, StorageError

__all__ = [
    "NODE_KEY_FILE",
    "KEY_SIZE",
    "KEY_ID_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "KeyWrapper",
    "KeyRecords",
    "NodeKey",
    "DataKeys",
]

NODE_KEY_FILE = "data.key"
KEY_SIZE = 32
KEY_ID_SIZE = 8
NONCE_SIZE = 24  # 12 bytes derive the value's own key, 12 are the AES-GCM nonce
TAG_SIZE = 16
KEY_RECORD_FORMAT = 1
_WRAP_NONCE = 12
_RECORD_AAD = b"maillage data key v1"
_SUBKEY_SALT = 12
_KINDS = {"tenant": b"t", "policy": b"p"}
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class KeyWrapper(Protocol):
    """What wraps data keys: the node key file (:class:`NodeKey`), or a KMS."""

    @property
    def key_id(self) -> bytes:
        """A stable, non-secret name of the wrapping key (``KEY_ID_SIZE`` bytes)."""
        ...

    def wrap(self, key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """The key, or :class:`StorageError` if this wrapper did not wrap it (or it was altered)."""
        ...


KeyWrapper.__module__ = "maillage.storage"


class KeyRecords(Protocol):
    """Where wrapped data keys are kept (the :class:`~maillage.storage.MetaStore`)."""

    def key_records(self) -> list[tuple[bytes, bytes]]:
        """Every ``(key id, wrapped record)``."""
        ...

    def put_key_records(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Store several in one durable, all-or-nothing write."""
        ...

    def put_key_record(self, key_id: bytes, record: bytes) -> None:
        """Store a record durably (synced on return)."""
        ...


class NodeKey:
    """The node's key-encryption key: 32 bytes from a file outside the data directory."""

    __module__ = "maillage.storage"

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) != KEY_SIZE:
            raise ValueError(f"a node key is {KEY_SIZE} bytes")
        self._aead = AESGCM(secret)
        self._id = blake3.blake3(secret, derive_key_context="maillage node key id v1").digest()[:KEY_ID_SIZE]

    def __repr__(self) -> str:  # never the secret
        return f"NodeKey(id={self._id.hex()})"

    @property
    def key_id(self) -> bytes:
        return self._id

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_WRAP_NONCE)
        return nonce + self._aead.encrypt(nonce, key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_WRAP_NONCE], wrapped[_WRAP_NONCE:], aad)
        except (InvalidTag, ValueError):
            raise StorageError(f"a data key does not unwrap with node key {self._id.hex()}: "
                               f"wrong key file, or the record was altered") from None

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(secrets.token_bytes(KEY_SIZE))

    @classmethod
    def load(cls, path: Path | str) -> NodeKey:
        """The key in ``path``; refuses a file others may read (as ssh does) or of the wrong size."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise StorageError(f"node data key {path} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read node data key {path}: {exc.strerror}") from None
        try:
            mode = os.fstat(fd).st_mode
            if mode & 0o077:
                raise StorageError(f"node data key {path} is readable by others (mode {mode & 0o777:o}); "
                                   f"run `chmod 600 {path}`")
            secret = os.read(fd, KEY_SIZE + 1)
        finally:
            os.close(fd)
        if len(secret) != KEY_SIZE:
            raise StorageError(f"node data key {path} must hold exactly {KEY_SIZE} bytes")
        return cls(secret)

    @classmethod
    def create(cls, path: Path | str) -> NodeKey:
        """Make a new key file (mode 0600, ``O_EXCL``: never overwrites one), durable on return."""
        path = Path(path)
        secret = secrets.token_bytes(KEY_SIZE)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot create node data key {path}: {exc.strerror} "
                               f"(give a writable place with --data-key)") from None
        try:
            os.write(fd, secret)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise StorageError(f"cannot write node data key {path}: {exc.strerror}") from None
        os.close(fd)
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return cls(secret)

    @classmethod
    def load_or_create(cls, path: Path | str, *, create: bool = True) -> NodeKey:
        """The key of ``path``, made first if missing and ``create`` (a data directory that already
        holds wrapped keys passes False: a new key could not unwrap them)."""
        path = Path(path)
        if create and not path.exists():
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                return cls.create(path)
        return cls.load(path)


def _subkey(key: bytes, salt: bytes | memoryview) -> AESGCM:
    return AESGCM(blake3.blake3(salt, key=key).digest())


class DataKeys:
    """The data keys of one node: unwrapped once at open, kept in memory, made on first use.

    ``encrypt``/``decrypt`` seal values under a key named by its id; ``policy_key`` and
    ``tenant_key`` give the id of the key that encrypts a scope's new values."""

    __module__ = "maillage.storage"

    def __init__(self, records: KeyRecords | None, wrapper: KeyWrapper, *,
                 existing: Iterable[tuple[bytes, bytes]] | None = None) -> None:
        """``records``: where new keys are stored (None: read only, no key is ever made);
        ``existing``: the records to load (default: ``records.key_records()``)."""
        self._records = records
        self._wrapper = wrapper
        self._lock = threading.Lock()
        self._keys: dict[bytes, bytes] = {}
        self._scopes: dict[bytes, tuple[bytes, str, int]] = {}   # key id -> (kind, scope, created)
        self._current: dict[tuple[bytes, str], tuple[int, bytes]] = {}
        if existing is None:
            existing = records.key_records() if records is not None else ()
        for key_id, record in existing:
            self._load(key_id, record)

    def __repr__(self) -> str:
        return f"DataKeys({len(self._keys)} keys, wrapped by {self._wrapper.key_id.hex()})"

    @classmethod
    def read_only(cls, meta_dir: Path | str, node_key: Path | str | KeyWrapper) -> DataKeys:
        """The keys of a data directory's metadata (``<data dir>/meta``), read without taking the
        store's lock (a running node may hold it): for tests and forensics. Makes no key."""
        from maillage.storage.metadata import MetaStore

        wrapper = node_key if not isinstance(node_key, (str, Path)) else NodeKey.load(node_key)
        return cls(None, wrapper, existing=MetaStore.read_key_records(meta_dir))

    # ----- ids of the keys that encrypt new values ---------------------------------------

    def policy_key(self, policy: str) -> bytes:
        """Id of the key that encrypts new chunk files of ``policy`` whose tenant is not known."""
        return self._key_for(b"p", policy)

    def tenant_key(self, tenant: str) -> bytes:
        """Id of the key that encrypts new secret parts of ``tenant``'s manifests and its chunk files."""
        return self._key_for(b"t", tenant)

    def has(self, key_id: bytes) -> bool:
        return bytes(key_id) in self._keys

    def scope_of(self, key_id: bytes) -> tuple[str, str] | None:
        """``("tenant", name)`` or ``("policy", name)``: what the key ``key_id`` encrypts (None
        if it is not a key of this node). Not secret: the scope is stored in clear in its record."""
        found = self._scopes.get(bytes(key_id))
        if found is None:
            return None
        kind = next(k for k, v in _KINDS.items() if v == found[0])
        return kind, found[1]

    # ----- sealing -----------------------------------------------------------------------

    def encrypt(self, key_id: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        """``nonce (24) + ciphertext + tag (16)`` of ``plaintext`` under key ``key_id``."""
        return b"".join(self.encrypt_parts(key_id, plaintext, aad))

    def encrypt_parts(self, key_id: bytes, plaintext: bytes | memoryview, aad: bytes) -> tuple[bytes, bytes]:
        """:meth:`encrypt` as its two parts ``(nonce, ciphertext + tag)``, not joined: a chunk file
        is written from its parts (``os.writev``) without copying megabytes into one buffer."""
        key = self._keys[bytes(key_id)]
        nonce = os.urandom(NONCE_SIZE)
        return nonce, _subkey(key, nonce[:_SUBKEY_SALT]).encrypt(nonce[_SUBKEY_SALT:], plaintext, aad)

    def decrypt(self, key_id: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes:
        """The plaintext of ``sealed`` (from :meth:`encrypt`); :class:`CorruptFrame` if the key is
        unknown here or anything was altered (the GCM tag covers ciphertext and ``aad``)."""
        key = self._keys.get(bytes(key_id))
        if key is None:
            raise CorruptFrame(f"no data key {bytes(key_id).hex()} on this node")
        mv = memoryview(sealed)
        if len(mv) < NONCE_SIZE + TAG_SIZE:
            raise CorruptFrame("encrypted value is truncated")
        try:
            return _subkey(key, mv[:_SUBKEY_SALT]).decrypt(mv[_SUBKEY_SALT:NONCE_SIZE], mv[NONCE_SIZE:], aad)
        except InvalidTag:
            raise CorruptFrame("encrypted value failed authentication (altered, or another key)") from None

    # ----- rotation ----------------------------------------------------------------------

    def rewrap(self, new_wrapper: KeyWrapper) -> int:
        """Wrap every data key with `new_wrapper` instead (node key rotation): every record is
        replaced by one naming the new node key, in one durable batch; the data keys themselves, and so every
        chunk file and manifest, stay as they are. Returns how many keys were re-wrapped."""
        if self._records is None:
            raise StorageError("these data keys are read only: they cannot be re-wrapped")
        with self._lock:
            records = []
            for key_id, key in self._keys.items():
                kind, scope, created = self._scopes[key_id]
                head = self._record_head(kind, scope, created, new_wrapper.key_id)
                records.append((key_id, head + new_wrapper.wrap(key, _RECORD_AAD + key_id + head)))
            self._records.put_key_records(records)   # one synced batch: a crash leaves old or new
            self._wrapper = new_wrapper
            return len(records)

    # ----- internals ---------------------------------------------------------------------

    def _key_for(self, kind: bytes, scope: str) -> bytes:
        current = self._current.get((kind, scope))
        if current is not None:
            return current[1]
        with self._lock:
            current = self._current.get((kind, scope))
            if current is not None:
                return current[1]
            if self._records is None:
                raise StorageError("these data keys are read only: no key is made")
            key_id = secrets.token_bytes(KEY_ID_SIZE)
            while key_id in self._keys:
                key_id = secrets.token_bytes(KEY_ID_SIZE)
            key = secrets.token_bytes(KEY_SIZE)
            created = int(time.time() * 1000)
            head = self._record_head(kind, scope, created, self._wrapper.key_id)
            record = head + self._wrapper.wrap(key, _RECORD_AAD + key_id + head)
            self._records.put_key_record(key_id, record)  # durable before anything uses the key
            self._keys[key_id] = key
            self._scopes[key_id] = (kind, scope, created)
            self._current[(kind, scope)] = (created, key_id)
            return key_id

    @staticmethod
    def _record_head(kind: bytes, scope: str, created: int, wrapped_by: bytes) -> bytes:
        name = scope.encode("utf-8")
        return bytes([KEY_RECORD_FORMAT]) + wrapped_by + kind + _U32.pack(len(name)) + name + _U64.pack(created)

    def _load(self, key_id: bytes, record: bytes) -> None:
        what = f"data key record {key_id.hex()}"
        try:
            if len(key_id) != KEY_ID_SIZE or record[0] != KEY_RECORD_FORMAT:
                raise StorageError(f"{what} has an unsupported format")
            pos = 1
            wrapped_by = record[pos:pos + KEY_ID_SIZE]
            pos += KEY_ID_SIZE
            kind = record[pos:pos + 1]
            pos += 1
            (n,) = _U32.unpack_from(record, pos)
            pos += 4
            scope = record[pos:pos + n].decode("utf-8")
            pos += n
            (created,) = _U64.unpack_from(record, pos)
            pos += 8
        except (IndexError, struct.error, UnicodeDecodeError):
            raise StorageError(f"{what} is malformed") from None
        if kind not in _KINDS.values() or len(scope.encode("utf-8")) != n:
            raise StorageError(f"{what} is malformed")
        if wrapped_by != self._wrapper.key_id:
            raise StorageError(f"the data keys of this directory are wrapped by node key {wrapped_by.hex()}, "
                               f"not by the one given ({self._wrapper.key_id.hex()}): wrong data key file?")
        key = self._wrapper.unwrap(record[pos:], _RECORD_AAD + key_id + record[:pos])
        if len(key) != KEY_SIZE:
            raise StorageError(f"{what} does not hold a {KEY_SIZE}-byte key")
        self._keys[key_id] = key
        self._scopes[key_id] = (kind, scope, created)
        best = self._current.get((kind, scope))
        if best is None or (created, key_id) > best:
            self._current[(kind, scope)] = (created, key_id)
