"""Bucket versioning (S3's), written once for both doors: a bucket's versioning state, version ids,
delete markers, and the versions of a key kept as ordinary index entries of the bucket.

The model, kept simple for object lock and lifecycle to build on:

* **The state** ("" never versioned, `ENABLED`, `SUSPENDED`; never back to "") is an entry of the
  bucket's own index under a reserved key (`SETTING`), written like any manifest: on the bucket's
  index replicas (the first R of its record owners), inside its policy, the newest HLC version
  wins, anti-entropy repairs it, and it is scoped by the generation (a re-created bucket starts
  unversioned). The bucket record (name, generation, policy) never changes. Every write reads it
  from the index, never from a cache: a write that missed a change to Enabled would replace the
  version it must keep, nor from a node's own store alone (a node back from a partition does not
  know what it missed: the state machine with failures found it). The replicas are read while the
  record's owners are asked (`ObjectService._write_target`).
* **Every version** of a key is a manifest at `VERSIONS + key + "\\x01" + slot`. A slot is 16 hex
  digits of (2^64-1 - the version's HLC version) then a tag, the writer's (8 hex digits of the
  BLAKE3 of its node id) or `null`: a key's slots list newest first. A version id is the HLC
  version (16 hex digits) and the writer's tag, or `null`. The key itself keeps its current version
  as without versioning (GET, HEAD, ListObjects and conditional writes read it there), its slot in
  the `version` attribute. A delete marker is a live entry with the `delete-marker` attribute in its
  slot and a tombstone (with the same attributes) at the key.
* **Writes**: Enabled, each PUT, copy or completed upload gets a slot of its own; Suspended, a
  write is the null version (the earlier null slot is tombstoned first). An object written before
  versioning was enabled has no slot: it is the key's null version, archived to a null slot by the
  first write that replaces it (Enabled) or replaced by it (Suspended). The slot is written before
  the key, so a failed write leaves at most a listed version that is not yet current.
* **Deleting a version** tombstones its slot; if it was the current one, the newest remaining
  version (or marker, or nothing) is written to the key again.

Because versions are ordinary manifests of the bucket's index, residency, replication, repair,
hand-back, encryption at rest and the chunk GC's references (`LocalReplica.referenced_chunks` reads
every live manifest of the bucket) treat them exactly as objects; deleting a version leaves its
chunks to the GC after the grace, like any deleted object.

Not atomic: two writers of one key at the same moment each keep their version, but which one the key
shows may differ from which slot lists first (both are there); a versioned key may be at most
`MAX_VERSIONED_KEY_BYTES` long and may not hold U+0001 (the slot separator).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from functools import partial

import blake3

from maillage.node import object_lock, validation
from maillage.node.data.bucket_settings import read_settings, write_settings
from maillage.node.data.coordinator import Coordinator, Stamp, is_common_prefix, past, restated, written_at
from maillage.node.errors import BucketNotEmpty, InvalidArgument, InvalidKey, NoSuchKey
from maillage.node.object_lock import LockConfig, LockedVersioning
from maillage.storage import BucketRecord, Manifest

__all__ = ["Versions", "Versioning", "Version", "VersionListing", "Deleted", "NoSuchVersion", "DeleteMarker", "Stamp",
           "ENABLED", "SUSPENDED", "NULL", "VERSIONS", "SETTING", "SLOT_ATTRIBUTE", "MARKER_ATTRIBUTE",
           "check_version_id", "version_id", "is_marker", "MAX_VERSIONED_KEY_BYTES"]

ENABLED, SUSPENDED = "Enabled", "Suspended"
log = logging.getLogger(__name__)

NULL = "null"
VERSIONS = validation.VERSION_SLOTS  # + key + "\x01" + slot: one version of the key
SETTING = validation.RESERVED_PREFIX + "versioning"  # the bucket's versioning state
SLOT_ATTRIBUTE = "version"  # a version's slot, on its slot entry and on the key while it is current
MARKER_ATTRIBUTE = "delete-marker"
SETTLE_ROUNDS = 8   # promotions one removal may make while others remove the same key's versions
STATE_ATTRIBUTE = "versioning"
LOCK_ATTRIBUTE = "object-lock"  # the bucket's object lock configuration (`object_lock.LockConfig`)
_SEP = "\x01"
_U64 = (1 << 64) - 1
_VERSION_ID = re.compile(r"[0-9a-f]{24}|null")
_TOP = "\U0010ffff"
MAX_VERSIONED_KEY_BYTES = validation.MAX_KEY_BYTES - len(VERSIONS.encode()) - 1 - 24



class NoSuchVersion(NoSuchKey):
    """No such version of the key (never made, deleted, or an id of another bucket or generation)."""


class DeleteMarker(NoSuchKey):
    """The version asked (or the current one) is a delete marker: there is no object to read."""

    def __init__(self, message: str, *, version_id: str, asked: bool) -> None:
        super().__init__(message)
        self.version_id = version_id
        self.asked = asked  # named by its version id (S3: 405) rather than the key's current (404)


@dataclass(frozen=True)
class Versioning:
    """A bucket's versioning state ("", ENABLED or SUSPENDED) and object lock configuration (None:
    not enabled), read together from one index entry."""

    status: str = ""
    lock: LockConfig | None = None


@dataclass(frozen=True)
class Version:
    """One entry of a version listing: the version's manifest as stored (its key the user's)."""

    manifest: Manifest
    version_id: str
    latest: bool

    @property
    def marker(self) -> bool:
        return is_marker(self.manifest)


@dataclass(frozen=True)
class VersionListing:
    versions: list[Version]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str
    next_version_id_marker: str


@dataclass(frozen=True)
class Deleted:
    """What a delete did: the version id it made (a marker) or removed (None on a never-versioned
    bucket), whether that is a marker, and the HLC version of what it wrote (0: nothing)."""

    version_id: str | None
    marker: bool
    version: int = 0


def check_version_id(value: str) -> str:
    if not isinstance(value, str) or not _VERSION_ID.fullmatch(value):
        shown = repr(str(value)[:40])[:60]   # cut after escaping too: one character may take ten
        raise InvalidArgument(f"invalid version id {shown}: a version id is 24 hex digits or 'null'")
    return value


def _tag(writer: str) -> str:
    return blake3.blake3(writer.encode()).hexdigest()[:8]


def _new_slot(version: int, writer: str | None) -> str:
    return f"{_U64 - version:016x}{NULL if writer is None else _tag(writer)}"


def _slot_of(vid: str) -> str:
    return f"{_U64 - int(vid[:16], 16):016x}{vid[16:]}"


def _vid_of(slot: str) -> str:
    return NULL if slot.endswith(NULL) else f"{_U64 - int(slot[:16], 16):016x}{slot[16:]}"


def _slot_key(key: str, slot: str) -> str:
    return f"{VERSIONS}{key}{_SEP}{slot}"


def _slot_in(m: Manifest) -> str | None:
    return dict(m.attributes).get(SLOT_ATTRIBUTE)


def version_id(m: Manifest) -> str | None:
    """The version id of a manifest written on a versioned bucket (None: written before, or never)."""
    slot = _slot_in(m)
    return None if slot is None else _vid_of(slot)


def is_marker(m: Manifest) -> bool:
    return MARKER_ATTRIBUTE in dict(m.attributes)


def _with(attributes: tuple[tuple[str, str], ...], **extra: str) -> tuple[tuple[str, str], ...]:
    named = {"version": SLOT_ATTRIBUTE, "marker": MARKER_ATTRIBUTE}
    merged = {k: v for k, v in attributes if k not in (SLOT_ATTRIBUTE, MARKER_ATTRIBUTE)}
    merged.update({named[k]: v for k, v in extra.items()})
    return tuple(sorted(merged.items()))


def _check_versioned_key(key: str) -> None:
    if _SEP in key:
        raise InvalidKey("a key of a versioned bucket may not hold U+0001 (it separates a key from its versions)")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_VERSIONED_KEY_BYTES:
        raise InvalidKey(f"a key of a versioned bucket is at most {MAX_VERSIONED_KEY_BYTES} bytes in UTF-8 "
                         "(its versions are kept under a longer name)")


async def _unversioned(manifest: Manifest) -> Manifest:
    return replace(manifest, attributes=_with(manifest.attributes))


def _settled(m: Manifest | None) -> asyncio.Future[Manifest | None]:
    done: asyncio.Future[Manifest | None] = asyncio.get_running_loop().create_future()
    done.set_result(m)
    return done


class Versions:
    """Versioning on the coordinator's write path; holds no state."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator

    # ----- the bucket's state ----------------------------------------------------------------

    async def settings(self, bucket: BucketRecord) -> Versioning:
        """The bucket's versioning state and lock configuration, read from the index replicas (never
        cached, nor from this node's store alone, even as one of them: a write that missed a change
        to Enabled would replace the version it should keep, and a node back from a partition does
        not know what it missed)."""
        held = await read_settings(self._c, bucket, SETTING)
        try:
            lock = LockConfig.decode(held.get(LOCK_ATTRIBUTE, ""))
        except (ValueError, InvalidArgument):
            lock = LockConfig()  # damaged: lock stays on (never lifted by a bad entry), no default imposed
        return Versioning(held.get(STATE_ATTRIBUTE, ""), lock)

    async def state(self, bucket: BucketRecord) -> str:
        """"" (never versioned), ENABLED or SUSPENDED."""
        return (await self.settings(bucket)).status

    async def set_state(self, bucket: BucketRecord, state: str) -> None:
        if state not in (ENABLED, SUSPENDED):
            raise InvalidArgument(f"versioning status {state[:20]!r}: use Enabled or Suspended")
        held = await self.settings(bucket)
        if held.lock is not None and state != ENABLED:
            raise LockedVersioning("the bucket has object lock: its versioning stays Enabled")
        await self._write_settings(bucket, replace(held, status=state))

    async def set_lock(self, bucket: BucketRecord, config: LockConfig) -> None:
        """Enable object lock (once enabled, never disabled) or change its default retention: the
        bucket's versioning must be Enabled."""
        held = await self.settings(bucket)
        if held.status != ENABLED:
            raise LockedVersioning("object lock needs the bucket's versioning Enabled first")
        await self._write_settings(bucket, replace(held, lock=config))

    async def start_locked(self, bucket: BucketRecord) -> None:
        """A new bucket's versioning Enabled and object lock enabled, in one write."""
        await self._write_settings(bucket, Versioning(ENABLED, LockConfig()))

    async def _write_settings(self, bucket: BucketRecord, held: Versioning) -> None:
        lock = "" if held.lock is None else held.lock.encode()
        await write_settings(self._c, bucket, SETTING, {STATE_ATTRIBUTE: held.status, LOCK_ATTRIBUTE: lock})

    # ----- writes ------------------------------------------------------------------------------

    async def stamper(self, bucket: BucketRecord, key: str, versioning: Versioning | None = None) -> Stamp:
        """What a write of `key` (PUT, copy, completed upload) calls before its manifest is written
        at the key (on a never-versioned bucket: a copy of a version loses the source's version id);
        on a lock-enabled bucket it gives the version the default retention it has none of its own.
        `versioning`: the bucket's, when the caller read it already."""
        if versioning is None:
            versioning = await self.settings(bucket)
        if not versioning.status:
            return _unversioned
        _check_versioned_key(key)
        return partial(self._stamp, bucket, versioning)

    async def _stamp(self, bucket: BucketRecord, versioning: Versioning, manifest: Manifest) -> Manifest:
        state = versioning.status
        current = await self._before_new(bucket, manifest.key, state)
        if current is not None and manifest.version <= current.version:  # a slot orders by its version
            manifest = replace(manifest, version=await self._c.next_version(_settled(current)))
        slot = _new_slot(manifest.version, manifest.writer if state == ENABLED else None)
        attributes = object_lock.with_default(dict(manifest.attributes), versioning.lock, self._c.wall_ms())
        stamped = replace(manifest, attributes=_with(tuple(attributes.items()), version=slot))
        await self._c.write_manifest(bucket, replace(stamped, key=_slot_key(manifest.key, slot)))
        return stamped

    async def _before_new(self, bucket: BucketRecord, key: str, state: str) -> Manifest | None:
        """Before a new version of `key`: keep the null version written before versioning in a slot
        (Enabled), or drop the earlier null version (Suspended). Returns the key's current entry."""
        current = await self._c.latest(bucket, key)
        if state == ENABLED and current is not None and not current.deleted and _slot_in(current) is None:
            slot = _new_slot(current.version, None)
            await self._c.write_manifest(bucket, replace(current, key=_slot_key(key, slot),
                                                         attributes=_with(current.attributes, version=slot)))
        if state == SUSPENDED:
            found = await self._find(bucket, key, NULL, current)
            if found is not None:
                await self._c.write_tombstone(bucket, _slot_key(key, found[0]), found[1])
        return current

    async def delete(self, bucket: BucketRecord, key: str, vid: str | None = None, *,
                     versioning: Versioning | None = None, bypass: bool = False) -> Deleted:
        """DELETE of a key: a delete marker on a versioned bucket, the version `vid` removed when named
        (unless a legal hold or a retention keeps it: `bypass`, the caller may and asks to bypass a
        GOVERNANCE one), the key's tombstone on a never-versioned bucket. `versioning`: the bucket's,
        if read already."""
        validation.check_key(key)
        if vid is not None:
            return await self._delete_version(bucket, key, check_version_id(vid), bypass)
        if versioning is None:
            versioning = await self.settings(bucket)
        state = versioning.status
        if not state:
            return Deleted(None, False, await self._c.delete_object(bucket, key))
        _check_versioned_key(key)
        c = self._c
        current = await self._before_new(bucket, key, state)
        version = await c.next_version(_settled(current))
        slot = _new_slot(version, c.node_id if state == ENABLED else None)
        marker = Manifest(bucket=bucket.name, key=_slot_key(key, slot), version=version, size=0, etag="",
                          writer=c.node_id, generation=bucket.generation,
                          attributes=_with((), version=slot, marker="1"))
        await c.write_manifest(bucket, marker)
        await c.write_newest(bucket, replace(marker, key=key, deleted=True))
        return Deleted(_vid_of(slot), True, version)

    async def _delete_version(self, bucket: BucketRecord, key: str, vid: str, bypass: bool) -> Deleted:
        c = self._c
        current = await c.latest(bucket, key)
        if vid == NULL and current is not None and not current.deleted and _slot_in(current) is None:
            object_lock.check_removable(dict(current.attributes), c.wall_ms(), bypass=bypass)
            gone = await c.write_tombstone(bucket, key, current)  # written before versioning: its only version
            return Deleted(NULL, False, gone.version)
        found = await self._find(bucket, key, vid, current)
        if found is None:
            return Deleted(vid, False)  # nothing to delete: S3 answers the same
        slot, target = found
        object_lock.check_removable(dict(target.attributes), c.wall_ms(), bypass=bypass)
        gone = await c.write_tombstone(bucket, _slot_key(key, slot), target)
        await self._settle(bucket, key)
        return Deleted(vid, is_marker(target), gone.version)

    async def _settle(self, bucket: BucketRecord, key: str) -> None:
        """After a version's removal: the key's entry names a live version, or none. Removals of one
        key's versions at once each promote what they saw (one may promote a version another is
        removing); whoever then finds the key naming a removed slot promotes again, so the last
        check of each removal sees a live one (bounded: `SETTLE_ROUNDS`)."""
        c = self._c
        for _ in range(SETTLE_ROUNDS):
            current = await c.latest(bucket, key)
            slot = None if current is None else _slot_in(current)
            if current is None or slot is None:
                return  # no entry, a tombstone of no version, or an object written before versioning
            held = await c.latest(bucket, _slot_key(key, slot))
            if held is not None and not held.deleted:
                return
            await self._promote(bucket, key, current)
        log.warning("bucket %s: a key's versions kept changing while a removed one was replaced", bucket.name)

    async def _promote(self, bucket: BucketRecord, key: str, current: Manifest) -> None:
        """The current version was deleted: the newest remaining one becomes the key's again."""
        c = self._c
        newest = await anext(aiter(self._slots(bucket, key)), None)
        if newest is not None:  # a listing's entry has no chunk list: the whole manifest
            newest = await self._whole(bucket, key, newest[0])
        version = await c.next_version(_settled(current))
        if newest is None:
            m = Manifest(bucket=bucket.name, key=key, version=version, size=0, etag="", deleted=True,
                         writer=c.node_id, generation=bucket.generation)
        else:
            m = replace(newest[1], key=key, version=version, writer=c.node_id, deleted=is_marker(newest[1]),
                        attributes=restated(newest[1], dict(newest[1].attributes)))
        await c.write_newest(bucket, m)

    async def restated(self, bucket: BucketRecord, manifest: Manifest) -> None:
        """The current version was restated (its tags changed): its slot entry gets the change too."""
        slot = _slot_in(manifest)
        if slot is not None:
            await self._c.write_manifest(bucket, replace(manifest, key=_slot_key(manifest.key, slot)))

    async def transition(self, bucket: BucketRecord, listed: Manifest, storage_class: str) -> bool:
        """Move the key's current version (`listed`, as a listing showed it) to a cold storage
        class: its chunks copied to the bucket policy's cold policy, then its manifest restated
        (the key's entry and its slot) naming where they rest. Skipped (False) when the key's
        current version is another by then, before or after the copy: the newer write wins, and
        the copies made for nothing are collected by GC. (A write landing between the last check
        and the restated manifest is lost to it, as with a tag change: not atomic.)"""
        c = self._c
        current = await c.latest(bucket, listed.key)
        if (current is None or current.deleted or current.etag != listed.etag
                or written_at(current) != written_at(listed)):
            return False
        attributes = await c.move_to_cold(bucket, current, storage_class)
        again = await c.latest(bucket, listed.key)
        if again is None or again.version != current.version:
            return False
        manifest = replace(current, attributes=restated(current, attributes), writer=c.node_id,
                           version=await c.next_version(_settled(current)))
        await c.write_manifest(bucket, manifest)
        await self.restated(bucket, manifest)
        return True

    async def set_attribute(self, bucket: BucketRecord, key: str, vid: str, name: str,
                            value: str | None) -> Manifest:
        """Version `vid` of `key` again with attribute `name` set (None: removed), e.g. its tags,
        content untouched: its slot entry (numbered above it, so it wins on every replica), and the
        key's entry too when it is the current version. NoSuchVersion, or DeleteMarker for a marker."""
        current = await self._c.latest(bucket, key)
        is_current = current is not None and not current.deleted and (version_id(current) or NULL) == vid
        held = current if is_current and current is not None else await self.get(bucket, key, vid)
        edited = {k: v for k, v in held.attributes if k != name}
        if value is not None:
            edited[name] = value
        if is_current:
            manifest = await self._c.restate(bucket, key, edited)
            await self.restated(bucket, manifest)
            return manifest
        validation.check_attributes(edited)
        slot = _slot_in(held)
        if slot is None:   # a version is either the current one or kept in a slot
            raise NoSuchVersion(f"no version {vid!r} of {key!r} in bucket {bucket.name!r}")
        again = replace(held, key=_slot_key(key, slot), writer=self._c.node_id, attributes=restated(held, edited),
                        version=await self._c.next_version(_settled(held)))
        await self._c.write_manifest(bucket, again)
        return replace(again, key=key)

    # ----- reads -------------------------------------------------------------------------------

    async def current(self, bucket: BucketRecord, key: str,
                      local: asyncio.Future[Manifest | None] | None = None) -> Manifest:
        """The key's current version; NoSuchKey (DeleteMarker when it is one) otherwise. `local`:
        this node's own read of the key, already started (`Coordinator.latest`)."""
        validation.check_key(key)
        m = await self._c.latest(bucket, key, local)
        if m is None or m.deleted:
            if m is not None and is_marker(m):
                raise DeleteMarker(f"the current version of {key!r} is a delete marker",
                                   version_id=version_id(m) or NULL, asked=False)
            raise NoSuchKey(f"no object {key!r} in bucket {bucket.name!r}")
        return m

    async def get(self, bucket: BucketRecord, key: str, vid: str) -> Manifest:
        """The version `vid` of `key` (its key the user's); NoSuchVersion, or DeleteMarker for a marker."""
        validation.check_key(key)
        check_version_id(vid)
        current = None
        if vid == NULL:
            current = await self._c.latest(bucket, key)
            if current is not None and not current.deleted and _slot_in(current) is None:
                return current
        found = await self._find(bucket, key, vid, current)
        if found is None:
            raise NoSuchVersion(f"no version {vid!r} of {key!r} in bucket {bucket.name!r}")
        m = replace(found[1], key=key)
        if is_marker(m):
            raise DeleteMarker(f"version {vid!r} of {key!r} is a delete marker", version_id=vid, asked=True)
        return m

    async def _find(self, bucket: BucketRecord, key: str, vid: str,
                    current: Manifest | None = None) -> tuple[str, Manifest] | None:
        """The live slot of version `vid`. A key has at most one null version: the key's `current`
        entry names it when it is current (the common case of a Suspended bucket), else it is
        looked for among the key's versions."""
        if vid == NULL:
            slot = None if current is None else _slot_in(current)
            if slot is not None and slot.endswith(NULL):
                return await self._whole(bucket, key, slot)
            async for slot, _ in self._slots(bucket, key):
                if slot.endswith(NULL):
                    return await self._whole(bucket, key, slot)
            return None
        return await self._whole(bucket, key, _slot_of(vid))

    async def _whole(self, bucket: BucketRecord, key: str, slot: str) -> tuple[str, Manifest] | None:
        """A slot's live manifest, read whole (chunk list, inline bytes) from the index replicas."""
        held = await self._c.latest(bucket, _slot_key(key, slot))
        return None if held is None or held.deleted else (slot, held)

    async def _slots(self, bucket: BucketRecord, key: str) -> AsyncIterator[tuple[str, Manifest]]:
        """The live versions of `key`, newest first, page by page (as listed: without chunk lists)."""
        prefix = f"{VERSIONS}{key}{_SEP}"
        async for m in self._c.index_entries(bucket, prefix):
            if not m.deleted:
                yield m.key[len(prefix):], m

    async def check_empty(self, bucket: BucketRecord) -> None:
        """BucketNotEmpty while any version or delete marker is kept."""
        async for m in self._c.index_entries(bucket, VERSIONS):
            if not m.deleted:
                raise BucketNotEmpty(f"bucket {bucket.name!r} still keeps versions: delete them first")

    async def listing(self, bucket: BucketRecord, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
                   version_id_marker: str = "", max_keys: int = 1000) -> VersionListing:
        """A page of the bucket's versions and delete markers, keys in order, each key's newest first
        (S3's ListObjectVersions); at most `max_keys` entries and common prefixes."""
        max_keys = max(1, min(max_keys or 1000, validation.MAX_LIST_PAGE))
        if version_id_marker and not key_marker:
            raise InvalidArgument("a version-id-marker needs a key-marker")
        rolled = bool(key_marker) and is_common_prefix(key_marker, prefix, delimiter)
        after = (past(key_marker), _TOP) if rolled else (key_marker, _TOP)
        if version_id_marker and not rolled:
            check_version_id(version_id_marker)
            after = (key_marker, "")
            if version_id_marker != NULL:
                after = (key_marker, _slot_of(version_id_marker))
            elif (found := await self._find(bucket, key_marker, NULL)) is not None:
                after = (key_marker, found[0])
        versions: list[Version] = []
        prefixes: list[str] = []
        last_key = key_marker if version_id_marker and not rolled else None
        entries = _merged(self._archived(bucket, prefix, after), self._unarchived(bucket, prefix, after))
        async for key, slot, m in entries:
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            common = key[:cut + len(delimiter)] if cut >= 0 else None
            if common is not None and prefixes and prefixes[-1] == common:
                continue
            if len(versions) + len(prefixes) >= max_keys:
                await entries.aclose()
                return VersionListing(versions, prefixes, True, *self._resume(versions, prefixes))
            if common is not None:
                prefixes.append(common)
                continue
            versions.append(Version(replace(m, key=key), _vid_of(slot) if slot else NULL, key != last_key))
            last_key = key
        return VersionListing(versions, prefixes, False, "", "")

    @staticmethod
    def _resume(versions: list[Version], prefixes: list[str]) -> tuple[str, str]:
        last_version = versions[-1] if versions else None
        if prefixes and (last_version is None or prefixes[-1] > last_version.manifest.key):
            return prefixes[-1], ""
        assert last_version is not None
        return last_version.manifest.key, last_version.version_id

    async def _archived(self, bucket: BucketRecord, prefix: str,
                        after: tuple[str, str]) -> AsyncIterator[tuple[str, str, Manifest]]:
        """(key, slot, manifest) of every live slot after `after`."""
        start = f"{VERSIONS}{after[0]}{_SEP}{after[1]}" if after[0] else ""
        async for m in self._c.index_entries(bucket, VERSIONS + prefix, start):
            if not m.deleted:
                key, _, slot = m.key[len(VERSIONS):].rpartition(_SEP)
                yield key, slot, m

    async def _unarchived(self, bucket: BucketRecord, prefix: str,
                          after: tuple[str, str]) -> AsyncIterator[tuple[str, str, Manifest | None]]:
        """(key, "", manifest) of every object written before versioning and not replaced since (its
        key's null version, kept at the key alone), with keys after `after`; (key, "", None) for every
        other key, so the merge walks this stream in step with the slots (never the whole bucket
        ahead of them)."""
        start = max(after[0], past(validation.RESERVED_PREFIX))  # its null version sorts before its slots
        async for m in self._c.index_entries(bucket, prefix, start):
            yield m.key, "", m if not m.deleted and _slot_in(m) is None else None


async def _merged(a: AsyncIterator[tuple[str, str, Manifest]],
                  b: AsyncIterator[tuple[str, str, Manifest | None]],
                  ) -> AsyncGenerator[tuple[str, str, Manifest], None]:
    """Two ordered streams of (key, slot, manifest) as one, in (key, slot) order; an entry of `b`
    without a manifest only moves it on."""
    x = await anext(a, None)
    y = await anext(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[:2] < y[:2]):
            assert x is not None
            yield x
            x = await anext(a, None)
        else:
            if y[2] is not None:
                yield y[0], y[1], y[2]
            y = await anext(b, None)

