"""No node holds a secret it could replay elsewhere (issue 22, item 3), on real nodes: every node's
trust dir and stored access document hold no key's secret and not the naming secret, requests
verify with the published derived keys, and `key refresh` publishes a new version everywhere."""

from __future__ import annotations

import time

import pytest

from maillage.client import Client
from maillage.client.admin import ACCESS_FILE, read_access_file
from maillage.proto.trust.node_access import parse_node_access
from maillage.proto.trust.signing import read_signed
from maillage.testing.localmesh import LocalMesh


def _files_of(mesh: LocalMesh, node_id: str) -> list:
    trust = [p for p in mesh.trust_dir(node_id).rglob("*") if p.is_file()]
    return [*trust, mesh.data_dir(node_id) / ACCESS_FILE]


def _master_secrets(mesh: LocalMesh) -> list[str]:
    master = read_access_file(mesh.cluster_dir / ACCESS_FILE, mesh.signer)
    secrets = [k.secret for k in master.keys if k.secret]
    assert master.naming_secret and len(secrets) >= 3
    return [*secrets, master.naming_secret]


def _wait_for_version(mesh: LocalMesh, version: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        versions = {}
        for node in mesh.layout.nodes:
            path = mesh.data_dir(node.id) / ACCESS_FILE
            versions[node.id] = parse_node_access(read_signed(path)[0]).version if path.exists() else 0
        if set(versions.values()) == {version}:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"access document v{version} not on every node: {versions}")
        time.sleep(0.2)


def test_no_node_holds_a_secret_and_keys_work_with_derived_keys_alone(mesh: LocalMesh) -> None:
    hospital = mesh.new_key("hospital")                  # a key edit: publishes to every node
    secrets = [*_master_secrets(mesh), hospital.credentials.secret]
    master = read_access_file(mesh.cluster_dir / ACCESS_FILE, mesh.signer)
    _wait_for_version(mesh, master.version)
    for node in mesh.layout.nodes:
        files = _files_of(mesh, node.id)
        assert (mesh.data_dir(node.id) / ACCESS_FILE).exists()
        for path in files:
            blob = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in blob, f"{path} holds a secret"
    # the nodes verify the new key's requests with what they hold
    with Client(profile=hospital) as client:
        client.create_bucket("no-secrets", policy="france-only")
        client.put_object("no-secrets", "k", b"derived keys only")
        assert client.get_object("no-secrets", "k").read() == b"derived keys only"


def test_refresh_publishes_a_new_version_everywhere_and_requests_keep_working(mesh: LocalMesh) -> None:
    with mesh.admin() as admin:
        before = admin.access()
        doc, adopted, problems = admin.refresh_access()
        assert not problems and adopted == len(mesh.layout.nodes)
        after = admin.access()
    assert doc.version == before.version + 1 == after.version
    assert after.last_date >= before.last_date and after.scopes == before.scopes
    assert {"france-only", "eu-wide", "us-east-1"} <= {r for r, s in after.scopes if s == "s3"}
    _wait_for_version(mesh, doc.version)
    with Client(profile=mesh.profile) as client:
        client.list_buckets()
