"""Lifecycle (S3's), written once for both doors: a bucket's rules, what they decide for a key's
versions at a given time, and one sweep of a bucket applying them.

* **The configuration** is a bucket setting (`bucket_settings.py`, name `lifecycle`), stored as
  canonical JSON, so it rests, replicates and is repaired inside the bucket's policy.
* **A rule** (at most `MAX_RULES`) is Enabled or Disabled and has a filter (a key prefix, tags
  the version must all carry, a size above and/or below) and actions: expire the current version
  (`expiration_days` after its write, or from `expiration_date_ms` on), expire noncurrent versions
  (`noncurrent_days` after they became noncurrent, keeping the `newer_noncurrent` newest), remove
  a delete marker left alone (`expired_object_delete_marker`), abort multipart uploads begun
  `abort_multipart_days` ago (prefix filter only, as S3), move the current version to a cold
  storage class `transition_days` after its write (`transition_class`, one of
  `proto.storage_class.COLD_CLASSES`: its chunks go to the bucket policy's cold policy, e.g. every
  copy on the backbone, inside the same territory; versions below `TRANSITION_MIN_SIZE` stay, as
  AWS leaves objects under 128 KiB). Days are counted exactly from the
  version's write (its Last-Modified), not rounded to the next midnight as AWS does.
* **A sweep** (`Lifecycle.sweep`, run by `cluster/lifecycle_loop.py` on the bucket's leading
  record owner) walks the bucket's versions once, in key order, and acts through `Versions`:
  expiring a current version is a DELETE (a delete marker on a versioned bucket), expiring a
  noncurrent one removes it by version id, which object lock refuses while a retention or legal
  hold keeps it (counted, left for a later sweep); a transition copies the version's chunks to
  the cold policy then restates its manifest, unless a write made another version current
  meanwhile (the copies left are collected by GC). Every action waits for a turn of the energy
  job (a transition, of the tier-move job, with its bytes: skipped for this sweep while that job
  is deferred) and the sweep stops between two keys on a shed order.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from maillage.node import validation
from maillage.node.data.coordinator import tags_of, written_at
from maillage.node.data.multipart import MultipartUploads
from maillage.node.data.versions import Version, Versions
from maillage.node.errors import InvalidArgument
from maillage.node.object_lock import ObjectLocked
from maillage.proto.storage_class import COLD_CLASSES, STANDARD, storage_class
from maillage.storage import BucketRecord

__all__ = ["Filter", "Rule", "LifecycleConfig", "Lifecycle", "SweepCounts", "MAX_RULES", "DAY_MS",
           "current_expires", "current_transition", "noncurrent_to_remove", "TRANSITION_MIN_SIZE"]

MAX_RULES = 100
DAY_MS = 86_400_000
_PAGE = 500
TRANSITION_MIN_SIZE = 128 * 1024  # AWS's default: smaller objects are not transitioned (ours are inline)


@dataclass(frozen=True)
class Filter:
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()    # every one must be on the version
    size_greater_than: int | None = None      # bytes, strictly
    size_less_than: int | None = None

    def matches(self, key: str, size: int, tags: Mapping[str, str]) -> bool:
        return (key.startswith(self.prefix)
                and all(tags.get(k) == v for k, v in self.tags)
                and (self.size_greater_than is None or size > self.size_greater_than)
                and (self.size_less_than is None or size < self.size_less_than))


@dataclass(frozen=True)
class Rule:
    id: str = ""
    enabled: bool = True
    filter: Filter = field(default_factory=Filter)
    expiration_days: int | None = None
    expiration_date_ms: int | None = None
    expired_object_delete_marker: bool = False
    noncurrent_days: int | None = None
    newer_noncurrent: int = 0
    abort_multipart_days: int | None = None
    transition_days: int | None = None
    transition_class: str = ""
    rule_prefix: bool = False  # the prefix was given in the Rule (S3's older form), not a Filter: kept for its answer

    def __post_init__(self) -> None:
        if len(self.id) > 255:
            raise InvalidArgument("a lifecycle rule's ID is at most 255 characters")
        for name in ("expiration_days", "noncurrent_days", "abort_multipart_days", "transition_days"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 100_000:
                raise InvalidArgument(f"a lifecycle rule's {name} is a whole number of days, 1 to 100000")
        if self.expiration_days is not None and self.expiration_date_ms is not None:
            raise InvalidArgument("a lifecycle rule's Expiration gives Days or a Date, not both")
        if not 0 <= self.newer_noncurrent <= 100:
            raise InvalidArgument("NewerNoncurrentVersions is 0 to 100")
        if self.newer_noncurrent and self.noncurrent_days is None:
            raise InvalidArgument("NewerNoncurrentVersions needs NoncurrentDays")
        if self.abort_multipart_days is not None and (self.filter.tags or self.filter.size_greater_than is not None
                                                      or self.filter.size_less_than is not None):
            raise InvalidArgument("AbortIncompleteMultipartUpload takes a prefix filter only (no tags or sizes)")
        if (self.transition_days is None) != (not self.transition_class):
            raise InvalidArgument("a lifecycle Transition gives Days and a StorageClass")
        if self.transition_class and self.transition_class not in COLD_CLASSES:
            raise InvalidArgument(f"a lifecycle Transition's StorageClass is one of {', '.join(COLD_CLASSES)} "
                                  f"(read at once, from the policy's cold copies), not {self.transition_class!r}")
        if (self.transition_days is not None and self.expiration_days is not None
                and self.expiration_days <= self.transition_days):
            raise InvalidArgument("a lifecycle rule's Expiration Days must be greater than its Transition Days")
        if not (self.expiration_days is not None or self.expiration_date_ms is not None
                or self.expired_object_delete_marker or self.noncurrent_days is not None
                or self.abort_multipart_days is not None or self.transition_days is not None):
            raise InvalidArgument("a lifecycle rule needs at least one action")


@dataclass(frozen=True)
class LifecycleConfig:
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.rules) <= MAX_RULES:
            raise InvalidArgument(f"a lifecycle configuration has 1 to {MAX_RULES} rules")
        ids = [r.id for r in self.rules if r.id]
        if len(ids) != len(set(ids)):
            raise InvalidArgument("two lifecycle rules have the same ID")

    def encode(self) -> str:
        return json.dumps([asdict(r) for r in self.rules], sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, stored: str) -> LifecycleConfig | None:
        """The configuration stored ("" or damaged: None, nothing is expired by a rule misread)."""
        if not stored:
            return None
        try:
            rules = []
            for raw in json.loads(stored):
                raw["filter"] = Filter(**{**raw["filter"], "tags": tuple(map(tuple, raw["filter"]["tags"]))})
                rules.append(Rule(**raw))
            return cls(tuple(rules))
        except (ValueError, TypeError, KeyError, InvalidArgument):
            return None

    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]


def _written_ms(version: Version) -> int:
    return int(written_at(version.manifest) * 1000)


def current_expires(rules: Sequence[Rule], version: Version, now_ms: int) -> bool:
    """Whether an enabled rule expires this current version (not a marker) now."""
    m = version.manifest
    tags = tags_of(dict(m.attributes))
    for rule in rules:
        if not rule.filter.matches(m.key, m.size, tags):
            continue
        if rule.expiration_date_ms is not None and now_ms >= rule.expiration_date_ms:
            return True
        if rule.expiration_days is not None and now_ms >= _written_ms(version) + rule.expiration_days * DAY_MS:
            return True
    return False


def current_transition(rules: Sequence[Rule], version: Version, now_ms: int) -> str | None:
    """The storage class an enabled rule moves this current version (not a marker, still STANDARD,
    of at least `TRANSITION_MIN_SIZE`) to now; None when none does."""
    m = version.manifest
    attributes = dict(m.attributes)
    if version.marker or m.deleted or m.size < TRANSITION_MIN_SIZE or storage_class(attributes) != STANDARD:
        return None
    tags = tags_of(attributes)
    for rule in rules:
        if (rule.transition_days is not None and rule.filter.matches(m.key, m.size, tags)
                and now_ms >= _written_ms(version) + rule.transition_days * DAY_MS):
            return rule.transition_class
    return None


def noncurrent_to_remove(rules: Sequence[Rule], versions: Sequence[Version], now_ms: int) -> list[Version]:
    """The noncurrent versions of one key (`versions`, newest first, the current one first) that an
    enabled rule removes now: noncurrent for `noncurrent_days` (since the next newer version was
    written) and not among the `newer_noncurrent` newest noncurrent ones."""
    gone = []
    for i in range(1, len(versions)):
        v = versions[i]
        since = _written_ms(versions[i - 1])
        m = v.manifest
        tags = tags_of(dict(m.attributes))
        for rule in rules:
            if (rule.noncurrent_days is not None and rule.filter.matches(m.key, m.size, tags)
                    and now_ms >= since + rule.noncurrent_days * DAY_MS and i - 1 >= rule.newer_noncurrent):
                gone.append(v)
                break
    return gone


def lone_marker_expires(rules: Sequence[Rule], versions: Sequence[Version]) -> bool:
    """Whether the key's versions are one delete marker alone that a rule removes."""
    return (len(versions) == 1 and versions[0].marker
            and any(r.expired_object_delete_marker and versions[0].manifest.key.startswith(r.filter.prefix)
                    for r in rules))


