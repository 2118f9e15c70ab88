"""A node's co-owners (the nodes membership tells first when it dies): exactly the nodes sharing one
of its partitions under some policy, symmetric, none through a policy that cannot be placed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.cluster.coowners import CoOwners, co_owners
from maillage.placement import Layout, PlacementError, partition_table

from .conftest import SITES, make_layout

EXTRA = (("nantes-1", "eu/fr/pdl"), ("berlin-1", "eu/de/berlin"), ("bonn-1", "eu/de/nrw"),
         ("rome-1", "eu/it/lazio"))


def _shared(layout: Layout, a: str, b: str) -> bool:
    """Brute force: do `a` and `b` hold a replica of one partition under one policy?"""
    for policy in layout.policies:
        try:
            table = partition_table(layout, policy.name)
        except PlacementError:
            continue
        if any({a, b} <= set(table.replicas(p)) for p in range(1 << layout.partition_bits)):
            return True
    return False


@settings(max_examples=25, deadline=None)
@given(extra=st.lists(st.sampled_from(EXTRA), unique=True, max_size=len(EXTRA)))
def test_co_owners_are_exactly_the_nodes_sharing_a_partition_and_symmetric(extra) -> None:  # type: ignore[no-untyped-def]
    layout = make_layout(SITES + tuple(extra))
    ids = [n.id for n in layout.nodes]
    of = {node_id: co_owners(layout, node_id) for node_id in ids}
    for a in ids:
        assert a not in of[a]
        for b in ids:
            if a != b:
                assert (b in of[a]) == _shared(layout, a, b) == (a in of[b])


def test_an_unplaceable_policy_gives_none_and_a_stranger_has_none() -> None:
    layout = make_layout()   # germany-only has one German site for R=2: no table
    assert "munich-1" in {n.id for n in layout.nodes}
    germany = partition_table(layout, "eu-wide")   # munich-1's co-owners come from eu-wide alone
    assert co_owners(layout, "munich-1") == {n for p in germany.partitions_of("munich-1")
                                             for n in germany.replicas(p)} - {"munich-1"}
    assert co_owners(layout, "nobody") == frozenset()


def test_the_cache_forgets_an_old_layout() -> None:
    cache = CoOwners()
    small, bigger = make_layout(), make_layout(SITES + EXTRA, version=2)
    assert co_owners(small, "paris-1") != co_owners(bigger, "paris-1")   # else this test shows nothing
    assert cache.of(small, "paris-1") == co_owners(small, "paris-1")
    assert cache.of(bigger, "paris-1") == co_owners(bigger, "paris-1")
