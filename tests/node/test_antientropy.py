"""Property and stateful tests of the anti-entropy rules: replicas converge to last-writer-wins,
hand-back loses nothing, and expiring tombstones never brings a deleted object back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from maillage.node.replicas.antientropy import (
    IndexEntry,
    chunks_missing,
    droppable_tombstones,
    entries_to_pull,
    entries_to_push,
    listing_digest,
)
from maillage.testing.examples import examples

KEYS = st.sampled_from(["a", "b", "c", "d"])
# (version, writer) names one write, so it fixes whether that write was a delete.
ENTRIES = st.builds(lambda k, v, w: IndexEntry(k, v, w, (v * 7 + len(w) + ord(k)) % 3 == 0),
                    KEYS, st.integers(1, 6), st.sampled_from(["n1", "n2"]))


def index(entries) -> dict[str, IndexEntry]:
    """A replica's index: one entry per key, the last writer winning (as MetaStore does)."""
    out: dict[str, IndexEntry] = {}
    for e in entries:
        if e.key not in out or e.order > out[e.key].order:
            out[e.key] = e
    return out


def pull(into: dict, source: dict, expired=lambda e: False) -> None:
    for e in entries_to_pull(sorted(source.values()), sorted(into.values()), expired):
        into[e.key] = e


@settings(max_examples=examples(2), deadline=None)
@given(st.lists(st.lists(ENTRIES, max_size=8), min_size=2, max_size=4))
def test_pull_rounds_converge_to_last_writer_wins(replica_writes):
    replicas = [index(w) for w in replica_writes]
    expected = index([e for w in replica_writes for e in w])
    for _ in range(2):  # every owner pulls from every other owner, two rounds at most
        for a in replicas:
            for b in replicas:
                if a is not b:
                    pull(a, b)
    for r in replicas:
        assert r == expected
    digests = {listing_digest(sorted(r.values())) for r in replicas}
    assert len(digests) == 1


@given(st.lists(ENTRIES, max_size=8), st.lists(ENTRIES, max_size=8))
def test_hand_back_pushes_exactly_what_the_owner_lacks_or_has_older(ours, theirs):
    mine, owner = index(ours), index(theirs)
    for e in entries_to_push(sorted(mine.values()), sorted(owner.values())):
        owner[e.key] = e
    for key, e in mine.items():
        assert owner[key].order >= e.order  # after pushing, dropping ours loses nothing


DIGESTS = st.sets(st.binary(min_size=32, max_size=32), max_size=10)


@given(DIGESTS, DIGESTS)
def test_chunks_missing_is_the_sorted_difference(a, b):
    missing = chunks_missing(a, b)
    assert missing == sorted(missing) and set(missing) == a - b


@given(st.lists(ENTRIES, max_size=8), st.lists(st.lists(ENTRIES, max_size=8), max_size=3))
def test_a_tombstone_is_droppable_only_if_no_other_owner_holds_something_else(ours, others):
    mine = index(ours)
    views = [index(o) for o in others]
    expired = [e for e in mine.values() if e.deleted]
    for e in droppable_tombstones(expired, views):
        assert all(v.get(e.key) in (None, e) for v in views)


class ExpiryMachine(RuleBasedStateMachine):
    """Three owners of one bucket index; writes reach some of them, they sync pairwise, and a
    tombstone is expired only by the rule. A read takes the newest entry among the owners, so
    a key whose last acknowledged write was a delete must never read back live."""

    def __init__(self) -> None:
        super().__init__()
        self.owners = [dict(), dict(), dict()]
        self.version = 0
        self.truth: dict[str, IndexEntry] = {}
        self.expired_keys: set[str] = set()

    def _write(self, key: str, deleted: bool, reach: list[int]) -> None:
        self.version += 1
        e = IndexEntry(key, self.version, "n1", deleted)
        for i in reach:
            self.owners[i][key] = e
        self.truth[key] = e

    @rule(key=KEYS, deleted=st.booleans(), reach=st.lists(st.integers(0, 2), min_size=2, max_size=3, unique=True))
    def write(self, key, deleted, reach):  # acknowledged: it reached at least two owners
        self._write(key, deleted, reach)

    @rule(a=st.integers(0, 2), b=st.integers(0, 2))
    def sync(self, a, b):
        if a != b:
            pull(self.owners[a], self.owners[b], expired=lambda e: e.key in self.expired_keys)

    @rule(key=KEYS)
    def grace_passes(self, key):
        if self.truth.get(key) is not None and self.truth[key].deleted:
            self.expired_keys.add(key)

    @precondition(lambda self: self.expired_keys)
    @rule(i=st.integers(0, 2))
    def expire(self, i):
        mine = self.owners[i]
        expired = [e for e in mine.values() if e.deleted and e.key in self.expired_keys]
        others = [o for j, o in enumerate(self.owners) if j != i]
        for e in droppable_tombstones(expired, others):
            del mine[e.key]

    @invariant()
    def deleted_objects_never_come_back(self):
        for key, last in self.truth.items():
            if last.deleted:
                present = [o[key] for o in self.owners if key in o]
                newest = max(present, key=lambda e: e.order, default=None)
                assert newest is None or newest.deleted or newest.version > last.version, (key, newest, last)


ExpiryMachine.TestCase.settings = settings(max_examples=examples(0.6), stateful_step_count=40, deadline=None)
TestExpiry = ExpiryMachine.TestCase
