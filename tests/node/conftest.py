"""In-process meshes for the node tests: real node objects and stores, in-memory network, manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from maillage.node.daemon.wiring import Timings
from maillage.placement import Layout, Node, Policy, Site, parse_location
from maillage.testing.inmemory import InMemoryMesh

T = TypeVar("T")

SITES = (("paris-1", "eu/fr/idf"), ("toulouse-1", "eu/fr/occitanie"), ("lyon-1", "eu/fr/ara"),
         ("marseille-1", "eu/fr/paca"), ("munich-1", "eu/de/bayern"))
FRENCH = {"paris-1", "toulouse-1", "lyon-1", "marseille-1"}
POLICIES = (
    Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
    Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2),
    Policy(name="germany-only", allow=(("eu", "de"),), replicas=2),  # one German site: unsatisfiable
)
TIMINGS = Timings(suspect_after=5, down_after=60, repair_rate=0, scrub_rate=0, gc_grace=100)


def make_layout(sites: tuple[tuple[str, str], ...] = SITES, version: int = 1) -> Layout:
    return Layout(version=version, partition_bits=4,
                  sites=tuple(Site(name, parse_location(loc)) for name, loc in sites),
                  nodes=tuple(Node(name, f"10.0.0.{i + 1}:7000", name, 1 << 40) for i, (name, _) in enumerate(sites)),
                  policies=POLICIES)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture()
def mesh(tmp_path) -> Iterator[InMemoryMesh]:
    m = InMemoryMesh(make_layout(), tmp_path, timings=TIMINGS)
    yield m
    m.close()
