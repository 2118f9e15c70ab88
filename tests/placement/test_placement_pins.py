"""Certificate keys pinned by the layout: every node's or none, one key per node, canonical text."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from placement_strategies import CERT_KEYS, layouts

from maillage.placement import Layout, LayoutError, changes, format_layout, parse_layout
from maillage.testing.examples import examples

KEY_A = "sha256:" + "a" * 64
KEY_B = "sha256:" + "b" * 64


def pinned(layout: Layout, keys: list[str]) -> Layout:
    return dataclasses.replace(layout, nodes=tuple(dataclasses.replace(n, cert_key=k)
                                                   for n, k in zip(layout.nodes, keys)))


@settings(max_examples=examples(0.4), deadline=None)
@given(layout=layouts(max_sites=6), data=st.data())
def test_a_layout_pins_every_node_or_none(layout: Layout, data: st.DataObject) -> None:
    keys = data.draw(st.lists(CERT_KEYS, min_size=len(layout.nodes), max_size=len(layout.nodes), unique=True))
    assert not layout.pins_keys
    full = pinned(layout, keys)
    assert full.pins_keys and parse_layout(format_layout(full)) == full
    left_out = data.draw(st.integers(0, len(layout.nodes) - 1))
    partial = list(full.nodes)
    partial[left_out] = dataclasses.replace(partial[left_out], cert_key=None)
    with pytest.raises(LayoutError, match=r"cert_key: missing"):
        dataclasses.replace(full, nodes=tuple(partial))
    # pin_keys: a rotation keeps every node pinned; pinning part of an unpinned layout is refused
    fresh = data.draw(CERT_KEYS.filter(lambda k: k not in keys))
    rotated = changes.pin_keys(full, {full.nodes[left_out].id: fresh})
    assert rotated.pins_keys and rotated.node(full.nodes[left_out].id).cert_key == fresh
    if len(keys) > 1:
        with pytest.raises(LayoutError, match="already pinned"):        # another node's key
            changes.pin_keys(full, {full.nodes[left_out].id: keys[left_out - 1]})
    if len(layout.nodes) > 1:
        with pytest.raises(LayoutError, match="cert_key: missing"):
            changes.pin_keys(layout, {layout.nodes[0].id: keys[0]})
    assert changes.pin_keys(layout, dict(zip((n.id for n in layout.nodes), keys))) == full
    assert changes.pin_keys(layout, {"no-such-node": keys[0]}) == layout


def test_pins_are_checked_when_parsed() -> None:
    base = """version = 1
[[sites]]
name = "paris-1"
location = "eu/fr/idf"
[[nodes]]
id = "n1"
site = "paris-1"
address = "127.0.0.1:7001"
capacity = "1TB"
cert_key = "KEY1"
[[nodes]]
id = "n2"
site = "paris-1"
address = "127.0.0.1:7002"
capacity = "1TB"
cert_key = "KEY2"
"""
    ok = parse_layout(base.replace("KEY1", KEY_A).replace("KEY2", KEY_B))
    assert [n.cert_key for n in ok.nodes] == [KEY_A, KEY_B] and ok.pins_keys
    cases = [
        (base.replace("KEY1", KEY_A).replace('cert_key = "KEY2"\n', ""), r"nodes\[1\]\.cert_key: missing"),
        (base.replace("KEY1", KEY_A).replace("KEY2", KEY_A), r"nodes\[1\]\.cert_key: already pinned"),
        (base.replace("KEY1", KEY_A.upper()).replace("KEY2", KEY_B), r"nodes\[0\]\.cert_key: "),
        (base.replace("KEY1", "sha1:" + "a" * 40).replace("KEY2", KEY_B), r"nodes\[0\]\.cert_key: "),
        (base.replace("KEY1", KEY_A[:-1]).replace("KEY2", KEY_B), r"nodes\[0\]\.cert_key: "),
    ]
    for text, message in cases:
        with pytest.raises(LayoutError, match=message):
            parse_layout(text)
    unpinned = parse_layout(base.replace('cert_key = "KEY1"\n', "").replace('cert_key = "KEY2"\n', ""))
    assert not unpinned.pins_keys and "cert_key" not in format_layout(unpinned)


def test_the_diff_shows_a_rotation() -> None:
    layout = parse_layout(format_layout(changes.add_node(
        changes.add_site(Layout(1, 4, (), ()), "paris-1", "eu/fr/idf"), "n1", "127.0.0.1:7001", "paris-1", "1TB",
        cert_key=KEY_A)))
    rotated = changes.pin_keys(layout, {"n1": KEY_B})
    assert changes.layout_diff(layout, rotated) == [f"~ node n1: cert_key {KEY_A[:23]}… -> {KEY_B[:23]}…"]
