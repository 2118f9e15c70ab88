"""The chunk store: one file per frame in a fan-out tree, crash-safe by construction.

Layout under ``root``::

    root/ab/cd/<64 hex digits>    a chunk file: an encrypted frame (below) or, written before
                                  encryption, a plain frame; ab, cd = first two bytes of the digest
    root/tmp/                     frames being written (same filesystem, so link() is atomic)
    root/quarantine/              frames that failed verification, kept for forensics

Why files and not RocksDB: chunks are large (4 MiB), written once, read whole and deleted rarely;
in an LSM tree they would be rewritten by every compaction. A file per chunk costs one inode and
lets the kernel stream it.

Why the fan-out: 65,536 leaf directories keep each directory small at hundreds of millions of
chunks, and because the directories follow the top 16 bits of the digest, listing one placement
partition (top ``bits`` bits) only opens the directories that can hold it.

Crash safety, step by step (``put``):

1. verify the frame completely (header, lengths, decompression, BLAKE3; for a keyed name, which
   only its tenant's key checks, the payload check instead): bad input never lands;
2. write it to ``tmp/<random>``, ``fsync`` the file: the bytes are on disk, under a name nobody
   reads;
3. create the fan-out directories if needed and ``fsync`` their parents, so the directories
   themselves survive a power cut;
4. ``link`` the temp file to its final name. ``link`` is atomic and never overwrites (a rename
   would), so two writers of the same digest cannot both think they stored it, and a reader
   sees either no file or the whole, already-durable file: never a torn frame;
5. ``fsync`` the leaf directory: the name is durable. Only now does ``put`` return;
6. unlink the temp name (not fsynced: a leftover is harmless).

A crash at any step leaves either nothing visible or a complete frame. Leftover temp files are
removed at open; if any were found (a sign that a crash may have interrupted step 5), the store
calls ``sync()`` once so that every name already visible is durable before it is reported as
present by an idempotent ``put``.

Failures: ENOSPC/EDQUOT while writing raises :class:`DiskFull` after removing the temp file. A
failed ``fsync`` raises :class:`StorageUnavailable` and the store refuses every later write
(fsyncgate: the kernel may have dropped the dirty pages and cleared the error, so a retry could
"succeed" without the data). Reads keep working. Every read re-verifies the frame; a frame that
fails is moved to ``quarantine/`` and reported as :class:`CorruptFrame`, so the caller fetches a
good copy from another replica and re-``put``s it. A frame declaring more than the chunk bound
(``MAX_CHUNK_PLAIN``) fails like any corrupt one, and a file larger than the largest chunk's
(``MAX_CHUNK_FILE``) is refused without being read.

Encryption at rest: a store opened with ``keys`` (:class:`~maillage.storage.DataKeys`; a node
always passes them) keeps each chunk as an *encrypted frame file*::

    offset size field
    0      4    magic b"MLGE"
    4      1    format version (1)
    5      8    id of the data key (the owning tenant's key; a policy's for an unkeyed name)
    13     24   nonce (see ``keys.py``)
    37     ...  AES-256-GCM(wire frame) + 16-byte tag; associated data: bytes 0..36 and the
                chunk's digest, so a file renamed to another digest fails authentication

``put(frame, policy, tenant)`` takes a wire frame and ``get(digest)`` returns the wire frame, decrypted and
verified as before, so nothing above the store changes (frames on the wire are protected by TLS).
A flipped bit anywhere in an encrypted file fails the GCM tag (or the header): the file is
quarantined like a corrupt plain frame. Files written before encryption (plain wire frames, magic
``MLGF``) still read, and so do files sealed with a policy's key (before tenant keys, or put
without a tenant). :meth:`ChunkStore.tenant_of` names the tenant whose key sealed a file, so repair
re-seals a copy on another node with the same tenant's key. Which key seals what: see ``keys.py``.
Files are created 0600 and directories 0700.

Concurrency: operations on the same digest are serialised by an in-memory claim; different
digests proceed in parallel (file I/O, hashing and zstd release the GIL). One process per root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from maillage.proto import frame as wire
from maillage.proto.frame import DIGEST_SIZE, FRAME_HEADER_SIZE, FrameHeader
from maillage.storage.errors import ChunkNotFound, CorruptFrame, DiskFull, StorageError, StorageUnavailable
from maillage.storage.keys import KEY_ID_SIZE, NONCE_SIZE, TAG_SIZE, DataKeys

__all__ = ["ChunkStore", "ChunkStoreStats", "ENCRYPTED_MAGIC", "MAX_CHUNK_FILE", "open_chunk_file"]

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_TMP = "tmp"
_QUARANTINE = "quarantine"
_HEX = "0123456789abcdef"
ENCRYPTED_MAGIC = b"MLGE"
ENCRYPTED_FORMAT = 1
_ENC_HEADER = len(ENCRYPTED_MAGIC) + 1 + KEY_ID_SIZE  # then the nonce and the sealed frame
#: The largest chunk file: an encrypted frame of the largest chunk (`MAX_CHUNK_PLAIN`) stored raw.
MAX_CHUNK_FILE = _ENC_HEADER + NONCE_SIZE + FRAME_HEADER_SIZE + wire.MAX_CHUNK_PLAIN + TAG_SIZE


@dataclass(frozen=True)
class ChunkStoreStats:
    """A snapshot of a chunk store's counters."""

    chunks: int
    stored_bytes: int
    quarantined: int

    __module__ = "maillage.storage"


