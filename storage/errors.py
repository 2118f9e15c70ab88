"""Errors raised by the storage engine: one hierarchy, messages a person understands.

    StorageError
    ├── CorruptFrame          a frame or stored record failed validation (header, lengths, digest)
    │   └── CorruptRecord     a manifest / bucket record / metadata value failed to decode
    ├── ChunkNotFound         no chunk with that digest is stored here
    ├── DiskFull              the disk ran out of space (ENOSPC/EDQUOT); nothing half-written remains
    ├── StorageUnavailable    an fsync (or synced metadata write) failed: the store refuses writes
    ├── InvalidName           a bucket name or object key the store cannot hold (also a ValueError)
    └── VersionTooFarAhead    a version further ahead of this node's clock than the allowed drift

Low-level ``OSError``s are translated at the boundary where they happen and re-raised ``from`` the
original, so the cause stays visible in tracebacks.

Why ``StorageUnavailable`` is sticky: after a failed fsync, Linux may drop the dirty pages and clear
the error ("fsyncgate", PostgreSQL 2018), so a retry can report success for data that never reached
the disk. The only safe reaction is to stop writing to that disk and let the cluster repair from
other replicas.
"""

from __future__ import annotations

from maillage.proto import frame

__all__ = [
    "StorageError",
    "CorruptFrame",
    "CorruptRecord",
    "ChunkNotFound",
    "DiskFull",
    "StorageUnavailable",
    "InvalidName",
    "VersionTooFarAhead",
]


class StorageError(Exception):
    """Base class of every error raised by :mod:`maillage.storage`."""

    __module__ = "maillage.storage"


class CorruptFrame(StorageError, frame.CorruptFrame):
    """A stored frame or record failed verification (also a wire-level `frame.CorruptFrame`)."""

    __module__ = "maillage.storage"


class CorruptRecord(CorruptFrame):
    """A metadata record (manifest, bucket record, reference) cannot be decoded."""

    __module__ = "maillage.storage"


class ChunkNotFound(StorageError):
    """No chunk with the requested digest is stored on this node."""

    __module__ = "maillage.storage"


class DiskFull(StorageError):
    """The disk is full; the write was abandoned and its temporary file removed."""

    __module__ = "maillage.storage"


class StorageUnavailable(StorageError):
    """A durability barrier (fsync) failed earlier; this store accepts no more writes."""

    __module__ = "maillage.storage"


class InvalidName(StorageError, ValueError):
    """A bucket name or object key that the store does not accept."""

    __module__ = "maillage.storage"


class VersionTooFarAhead(StorageError, ValueError):
    """A version (HLC) from elsewhere lies further ahead of this node's clock than the allowed drift:
    taking it would drag every later version along (up to the end of the 64-bit range)."""

    __module__ = "maillage.storage"
