"""Object lock (`node/data/object_lock.py`) through the service layer over in-process replicas, on
the mesh's manual clock: retention and legal hold keep a version from removal until their date
(COMPLIANCE against every caller, GOVERNANCE against all but an admin key that asks), retention
only lengthens, lock needs versioning and never goes, and the lock state is the version's own
(read the same through another coordinator, held by every index replica)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.data.coordinator import Upload, UploadStream
from maillage.node.data.versions import ENABLED, SUSPENDED, VERSIONS, DeleteMarker, version_id
from maillage.node.errors import InvalidArgument, QuorumNotReached
from maillage.node.object_lock import (
    COMPLIANCE,
    GOVERNANCE,
    LEGAL_HOLD,
    RETENTION,
    LockConfig,
    LockedVersioning,
    LockNotEnabled,
    ObjectLocked,
    Retention,
    check_removable,
    check_retention_change,
    retention_of,
)
from maillage.node.service.tenancy import Caller
from maillage.placement import bucket_partition
from maillage.proto.trust.access import AccessKey
from maillage.storage.errors import VersionTooFarAhead

from .conftest import FRENCH, run

DAY = 86_400
# An application's key, limited to the buckets it writes: it may never bypass a retention. The
# bucket owner (a key for all its buckets, as S3's root) and an admin key may bypass GOVERNANCE.
WRITER = Caller(key=AccessKey("AKW", "secret", "acme", "read-write", ("backups", "scans", "plain", "vault")))
OWNER = Caller(key=AccessKey("AKO", "secret", "acme", "read-write"))
ADMIN = Caller(key=AccessKey("AKA", "secret", "acme", "admin"))


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _now_ms(mesh) -> int:
    return int(mesh.clock.time() * 1000)


async def _put(mesh, bucket: str, key: str, data: bytes, via: str = "paris-1", **attributes: str) -> str:
    upload = Upload(key, attributes={k.replace("_", "-"): v for k, v in attributes.items()})
    manifest, _ = await mesh.via(via).service.put_object(WRITER, bucket, upload, UploadStream(_pieces(data)))
    vid = version_id(manifest)
    assert vid is not None
    return vid


def test_a_retained_version_stays_until_its_date_and_only_the_owner_bypasses_governance(mesh) -> None:
    async def scenario():
        service = mesh.via("paris-1").service
        await service.create_bucket(WRITER, "backups", "france-only", object_lock=True)
        assert await service.bucket_versioning(WRITER, "backups") == ENABLED
        until = _now_ms(mesh) + 10 * DAY * 1000
        gov = await _put(mesh, "backups", "g", b"governed", retention=Retention(GOVERNANCE, until).encode())
        comp = await _put(mesh, "backups", "c", b"complied", retention=Retention(COMPLIANCE, until).encode())
        # a DELETE without version id only adds a marker: allowed, the version stays
        assert (await service.delete_object(WRITER, "backups", "g")).marker
        for caller, bypass in ((WRITER, False), (WRITER, True), (ADMIN, False)):
            with pytest.raises(ObjectLocked):
                await service.delete_object(caller, "backups", "g", gov, bypass_governance=bypass)
        for caller in (WRITER, ADMIN):
            with pytest.raises(ObjectLocked):
                await service.delete_object(caller, "backups", "c", comp, bypass_governance=True)
        assert (await service.delete_object(OWNER, "backups", "g", gov, bypass_governance=True)).version_id == gov
        mesh.clock.advance(10 * DAY - 60)
        with pytest.raises(ObjectLocked):  # a minute before its date, through another coordinator
            await mesh.via("lyon-1").service.delete_object(ADMIN, "backups", "c", comp, bypass_governance=True)
        mesh.clock.advance(61)
        await mesh.via("lyon-1").service.delete_object(WRITER, "backups", "c", comp)
        with pytest.raises(DeleteMarker):  # the key's current version is the marker: no retention to read
            await service.retention(WRITER, "backups", "g", None)
    run(scenario())


def test_default_retention_legal_hold_and_changes(mesh) -> None:
    async def scenario():
        service = mesh.via("paris-1").service
        await service.create_bucket(WRITER, "scans", "france-only", object_lock=True)
        await service.set_bucket_lock(WRITER, "scans", LockConfig(COMPLIANCE, days=2))
        assert await service.bucket_lock(WRITER, "scans") == LockConfig(COMPLIANCE, days=2)
        now = _now_ms(mesh)
        vid = await _put(mesh, "scans", "k", b"x", legal_hold="ON")
        retention = await mesh.via("toulouse-1").service.retention(WRITER, "scans", "k", vid)
        assert retention is not None and retention.mode == COMPLIANCE
        assert retention.until_ms - now == 2 * DAY * 1000
        assert await service.legal_hold(WRITER, "scans", "k", vid)
        # COMPLIANCE lengthens, never shortens or weakens, whoever asks
        longer = Retention(COMPLIANCE, retention.until_ms + 1000)
        await service.set_retention(WRITER, "scans", "k", vid, longer)
        for new in (Retention(COMPLIANCE, retention.until_ms), Retention(GOVERNANCE, longer.until_ms + 1), None):
            with pytest.raises(ObjectLocked):
                await service.set_retention(ADMIN, "scans", "k", vid, new, bypass_governance=True)
        mesh.clock.advance(3 * DAY)  # the retention is over; the legal hold still keeps it
        with pytest.raises(ObjectLocked):
            await service.delete_object(ADMIN, "scans", "k", vid, bypass_governance=True)
        await service.set_legal_hold(WRITER, "scans", "k", vid, False)
        assert not await service.legal_hold(WRITER, "scans", "k", vid)
        await service.delete_object(WRITER, "scans", "k", vid)
        # a GOVERNANCE retention shortens only with an admin's bypass
        vid = await _put(mesh, "scans", "g", b"y", retention=Retention(GOVERNANCE, _now_ms(mesh) + DAY * 1000).encode())
        with pytest.raises(ObjectLocked):
            await service.set_retention(WRITER, "scans", "g", vid, None, bypass_governance=True)
        await service.set_retention(OWNER, "scans", "g", vid, None, bypass_governance=True)
        assert await service.retention(WRITER, "scans", "g", vid) is None
        await service.delete_object(WRITER, "scans", "g", vid)
    run(scenario())


def test_lock_needs_versioning_and_never_goes_and_is_held_by_every_index_replica(mesh) -> None:
    async def scenario():
        service = mesh.via("paris-1").service
        await service.create_bucket(WRITER, "plain", "france-only")
        with pytest.raises(LockNotEnabled):
            await _put(mesh, "plain", "k", b"x", legal_hold="ON")
        with pytest.raises(LockedVersioning):
            await service.set_bucket_lock(WRITER, "plain", LockConfig())
        await service.set_bucket_versioning(WRITER, "plain", ENABLED)
        await service.set_bucket_lock(WRITER, "plain", LockConfig())
        with pytest.raises(LockedVersioning):
            await service.set_bucket_versioning(WRITER, "plain", SUSPENDED)
        with pytest.raises(InvalidArgument):  # a retention asked must end in the future
            await _put(mesh, "plain", "k", b"x", retention=Retention(GOVERNANCE, _now_ms(mesh) - 1).encode())
        until = _now_ms(mesh) + DAY * 1000
        vid = await _put(mesh, "plain", "k", b"x", retention=Retention(COMPLIANCE, until).encode())
        record = await mesh.via("paris-1").coordinator.head_bucket("plain")
        held = {}
        for node_id, node in mesh.nodes.items():
            entries, _ = await node.local.list_index("plain", VERSIONS, "", 100, record.generation)
            for m in entries:
                whole = await node.local.get_manifest("plain", m.key, record.generation)
                if whole is not None and not whole.deleted and version_id(whole) == vid:
                    held[node_id] = retention_of(dict(whole.attributes))
        assert len(held) >= 2 and set(held) <= FRENCH, held  # every index replica, inside the policy
        assert set(held.values()) == {Retention(COMPLIANCE, until)}
    run(scenario())


# ----- the rules alone, drawn --------------------------------------------------------------------

_modes = st.sampled_from((GOVERNANCE, COMPLIANCE))
_retentions = st.none() | st.builds(Retention, _modes, st.integers(0, 10_000))


@settings(max_examples=400, deadline=None)
@given(old=_retentions, new=_retentions, now=st.integers(0, 10_000), bypass=st.booleans(), hold=st.booleans())
def test_no_change_shortens_a_running_compliance_retention_and_no_removal_beats_it(old, new, now, bypass,
                                                                                   hold) -> None:
    attributes = {} if old is None else {RETENTION: old.encode()}
    if hold:
        attributes[LEGAL_HOLD] = "ON"
    try:
        check_retention_change(old, new, now, bypass=bypass)
        changed = True
    except (ObjectLocked, InvalidArgument):
        changed = False
    running = old is not None and now < old.until_ms
    if changed and running and old.mode == COMPLIANCE:
        assert new is not None and new.mode == COMPLIANCE and new.until_ms >= old.until_ms
    if changed and running and not bypass:
        assert new is not None and new.until_ms >= old.until_ms and new.mode == old.mode
    if changed:
        assert new is None or new.until_ms > now
    try:
        check_removable(attributes, now, bypass=bypass)
        removable = True
    except ObjectLocked:
        removable = False
    assert removable == (not hold and (not running or old.mode == GOVERNANCE and bypass))


def test_replicas_refuse_a_compliance_removal_from_a_coordinator_whose_clock_runs_ahead_or_lies(mesh) -> None:
    """Every index replica checks a version's COMPLIANCE retention and legal hold by its own clock
    before storing a newer entry over it: a coordinator two minutes ahead (within the drift the
    clocks allow) believes a retention a minute from its end over, and is refused (no stand-in
    takes what an owner refused); a tombstone or a shortened retention sent straight to a replica
    (a hostile node) is refused; the version stays readable."""
    async def scenario():
        service = mesh.via("paris-1").service
        await service.create_bucket(WRITER, "vault", "france-only", object_lock=True)
        until = _now_ms(mesh) + 60_000
        vid = await _put(mesh, "vault", "k", b"kept", retention=Retention(COMPLIANCE, until).encode())
        record = await mesh.via("paris-1").coordinator.head_bucket("vault")
        holders = {}
        for node_id, node in mesh.nodes.items():
            entries, _ = await node.local.list_index("vault", VERSIONS, "", 100, record.generation)
            holders.update((node_id, m.key) for m in entries if not m.deleted)
        assert len(holders) >= 2
        ahead = sorted(FRENCH - set(holders))[0]  # a coordinator that holds no copy itself
        mesh.skew(ahead, 120)
        with pytest.raises((ObjectLocked, QuorumNotReached)) as refused:
            await mesh.via(ahead).service.delete_object(ADMIN, "vault", "k", vid, bypass_governance=True)
        assert "COMPLIANCE" in str(refused.value), refused.value
        holder, slot = next(iter(holders.items()))
        held = await mesh.nodes[holder].local.get_manifest("vault", slot, record.generation)
        assert held is not None
        for forged in (replace(held, deleted=True, version=held.version + 1),
                       replace(held, version=held.version + 1, attributes=tuple(
                           (k, Retention(COMPLIANCE, until - 1000).encode() if k == RETENTION else v)
                           for k, v in held.attributes))):
            with pytest.raises(ObjectLocked):
                await mesh.nodes[holder].local.put_manifest(forged)
        assert (await mesh.nodes[holder].local.get_manifest("vault", slot, record.generation)) == held
        other = sorted(set(FRENCH) - {ahead})[0]
        got = await mesh.via(other).service.head_object(WRITER, "vault", "k", version_id=vid)
        assert got[1].size == 4
    run(scenario())


def test_a_refused_removal_left_on_a_stand_in_is_dropped_not_handed_back_once_the_retention_ends(mesh) -> None:
    """One index owner down: a removal the other owner refuses (its retention runs by its clock)
    still lands on the down owner's stand-in before the write fails. Hand-back must not deliver it
    after the retention ends (a version S3 keeps until someone deletes it again): the owners refuse
    it while the version is locked, and the stand-in drops it."""
    async def scenario():
        service = mesh.via("paris-1").service
        await service.create_bucket(WRITER, "vault", "france-only", object_lock=True)
        vid = await _put(mesh, "vault", "k", b"kept", retention=Retention(COMPLIANCE, _now_ms(mesh) + 60_000).encode())
        table = mesh.nodes["paris-1"].layout.table("france-only")
        owners = table.replicas(bucket_partition("vault", table.bits))
        coordinator = sorted(FRENCH - set(owners))[0]
        record = await mesh.nodes[owners[1]].coordinator.head_bucket("vault")
        entries, _ = await mesh.nodes[owners[1]].local.list_index("vault", VERSIONS, "", 10, record.generation)
        slot = next(m.key for m in entries if not m.deleted)
        mesh.down(owners[0])
        mesh.skew(coordinator, 120)  # believes the retention over
        with pytest.raises((ObjectLocked, QuorumNotReached)):
            await mesh.via(coordinator).service.delete_object(ADMIN, "vault", "k", vid)
        mesh.skew(coordinator, 0)
        stand_ins = mesh.holders("vault", slot) - set(owners)
        assert stand_ins, "the removal was expected to land on a stand-in"
        mesh.up(owners[0])
        await mesh.repair(2)
        assert mesh.holders("vault", slot) == set(owners)  # handed back: the refused removal dropped
        mesh.clock.advance(120)  # the retention is over: nothing left to deliver the removal
        await mesh.repair(2)
        for owner in owners:
            held = await mesh.nodes[owner].local.get_manifest("vault", slot, record.generation)
            assert held is not None and not held.deleted
        got = await mesh.via(owners[1]).service.head_object(WRITER, "vault", "k", version_id=vid)
        assert got[1].size == 4
    run(scenario())


async def _compliant_vault(mesh) -> tuple[str, list[str]]:
    """Bucket "vault" with object lock, key "k" written with a 30-day COMPLIANCE retention: its
    version id and the bucket's index owners."""
    await mesh.via("paris-1").service.create_bucket(OWNER, "vault", "france-only", object_lock=True)
    until = _now_ms(mesh) + 30 * DAY * 1000
    vid = await _put(mesh, "vault", "k", b"kept", retention=Retention(COMPLIANCE, until).encode())
    table = mesh.nodes["paris-1"].layout.table("france-only")
    return vid, sorted(table.replicas(bucket_partition("vault", table.bits)))


