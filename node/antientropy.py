"""The pure rules of anti-entropy: what to pull, what to push, which tombstones may go.

Kept apart from the I/O in `repair.py` so they can be checked exhaustively with property tests:
these few lines decide whether a replica converges, and whether a deleted object can come back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from .replica import IndexEntry

__all__ = ["chunks_missing", "entries_to_pull", "entries_to_push", "droppable_tombstones"]


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


def droppable_tombstones(expired: Sequence[IndexEntry],
                         others: Sequence[Mapping[str, IndexEntry]]) -> list[IndexEntry]:
    """Expired tombstones every other owner holds identically or not at all. An owner holding
    anything else (an older live version, say) would bring the object back once the tombstone
    is gone, so such a tombstone stays until that owner has caught up."""
    return [e for e in expired if all(view.get(e.key) in (None, e) for view in others)]
