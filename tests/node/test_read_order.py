"""Which copy of a chunk a coordinator reads first (`read_order`): up, own, near, green, placement."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from maillage.node.data.read_order import ENERGY_RANK, read_order

PLACES = {"me": ("eu", "fr", "idf"), "paris-2": ("eu", "fr", "idf"), "lyon": ("eu", "fr", "ara"),
          "nantes": ("eu", "fr", "pdl"), "munich": ("eu", "de", "by")}


def order(candidates, *, down=(), energy=None):
    return read_order(candidates, local="me", location_of=PLACES.__getitem__, is_up=lambda n: n not in down,
                      energy_of=lambda n: (energy or {}).get(n, "unknown"))


def test_own_copy_first_then_the_nearest_then_placement_order():
    assert order(["munich", "lyon", "me"]) == ["me", "lyon", "munich"]
    assert order(["munich", "lyon", "paris-2"]) == ["paris-2", "lyon", "munich"]
    assert order(["nantes", "lyon"]) == ["nantes", "lyon"]          # equally near, nothing known: as placed


def test_among_equally_near_copies_the_site_with_energy_to_spare_is_read_first():
    assert order(["nantes", "lyon"], energy={"nantes": "grey", "lyon": "green"}) == ["lyon", "nantes"]
    assert order(["nantes", "lyon"], energy={"nantes": "shed"}) == ["lyon", "nantes"]
    # energy never beats distance: a green site farther away is read after a grey one nearer
    assert order(["munich", "paris-2"], energy={"munich": "green", "paris-2": "grey"}) == ["paris-2", "munich"]


def test_a_node_believed_down_is_asked_last_even_our_own_copy():
    assert order(["me", "lyon", "munich"], down={"lyon"}) == ["me", "munich", "lyon"]
    assert order(["me", "lyon"], down={"me"}) == ["lyon", "me"]


@given(st.permutations(sorted(PLACES)), st.sets(st.sampled_from(sorted(PLACES))),
       st.dictionaries(st.sampled_from(sorted(PLACES)), st.sampled_from(sorted(ENERGY_RANK))))
def test_every_copy_is_asked_exactly_once_up_before_down(candidates, down, energy):
    got = order(candidates, down=down, energy=energy)
    assert sorted(got) == sorted(candidates)
    ups = [n not in down for n in got]
    assert ups == sorted(ups, reverse=True)
