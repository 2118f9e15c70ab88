"""A hypothesis state machine comparing bucket versioning (`node/data/versions.py`, over an
in-process mesh, coordinators taken at random) with a tiny reference model of S3 versioning: puts,
deletes (markers), deletes of a given version, Enabled and Suspended, the null version. After every
step the listing of versions, the current object and every version read by id match the model."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from maillage.node.data.versions import ENABLED, SUSPENDED, DeleteMarker, NoSuchVersion, version_id
from maillage.node.errors import NoSuchKey
from maillage.testing.examples import examples
from maillage.testing.inmemory import InMemoryMesh

from .conftest import FRENCH, TIMINGS, make_layout
from .test_versions_inprocess import Bucket

KEYS = st.sampled_from(["a", "b/c", "b/d"])
NODES = sorted(FRENCH | {"munich-1"})  # munich-1 coordinates from outside the policy
VALUES = st.one_of(st.binary(max_size=20), st.builds(lambda n, b: bytes([b]) * n, st.integers(1025, 2100),
                                                      st.integers(0, 2)))
MISSING = "00000000000000000000beef"  # well-formed, never issued


class VersionsMachine(RuleBasedStateMachine):
    """The model: the bucket's state and, per key, its versions newest first as (version id, bytes or
    None for a delete marker)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="maillage-versions-"))
        self.mesh = InMemoryMesh(make_layout(), self.root, timings=TIMINGS)
        self.loop = asyncio.new_event_loop()
        self.state = ""
        self.model: dict[str, list[tuple[str, bytes | None]]] = {}
        self.run(self.mesh.create_bucket("docs", "france-only"))

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def bucket(self, via: str) -> Bucket:
        return Bucket(self.mesh, "docs", via=via)

    def teardown(self) -> None:
        self.mesh.close()
        self.loop.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _new(self, key: str, vid: str, value: bytes | None) -> None:
        versions = self.model.setdefault(key, [])
        if self.state != ENABLED:  # never versioned or Suspended: the null version is replaced
            versions[:] = [v for v in versions if v[0] != "null"]
        versions.insert(0, (vid, value))

    @rule(key=KEYS, value=VALUES, via=st.sampled_from(NODES))
    def put(self, key, value, via):
        m = self.run(self.bucket(via).put(key, value))
        vid = dict(m.attributes).get("version")
        assert (vid is None) == (self.state == "")
        self._new(key, version_id(m) or "null", value)

    @rule(key=KEYS, via=st.sampled_from(NODES))
    def delete(self, key, via):
        deleted = self.run(self.bucket(via).delete(key))
        if self.state == "":
            assert deleted.version_id is None and not deleted.marker
            self.model.pop(key, None)
            return
        assert deleted.marker and (deleted.version_id == "null") == (self.state == SUSPENDED)
        self._new(key, deleted.version_id, None)

    @rule(key=KEYS, pick=st.integers(0, 5), via=st.sampled_from(NODES))
    def delete_version(self, key, pick, via):
        versions = self.model.get(key, [])
        vid = versions[pick][0] if pick < len(versions) else MISSING
        deleted = self.run(self.bucket(via).delete(key, vid))
        assert deleted.version_id == vid
        if pick < len(versions):
            assert deleted.marker == (versions[pick][1] is None)
            del versions[pick]

    @rule(state=st.sampled_from([ENABLED, SUSPENDED]), via=st.sampled_from(NODES))
    def set_state(self, state, via):
        self.run(self.bucket(via).state(state))
        self.state = state  # every coordinator sees it at once: writes read it from the index replicas

    @invariant()
    def listing_follows_the_model(self):
        expected = [(key, vid, i == 0, value is None)
                    for key in sorted(self.model) for i, (vid, value) in enumerate(self.model[key])]
        assert self.run(self.bucket("lyon-1").all_versions(page=3)) == expected

    @invariant()
    def reads_follow_the_model(self):
        b = self.bucket("toulouse-1")
        for key in ("a", "b/c", "b/d"):
            versions = self.model.get(key, [])
            try:
                current = self.run(b.read(key))
            except DeleteMarker:
                current = "marker"
            except NoSuchKey:
                current = None
            assert current == (None if not versions else "marker" if versions[0][1] is None else versions[0][1])
            for vid, value in versions:
                try:
                    got = self.run(b.read(key, vid))
                except DeleteMarker as exc:
                    assert exc.asked
                    got = None
                assert got == value, (key, vid)
            if self.state:
                try:
                    self.run(b.read(key, MISSING))
                    raise AssertionError("a version never issued was read")
                except NoSuchVersion:
                    pass

    @invariant()
    def nothing_rests_outside_the_policy(self):
        munich = self.mesh.nodes["munich-1"].local
        assert not list(munich.meta.iter_manifests("docs"))
        assert not list(munich.chunks.iter_digests())


VersionsMachine.TestCase.settings = settings(max_examples=examples(0.15), stateful_step_count=25, deadline=None)
TestVersionsModel = VersionsMachine.TestCase


class VersionsWithFailuresMachine(VersionsMachine):
    """The same, with a French node down at times (writes go to stand-ins), back up, and repair
    rounds: versions are index entries, so hand-back and repair keep every one of them."""

    down: str | None = None

    @precondition(lambda self: self.down is None)
    @rule(node=st.sampled_from(sorted(FRENCH)))
    def node_down(self, node):
        self.mesh.down(node)
        self.down = node

    @precondition(lambda self: self.down is not None)
    @rule(rounds=st.integers(0, 2))
    def node_up(self, rounds):
        self.mesh.up(self.down)
        self.down = None
        self.run(self.mesh.gossip(3))
        self.run(self.mesh.repair(rounds))

    def bucket(self, via: str) -> Bucket:
        if via == self.down:
            via = next(n for n in NODES if n != self.down)
        return Bucket(self.mesh, "docs", via=via)


VersionsWithFailuresMachine.TestCase.settings = settings(max_examples=examples(0.1), stateful_step_count=25,
                                                         deadline=None)
TestVersionsWithFailures = VersionsWithFailuresMachine.TestCase
