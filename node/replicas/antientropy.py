"""Anti-entropy's types and pure rules: what a group is, what to pull, what to push, which
tombstones may go, and what a round reports.

Kept apart from the I/O in `repair.py` so the rules can be checked exhaustively with property
tests: these few lines decide whether a replica converges, and whether a deleted object can come
back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import blake3

from maillage.storage import BucketRecord, Manifest

_K = TypeVar("_K", bound=Hashable)

__all__ = ["SyncGroup", "IndexEntry", "listing_digest", "Plan", "Progress",
           "chunks_missing", "entries_to_pull", "entries_to_push", "short_of_copies", "droppable_tombstones"]


@dataclass(frozen=True, order=True)
class SyncGroup:
    """What one replica set keeps identical: the chunks a policy places in one partition, or the
    index (manifests and tombstones) of one bucket generation: a name deleted and created again
    is another group, so its owners never exchange the old generation's keys."""
    policy: str
    partition: int = 0
    bucket: str = ""
    generation: str = ""

    @property
    def is_index(self) -> bool:
        return bool(self.bucket)


@dataclass(frozen=True, order=True)
class IndexEntry:
    key: str
    version: int
    writer: str
    deleted: bool

    @classmethod
    def of(cls, m: Manifest) -> IndexEntry:
        return cls(m.key, m.version, m.writer, m.deleted)

    @property
    def order(self) -> tuple[int, str]:
        return self.version, self.writer


def listing_digest(items: Iterable[bytes | IndexEntry]) -> bytes:
    """BLAKE3 over a sorted listing: two replicas agree iff their digests do."""
    h = blake3.blake3()
    for item in items:
        if isinstance(item, IndexEntry):
            item = b"%s\x00%d\x00%s\x00%d" % (item.key.encode(), item.version, item.writer.encode(), item.deleted)
        h.update(len(item).to_bytes(4, "big") + item)
    return h.digest()


@dataclass(frozen=True)
class Plan:
    """One round's work for one node."""
    owned: dict[SyncGroup, tuple[str, ...]]     # groups this node owns -> all owners
    foreign: dict[SyncGroup, tuple[str, ...]]   # groups it holds data of without owning them
    buckets: dict[str, BucketRecord]           # this node's live record of each bucket, by name


@dataclass
class Progress:
    """What repair has done, for `maillage status` and `maillage repair --wait`."""
    running: bool = False
    rounds_completed: int = 0
    groups_total: int = 0
    groups_done: int = 0
    groups_behind: int = 0
    items_copied: int = 0
    bytes_copied: int = 0
    handoff_items: int = 0
    tombstones_removed: int = 0
    round_started: float = 0.0  # monotonic seconds
    round_bytes: int = 0
    last_round_finished_ms: int = 0
    _behind_now: set[SyncGroup] = field(default_factory=set)

    def rate(self, now: float) -> float:
        """Bytes/s copied this round, at monotonic time `now`."""
        elapsed = now - self.round_started
        return self.round_bytes / elapsed if self.running and elapsed > 0 else 0.0

    def eta(self, now: float) -> float:
        if not self.running or self.groups_done == 0:
            return 0.0
        elapsed = now - self.round_started
        return elapsed / self.groups_done * (self.groups_total - self.groups_done)


def chunks_missing(source: Iterable[bytes], target: Iterable[bytes]) -> list[bytes]:
    """Chunks `source` holds that `target` lacks, sorted (chunks never change once named)."""
    return sorted(set(source) - set(target))


def entries_to_pull(theirs: Sequence[IndexEntry], ours: Sequence[IndexEntry],
                    expired: Callable[[IndexEntry], bool]) -> list[IndexEntry]:
    """Index entries of a peer that beat ours (last writer wins on (version, writer)). A peer's
    expired tombstone for a key we do not have is skipped: the deletion is already complete
    here, and pulling it back would undo the expiry on every round."""
    have = {e.key: e.order for e in ours}
    out = []
    for entry in theirs:
        current = have.get(entry.key)
        if current is not None and current >= entry.order:
            continue
        if current is None and entry.deleted and expired(entry):
            continue
        out.append(entry)
    return out


def entries_to_push(ours: Sequence[IndexEntry], theirs: Sequence[IndexEntry]) -> list[IndexEntry]:
    """Our entries an owner lacks or holds older (hand-back)."""
    have = {e.key: e.order for e in theirs}
    return [e for e in ours if have.get(e.key, (-1, "")) < e.order]


def stale_hints(ours: Sequence[IndexEntry], listings: Iterable[Sequence[IndexEntry]],
                expired: Callable[[IndexEntry], bool]) -> set[str]:
    """Keys of live index entries a stand-in holds that are older than the tombstone grace and that
    no owner that answered holds at any version. Such an entry is not handed back: the key was most
    likely deleted since and the tombstone expired on the owners (pushing it would bring the object
    back), unless every owner lost it, which no rule here can tell apart. (A tombstone goes back as
    usual: it can only delete.)"""
    held = {e.key for listing in listings for e in listing}
    return {e.key for e in ours if not e.deleted and e.key not in held and expired(e)}


def short_of_copies(ours: Iterable[_K], wanted: Mapping[str, Collection[_K]], replicas: int,
                    also_held: int = 0) -> set[_K]:
    """Items held here (a non-owner) that fewer than `replicas` nodes hold, counting this copy, each
    owner that answered without wanting it (an owner that did not answer holds nothing, to be safe)
    and `also_held` other nodes known to hold every item (fellow owners before a layout change).
    Handing these back is urgent; the rest is at R already and may wait (energy)."""
    wants = Counter(item for items in wanted.values() for item in set(items))
    return {item for item in ours if len(wanted) - wants[item] + 1 + also_held < replicas}


def droppable_tombstones(expired: Sequence[IndexEntry],
                         others: Sequence[Mapping[str, IndexEntry]]) -> list[IndexEntry]:
    """Expired tombstones every other owner holds identically or not at all. An owner holding
    anything else (an older live version, say) would bring the object back once the tombstone
    is gone, so such a tombstone stays until that owner has caught up."""
    return [e for e in expired if all(view.get(e.key) in (None, e) for view in others)]
