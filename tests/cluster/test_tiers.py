"""Backbone and edge tiers on real node processes (issue 26): a France-only policy with one copy on
the French backbone keeps exactly one copy of every key and chunk on the backbone site and the other
on a French edge site, read from each node's own inventory; a policy whose backbone copies the layout
cannot place is refused at bucket creation with a reason naming the tier, nothing written anywhere."""

from __future__ import annotations

import os

import pytest

from maillage.client import Client, PolicyUnsatisfiable
from maillage.client.admin import collect_audit
from maillage.placement import BACKBONE, Policy
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

from .conftest import CHUNK
from .helpers import chunk_holders, holders, inventory, manifest_digests

SITES = (
    SiteSpec("paris-dc", "eu/fr/idf", tier=BACKBONE),
    SiteSpec("lyon-1", "eu/fr/ara"),
    SiteSpec("toulouse-1", "eu/fr/occitanie"),
    SiteSpec("munich-dc", "eu/de/bayern", tier=BACKBONE),
)
POLICIES = (
    Policy("france-backbone", (("eu", "fr"),), replicas=2, backbone=1),
    Policy("france-two-dc", (("eu", "fr"),), replicas=2, backbone=2),   # one French backbone site only
)
FRENCH_EDGE = {"lyon-1", "toulouse-1"}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("tiers"),
                   extra_args=("--chunk-size", str(CHUNK))) as m:
        yield m


def test_one_copy_of_every_key_and_chunk_on_the_backbone_the_other_on_a_french_edge_site(mesh):
    keys = [f"scan-{i}.dcm" for i in range(6)]
    with Client(profile=mesh.profile) as client:
        client.create_bucket("scans", policy="france-backbone")
        for key in keys:
            client.put_object("scans", key, os.urandom(2 * CHUNK + 100))
    for key in keys:
        sites = holders(mesh, "scans", key)
        assert "paris-dc" in sites and len(sites & FRENCH_EDGE) == 1 and sites <= {"paris-dc"} | FRENCH_EDGE
        for digest in manifest_digests(mesh, "scans", key):
            chunk_sites = chunk_holders(mesh, digest)
            assert "paris-dc" in chunk_sites and len(chunk_sites & FRENCH_EDGE) == 1, (key, chunk_sites)
    munich = inventory(mesh, mesh.address("munich-dc"))      # the German backbone holds nothing of it
    assert not munich.all_chunks and not [b for b in munich.buckets if b.keys]
    report = collect_audit(mesh.admin_profile)
    assert report.ok and report.fully_replicated and report.off_tier == 0


def test_a_policy_whose_backbone_copies_cannot_be_placed_is_refused_with_the_tier_named(mesh):
    with Client(profile=mesh.profile) as client:
        with pytest.raises(PolicyUnsatisfiable) as err:
            client.create_bucket("archives", policy="france-two-dc")
        assert "backbone" in str(err.value) and "paris-dc" in str(err.value)
        assert "archives" not in {b.name for b in client.list_buckets()}
