"""`Policy.within`: a policy is within another when it allows no location the other does not.
It decides whether a server-side copy may go from one bucket into another (issue 14)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from maillage.placement import Policy

LABELS = st.sampled_from(("eu", "fr", "de", "it", "idf", "bayern", "a", "b"))
locations = st.lists(LABELS, min_size=1, max_size=4).map(tuple)
allows = st.lists(locations, min_size=1, max_size=4, unique=True).map(tuple)


def policy(allow: tuple[tuple[str, ...], ...], name: str = "p") -> Policy:
    return Policy(name=name, allow=allow)


@given(allows, allows, st.lists(locations, max_size=20))
def test_within_means_every_location_allowed_by_one_is_allowed_by_the_other(a, b, probes):
    narrow, wide = policy(a, "a"), policy(b, "b")
    if narrow.within(wide):
        # every location the narrow policy allows (its prefixes and anything under them, plus
        # random probes) is allowed by the wide one
        for loc in list(a) + [p + ("x",) for p in a] + probes:
            if narrow.allows(loc):
                assert wide.allows(loc), (a, b, loc)
    else:
        # there is a witness: a location allowed by the narrow one and not by the wide one
        assert any(narrow.allows(p) and not wide.allows(p) for p in a)


@given(allows, allows, allows)
def test_within_is_reflexive_and_transitive(a, b, c):
    pa, pb, pc = policy(a, "a"), policy(b, "b"), policy(c, "c")
    assert pa.within(pa)
    if pa.within(pb) and pb.within(pc):
        assert pa.within(pc)


@given(allows, allows)
def test_replicas_and_spread_do_not_matter(a, b):
    assert Policy("x", a, replicas=3, spread=1).within(Policy("y", b)) == policy(a).within(policy(b))


def test_examples():
    fr, eu = policy((("eu", "fr"),)), policy((("eu",),))
    fr_de = policy((("eu", "fr"), ("eu", "de")))
    assert fr.within(eu) and not eu.within(fr)
    assert fr.within(fr_de) and not fr_de.within(fr) and fr_de.within(eu)
    assert not policy((("eu", "fra"),)).within(fr)  # label-wise, not string prefixes
    assert policy((("eu", "fr", "idf"), ("eu", "de", "bayern"))).within(fr_de)
