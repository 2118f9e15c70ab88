"""Who is calling, and whether they may touch a bucket: tenants see and touch only their own.

The gate (`gate.py`) authenticates every call and records the caller for the handler: a node of the
layout (by its certificate) or the holder of an access key (by the request's signature). The
`Objects` servicer and the bulk PutObject then ask `Tenancy` before the coordinator does anything: a
bucket belongs to the tenant whose key created it; another tenant's key, a read-only key asked to
write, or a key limited to other buckets gets `AccessDenied` (PERMISSION_DENIED) with a message
that says which. Bucket listings show a tenant its own buckets only (an admin key sees all).

Beyond ownership, a bucket's policy (`bucket_access.py`) may let other tenants' keys and anonymous
S3 callers read it, and may deny its owner's keys what it names: `Tenancy.bucket` asks it with the
operation and, where the use case knows them, the object key and listing prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from maillage.node.data.bucket_records import Catalog
from maillage.node.errors import AccessDenied
from maillage.node.service.bucket_access import BucketAccess
from maillage.proto.trust.access import Action, KeyInfo
from maillage.storage import BucketRecord

__all__ = ["AccessDenied", "Caller", "Tenancy", "current_caller", "CALLER"]


@dataclass(frozen=True)
class Caller:
    """A node of the layout (`node_id`), an access key's holder (`key`), or neither: an anonymous
    S3 request. `secure` and `source_ip` are what bucket policy conditions test of the request's
    connection (None: not known here, as for a request another door forwarded)."""

    node_id: str | None = None
    key: KeyInfo | None = None
    secure: bool | None = True  # the gRPC port is always TLS
    source_ip: str | None = None  # the S3 door's client address (the gRPC door gives none)

    @property
    def anonymous(self) -> bool:
        return self.node_id is None and self.key is None

    def describe(self) -> str:
        if self.key is not None:
            return f"key {self.key.key_id} of tenant {self.key.tenant!r}"
        return "an anonymous caller" if self.node_id is None else f"node {self.node_id}"

    @property
    def tenant(self) -> str:
        if self.key is None:
            raise AccessDenied("this request needs an access key (a node certificate alone is not a tenant)")
        return self.key.tenant

    def require(self, action: Action, bucket: str, owner: str) -> None:
        """Raise AccessDenied unless this caller may `action` the bucket `owner` owns."""
        key = self.key
        if key is None:
            raise AccessDenied(f"bucket {bucket!r}: this request needs an access key")
        if owner != key.tenant:
            raise AccessDenied(f"bucket {bucket!r} belongs to another tenant ({self.describe()})")
        if key.buckets and bucket not in key.buckets:
            raise AccessDenied(f"{self.describe()} is limited to bucket(s) {', '.join(key.buckets)}")
        if action == "write" and key.role == "read-only":
            raise AccessDenied(f"{self.describe()} is read-only: it cannot change bucket {bucket!r}")

    def sees(self, record: BucketRecord) -> bool:
        """Whether a bucket listing shows this bucket to the caller."""
        if self.key is None:
            return False
        if self.key.role == "admin":
            return True
        return record.owner == self.key.tenant and (not self.key.buckets or record.name in self.key.buckets)


CALLER: ContextVar[Caller] = ContextVar("maillage_caller")


def current_caller() -> Caller:
    """The caller the gate recorded for the request being handled."""
    try:
        return CALLER.get()
    except LookupError:
        raise AccessDenied("no authenticated caller for this request") from None


class Tenancy:
    """Bucket-level checks between a servicer and the coordinator."""

    def __init__(self, catalog: Catalog, access: BucketAccess) -> None:
        self._catalog = catalog
        self.access = access

    async def bucket(self, caller: Caller, name: str, action: Action, operation: str = "", *,
                     key: str | None = None, prefix: str | None = None) -> BucketRecord:
        """The bucket's record, once the caller may `action` it for `operation` (on object `key`,
        listing `prefix`, where known): by ownership, or by the bucket's policy, which may also deny
        it (NoSuchBucket if it does not exist)."""
        record = await self._catalog.get(name, fresh=action == "write")  # never write by a stale lookup
        await self.access.check(caller, record, action, operation, key=key, prefix=prefix)
        return record

    def visible(self, caller: Caller, records: Iterable[BucketRecord]) -> list[BucketRecord]:
        return [r for r in records if caller.sees(r)]