def test_an_index_owner_a_year_ahead_cannot_hide_a_retained_version(mesh) -> None:
    """An index owner whose clock runs a year ahead, asked to remove a COMPLIANCE version: it takes
    the removal over its own copy (it believes the retention over), the other owner refuses it; a
    read through any sane node still finds the version (a removal never hides a version another
    owner keeps locked)."""
    async def scenario():
        vid, owners = await _compliant_vault(mesh)
        ahead, sane = owners[0], owners[1]
        mesh.skew(ahead, 365 * DAY)
        with pytest.raises((ObjectLocked, QuorumNotReached, VersionTooFarAhead)):
            await mesh.via(ahead).service.delete_object(OWNER, "vault", "k", vid, bypass_governance=True)
        for reader in sorted(FRENCH - {ahead}):
            got = await mesh.via(reader).service.head_object(OWNER, "vault", "k", version_id=vid)
            assert got[1].size == 4 and not got[1].deleted, reader
        mesh.skew(ahead, 0)
        got = await mesh.via(sane).service.head_object(OWNER, "vault", "k")
        assert got[1].size == 4
    run(scenario())


def test_a_coordinator_a_year_ahead_cannot_remove_a_retained_version(mesh) -> None:
    """A node whose clock runs a year ahead believes every retention of less than a year over: as a
    coordinator its removal is refused by the owners (its versions are past the clock drift bound,
    and their own lock checks); the version stays, readable through the others."""
    async def scenario():
        vid, index_owners = await _compliant_vault(mesh)
        owners = set(index_owners)
        for ahead in sorted(FRENCH - owners):
            mesh.skew(ahead, 365 * DAY)
            with pytest.raises((ObjectLocked, QuorumNotReached, VersionTooFarAhead)):
                await mesh.via(ahead).service.delete_object(OWNER, "vault", "k", vid, bypass_governance=True)
            mesh.skew(ahead, 0)
            got = await mesh.via(sorted(owners)[0]).service.head_object(OWNER, "vault", "k", version_id=vid)
            assert got[1].size == 4, ahead
    run(scenario())
