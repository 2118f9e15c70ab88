"""Layout model, TOML codec and validation messages."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement_strategies import TB, layouts

import maillage.placement as placement
from maillage.placement import (
    Layout,
    LayoutError,
    Node,
    NodeState,
    PlacementError,
    Policy,
    Site,
    UnknownNode,
    UnknownPolicy,
    UnknownSite,
    format_layout,
    format_location,
    parse_layout,
    parse_location,
)
from maillage.testing.examples import examples

EXAMPLE = """\
version = 3
partition_bits = 10

[[sites]]
name = "paris-1"
location = "eu/fr/idf"

[[sites]]
name = "toulouse-1"
location = "eu/fr/occitanie"

[[sites]]
name = "berlin-1"
location = "eu/de/be"

[[nodes]]
id = "n1"
site = "paris-1"
address = "127.0.0.1:7001"
capacity = "4TB"

[[nodes]]
id = "n2"
site = "toulouse-1"
address = "127.0.0.1:7002"
capacity = 2000000000000
state = "active"

[[nodes]]
id = "n3"
site = "berlin-1"
address = "127.0.0.1:7003"
capacity = "2TiB"
state = "draining"

[[policies]]
name = "france-only"
allow = ["eu/fr"]
replicas = 2
spread = 3
"""


def test_parse_example():
    layout = parse_layout(EXAMPLE)
    assert layout.version == 3 and layout.partition_bits == 10
    assert layout.node("n1").capacity == 4 * TB
    assert layout.node("n3").capacity == 2 * 2**40
    assert layout.node("n3").state is NodeState.DRAINING
    assert layout.location_of("n2") == ("eu", "fr", "occitanie")
    assert layout.policy("france-only") == Policy("france-only", (("eu", "fr"),), 2, 3)
    assert [n.id for n in layout.eligible_nodes("france-only")] == ["n1", "n2"]


def test_defaults():
    layout = parse_layout('version = 1\n[[policies]]\nname = "x"\nallow = ["eu"]\n')
    assert layout.partition_bits == 10
    assert layout.policy("x").replicas == 2 and layout.policy("x").spread is None
    assert layout.sites == () and layout.nodes == ()


def test_lookups_raise_typed_errors():
    layout = parse_layout(EXAMPLE)
    with pytest.raises(UnknownNode, match="nope"):
        layout.node("nope")
    with pytest.raises(UnknownSite):
        layout.site("nope")
    with pytest.raises(UnknownPolicy):
        layout.policy("nope")
    with pytest.raises(UnknownPolicy):
        layout.eligible_nodes("nope")
    with pytest.raises(UnknownNode):
        layout.location_of("nope")
    for exc in (UnknownNode, UnknownSite, UnknownPolicy, LayoutError, placement.PolicyUnsatisfiable):
        assert issubclass(exc, PlacementError)


def test_eligible_nodes_only_active_and_inside():
    layout = parse_layout(EXAMPLE.replace('state = "active"', 'state = "out"'))
    assert [n.id for n in layout.eligible_nodes("france-only")] == ["n1"]


def test_policy_allows_label_wise():
    p = Policy("p", (("eu", "fr"),))
    assert p.allows(("eu", "fr"))
    assert p.allows(("eu", "fr", "idf"))
    assert not p.allows(("eu", "fra"))
    assert not p.allows(("eu",))
    assert not p.allows(("us", "fr"))
    assert Policy("q", (("eu", "fr"), ("eu", "de"))).allows(("eu", "de", "by"))


def test_locations():
    assert parse_location("eu/fr/occitanie") == ("eu", "fr", "occitanie")
    assert format_location(("eu", "fr")) == "eu/fr"
    for bad in ("", "eu//fr", "eu/FR", "eu/fr/", "eu fr", "é"):
        with pytest.raises(LayoutError, match="location"):
            parse_location(bad)


@settings(max_examples=examples(0.6), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(states=True, pins=True))
def test_toml_round_trip(layout):
    text = format_layout(layout)
    again = parse_layout(text)
    assert again == layout
    assert format_layout(again) == text
    assert again.fingerprint() == layout.fingerprint()


@settings(max_examples=examples(0.3), deadline=None)
@given(layouts(), st.integers(0, 2**32))
def test_order_of_entries_does_not_matter(layout, st_seed):
    rng = random.Random(st_seed)
    nodes, sites, pols = list(layout.nodes), list(layout.sites), list(layout.policies)
    rng.shuffle(nodes), rng.shuffle(sites), rng.shuffle(pols)
    shuffled = Layout(layout.version, layout.partition_bits, tuple(sites), tuple(nodes), tuple(pols),
                      placement=layout.placement)
    assert shuffled == layout
    assert shuffled.fingerprint() == layout.fingerprint()


def test_fingerprint_changes_with_content():
    a = parse_layout(EXAMPLE)
    b = parse_layout(EXAMPLE.replace('capacity = "4TB"', 'capacity = "5TB"'))
    assert len(a.fingerprint()) == 32
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.parametrize(
    "text, expected",
    [
        (" 4TB", 4 * TB), ("500 GiB", 500 * 2**30), ("1.5TB", 1_500_000_000_000), ("7", 7),
        ("3kb", 3000), ("2MiB", 2 * 2**20),
    ],
)
def test_capacity_units(text, expected):
    layout = parse_layout(EXAMPLE.replace('capacity = "4TB"', f'capacity = "{text}"'))
    assert layout.node("n1").capacity == expected


def _mutate(old, new):
    assert old in EXAMPLE, old
    return EXAMPLE.replace(old, new, 1)


@pytest.mark.parametrize(
    "text, field",
    [
        (_mutate('id = "n2"', 'id = "n1"'), "nodes[1].id"),
        (_mutate('name = "toulouse-1"', 'name = "paris-1"'), "sites[1].name"),
        (_mutate('site = "paris-1"', 'site = "lyon-1"'), "nodes[0].site"),
        (_mutate("replicas = 2", "replicas = 1"), "policies[0].replicas"),
        (_mutate('allow = ["eu/fr"]', "allow = []"), "policies[0].allow"),
        (_mutate('allow = ["eu/fr"]', 'allow = ["eu/FR"]'), "policies[0].allow[0]"),
        (_mutate('allow = ["eu/fr"]', 'allow = ["eu/fr", "eu/fr"]'), "policies[0].allow[1]"),
        (_mutate("spread = 3", "spread = 0"), "policies[0].spread"),
        (_mutate('location = "eu/fr/idf"', 'location = "eu//idf"'), "sites[0].location"),
        (_mutate('location = "eu/fr/idf"', 'location = "eu/fr/Île"'), "sites[0].location"),
        (_mutate('address = "127.0.0.1:7001"', 'address = "127.0.0.1"'), "nodes[0].address"),
        (_mutate('address = "127.0.0.1:7001"', 'address = "host:99999"'), "nodes[0].address"),
        (_mutate('address = "127.0.0.1:7002"', 'address = "127.0.0.1:7001"'), "nodes[1].address"),
        (_mutate('capacity = "4TB"', "capacity = 0"), "nodes[0].capacity"),
        (_mutate('capacity = "4TB"', "capacity = -5"), "nodes[0].capacity"),
        (_mutate('capacity = "4TB"', 'capacity = "4XB"'), "nodes[0].capacity"),
        (_mutate('capacity = "4TB"', 'capacity = "0.5B"'), "nodes[0].capacity"),
        (_mutate('capacity = "4TB"', "capacity = true"), "nodes[0].capacity"),
        (_mutate('capacity = "4TB"', 'capacity = "4TB"\ncapcity = 3'), "nodes[0].capcity"),
        (_mutate('state = "draining"', 'state = "sleeping"'), "nodes[2].state"),
        (_mutate('id = "n1"', 'id = "n 1"'), "nodes[0].id"),
        (_mutate('id = "n1"\n', ""), "nodes[0].id"),
        (_mutate("partition_bits = 10", "partition_bits = 3"), "partition_bits"),
        (_mutate("partition_bits = 10", "partition_bits = 21"), "partition_bits"),
        (_mutate("version = 3", "version = -1"), "version"),
        (_mutate("version = 3", "verison = 3"), "verison"),
        (_mutate("version = 3\n", ""), "version"),
        (_mutate('name = "france-only"', 'name = "france-only"\nreplica = 3'), "policies[0].replica"),
        (_mutate('name = "paris-1"', 'name = "paris-1"\nregion = "x"'), "sites[0].region"),
        ("version = 1\nsites = 3\n", "sites"),
        ("version = [", "<toml>"),
    ],
)
def test_validation_error_names_field(text, field):
    with pytest.raises(LayoutError) as info:
        parse_layout(text)
    assert str(info.value).startswith(field + ":") or str(info.value).startswith(field + "."), str(info.value)


def test_values_validate_themselves():
    with pytest.raises(LayoutError, match="capacity"):
        Node("n1", "h:1", "s", 0)
    with pytest.raises(LayoutError, match="replicas"):
        Policy("p", (("eu",),), replicas=1)
    with pytest.raises(LayoutError, match="location"):
        Site("s", ("eu", "Fr"))
    with pytest.raises(LayoutError, match=r"nodes\[0\]\.site"):
        Layout(1, 10, (), (Node("n1", "h:1", "nowhere", 1),), ())


def test_public_exports():
    expected = {
        "PlacementError", "LayoutError", "PolicyUnsatisfiable", "UnknownNode", "UnknownPolicy",
        "UnknownSite", "NodeState", "Site", "Node", "Policy", "Layout", "parse_location",
        "format_location", "parse_layout", "format_layout", "chunk_partition", "bucket_partition",
        "partition_table", "PartitionTable", "moved_partitions", "TIERS", "EDGE", "BACKBONE",
    }
    assert set(placement.__all__) == expected
    for name in expected:
        obj = getattr(placement, name)
        if isinstance(obj, type):
            assert obj.__module__ == "maillage.placement", name