def _check_digest(digest: bytes) -> bytes:
    if not isinstance(digest, (bytes, bytearray, memoryview)) or len(digest) != DIGEST_SIZE:
        raise ValueError(f"a chunk digest is {DIGEST_SIZE} bytes")
    return bytes(digest)


def _sealed_file(keys: DataKeys, key_id: bytes, frame: bytes | memoryview, digest: bytes) -> tuple[bytes, ...]:
    """The bytes of an encrypted frame file, as the pieces to write one after the other."""
    head = ENCRYPTED_MAGIC + bytes([ENCRYPTED_FORMAT]) + key_id
    nonce, sealed = keys.encrypt_parts(key_id, frame, head + digest)  # ciphertext + tag
    return head, nonce, sealed


def open_chunk_file(data: bytes | memoryview, digest: bytes, keys: DataKeys | None) -> bytes | memoryview:
    """The wire frame kept in a chunk file's bytes ``data`` (stored under ``digest``): decrypted
    when it is an encrypted frame file, as it is when it is a plain frame (written before
    encryption). Not verified further: the caller checks the frame (``verify_frame``).
    :class:`CorruptFrame` if an encrypted file fails authentication, names an unknown key or has
    an unknown format; :class:`StorageError` if it is encrypted and ``keys`` is None.

    Tests and forensics read a running node's file with the keys of its data directory:
    ``open_chunk_file(path.read_bytes(), digest, DataKeys.read_only(data_dir / "meta", key_file))``."""
    mv = memoryview(data)
    if mv[:len(ENCRYPTED_MAGIC)] != ENCRYPTED_MAGIC:
        return data  # a plain frame (or garbage, which the frame check rejects)
    if keys is None:
        raise StorageError(f"chunk {bytes(digest).hex()} is encrypted and this store has no data keys")
    if len(mv) < _ENC_HEADER + NONCE_SIZE or mv[len(ENCRYPTED_MAGIC)] != ENCRYPTED_FORMAT:
        raise CorruptFrame(f"chunk {bytes(digest).hex()}: truncated encrypted file or unknown format")
    key_id = bytes(mv[len(ENCRYPTED_MAGIC) + 1:_ENC_HEADER])
    try:
        return keys.decrypt(key_id, mv[_ENC_HEADER:], bytes(mv[:_ENC_HEADER]) + bytes(digest))
    except CorruptFrame as exc:
        raise CorruptFrame(f"chunk {bytes(digest).hex()}: {exc}") from None


