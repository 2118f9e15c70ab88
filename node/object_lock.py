"""Object lock (S3's WORM model), written once for both doors: what a bucket's lock configuration
is, what a version's retention and legal hold are, and which changes and deletions they forbid.
The data path enforces it for callers (`data/versions.py`, `service/objects.py`); every index
replica enforces its absolute part again on what it stores (`check_replacement`), so neither a
hostile coordinator nor one whose clock runs ahead removes a COMPLIANCE or held version.

* **The bucket's configuration** rests with its versioning state, in the same index entry
  (`versions.SETTING`), so a write reads both in one round trip. A bucket has lock from its
  creation (S3's `x-amz-bucket-object-lock-enabled`) or once a PutObjectLockConfiguration enables
  it on a bucket whose versioning is Enabled; it is never disabled, and its versioning can no
  longer be suspended. It may name a default retention (a mode and days or years) that every new
  version without a retention of its own gets.
* **A version's retention** ("GOVERNANCE" or "COMPLIANCE" until a date) and **legal hold** are
  attributes of its manifest (`RETENTION`, `LEGAL_HOLD`), so they are replicated, repaired and
  handed back with the version, inside the bucket's policy, and survive any node's loss.
* **What they forbid**: removing the version (a DELETE naming its version id): under a legal hold,
  always; under a retention still running, always in COMPLIANCE mode, and in GOVERNANCE mode unless
  the caller may bypass it (a key of the owner for all its buckets that says so;
  never a key limited to some buckets, as applications and backup tools get). A retention can be lengthened; shortening
  or removing it, or changing its mode, is refused the same way. A DELETE without
  a version id only adds a delete marker and is allowed, as in S3; a bucket keeping a version
  cannot be deleted.

Time is a wall clock (milliseconds): the coordinator's for what it allows, each replica's own for
what it stores. A coordinator whose clock runs ahead lets a GOVERNANCE retention end early by its
error (replicas do not check GOVERNANCE: they cannot tell a bypass from none); an index replica
whose clock runs ahead may store a removal of a COMPLIANCE version itself (its own copy), while
the others refuse it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from maillage.node.errors import AccessDenied, InvalidArgument, InvalidRequest

__all__ = ["GOVERNANCE", "COMPLIANCE", "MODES", "RETENTION", "LEGAL_HOLD", "LOCK_ATTRIBUTES", "LockConfig",
           "Retention", "ObjectLocked", "LockNotEnabled", "LockedVersioning", "retention_of", "legal_hold_of",
           "check_removable", "check_retention_change", "check_replacement", "check_requested", "check_until",
           "with_default", "MAX_RETENTION_DAYS"]

GOVERNANCE, COMPLIANCE = "GOVERNANCE", "COMPLIANCE"
MODES = (GOVERNANCE, COMPLIANCE)
RETENTION = "retention"     # manifest attribute: "<mode> <retain-until, ms since the epoch>"
LEGAL_HOLD = "legal-hold"   # manifest attribute: "ON" while held
LOCK_ATTRIBUTES = (RETENTION, LEGAL_HOLD)
MAX_RETENTION_DAYS = 100 * 366   # a default retention of at most a hundred years
_DAY_MS = 86_400_000
_CONFIG = re.compile(r"Enabled(?: (GOVERNANCE|COMPLIANCE) (\d{1,6})([dy]))?\Z")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InvalidArgument(f"object lock mode {mode[:20]!r}: use GOVERNANCE or COMPLIANCE")


class ObjectLocked(AccessDenied):
    """The version is under a legal hold or a retention that this caller may not lift."""


class LockNotEnabled(InvalidRequest):
    """A lock setting on a bucket without object lock."""


class LockedVersioning(InvalidRequest):
    """A change of versioning object lock forbids (suspending it), or object lock on a bucket whose
    versioning is not Enabled (S3's InvalidBucketState)."""


@dataclass(frozen=True)
class LockConfig:
    """A lock-enabled bucket's configuration: its default retention, if any (`days` or `years`)."""

    mode: str = ""
    days: int = 0
    years: int = 0

    def __post_init__(self) -> None:
        if self.mode:
            _check_mode(self.mode)
        if self.mode and (self.days > 0) == (self.years > 0):
            raise InvalidArgument("a default retention gives Days or Years (one of them, above 0)")
        if not self.mode and (self.days or self.years):
            raise InvalidArgument("a default retention needs a Mode")
        if self.days > MAX_RETENTION_DAYS or self.years * 366 > MAX_RETENTION_DAYS:
            raise InvalidArgument(f"a default retention is at most {MAX_RETENTION_DAYS // 366} years")

    def encode(self) -> str:
        """The stored form: "Enabled", or "Enabled <mode> <n>d|<n>y"."""
        if not self.mode:
            return "Enabled"
        return f"Enabled {self.mode} {self.days}d" if self.days else f"Enabled {self.mode} {self.years}y"

    @classmethod
    def decode(cls, stored: str) -> LockConfig | None:
        """The configuration of a stored form (None: "", lock not enabled)."""
        if not stored:
            return None
        match = _CONFIG.match(stored)
        if match is None:
            raise ValueError(f"not an object lock configuration: {stored[:40]!r}")
        if match[1] is None:
            return cls()
        n = int(match[2])
        return cls(match[1], days=n) if match[3] == "d" else cls(match[1], years=n)

    def default_retention(self, now_ms: int) -> Retention | None:
        if not self.mode:
            return None
        days = self.days or self.years * 365
        return Retention(self.mode, now_ms + days * _DAY_MS)


@dataclass(frozen=True)
class Retention:
    mode: str
    until_ms: int

    def __post_init__(self) -> None:
        _check_mode(self.mode)

    def encode(self) -> str:
        return f"{self.mode} {self.until_ms}"

    def running(self, now_ms: int) -> bool:
        return now_ms < self.until_ms


def retention_of(attributes: Mapping[str, str]) -> Retention | None:
    """A version's retention (None: it has none). A stored value that does not parse counts as
    COMPLIANCE for ever: a damaged lock never frees a version."""
    stored = attributes.get(RETENTION, "")
    if not stored:
        return None
    mode, _, until = stored.partition(" ")
    try:
        return Retention(mode, int(until))
    except (InvalidArgument, ValueError):
        return Retention(COMPLIANCE, 2**63 - 1)


def legal_hold_of(attributes: Mapping[str, str]) -> bool:
    return attributes.get(LEGAL_HOLD, "") == "ON"


def check_removable(attributes: Mapping[str, str], now_ms: int, *, bypass: bool) -> None:
    """ObjectLocked unless the version may be removed now (`bypass`: the caller may and asks to
    bypass a GOVERNANCE retention)."""
    if legal_hold_of(attributes):
        raise ObjectLocked("the version is under a legal hold: lift it first")
    retention = retention_of(attributes)
    if retention is None or not retention.running(now_ms):
        return
    if retention.mode == GOVERNANCE and bypass:
        return
    bypass_hint = ": bypassing GOVERNANCE needs a key for all the tenant's buckets that asks to"
    raise ObjectLocked(f"the version is retained in {retention.mode} mode until {retention.until_ms} ms "
                       f"since the epoch" + ("" if retention.mode == COMPLIANCE else bypass_hint))


def check_until(retention: Retention, now_ms: int) -> None:
    """A retention given by a caller ends in the future."""
    if not retention.running(now_ms):
        raise InvalidArgument("the retain-until date must be in the future")


def check_retention_change(old: Retention | None, new: Retention | None, now_ms: int, *, bypass: bool) -> None:
    """ObjectLocked unless a version's retention may go from `old` to `new` (None: none) now: a
    running retention may be kept or lengthened in its mode; anything else (shortened, removed, its
    mode changed) needs a GOVERNANCE retention and the bypass."""
    if new is not None:
        check_until(new, now_ms)
    if old is None or not old.running(now_ms):
        return
    if new is not None and new.mode == old.mode and new.until_ms >= old.until_ms:
        return
    if old.mode == GOVERNANCE and bypass:
        return
    raise ObjectLocked(f"the version is retained in {old.mode} mode until {old.until_ms} ms since the epoch: "
                       "its retention may be lengthened in its mode, not shortened, removed or changed"
                       + ("" if old.mode == COMPLIANCE else " (bypassing GOVERNANCE needs a key for all the buckets)"))


def check_replacement(held: Mapping[str, str], deleted: bool, new: Mapping[str, str], now_ms: int) -> None:
    """What an index replica checks before a newer entry replaces a version it holds (`held`: its
    attributes): not a removal (`deleted`) under a legal hold or a running COMPLIANCE retention,
    nor a COMPLIANCE retention weakened (another mode, an earlier date, none), whoever sends it."""
    retention = retention_of(held)
    compliant = retention is not None and retention.mode == COMPLIANCE and retention.running(now_ms)
    if deleted and keeps(held, now_ms):
        raise ObjectLocked("this replica holds the version under a legal hold or a COMPLIANCE retention")
    if compliant and retention is not None:
        kept = retention_of(new)
        if kept is None or kept.mode != COMPLIANCE or kept.until_ms < retention.until_ms:
            raise ObjectLocked("this replica holds the version under a COMPLIANCE retention: it only lengthens")


def keeps(held: Mapping[str, str], now_ms: int) -> bool:
    """Whether every replica keeps this version from removal (a legal hold or a running COMPLIANCE
    retention): what `check_replacement` refuses to remove."""
    retention = retention_of(held)
    return legal_hold_of(held) or (retention is not None and retention.mode == COMPLIANCE
                                   and retention.running(now_ms))


def check_requested(attributes: Mapping[str, str], config: LockConfig | None, now_ms: int) -> None:
    """A new version's own retention and legal hold need a lock-enabled bucket (LockNotEnabled),
    and its retention a date in the future."""
    if config is None and any(name in attributes for name in LOCK_ATTRIBUTES):
        raise LockNotEnabled("the bucket has no object lock configuration: a version cannot be retained or held in it")
    if (retention := retention_of(attributes)) is not None:
        check_until(retention, now_ms)


def with_default(attributes: Mapping[str, str], config: LockConfig | None, now_ms: int) -> dict[str, str]:
    """A new version's attributes, with the bucket's default retention unless it has one of its own."""
    result = dict(attributes)
    if config is not None and RETENTION not in result and (default := config.default_retention(now_ms)):
        result[RETENTION] = default.encode()
    return result
