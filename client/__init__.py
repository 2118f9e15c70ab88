"""The maillage SDK: `Client` (blocking) and `AsyncClient`, sharing one implementation.

    from maillage.client import Client
    with Client("127.0.0.1:7001", profile_name="default") as mesh:   # or Client(profile=...)
        mesh.create_bucket("scans", policy="france-only")
        mesh.put_object("scans", "2026/11/a.dcm", b"...")
        data = mesh.get_object("scans", "2026/11/a.dcm").read()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from maillage.client._exceptions import (
    BucketAlreadyExists,
    BucketDisputed,
    BucketNotEmpty,
    CredentialsError,
    IntegrityError,
    InternalError,
    InvalidBucketName,
    InvalidKey,
    InvalidRequest,
    MaillageError,
    MetadataTooLarge,
    NodeUnavailable,
    NoSuchBucket,
    NoSuchChunk,
    NoSuchKey,
    OutsidePolicy,
    OutsideTerritory,
    PermissionDenied,
    PolicyUnsatisfiable,
    QuorumNotReached,
    StorageFull,
    Unavailable,
    UnknownPolicy,
)
from maillage.client._models import (
    Bucket,
    LifecycleRule,
    ListPage,
    LockConfiguration,
    ObjectInfo,
    ObjectPlacement,
    ObjectSummary,
    ObjectVersion,
    PutResult,
    Replica,
    Retention,
    VersionPage,
)
from maillage.client._profile import Credentials, Profile, resolve_profile, write_profile

if TYPE_CHECKING:
    from maillage.client._async import AsyncClient, AsyncObjectBody
    from maillage.client._sync import Client, ObjectBody

# The clients are imported on first use: a command that only reads a profile or talks to the admin
# API (`maillage status`, the audit) does not pay for them (the asyncio SDK is 165 ms of imports).
_CLIENTS = {"AsyncClient": "maillage.client._async", "AsyncObjectBody": "maillage.client._async",
            "Client": "maillage.client._sync", "ObjectBody": "maillage.client._sync"}

__all__ = [
    "AsyncClient", "AsyncObjectBody", "Client", "ObjectBody",
    "Bucket", "ListPage", "ObjectInfo", "ObjectPlacement", "ObjectSummary", "ObjectVersion", "PutResult", "Replica",
    "VersionPage", "LockConfiguration", "Retention", "LifecycleRule",
    "MaillageError", "InvalidRequest", "InvalidBucketName", "InvalidKey", "MetadataTooLarge",
    "UnknownPolicy", "NoSuchBucket", "NoSuchKey", "BucketAlreadyExists", "BucketNotEmpty",
    "PolicyUnsatisfiable", "OutsidePolicy", "OutsideTerritory", "BucketDisputed", "IntegrityError", "StorageFull",
    "Unavailable",
    "QuorumNotReached", "NodeUnavailable", "NoSuchChunk", "PermissionDenied", "CredentialsError", "InternalError",
    "Credentials", "Profile", "resolve_profile", "write_profile",
]

for _name in __all__:
    if _name not in _CLIENTS:
        globals()[_name].__module__ = "maillage.client"


def __getattr__(name: str) -> Any:
    home = _CLIENTS.get(name)
    if home is None:
        raise AttributeError(f"module 'maillage.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    value.__module__ = "maillage.client"
    globals()[name] = value
    return value
