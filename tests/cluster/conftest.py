"""Real meshes for the data-path tests: node processes on loopback labelled as distinct sites."""

from __future__ import annotations

import pytest

from maillage.client import Client
from maillage.placement import Policy
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

CHUNK = 256 * 1024  # small chunks so modest objects span several chunks

SITES = (
    SiteSpec("paris-1", "eu/fr/idf"),
    SiteSpec("toulouse-1", "eu/fr/occitanie"),
    SiteSpec("lyon-1", "eu/fr/ara"),
    SiteSpec("munich-1", "eu/de/bayern"),
)
POLICIES = (
    Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
    Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2),
    Policy(name="germany-only", allow=(("eu", "de"),), replicas=2),  # one German site: unsatisfiable
)
FRENCH = {"paris-1", "toulouse-1", "lyon-1"}


def start_mesh(tmp_path_factory, name: str) -> LocalMesh:
    mesh = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp(name),
                     extra_args=("--chunk-size", str(CHUNK)))
    mesh.__enter__()
    return mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = start_mesh(tmp_path_factory, "mesh")
    yield m
    m.close()


@pytest.fixture(scope="module")
def client(mesh):
    with Client(profile=mesh.profile) as c:
        yield c


@pytest.fixture()
def fresh_mesh(tmp_path_factory):
    """A mesh of its own, for tests that kill nodes or damage disks."""
    m = start_mesh(tmp_path_factory, "fresh")
    yield m
    m.close()
