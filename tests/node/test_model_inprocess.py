"""A hypothesis state machine over an in-process mesh: puts, deletes, nodes going down and coming
back, and repair rounds, checked against a dict model.

Invariants: an acknowledged write reads back (last writer wins) from any node that is up, as long as
at most R-1 = 1 node is down; a deleted key never reads back; nothing of the France-only bucket is
ever stored on the German node, and no index entry or chunk rests outside the policy.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from maillage.node.errors import NoSuchKey, QuorumNotReached
from maillage.testing.examples import examples
from maillage.testing.inmemory import InMemoryMesh

from .conftest import FRENCH, TIMINGS, make_layout

KEYS = st.sampled_from(["a", "b", "c", "d/e"])
NODES = sorted(FRENCH | {"munich-1"})
# Small (inline) and chunked (1 KiB chunks) values; a few shared bytes so chunks dedup.
VALUES = st.one_of(st.binary(max_size=40), st.builds(lambda n, b: bytes([b]) * n, st.integers(1025, 3000),
                                                      st.integers(0, 3)))


class MeshMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="maillage-model-"))
        self.mesh = InMemoryMesh(make_layout(), self.root, timings=TIMINGS)
        self.loop = asyncio.new_event_loop()
        self.model: dict[str, bytes | None] = {}
        self.down: str | None = None
        self.run(self.mesh.create_bucket("scans", "france-only"))

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.mesh.close()
        self.loop.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(key=KEYS, value=VALUES, via=st.sampled_from(NODES))
    def put(self, key, value, via):
        if via == self.down:
            return
        try:
            self.run(self.mesh.put("scans", key, value, via=via))
        except QuorumNotReached:
            self.model.pop(key, None)  # not acknowledged: it may or may not have landed somewhere
            return
        self.model[key] = value

    @rule(key=KEYS, via=st.sampled_from(NODES))
    def delete(self, key, via):
        if via == self.down:
            return
        try:
            self.run(self.mesh.delete("scans", key, via=via))
        except QuorumNotReached:
            self.model.pop(key, None)
            return
        self.model[key] = None

    @precondition(lambda self: self.down is None)
    @rule(node=st.sampled_from(NODES))
    def node_down(self, node):
        self.mesh.down(node)
        self.down = node

    @precondition(lambda self: self.down is not None)
    @rule()
    def node_up(self):
        self.mesh.up(self.down)
        self.down = None
        self.run(self.mesh.gossip(3))

    @rule(rounds=st.integers(1, 2))
    def repair(self, rounds):
        self.run(self.mesh.repair(rounds))

    @rule()
    def grace_passes(self):
        """Past the tombstone grace (and the mark-out grace: a node down now is marked out)."""
        self.mesh.advance(TIMINGS.gc_grace + 1)
        self.run(self.mesh.gossip(3))

    @rule()
    def collect_garbage(self):
        self.run(self.mesh.collect_garbage())

    @invariant()
    def reads_follow_the_model(self):
        for key, value in self.model.items():
            for via in self.mesh.up_nodes():
                try:
                    got = self.run(self.mesh.get("scans", key, via=via))
                except NoSuchKey:
                    got = None
                assert got == value, (key, via, self.down)

    @invariant()
    def nothing_rests_outside_the_policy(self):
        munich = self.mesh.nodes["munich-1"].local
        assert munich.meta.get_bucket("scans") is None
        assert not list(munich.meta.iter_manifests("scans"))
        assert not list(munich.chunks.iter_digests())


MeshMachine.TestCase.settings = settings(max_examples=examples(0.15), stateful_step_count=20, deadline=None)
TestMeshModel = MeshMachine.TestCase
