"""Certificates an attacker holding the cluster's CA key makes: for tests of what nodes refuse.

`forge_node_certificate` signs, with the CA key of a cluster dir, a certificate naming a node id as
`issue_node_certificate` would, but records nothing (no layout pins its key) and may leave out the
extended key usages node certificates are issued with. The trust dir it writes loads with
`TlsIdentity.load_node`, so a test can dial a node with it over real TLS.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from maillage.proto.trust.identity import NODE_DOMAIN, NODE_URI_PREFIX, ClusterDir, NodeFiles

__all__ = ["NODE_USAGES", "forge_node_certificate"]

NODE_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def forge_node_certificate(cluster_dir: str | os.PathLike[str], node_id: str, out_dir: str | os.PathLike[str], *,
                           usages: Sequence[x509.ObjectIdentifier] | None = NODE_USAGES) -> NodeFiles:
    """A certificate for `node_id` signed with the cluster's CA key, in a trust dir of its own;
    `usages` None: without the extended key usage extension at all."""
    cluster = ClusterDir.at(cluster_dir)
    ca_cert = x509.load_pem_x509_certificate(cluster.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(cluster.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=10))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(f"{node_id}.{NODE_DOMAIN}"), x509.DNSName(NODE_DOMAIN),
            x509.UniformResourceIdentifier(NODE_URI_PREFIX + node_id)]), critical=False)
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    files = NodeFiles.at(out_dir)
    files.directory.mkdir(parents=True, exist_ok=True)
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.ca_cert.write_bytes(cluster.ca_cert.read_bytes())
    files.signing_pub.write_bytes(cluster.signing_pub.read_bytes())
    return files
