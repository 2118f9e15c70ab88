"""What a certificate proves: its key (the fingerprint a layout pins) and, only with the extended key
usages it is issued with, its role."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from maillage.placement.layout import CERT_KEY
from maillage.proto.trust.identity import (
    ClusterDir,
    TlsIdentity,
    certificate_key,
    create_cluster,
    issue_node_certificate,
    key_fingerprint,
    peer_of,
    peer_of_pem,
)
from maillage.testing.forged import forge_node_certificate


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> ClusterDir:
    return create_cluster(tmp_path_factory.mktemp("pins") / "cluster", "pins")


def test_the_fingerprint_is_the_sha256_of_the_public_key_info(cluster: ClusterDir, tmp_path) -> None:
    files = issue_node_certificate(cluster, "paris-1", tmp_path / "a")
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = key_fingerprint(cert)
    assert key == "sha256:" + hashlib.sha256(spki).hexdigest() == certificate_key(files.cert)
    assert CERT_KEY.match(key)                                   # what a layout accepts
    assert TlsIdentity.load_node(files.directory).peer().key == key
    again = issue_node_certificate(cluster, "paris-1", tmp_path / "b")   # a rotation: a new key
    assert certificate_key(again.cert) != key


def test_a_node_certificate_counts_only_with_the_usages_it_is_issued_with(cluster: ClusterDir, tmp_path) -> None:
    good = forge_node_certificate(cluster.directory, "paris-1", tmp_path / "good")
    assert peer_of_pem(good.cert.read_bytes()).role == "node"     # made with the CA key: a node (pins decide)
    for name, usages in (("none", None), ("server", [ExtendedKeyUsageOID.SERVER_AUTH]),
                         ("client", [ExtendedKeyUsageOID.CLIENT_AUTH])):
        files = forge_node_certificate(cluster.directory, "paris-1", tmp_path / name, usages=usages)
        pem = files.cert.read_bytes()
        peer = peer_of({"transport_security_type": [b"ssl"], "x509_pem_cert": [pem]})
        assert peer.role == "none", name
        assert "paris-1" in peer.problem and "serverAuth, clientAuth" in peer.problem
        assert peer.key == certificate_key(files.cert)


def test_the_shared_client_certificate_keeps_its_role(cluster: ClusterDir) -> None:
    assert peer_of_pem(cluster.client_cert.read_bytes()).role == "client"
