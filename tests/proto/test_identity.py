"""Cluster identity: real certificates, real mutual TLS on loopback, and the Ed25519 document signatures."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from maillage.proto.trust.identity import (
    ClusterDir,
    IdentityError,
    Peer,
    TlsIdentity,
    certificate_key,
    create_cluster,
    issue_node_certificate,
    peer_of,
    target_name,
)
from maillage.proto.trust.signing import LayoutAuthError, LayoutSigner, LayoutVerifier


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> ClusterDir:
    return create_cluster(tmp_path_factory.mktemp("cluster") / "admin", "test")


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> ClusterDir:
    return create_cluster(tmp_path_factory.mktemp("other"), "other")


@pytest.fixture(scope="module")
def node_a(cluster: ClusterDir, tmp_path_factory: pytest.TempPathFactory) -> TlsIdentity:
    return TlsIdentity.load_node(issue_node_certificate(cluster, "paris-1", tmp_path_factory.mktemp("a")).directory)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# ---------------------------------------------------------------------------------------------------
# Files


def test_create_cluster_writes_a_ca_a_signing_pair_and_a_client_certificate(cluster: ClusterDir) -> None:
    for private in (cluster.ca_key, cluster.signing_key, cluster.client_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    ca = _cert(cluster.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert 3640 <= days <= 3660
    client = _cert(cluster.client_cert)
    client.verify_directly_issued_by(ca)
    assert not client.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    client = TlsIdentity.load_client(cluster.directory).peer()
    assert (client.role, client.node_id, client.key) == ("client", None, certificate_key(cluster.client_cert))
    signer = LayoutSigner.from_file(cluster.signing_key)
    assert LayoutVerifier.from_file(cluster.signing_pub).public_key_pem() == signer.public_key_pem()


def test_create_cluster_refuses_to_overwrite_a_cluster(cluster: ClusterDir) -> None:
    before = cluster.ca_key.read_bytes()
    with pytest.raises(IdentityError, match="already holds a cluster"):
        create_cluster(cluster.directory, "again")
    assert cluster.ca_key.read_bytes() == before


def test_node_certificate_names_the_node_and_its_trust_dir_is_self_contained(
        cluster: ClusterDir, tmp_path: Path) -> None:
    files = issue_node_certificate(cluster, "lyon-2", tmp_path / "trust", days=30)
    assert sorted(p.name for p in files.directory.iterdir()) == ["ca.pem", "layout-signing.pub", "node.key",
                                                                "node.pem"]
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.cert.stat().st_mode) == 0o644
    cert = _cert(files.cert)
    cert.verify_directly_issued_by(_cert(cluster.ca_cert))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["lyon-2.node.maillage", "node.maillage"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["maillage://node/lyon-2"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert TlsIdentity.load_node(files.directory).peer() == Peer("node", "lyon-2", certificate_key(files.cert))
    LayoutVerifier.from_file(files.signing_pub)


def test_issuing_again_rotates_the_key_and_certificate(cluster: ClusterDir, tmp_path: Path) -> None:
    first = TlsIdentity.load_node(issue_node_certificate(cluster, "n1", tmp_path).directory)
    second = TlsIdentity.load_node(issue_node_certificate(cluster, "n1", tmp_path).directory)
    assert first.key_pem != second.key_pem and first.cert_pem != second.cert_pem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "layout-signing.pub", "node.key", "node.pem"]


def test_loading_refuses_mismatched_or_foreign_files(cluster: ClusterDir, other: ClusterDir, tmp_path: Path) -> None:
    files = issue_node_certificate(cluster, "n1", tmp_path)
    files.key.write_bytes(other.client_key.read_bytes())
    with pytest.raises(IdentityError, match="does not belong to"):
        TlsIdentity.load_node(tmp_path)
    with pytest.raises(IdentityError, match="not issued by the cluster CA"):
        TlsIdentity.load(cluster.ca_cert, other.client_cert, other.client_key)
    with pytest.raises(IdentityError, match="No such file"):
        TlsIdentity.load_node(tmp_path / "missing")


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a b", "x" * 64, "é"])
def test_bad_node_ids_are_refused(cluster: ClusterDir, tmp_path: Path, bad: str) -> None:
    with pytest.raises(IdentityError, match="node id"):
        issue_node_certificate(cluster, bad, tmp_path)


def test_target_name() -> None:
    assert target_name("paris-1") == "paris-1.node.maillage"
    assert target_name(None) == "node.maillage"


def test_repr_hides_the_private_key(node_a: TlsIdentity) -> None:
    assert "PRIVATE" not in repr(node_a) and "paris-1" in repr(node_a)


def test_peer_of_without_tls_or_certificate_is_none() -> None:
    assert peer_of({}) == Peer("none")
    assert peer_of({"transport_security_type": [b"insecure"]}) == Peer("none")
    assert peer_of({"transport_security_type": [b"ssl"]}) == Peer("none")
    assert peer_of({"transport_security_type": [b"ssl"], "x509_pem_cert": [b"junk"]}) == Peer("none")


# ---------------------------------------------------------------------------------------------------
# Real mutual TLS on loopback


async def _who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    peer = peer_of(context.auth_context())
    return f"{peer.role}:{peer.node_id}".encode()


async def _calls(server_identity: TlsIdentity, attempts: list[tuple[TlsIdentity, str]]) -> list[str]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler("t.Who", {"Am": grpc.unary_unary_rpc_method_handler(_who)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", server_identity.server_credentials())
    await server.start()
    results = []
    try:
        for identity, name in attempts:
            options = [("grpc.ssl_target_name_override", name)]
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", identity.channel_credentials(),
                                               options=options) as channel:
                try:
                    reply = await channel.unary_unary("/t.Who/Am")(b"", timeout=5)
                    results.append(reply.decode())
                except grpc.aio.AioRpcError as err:
                    results.append(f"refused:{err.code().name}")
    finally:
        await server.stop(None)
    return results


def test_mutual_tls_names_node_and_client_peers(cluster: ClusterDir, node_a: TlsIdentity,
                                                tmp_path: Path) -> None:
    node_b = TlsIdentity.load_node(issue_node_certificate(cluster, "berlin-1", tmp_path).directory)
    client = TlsIdentity.load_client(cluster.directory)
    results = asyncio.run(_calls(node_a, [(node_b, target_name("paris-1")), (client, target_name(None)),
                                          (client, target_name("paris-1"))]))
    assert results == ["node:berlin-1", "client:None", "client:None"]


def test_handshake_refuses_foreign_ca_missing_certificate_and_wrong_node(
        cluster: ClusterDir, other: ClusterDir, node_a: TlsIdentity) -> None:
    client = TlsIdentity.load_client(cluster.directory)
    # trusts our CA but presents a certificate of another cluster: the node refuses it
    foreign = TlsIdentity(ca_pem=client.ca_pem, cert_pem=other.client_cert.read_bytes(),
                          key_pem=other.client_key.read_bytes())
    # trusts another CA: the client refuses the node
    stranger = TlsIdentity.load_client(other.directory)
    results = asyncio.run(_calls(node_a, [(foreign, target_name(None)), (stranger, target_name(None)),
                                          (client, target_name("berlin-1"))]))
    assert results == ["refused:UNAVAILABLE"] * 3
    # presents no certificate at all
    assert asyncio.run(_call_without_certificate(node_a, client.ca_pem)) == "refused:UNAVAILABLE"


def test_the_client_certificate_cannot_pose_as_a_node(cluster: ClusterDir, node_a: TlsIdentity) -> None:
    client = TlsIdentity.load_client(cluster.directory)
    assert asyncio.run(_calls(client, [(node_a, target_name(None))])) == ["refused:UNAVAILABLE"]


async def _call_without_certificate(server_identity: TlsIdentity, ca_pem: bytes) -> str:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler("t.Who", {"Am": grpc.unary_unary_rpc_method_handler(_who)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", server_identity.server_credentials())
    await server.start()
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca_pem),
                                           options=[("grpc.ssl_target_name_override", "node.maillage")]) as channel:
            try:
                await channel.unary_unary("/t.Who/Am")(b"", timeout=5)
                return "accepted"
            except grpc.aio.AioRpcError as err:
                return f"refused:{err.code().name}"
    finally:
        await server.stop(None)


# ---------------------------------------------------------------------------------------------------
# Ed25519 document signatures


def test_layout_signatures_verify_and_refuse_tampering(cluster: ClusterDir) -> None:
    signer = LayoutSigner.from_file(cluster.signing_key)
    verifier = LayoutVerifier.from_file(cluster.signing_pub)
    signature = signer.sign(7, "layout text", kind="layout")
    verifier.verify(7, "layout text", signature, kind="layout")
    with pytest.raises(LayoutAuthError, match="not signed"):
        verifier.verify(7, "layout text", b"", kind="layout")
    with pytest.raises(LayoutAuthError, match="64"):
        verifier.verify(7, "layout text", signature[:10], kind="layout")
    for version, text in ((8, "layout text"), (7, "layout text!")):
        with pytest.raises(LayoutAuthError, match="does not verify"):
            verifier.verify(version, text, signature, kind="layout")
    with pytest.raises(LayoutAuthError, match="does not verify"):
        verifier.verify(7, "layout text", signature, kind="access")
    with pytest.raises(LayoutAuthError, match="does not verify"):
        LayoutSigner.generate().verifier().verify(7, "layout text", signature, kind="layout")
    access = signer.sign(7, "layout text", kind="access")
    verifier.verify(7, "layout text", access, kind="access")
    assert "PRIVATE" not in repr(signer)


def test_signing_key_files_of_the_wrong_kind_are_refused(cluster: ClusterDir) -> None:
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        LayoutSigner.from_file(cluster.ca_key)
    with pytest.raises(ValueError, match="not a PEM public key"):
        LayoutVerifier.from_file(cluster.ca_key)
    with pytest.raises(ValueError, match="No such file"):
        LayoutVerifier.from_file(cluster.directory / "nope")