class ChunkStore:
    """Frames stored as files, written atomically and durably, verified on every read;
    encrypted with the owning tenant's data key (else the policy's) when the store has ``keys``."""

    __module__ = "maillage.storage"

    def __init__(self, root: Path | str, *, fsync: bool = True, keys: DataKeys | None = None) -> None:
        self.root = Path(root)
        self.keys = keys
        self._fsync_enabled = fsync
        self._tmp = self.root / _TMP
        self._quarantine = self.root / _QUARANTINE
        self._lock = threading.Lock()
        self._claims: dict[bytes, threading.Event] = {}
        self._durable_dirs: set[str] = set()
        self._failure: str | None = None
        for d in (self.root, self._tmp, self._quarantine):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        leftovers = self._clean_tmp()
        if leftovers and fsync:
            os.sync()
        self._chunks, self._bytes = self._count()
        self._quarantined = sum(1 for _ in os.scandir(self._quarantine))

    # ------------------------------------------------------------------ paths

    def path_of(self, digest: bytes) -> Path:
        """Where the frame of ``digest`` lives (whether or not it is stored)."""
        return ChunkStore.path_in(self.root, digest)

    @staticmethod
    def path_in(root: Path | str, digest: bytes) -> Path:
        """Where the file of ``digest`` lives in the store at ``root``, without opening the store
        (opening cleans its temp files: never do that on a running node's directory)."""
        h = _check_digest(digest).hex()
        return Path(root) / h[0:2] / h[2:4] / h

    # ------------------------------------------------------------------ writes

    @property
    def unavailable(self) -> str | None:
        """Why this store refuses writes, or None while it is healthy."""
        return self._failure

    def put(self, frame: bytes | memoryview, policy: str = "", tenant: str = "", *,
            built: FrameHeader | None = None) -> bool:
        """Store a frame after verifying it fully, encrypted if the store has keys: with the data
        key of ``tenant`` (the owner of the chunk: its name is keyed per (tenant, policy)), or of
        ``policy`` when the tenant is not known or the frame's name is not keyed (an unkeyed name
        may be shared by several tenants' buckets). True if newly stored, False if already here
        (for any policy; the file keeps the key it was sealed with).

        ``built``: the header of a frame this process has just encoded itself (`encode_frame`,
        the coordinator's write path), which is not decompressed and hashed a second time. Only
        in-process code can pass one: a frame from a peer, a client or the disk is always
        verified fully."""
        self._ensure_writable()
        header = built if built is not None else _verified(frame)
        digest = header.digest
        final = self.path_of(digest)
        with self._claim(digest):
            self._ensure_writable()
            if final.exists():
                return False
            if self.keys is None:
                data: tuple[bytes | memoryview, ...] = (frame,)
            else:
                key_id = (self.keys.tenant_key(tenant) if tenant and header.keyed
                          else self.keys.policy_key(policy))
                data = _sealed_file(self.keys, key_id, frame, digest)
            leaf = final.parent
            tmp = self._tmp / f"{uuid.uuid4().hex}.tmp"
            linked = False
            try:
                self._write_file(tmp, data)
                self._ensure_dirs(leaf)
                try:
                    os.link(tmp, final)
                    linked = True
                except FileExistsError:
                    pass  # another process stored it: same bytes by construction
                self._fsync_dir(leaf)
            except OSError as exc:
                if linked:
                    with contextlib.suppress(OSError):
                        os.unlink(final)
                raise self._translate(exc, f"storing chunk {digest.hex()}") from exc
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if linked:
                with self._lock:
                    self._chunks += 1
                    self._bytes += sum(len(piece) for piece in data)
            return linked

    def delete(self, digest: bytes) -> bool:
        """Remove a chunk durably. True if it was stored."""
        self._ensure_writable()
        final = self.path_of(digest)
        with self._claim(bytes(digest)):
            self._ensure_writable()
            try:
                size = final.stat().st_size
                os.unlink(final)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise self._translate(exc, f"deleting chunk {bytes(digest).hex()}") from exc
            with self._lock:
                self._chunks -= 1
                self._bytes -= size
            try:
                self._fsync_dir(final.parent)
            except OSError as exc:
                raise self._translate(exc, f"deleting chunk {bytes(digest).hex()}") from exc
            return True

    # ------------------------------------------------------------------ reads

    def get(self, digest: bytes) -> bytes:
        """The wire frame of ``digest`` (decrypted if it is stored encrypted), after verifying it.
        Corrupt files (a bad frame, a failed GCM tag) are quarantined."""
        path = self.path_of(digest)
        try:
            with open(path, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                # Larger than the file of any chunk within the bound: refused unread.
                data = f.read() if size <= MAX_CHUNK_FILE else b""
        except FileNotFoundError:
            raise ChunkNotFound(f"chunk {bytes(digest).hex()} is not stored here") from None
        try:
            if size > MAX_CHUNK_FILE:
                raise CorruptFrame(f"chunk {bytes(digest).hex()}: file of {size} bytes, larger than the file of "
                                   f"any chunk ({MAX_CHUNK_FILE} bytes for {wire.MAX_CHUNK_PLAIN}, MAX_CHUNK_PLAIN)")
            frame = bytes(open_chunk_file(data, bytes(digest), self.keys))
            _verified(frame, bytes(digest))
        except CorruptFrame as exc:
            where = self._quarantine_file(path)
            raise CorruptFrame(f"{exc}; moved to {where}") from exc
        return frame

    def tenant_of(self, digest: bytes) -> str:
        """The tenant whose data key sealed the stored file of ``digest``: ``""`` if a policy key
        sealed it, if it is a plain frame, or if this store has no keys. Reads the file's header
        only (not verified); :class:`ChunkNotFound` if it is not stored."""
        try:
            with open(self.path_of(digest), "rb", buffering=0) as f:
                head = f.read(_ENC_HEADER)
        except FileNotFoundError:
            raise ChunkNotFound(f"chunk {bytes(digest).hex()} is not stored here") from None
        if self.keys is None or len(head) < _ENC_HEADER or head[:len(ENCRYPTED_MAGIC)] != ENCRYPTED_MAGIC:
            return ""
        scope = self.keys.scope_of(head[len(ENCRYPTED_MAGIC) + 1:])
        return scope[1] if scope is not None and scope[0] == "tenant" else ""

    def has(self, digest: bytes) -> bool:
        """Whether a frame for ``digest`` is stored (not verified)."""
        return self.path_of(digest).exists()

    def has_many(self, digests: Sequence[bytes]) -> list[bool]:
        """:meth:`has` for many digests at once."""
        return [os.path.exists(self.path_of(d)) for d in digests]

    def iter_digests(self, partition: int | None = None, bits: int = 10) -> Iterator[bytes]:
        """Digests stored here in ascending order, optionally only those whose top ``bits``
        bits equal ``partition``. Only the fan-out directories that can hold them are opened."""
        if partition is None:
            lo, hi, want = 0, 1 << 16, None
        else:
            if not 1 <= bits <= 8 * DIGEST_SIZE:
                raise ValueError(f"bits must be within 1..{8 * DIGEST_SIZE}")
            if not 0 <= partition < (1 << bits):
                raise ValueError(f"partition {partition} is out of range for {bits} bits")
            if bits <= 16:
                lo, hi, want = partition << (16 - bits), (partition + 1) << (16 - bits), None
            else:
                lo = partition >> (bits - 16)
                hi, want = lo + 1, (partition, bits)
        for top, d1 in _fan_out(self.root, lo >> 8, ((hi - 1) >> 8) + 1):
            start = lo - (top << 8) if top == lo >> 8 else 0
            stop = hi - (top << 8) if top == (hi - 1) >> 8 else 256
            for _, d2 in _fan_out(d1, max(start, 0), min(stop, 256)):
                try:
                    names = sorted(e.name for e in os.scandir(d2))
                except FileNotFoundError:
                    continue
                for name in names:
                    if len(name) != 2 * DIGEST_SIZE:
                        continue
                    try:
                        digest = bytes.fromhex(name)
                    except ValueError:
                        continue
                    if want is not None:
                        p, b = want
                        if int.from_bytes(digest, "big") >> (8 * DIGEST_SIZE - b) != p:
                            continue
                    yield digest

    def stats(self) -> ChunkStoreStats:
        """Counters for this store (maintained in memory; counted once at open)."""
        with self._lock:
            return ChunkStoreStats(self._chunks, self._bytes, self._quarantined)

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _claim(self, digest: bytes) -> Iterator[None]:
        while True:
            with self._lock:
                ev = self._claims.get(digest)
                if ev is None:
                    self._claims[digest] = threading.Event()
                    break
            ev.wait()
        try:
            yield
        finally:
            with self._lock:
                self._claims.pop(digest).set()

    def _ensure_writable(self) -> None:
        if self._failure is not None:
            raise StorageUnavailable(
                f"chunk store {self.root} refuses writes since an earlier fsync failed "
                f"({self._failure}); repair or replace the disk and restart the node"
            )

    def _fsync(self, fd: int, what: str) -> None:
        if not self._fsync_enabled:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            self._failure = f"fsync of {what}: {exc}"
            raise StorageUnavailable(
                f"fsync of {what} failed ({exc}); chunk store {self.root} now refuses writes"
            ) from exc

    def _fsync_dir(self, path: Path) -> None:
        if not self._fsync_enabled:
            return
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fsync(fd, f"directory {path}")
        finally:
            os.close(fd)

    def _write_file(self, path: Path, pieces: tuple[bytes | memoryview, ...]) -> None:
        """Write `pieces` one after the other (one writev, no joined copy), then fsync. The file's
        pages are then dropped from the page cache (as Swift's object server does): written once,
        read rarely, they would otherwise cost the kernel more to keep and write back than the
        write itself (benchmarks/profile_large.py measured 11 -> 1.6 ms of CPU per 4 MiB file with
        the page cache full, and no difference in an idle process)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            left = [memoryview(p) for p in pieces if len(p)]
            while left:
                n = os.writev(fd, left)
                while left and n >= len(left[0]):
                    n -= len(left[0])
                    left.pop(0)
                if n:
                    left[0] = left[0][n:]
            self._fsync(fd, f"chunk file {path.name}")
            if self._fsync_enabled and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def _ensure_dirs(self, leaf: Path) -> None:
        key = str(leaf)
        if key in self._durable_dirs:
            return
        mid = leaf.parent
        created_mid = not mid.is_dir()
        if created_mid:
            os.makedirs(mid, mode=0o700, exist_ok=True)
        created_leaf = not leaf.is_dir()
        if created_leaf:
            os.makedirs(leaf, mode=0o700, exist_ok=True)
        # Make the directory entries themselves durable. Done once per directory per process,
        # also for directories found already present: an earlier process may have crashed
        # before syncing them.
        self._fsync_dir(self.root)
        self._fsync_dir(mid)
        self._durable_dirs.add(key)

    def _translate(self, exc: OSError, doing: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if exc.errno in _FULL_ERRNOS:
            return DiskFull(f"disk full while {doing} under {self.root}; nothing was stored")
        return StorageError(f"I/O error while {doing} under {self.root}: {exc}")

    def _quarantine_file(self, path: Path) -> Path:
        target = self._quarantine / f"{path.name}.{time.time_ns()}"
        try:
            size = path.stat().st_size
            os.replace(path, target)
        except FileNotFoundError:
            return target  # someone else quarantined or deleted it meanwhile
        with self._lock:
            self._chunks -= 1
            self._bytes -= size
            self._quarantined += 1
        with contextlib.suppress(OSError, StorageUnavailable):
            self._fsync_dir(path.parent)
        return target

    def _clean_tmp(self) -> int:
        n = 0
        for e in os.scandir(self._tmp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(e.path)
                n += 1
        return n

    def _count(self) -> tuple[int, int]:
        chunks = size = 0
        for _, d1 in _fan_out(self.root, 0, 256):
            for _, d2 in _fan_out(d1, 0, 256):
                for e3 in os.scandir(d2):
                    if len(e3.name) == 2 * DIGEST_SIZE:
                        chunks += 1
                        size += e3.stat().st_size
        return chunks, size



def _verified(frame: bytes | memoryview, expected_digest: bytes | None = None) -> FrameHeader:
    """The wire codec's verdict, its failures raised as this store's `CorruptFrame`."""
    try:
        return wire.verify_frame(frame, expected_digest=expected_digest)
    except wire.CorruptFrame as exc:
        raise CorruptFrame(str(exc)) from exc


def _fan_out(parent: Path, lo: int, hi: int) -> list[tuple[int, Path]]:
    """The fan-out directories under `parent` named by a byte in [lo, hi), in order. Read from the
    directory itself: trying all 65,536 names of a walk costs ~0.5 s of CPU in a store whose
    leaves mostly do not exist yet. A narrow range (one partition) is probed name by name."""
    if hi - lo <= 8:
        return [(v, parent / f"{v:02x}") for v in range(lo, hi) if (parent / f"{v:02x}").is_dir()]
    try:
        entries = [e.name for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    found = []
    for name in entries:
        if len(name) == 2 and all(c in _HEX for c in name) and lo <= (value := int(name, 16)) < hi:
            found.append((value, parent / name))
    return sorted(found)
