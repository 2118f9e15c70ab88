"""The use cases both front doors call: buckets, objects, chunks and multipart uploads, for a caller.

An edge (a gRPC servicer, an S3 handler) parses its request and renders the answer; in between it
calls one method here with the `Caller` its door identified. Each method checks the caller on the
bucket it names once, with the rule of its operation (`rules.OPERATIONS`), and hands the bucket
record it checked down to the coordinator, which never looks it up again. So a feature is written
once, here and below, and both doors have it with the same checks and the same errors.

Only a node inside a bucket's policy serves its data (`territory.py`): elsewhere every use case
whose rule has `territory="bucket"` answers `OutsideTerritory`, naming nodes inside, before it reads
any byte of the request; `route` tells a door beforehand where to send such a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from functools import partial

from maillage.node import object_lock
from maillage.node.data import customer_keys
from maillage.node.data.bucket_settings import CORS, LIFECYCLE, TAGS, BucketSettings
from maillage.node.data.coordinator import Coordinator, Listing, Upload, UploadStream
from maillage.node.data.lifecycle import LifecycleConfig
from maillage.node.data.multipart import (
    Compose,
    MultipartUpload,
    MultipartUploads,
    Part,
    PartBody,
    PartListing,
    UploadListing,
)
from maillage.node.data.versions import Deleted, Versioning, VersionListing, Versions, check_version_id
from maillage.node.errors import InvalidArgument, InvalidRequest, NodeError, NoSuchBucket, NoSuchKey
from maillage.node.object_lock import LockConfig, LockNotEnabled, Retention
from maillage.node.replicas.replica import LocalReplica
from maillage.node.runtime.concurrency import gather_bounded
from maillage.node.service.bucket_access import POLICY
from maillage.node.service.bucket_policy import AccessBlock, Policy
from maillage.node.service.rules import OPERATIONS
from maillage.node.service.tenancy import Caller, Tenancy
from maillage.node.service.territory import Territory
from maillage.storage import BucketRecord, Manifest

__all__ = ["ObjectService"]

LISTS_AT_ONCE = 16  # tenants' bucket lists read at once for an admin's listing


class ObjectService:
    def __init__(self, coordinator: Coordinator, tenancy: Tenancy, local: LocalReplica, territory: Territory,
                 uploads: MultipartUploads | None = None,
                 tenants: Callable[[], Iterable[str]] = lambda: ()) -> None:
        """`tenants`: the tenants of the access document now (an admin's listing reads each one's list)."""
        self.coordinator = coordinator
        self._tenants = tenants
        self._tenancy = tenancy
        self._local = local
        self._territory = territory
        self.uploads = uploads or MultipartUploads(coordinator)
        self.versions = Versions(coordinator)
        self.settings = BucketSettings(coordinator)

    async def bucket(self, caller: Caller, operation: str, name: str, key: str | None = None, *,
                     prefix: str | None = None) -> BucketRecord:
        """The record of bucket `name`, once `caller` may do on it (its object `key`, a listing's
        `prefix`, where known: a bucket policy may name them) what `operation`'s rule asks (and this
        node may serve it, if the rule touches its data)."""
        rule = OPERATIONS[operation]
        assert rule.bucket is not None, f"{operation} names no bucket"
        record = await self._tenancy.bucket(caller, name, rule.bucket, operation, key=key, prefix=prefix)
        if rule.territory == "bucket":
            self._territory.serve(record.policy, name)
        return record

    async def route(self, bucket: str) -> tuple[str, ...]:
        """Where a door sends a request naming `bucket`: () when this node serves it (inside its
        policy, or no such bucket: the request's own answer says so), else nodes inside its policy."""
        record = await self.coordinator.find_bucket(bucket)
        if record is None or self._territory.inside(record.policy):
            return ()
        return self._territory.nodes_inside(record.policy)

    async def names_rest_here(self, bucket: str) -> bool:
        """Whether names of `bucket` (its own, its keys') may be written on this node, e.g. in an
        access log: only when the bucket exists and its policy reaches this node."""
        try:
            record = await self.coordinator.find_bucket(bucket)
        except NodeError:
            return False
        return record is not None and self._territory.inside(record.policy)

    # ----- buckets -------------------------------------------------------------------------

    async def create_bucket(self, caller: Caller, name: str, policy: str, *, object_lock: bool = False) -> BucketRecord:
        """Create a bucket of the caller's tenant; `object_lock`: with versioning Enabled and object
        lock from the start (written after the record: a failure leaves the bucket without lock,
        which PutObjectLockConfiguration can still enable)."""
        caller.require("write", name, caller.tenant)  # the bucket will be the caller's tenant's
        self.coordinator.check_policy(policy)  # UnknownPolicy / PolicyUnsatisfiable first, wherever asked
        self._territory.serve(policy, name)  # made (and its record pushed) by a node inside its policy
        record = await self.coordinator.create_bucket(name, policy, caller.tenant)
        if object_lock:
            await self.versions.start_locked(record)
        return record

    async def head_bucket(self, caller: Caller, name: str, operation: str = "HeadBucket") -> BucketRecord:
        if operation == "HeadBucket":
            self.coordinator.forget_bucket(name)  # asked of the owners: a bucket just deleted is gone
        return await self.bucket(caller, operation, name)

    async def list_buckets(self, caller: Caller) -> list[BucketRecord]:
        """A tenant's key: its tenant's bucket list (a few owners per policy); an admin's: every
        tenant's list, the tenants being those of the access document (never every node)."""
        if caller.key is None:
            return []
        if caller.key.role == "admin":
            tenants = sorted(set(self._tenants()))
            lists = await gather_bounded([partial(self.coordinator.tenant_buckets, t) for t in tenants], LISTS_AT_ONCE)
            return self._tenancy.visible(caller, sorted((r for one in lists for r in one), key=lambda r: r.name))
        return self._tenancy.visible(caller, await self.coordinator.tenant_buckets(caller.key.tenant))

    async def delete_bucket(self, caller: Caller, name: str) -> None:
        self.coordinator.forget_bucket(name)  # checked on the record the owners hold now, not a cached one
        record = await self.bucket(caller, "DeleteBucket", name)
        await self.versions.check_empty(record)  # its noncurrent versions and delete markers too
        await self.coordinator.delete_bucket(record)

    async def bucket_versioning(self, caller: Caller, bucket: str) -> str:
        """The bucket's versioning state: "" (never enabled), Enabled or Suspended."""
        return await self.versions.state(await self.bucket(caller, "GetBucketVersioning", bucket))

    async def set_bucket_versioning(self, caller: Caller, bucket: str, state: str) -> None:
        """Enable or suspend versioning: the owner tenant's write key (or its admin) only."""
        await self.versions.set_state(await self.bucket(caller, "PutBucketVersioning", bucket), state)

    async def bucket_tags(self, caller: Caller, bucket: str) -> str:
        """The bucket's tag set, as the S3 door encoded it ("" when it has none)."""
        return await self.settings.get(await self.bucket(caller, "GetBucketTagging", bucket), TAGS)

    async def set_bucket_tags(self, caller: Caller, bucket: str, encoded: str, operation: str) -> None:
        """Replace the bucket's tag set ("" removes it): its owner tenant's write keys only."""
        await self.settings.put(await self.bucket(caller, operation, bucket), TAGS, encoded)

    async def bucket_lifecycle(self, caller: Caller, bucket: str) -> LifecycleConfig | None:
        """The bucket's lifecycle rules (None: it has none)."""
        record = await self.bucket(caller, "GetBucketLifecycleConfiguration", bucket)
        return LifecycleConfig.decode(await self.settings.get(record, LIFECYCLE))

    async def set_bucket_lifecycle(self, caller: Caller, bucket: str, config: LifecycleConfig | None,
                                   operation: str) -> None:
        """Replace the bucket's lifecycle rules (None: remove them): its owner tenant's write keys only.
        A Transition needs the bucket's policy to name a cold policy (InvalidArgument otherwise)."""
        record = await self.bucket(caller, operation, bucket)
        if (config is not None and any(r.transition_class for r in config.rules)
                and len(self._territory.chunk_policies(record.policy)) < 2):
            raise InvalidArgument(f"bucket {bucket!r} is bound to policy {record.policy!r}, which names no cold "
                                  f"policy for a lifecycle Transition to move objects to (an operator sets one: "
                                  f"`maillage layout policy-set {record.policy} --cold POLICY`)")
        await self.settings.put(record, LIFECYCLE, "" if config is None else config.encode())

    async def bucket_policy(self, caller: Caller, bucket: str) -> str:
        """The bucket's policy document as its owner sent it ("": it has none)."""
        record = await self.bucket(caller, "GetBucketPolicy", bucket)
        return await self.settings.get(record, POLICY)

    async def bucket_policy_status(self, caller: Caller, bucket: str) -> bool | None:
        """Whether the bucket's policy has a public statement (S3's IsPublic); None: it has no policy."""
        rules = await self._tenancy.access.rules(await self.bucket(caller, "GetBucketPolicyStatus", bucket))
        return None if rules.policy is None else rules.policy.public

    async def set_bucket_policy(self, caller: Caller, bucket: str, text: str, policy: Policy | None,
                                operation: str) -> None:
        """Replace the bucket's policy (`text` parsed as `policy`; "" and None remove it): its owner's write keys."""
        await self._tenancy.access.set_policy(await self.bucket(caller, operation, bucket), text, policy)

    async def bucket_acl(self, caller: Caller, bucket: str,
                         operation: str = "GetBucketAcl") -> tuple[BucketRecord, str]:
        """The bucket's record and canned ACL (private, public-read, authenticated-read)."""
        record = await self.bucket(caller, operation, bucket)
        return record, (await self._tenancy.access.rules(record)).acl

    async def set_bucket_acl(self, caller: Caller, bucket: str, name: str) -> None:
        """Give the bucket a canned ACL (its owner's write keys; a public one only without BlockPublicAcls)."""
        await self._tenancy.access.set_acl(await self.bucket(caller, "PutBucketAcl", bucket), name)

    async def access_block(self, caller: Caller, bucket: str) -> AccessBlock:
        return (await self._tenancy.access.rules(await self.bucket(caller, "GetPublicAccessBlock", bucket))).block

    async def set_access_block(self, caller: Caller, bucket: str, block: AccessBlock, operation: str) -> None:
        await self._tenancy.access.set_block(await self.bucket(caller, operation, bucket), block)

    async def bucket_cors(self, caller: Caller, bucket: str) -> str:
        """The bucket's CORS rules, as the S3 door encoded them ("": none)."""
        return await self.settings.get(await self.bucket(caller, "GetBucketCors", bucket), CORS)

    async def set_bucket_cors(self, caller: Caller, bucket: str, encoded: str, operation: str) -> None:
        """Replace the bucket's CORS rules ("" removes them): its owner tenant's write keys only."""
        await self.settings.put(await self.bucket(caller, operation, bucket), CORS, encoded)

    async def cors_rules(self, bucket: str) -> str:
        """The bucket's CORS rules for a browser's preflight, which carries no credentials: what
        they allow is public by design (NoSuchBucket, or OutsideTerritory naming nodes inside)."""
        record = await self.coordinator.find_bucket(bucket)
        if record is None:
            raise NoSuchBucket(f"no bucket {bucket!r}")
        self._territory.serve(record.policy, bucket)
        return await self.settings.get(record, CORS)

    async def list_object_versions(self, caller: Caller, bucket: str, *, prefix: str = "", delimiter: str = "",
                                   key_marker: str = "", version_id_marker: str = "",
                                   max_keys: int = 1000) -> tuple[BucketRecord, VersionListing]:
        record = await self.bucket(caller, "ListObjectVersions", bucket, prefix=prefix)
        listing = await self.versions.listing(record, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
                                           version_id_marker=version_id_marker, max_keys=max_keys)
        return record, listing

    # ----- object lock (`node/object_lock.py`) ---------------------------------------------

    async def bucket_lock(self, caller: Caller, bucket: str) -> LockConfig | None:
        """The bucket's object lock configuration (None: lock not enabled)."""
        return (await self.versions.settings(await self.bucket(caller, "GetObjectLockConfiguration", bucket))).lock

    async def set_bucket_lock(self, caller: Caller, bucket: str, config: LockConfig) -> None:
        """Enable object lock on a bucket whose versioning is Enabled, or change its default retention."""
        await self.versions.set_lock(await self.bucket(caller, "PutObjectLockConfiguration", bucket), config)

    async def _locked_version(self, caller: Caller, operation: str, bucket: str, key: str,
                              version_id: str | None) -> tuple[BucketRecord, dict[str, str]]:
        """The bucket's record, checked for `operation`, and the attributes of a version of it
        (LockNotEnabled unless the bucket has object lock)."""
        record = await self.bucket(caller, operation, bucket, key)
        if (await self.versions.settings(record)).lock is None:
            raise LockNotEnabled(f"bucket {bucket!r} has no object lock configuration")
        if version_id is not None:
            return record, dict((await self.versions.get(record, key, check_version_id(version_id))).attributes)
        return record, dict((await self.versions.current(record, key)).attributes)

    async def retention(self, caller: Caller, bucket: str, key: str, version_id: str | None) -> Retention | None:
        _, attributes = await self._locked_version(caller, "GetObjectRetention", bucket, key, version_id)
        return object_lock.retention_of(attributes)

    async def set_retention(self, caller: Caller, bucket: str, key: str, version_id: str | None,
                            retention: Retention | None, *, bypass_governance: bool = False) -> None:
        """Set, lengthen, or (GOVERNANCE, with the bypass) shorten or remove a version's retention.
        Read, checked and written in turn: two callers changing one version's retention at once
        may both pass the check, and the newer write stays."""
        record, attributes = await self._locked_version(caller, "PutObjectRetention", bucket, key, version_id)
        object_lock.check_retention_change(object_lock.retention_of(attributes), retention,
                                           self.coordinator.wall_ms(), bypass=_may_bypass(caller, bypass_governance))
        await self._set_attribute(record, key, object_lock.RETENTION,
                                  None if retention is None else retention.encode(), version_id)

    async def legal_hold(self, caller: Caller, bucket: str, key: str, version_id: str | None) -> bool:
        _, attributes = await self._locked_version(caller, "GetObjectLegalHold", bucket, key, version_id)
        return object_lock.legal_hold_of(attributes)

    async def set_legal_hold(self, caller: Caller, bucket: str, key: str, version_id: str | None, on: bool) -> None:
        record, _ = await self._locked_version(caller, "PutObjectLegalHold", bucket, key, version_id)
        await self._set_attribute(record, key, object_lock.LEGAL_HOLD, "ON" if on else None, version_id)

    # ----- objects -------------------------------------------------------------------------

    async def head_object(self, caller: Caller, bucket: str, key: str, operation: str = "HeadObject",
                          version_id: str | None = None) -> tuple[BucketRecord, Manifest]:
        """The bucket's record and the key's current version, or its version `version_id` (GetObject
        reads with the same call); a delete marker is `DeleteMarker`."""
        record = await self.bucket(caller, operation, bucket, key)
        if version_id is not None:
            return record, await self.versions.get(record, key, version_id)
        return record, await self.versions.current(record, key)

    async def get_object(self, caller: Caller, bucket: str, key: str, *, version_id: str | None = None,
                         offset: int = 0) -> tuple[Manifest, int, bytes]:
        """A reader's GET in one round trip: the version `head_object` answers, the index of the chunk
        holding byte `offset` and that chunk's frame, read from the nearest copy (this node's own when
        it holds one). The reader verifies the frame as any chunk; b"" (an inline object, an offset
        past the end) leaves nothing to send. No copy readable is QuorumNotReached: a copy that
        failed its check is quarantined by the node that read it, so a reader sent on to fetch it
        itself would only hear "not stored here" and take corrupt data for an unreachable mesh.

        The current version is read from every index replica; meanwhile the chunk named by this
        node's own copy of it (the SDK asks an index replica first; the same local read serves
        both) is read ahead, and used only if the version read names the same chunk: the chunk's
        read overlaps the replicas' answer instead of following it (GET 1 MiB c1 +12 %)."""
        record = await self.bucket(caller, "GetObject", bucket, key)
        ahead = _ReadAhead(self.coordinator, record, offset)
        local = None
        if version_id is None:
            local = asyncio.ensure_future(self._local.get_manifest(record.name, key, record.generation))
            local.add_done_callback(ahead.start)
        try:
            if version_id is not None:
                manifest = await self.versions.get(record, key, version_id)
            else:
                manifest = await self.versions.current(record, key, local)
            index = _chunk_at(manifest, offset)
            if index is None:
                return manifest, 0, b""
            digest = manifest.chunks[index].digest
            if (early := await ahead.frame_of(digest)) is not None:
                return manifest, index, early
            return manifest, index, await self.coordinator.read_version_chunk(record, manifest, digest)
        finally:
            ahead.close()

    async def _write_target(self, caller: Caller, operation: str, bucket: str,
                            key: str | None = None) -> tuple[BucketRecord, Versioning]:
        """The bucket's record, checked for a write, and its versioning state and lock configuration
        read from its index replicas (never cached). The state is read while the record's owners are asked again, with
        the record this node last knew, so a write of a bucket it knows pays no round trip for it."""
        known = self.coordinator.last_known_bucket(bucket)
        early = None
        if known is not None and self._territory.inside(known.policy):
            early = asyncio.ensure_future(self.versions.settings(known))
            early.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved if unused
        try:
            record = await self.bucket(caller, operation, bucket, key)
        except BaseException:
            if early is not None:
                early.cancel()
            raise
        if early is not None and known == record:
            return record, await early
        if early is not None:
            early.cancel()
        return record, await self.versions.settings(record)

    async def put_object(self, caller: Caller, bucket: str, upload: Upload, body: UploadStream, *,
                         check: Callable[[Manifest | None], None] | None = None) -> tuple[Manifest, list[str]]:
        """Store an object; `check(current version or None)` may refuse it first (a conditional PUT)."""
        record, versioning = await self._write_target(caller, "PutObject", bucket, upload.key)
        self._check_lock_request(upload, versioning)
        if check is not None:
            try:
                current: Manifest | None = await self.coordinator.head_object(record, upload.key)
            except NoSuchKey:
                current = None
            check(current)
        stamp = await self.versions.stamper(record, upload.key, versioning)
        return await self.coordinator.put_object(record, upload, body, stamp=stamp)

    def _check_lock_request(self, upload: Upload, versioning: Versioning) -> None:
        """Before any byte moves: a retention or legal hold asked of a new version needs a
        lock-enabled bucket, and a retention a date in the future."""
        object_lock.check_requested(upload.attributes, versioning.lock, self.coordinator.wall_ms())

    async def delete_object(self, caller: Caller, bucket: str, key: str, version_id: str | None = None, *,
                            bypass_governance: bool = False) -> Deleted:
        """Delete the key (a delete marker on a versioned bucket), or its version `version_id` if no
        lock keeps it (`bypass_governance`: asked by the caller, granted as `_may_bypass` says)."""
        record, versioning = await self._write_target(caller, "DeleteObject", bucket, key)
        return await self.versions.delete(record, key, version_id, versioning=versioning,
                                          bypass=_may_bypass(caller, bypass_governance))

    async def delete_objects(self, caller: Caller, bucket: str, *,
                             bypass_governance: bool = False) -> Callable[[str, str | None], Awaitable[Deleted]]:
        """For DeleteObjects: the bucket checked once, then a function deleting one key (or version) of it."""
        record, versioning = await self._write_target(caller, "DeleteObjects", bucket)
        return partial(self.versions.delete, record, versioning=versioning,
                       bypass=_may_bypass(caller, bypass_governance))

    async def copy_object(self, caller: Caller, source_bucket: str, source_key: str, bucket: str, key: str, *,
                          replacement: Upload | None = None, check: Callable[[Manifest], None] | None = None,
                          source_version_id: str | None = None) -> Manifest:
        """A server-side copy (of the source's version `source_version_id`, else its current one):
        read on the source bucket, write on the destination."""
        source = await self._tenancy.bucket(caller, source_bucket, "read", "GetObject", key=source_key)
        dest, versioning = await self._write_target(caller, "CopyObject", bucket, key)
        self.coordinator.check_copy(source, dest)
        if replacement is not None:
            self._check_lock_request(replacement, versioning)
        version = await self._version(source, source_key, source_version_id)
        if customer_keys.is_encrypted(dict(version.attributes)):
            raise customer_keys.KeyRequired("the copy's source was written with a customer key (SSE-C): send it "
                                            "with the x-amz-copy-source-server-side-encryption-customer-* headers")
        # A copy is a new version: the source's lock stays with the source (the destination's default applies).
        unlocked = tuple((k, v) for k, v in version.attributes if k not in object_lock.LOCK_ATTRIBUTES)
        return await self.coordinator.copy_object(source, source_key, dest, key, replacement=replacement,
                                                  check=check, source=replace(version, attributes=unlocked),
                                                  stamp=await self.versions.stamper(dest, key, versioning))

    async def copy_source(self, caller: Caller, source_bucket: str, source_key: str, bucket: str,
                          source_version_id: str | None = None) -> tuple[BucketRecord, Manifest]:
        """For a copy the S3 door streams through itself (one side under a customer key): the
        source's record and version, once the caller may read it and write `bucket`, and the copy
        would not widen the source's residency. The door then writes with `put_object`."""
        source = await self._tenancy.bucket(caller, source_bucket, "read", "GetObject", key=source_key)
        dest = await self.bucket(caller, "CopyObject", bucket)
        self.coordinator.check_copy(source, dest)
        return source, await self._version(source, source_key, source_version_id)

    async def _version(self, record: BucketRecord, key: str, version_id: str | None) -> Manifest:
        if version_id is not None:
            return await self.versions.get(record, key, version_id)
        return await self.versions.current(record, key)

    async def object_attributes(self, caller: Caller, bucket: str, key: str, operation: str,
                                version_id: str | None = None) -> dict[str, str]:
        """The attributes (stored headers, ETag, tags) of the current version, or of version
        `version_id`, for a reader."""
        record = await self.bucket(caller, operation, bucket, key)
        if version_id is not None:
            return dict((await self.versions.get(record, key, version_id)).attributes)
        return dict((await self.coordinator.head_object(record, key)).attributes)

    async def set_attribute(self, caller: Caller, bucket: str, key: str, name: str, value: str | None,
                            operation: str, version_id: str | None = None) -> Manifest:
        """The current version (or version `version_id`) again with attribute `name` set (None:
        removed), e.g. its tags; the content stays as it is (no chunk moves)."""
        return await self._set_attribute(await self.bucket(caller, operation, bucket, key), key, name, value,
                                         version_id)

    async def _set_attribute(self, record: BucketRecord, key: str, name: str, value: str | None,
                             version_id: str | None) -> Manifest:
        """`set_attribute` on a bucket record already checked for the caller."""
        if version_id is not None:
            return await self.versions.set_attribute(record, key, check_version_id(version_id), name, value)
        current = dict((await self.coordinator.head_object(record, key)).attributes)
        current.pop(name, None)
        if value is not None:
            current[name] = value
        manifest = await self.coordinator.restate(record, key, current)
        await self.versions.restated(record, manifest)
        return manifest

    async def list_objects(self, caller: Caller, bucket: str, *, prefix: str = "", delimiter: str = "",
                           start_after: str = "", max_keys: int = 1000) -> tuple[BucketRecord, Listing]:
        record = await self.bucket(caller, "ListObjects", bucket, prefix=prefix)
        listing = await self.coordinator.list_objects(record, prefix=prefix, delimiter=delimiter,
                                                      start_after=start_after, max_keys=max_keys)
        return record, listing

    # ----- chunks --------------------------------------------------------------------------

    async def chunk_key(self, caller: Caller, bucket: str) -> bytes | None:
        """The key naming the bucket's chunks (None: unkeyed names), for a reader of the bucket."""
        return self.coordinator.key_of(await self.bucket(caller, "ChunkKey", bucket))

    async def read_chunk(self, caller: Caller, bucket: str, digest: bytes) -> bytes:
        """A chunk of this node's store, for a client reading `bucket`: served only if held here for
        the bucket's policy, or its cold one (where a lifecycle transition moved the chunks), and
        owner (`LocalReplica.get_chunk_for`)."""
        if not bucket:
            raise InvalidRequest("a client's GetChunk names the bucket it reads the chunk for")
        record = await self.bucket(caller, "GetChunk", bucket)
        return await self._local.get_chunk_for(digest, self._territory.chunk_policies(record.policy), record.owner)

    # ----- multipart uploads (the S3 door's) -----------------------------------------------

    async def create_upload(self, caller: Caller, bucket: str, upload: Upload) -> MultipartUpload:
        record, versioning = await self._write_target(caller, "CreateMultipartUpload", bucket, upload.key)
        self._check_lock_request(upload, versioning)
        return await self.uploads.create_upload(record, upload, initiator=caller.tenant)

    async def upload_part(self, caller: Caller, bucket: str, key: str, upload_id: str, number: int,
                          body: UploadStream | PartBody, *, expiry: float | None = None) -> Part:
        record = await self.bucket(caller, "UploadPart", bucket, key)
        return await self.uploads.upload_part(record, key, upload_id, number, body, expiry=expiry)

    async def copy_part_buckets(self, caller: Caller, source_bucket: str,
                                bucket: str) -> tuple[BucketRecord, BucketRecord]:
        """UploadPartCopy's two buckets, checked: read on the source, write on the destination, and
        a copy that would widen the source's residency refused before any byte moves."""
        source = await self._tenancy.bucket(caller, source_bucket, "read", "GetObject")  # key: any
        dest = await self.bucket(caller, "UploadPartCopy", bucket)
        self.coordinator.check_copy(source, dest)
        return source, dest

    async def complete_upload(self, caller: Caller, bucket: str, key: str, upload_id: str,
                              parts: Sequence[tuple[int, str]], *, expiry: float | None = None,
                              compose: Compose | None = None) -> Manifest:
        record, versioning = await self._write_target(caller, "CompleteMultipartUpload", bucket, key)
        return await self.uploads.complete_upload(record, key, upload_id, parts, expiry=expiry, compose=compose,
                                                  stamp=await self.versions.stamper(record, key, versioning))

    async def abort_upload(self, caller: Caller, bucket: str, key: str, upload_id: str) -> None:
        record = await self.bucket(caller, "AbortMultipartUpload", bucket, key)
        await self.uploads.abort_upload(record, key, upload_id)

    async def list_parts(self, caller: Caller, bucket: str, key: str, upload_id: str, *, marker: int, max_parts: int,
                         expiry: float | None) -> tuple[BucketRecord, MultipartUpload, PartListing | None]:
        """The upload and a page of its parts (None when `max_parts` is 0: the upload alone)."""
        record = await self.bucket(caller, "ListParts", bucket, key)
        if max_parts == 0:
            return record, await self.uploads.get_upload(record, key, upload_id, expiry=expiry), None
        upload, listing = await self.uploads.list_parts(record, key, upload_id, marker=marker, max_parts=max_parts,
                                                        expiry=expiry)
        return record, upload, listing

    async def list_uploads(self, caller: Caller, bucket: str, *, prefix: str, delimiter: str, key_marker: str,
                           upload_id_marker: str, max_uploads: int,
                           expiry: float | None) -> tuple[BucketRecord, UploadListing | None]:
        """A page of the uploads in progress (None when `max_uploads` is 0: the bucket checked only)."""
        record = await self.bucket(caller, "ListMultipartUploads", bucket)
        if max_uploads == 0:
            return record, None
        return record, await self.uploads.list_uploads(
            record, prefix=prefix, delimiter=delimiter, key_marker=key_marker, upload_id_marker=upload_id_marker,
            max_uploads=max_uploads, expiry=expiry)


def _may_bypass(caller: Caller, asked: bool) -> bool:
    """Whether a caller that asks to bypass GOVERNANCE retention may: the tenant's admin keys and
    its read-write keys for all its buckets (the bucket owner, as S3's root has the permission);
    never a key limited to some buckets, the kind an application or a backup tool is given, so a
    stolen application key cannot. COMPLIANCE is for what no key may lift."""
    key = caller.key
    return asked and key is not None and (key.role == "admin" or key.role == "read-write" and not key.buckets)


class _ReadAhead:
    """The chunk a GET reads while the index replicas answer, as this node's own index copy names
    it: started once that local read is done (nothing for an inline object, no copy, or a failed
    read), never after the GET has ended (`close`)."""

    def __init__(self, coordinator: Coordinator, record: BucketRecord, offset: int) -> None:
        self._coordinator, self._record, self._offset = coordinator, record, offset
        self._task: asyncio.Task[bytes | None] | None = None
        self._digest = b""
        self._closed = False

    def start(self, read: asyncio.Future[Manifest | None]) -> None:
        """The done callback of the local read."""
        if self._closed or read.cancelled() or read.exception() is not None:
            return
        local = read.result()
        index = None if local is None or local.deleted else _chunk_at(local, self._offset)
        if local is None or index is None:
            return
        self._digest = local.chunks[index].digest
        self._task = asyncio.ensure_future(self._frame(local))

    async def _frame(self, local: Manifest) -> bytes | None:
        try:
            return await self._coordinator.read_version_chunk(self._record, local, self._digest)
        except asyncio.CancelledError:
            raise
        except Exception:  # a guess that failed costs nothing but its own read
            return None

    async def frame_of(self, digest: bytes) -> bytes | None:
        """The frame read ahead if it is `digest`'s (the version read names the same chunk)."""
        if self._task is None or self._digest != digest:
            return None
        return await self._task

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()


def _chunk_at(manifest: Manifest, offset: int) -> int | None:
    """The index of the chunk of `manifest` holding byte `offset` (None: inline, or past the end)."""
    start = 0
    for index, ref in enumerate(manifest.chunks):
        if offset < start + ref.length:
            return index
        start += ref.length
    return None