@dataclass
class SweepCounts:
    expired: int = 0             # current versions expired (a delete marker, or a tombstone)
    noncurrent_removed: int = 0
    markers_removed: int = 0
    uploads_aborted: int = 0
    kept_by_lock: int = 0        # removals object lock refused (retried by a later sweep)
    transitioned: int = 0        # current versions moved to a cold storage class

    def add(self, other: SweepCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


class Lifecycle:
    """Applies a bucket's lifecycle rules through `Versions` and the multipart uploads; holds no state."""

    def __init__(self, versions: Versions, uploads: MultipartUploads, now_ms: Callable[[], int]) -> None:
        self._versions = versions
        self._uploads = uploads
        self._now_ms = now_ms

    async def sweep(self, bucket: BucketRecord, config: LifecycleConfig, turn: Callable[[], Awaitable[bool]],
                    move_turn: Callable[[int], Awaitable[bool]] | None = None) -> SweepCounts:
        """One pass over the bucket; `turn()` waits for the energy job's turn before each action
        and returns False to stop (a shed order): the next sweep goes on from the start.
        `move_turn(bytes)` is a transition's (default: `turn`): False leaves that version for a
        later sweep."""
        move_turn = move_turn or (lambda _: turn())
        rules = config.enabled()
        counts = SweepCounts()
        if not rules:
            return counts
        now = self._now_ms()
        for prefix, days in sorted({(r.filter.prefix, r.abort_multipart_days) for r in rules
                                    if r.abort_multipart_days is not None}):
            if not await turn():
                return counts
            counts.uploads_aborted += await self._uploads.expire_uploads(bucket, days * DAY_MS / 1000, prefix=prefix)
        async for versions in self._keys(bucket):
            if not await self._apply(bucket, rules, versions, now, counts, turn, move_turn):
                return counts
        return counts

    async def _apply(self, bucket: BucketRecord, rules: Sequence[Rule], versions: list[Version], now: int,
                     counts: SweepCounts, turn: Callable[[], Awaitable[bool]],
                     move_turn: Callable[[int], Awaitable[bool]]) -> bool:
        key = versions[0].manifest.key
        remaining = list(versions)
        if versions[0].latest and not versions[0].marker and current_expires(rules, versions[0], now):
            if not await turn():
                return False
            await self._versions.delete(bucket, key)
            counts.expired += 1
        elif versions[0].latest and (cold := current_transition(rules, versions[0], now)) is not None:
            if await move_turn(versions[0].manifest.size):
                counts.transitioned += await self._versions.transition(bucket, versions[0].manifest, cold)
        for v in noncurrent_to_remove(rules, versions, now):
            if not await turn():
                return False
            if await self._remove(bucket, key, v, counts):
                counts.noncurrent_removed += 1
                remaining.remove(v)
        if lone_marker_expires(rules, remaining):
            if not await turn():
                return False
            if await self._remove(bucket, key, remaining[0], counts):
                counts.markers_removed += 1
        return True

    async def _remove(self, bucket: BucketRecord, key: str, version: Version, counts: SweepCounts) -> bool:
        try:
            await self._versions.delete(bucket, key, version.version_id)
        except ObjectLocked:
            counts.kept_by_lock += 1
            return False
        return True

    async def _keys(self, bucket: BucketRecord) -> AsyncIterator[list[Version]]:
        """Each key's versions, newest first (the current one first), in key order, page by page."""
        key_marker = vid_marker = ""
        group: list[Version] = []
        while True:
            page = await self._versions.listing(bucket, key_marker=key_marker, version_id_marker=vid_marker,
                                                max_keys=_PAGE)
            for v in page.versions:
                if v.manifest.key.startswith(validation.RESERVED_PREFIX):
                    continue
                if group and group[0].manifest.key != v.manifest.key:
                    yield group
                    group = []
                group.append(v)
            if not page.is_truncated:
                break
            key_marker, vid_marker = page.next_key_marker, page.next_version_id_marker
        if group:
            yield group
