"""Hypothesis strategies and builders shared by the placement tests."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from maillage.placement import Layout, Node, NodeState, Policy, Site
from maillage.placement.layout import PLACEMENT_ALGORITHMS, PLACEMENT_LATEST

TB = 10**12
COUNTRIES = ("fr", "de", "it", "es")
REGIONS = ("north", "south", "east", "west", "centre")


def make_layout(site_specs, policies, bits=8, version=1, placement=PLACEMENT_LATEST):
    """site_specs: [(name, location tuple, [capacity TB, ...], [state, ...] or None)]"""
    sites, nodes = [], []
    for si, spec in enumerate(site_specs):
        name, loc, caps = spec[0], spec[1], spec[2]
        states = spec[3] if len(spec) > 3 and spec[3] else [NodeState.ACTIVE] * len(caps)
        sites.append(Site(name=name, location=loc))
        for k, (cap, state) in enumerate(zip(caps, states)):
            nodes.append(Node(id=f"{name}-n{k}", address=f"10.{si // 200}.{si % 200}.{k + 1}:7000",
                              site=name, capacity=int(cap * TB), state=state))
    return Layout(version=version, partition_bits=bits, sites=tuple(sites), nodes=tuple(nodes),
                  policies=tuple(policies), placement=placement)


@st.composite
def site_specs(draw, min_sites=2, max_sites=12, states=False, prefix="s"):
    n = draw(st.integers(min_sites, max_sites))
    specs = []
    for i in range(n):
        loc = ("eu", draw(st.sampled_from(COUNTRIES)), draw(st.sampled_from(REGIONS)))
        if draw(st.booleans()):
            loc = loc + (f"c{draw(st.integers(0, 3))}",)
        caps = draw(st.lists(st.integers(1, 8), min_size=1, max_size=3))
        st_list = None
        if states:
            st_list = draw(st.lists(st.sampled_from(list(NodeState)), min_size=len(caps), max_size=len(caps)))
        specs.append((f"{prefix}{i}", loc, caps, st_list))
    return specs


@st.composite
def policies_for(draw, specs, max_policies=3):
    locs = [s[1] for s in specs]
    prefixes = sorted({loc[:k] for loc in locs for k in (1, 2, 3)})
    out = []
    for i in range(draw(st.integers(1, max_policies))):
        allow = draw(st.lists(st.sampled_from(prefixes), min_size=1, max_size=3, unique=True))
        out.append(Policy(name=f"p{i}", allow=tuple(allow), replicas=draw(st.integers(2, 3)),
                          spread=draw(st.one_of(st.none(), st.integers(1, 3)))))
    return out


PARTITION_BITS = st.integers(4, 8)


CERT_KEYS = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


@st.composite
def layouts(draw, min_sites=2, max_sites=12, states=False, bits=PARTITION_BITS, pins=False):
    """Layouts of either placement algorithm; with `pins`, half of them pin every node's certificate
    key (distinct keys)."""
    specs = draw(site_specs(min_sites, max_sites, states))
    pols = draw(policies_for(specs))
    layout = make_layout(specs, pols, bits=draw(bits), version=draw(st.integers(0, 10**6)),
                         placement=draw(st.sampled_from(PLACEMENT_ALGORITHMS)))
    if pins and draw(st.booleans()):
        keys = draw(st.lists(CERT_KEYS, min_size=len(layout.nodes), max_size=len(layout.nodes), unique=True))
        layout = dataclasses.replace(layout, nodes=tuple(dataclasses.replace(n, cert_key=k)
                                                         for n, k in zip(layout.nodes, keys)))
    return layout
