"""Random sequences of put/get/delete/list through the SDK against a real mesh, checked against a dict."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from maillage.client import NoSuchKey
from maillage.testing.examples import examples

KEYS = st.sampled_from(["a", "a/b", "a/c", "b", "b/x/y", "café", "z" * 40])
# Large bodies come from a drawn seed and size, not drawn byte by byte (hypothesis caps input size).
LARGE = st.builds(lambda seed, size: random.Random(seed).randbytes(size),
                  st.integers(0, 2**32), st.integers(70_000, 300_000))
BODIES = st.one_of(st.binary(max_size=300), LARGE)


@pytest.fixture(scope="module")
def stateful_bucket(client):
    client.create_bucket("stateful", "france-only")
    return "stateful"


def test_sdk_matches_a_dict_model(client, stateful_bucket):
    class MeshVersusDict(RuleBasedStateMachine):
        keys = Bundle("keys")

        @initialize()
        def empty_bucket(self):
            for summary in list(client.list_objects(stateful_bucket)):
                client.delete_object(stateful_bucket, summary.key)
            self.model: dict[str, bytes] = {}

        @rule(target=keys, key=KEYS, body=BODIES)
        def put(self, key, body):
            client.put_object(stateful_bucket, key, body)
            self.model[key] = body
            return key

        @rule(key=keys)
        def get(self, key):
            if key in self.model:
                assert client.get_object(stateful_bucket, key).read() == self.model[key]
            else:
                with pytest.raises(NoSuchKey):
                    client.get_object(stateful_bucket, key)

        @rule(key=keys)
        def delete(self, key):
            client.delete_object(stateful_bucket, key)
            self.model.pop(key, None)

        @rule(prefix=st.sampled_from(["", "a", "a/", "b/"]))
        def list_prefix(self, prefix):
            listed = [o.key for o in client.list_objects(stateful_bucket, prefix=prefix, page_size=2)]
            assert listed == sorted(k for k in self.model if k.startswith(prefix))

        @invariant()
        def sizes_match(self):
            if hasattr(self, "model"):
                for summary in client.list_objects(stateful_bucket):
                    assert summary.size == len(self.model[summary.key])

    MeshVersusDict.TestCase.settings = settings(
        max_examples=examples(0.08), stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    MeshVersusDict.TestCase().runTest()
