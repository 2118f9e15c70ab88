"""Cluster identity: who may speak on a node's port, proven by certificates of the cluster's own CA.

Data of a France-only bucket crosses public WAN links, and a node must know whether the caller at
the other end is another node of the layout, an SDK/CLI process, or a stranger. Every node port is
mutual TLS against one cluster CA (`create_cluster`):

- a *node* certificate names its node id (SAN URI ``maillage://node/<id>`` plus DNS names
  ``<id>.node.maillage`` and ``node.maillage`` for the TLS host check), so a node can require that
  a peer calling a replica method is a node of the current layout; it may also carry the DNS names
  and IP addresses S3 clients use to reach the node's S3 port (`extra_names`, which serves HTTPS
  with this same certificate);
- one shared *client* certificate (SAN URI ``maillage://client``) lets SDK and CLI processes pass
  the handshake; who the caller is comes from its access key (`requestauth`), not from this cert.

gRPC Python requests a client certificate only with ``require_client_auth=True``, so the server
credentials always require one and `peer_of` tells the roles apart by the certificate presented.
A certificate counts for a role only with the extended key usages it is issued with: serverAuth and
clientAuth for a node, clientAuth for the client (a CA-signed certificate without them is no one).
Files are PEM; private keys are written 0600 and never overwritten by accident.

The CA alone does not make a node: the signed layout pins each node's certificate key
(`key_fingerprint`: ``sha256:`` and the hex SHA-256 of the certificate's SubjectPublicKeyInfo), and
the node's gate refuses a node certificate whose key is not the one pinned for its node id, so a
certificate made with a stolen CA key, or the one a rotation replaced, is refused. `Peer.key` is
that fingerprint of the certificate presented.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from maillage.proto.trust.signing import LayoutSigner

__all__ = [
    "ClusterDir", "IdentityError", "NodeFiles", "Peer", "PeerRole", "TlsIdentity", "CLIENT_URI", "NODE_DOMAIN",
    "NODE_URI_PREFIX", "NODE_USAGES", "certificate_key", "create_cluster", "extra_names", "issue_node_certificate",
    "key_fingerprint", "peer_of", "peer_of_certificate", "target_name",
]

NODE_DOMAIN = "node.maillage"
NODE_URI_PREFIX = "maillage://node/"
CLIENT_URI = "maillage://client"
CA_DAYS = 3650
CLIENT_DAYS = 3650
# Certificates start a little in the past so a node whose clock lags the admin's accepts them.
_BACKDATE = datetime.timedelta(minutes=10)
# The node ids the layout accepts (placement.layout's _NAME; proto may not import placement).
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_DNS_NAME = re.compile(r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")

PeerRole = Literal["node", "client", "none"]


class IdentityError(Exception):
    """A cluster or trust directory that cannot be created, read or trusted; the message says which file."""


@dataclass(frozen=True)
class ClusterDir:
    """The files of a cluster directory (the admin machine's secrets: keep it off the nodes)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    signing_key: Path
    signing_pub: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def at(cls, directory: str | os.PathLike[str]) -> ClusterDir:
        d = Path(directory)
        return cls(directory=d, ca_cert=d / "ca.pem", ca_key=d / "ca.key", signing_key=d / "layout-signing.key",
                   signing_pub=d / "layout-signing.pub", client_cert=d / "client.pem", client_key=d / "client.key")

    def files(self) -> tuple[Path, ...]:
        return (self.ca_cert, self.ca_key, self.signing_key, self.signing_pub, self.client_cert, self.client_key)


@dataclass(frozen=True)
class NodeFiles:
    """A node's self-contained trust directory: its certificate and key, the CA and the layout public key."""

    directory: Path
    cert: Path
    key: Path
    ca_cert: Path
    signing_pub: Path

    @classmethod
    def at(cls, directory: str | os.PathLike[str]) -> NodeFiles:
        d = Path(directory)
        return cls(directory=d, cert=d / "node.pem", key=d / "node.key", ca_cert=d / "ca.pem",
                   signing_pub=d / "layout-signing.pub")


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a TLS connection, as its (CA-verified) certificate says: the role,
    the node id a node certificate names, the fingerprint of the certificate's key (`key_fingerprint`)
    and, for role "none", why the certificate counts for no role (empty if none was presented)."""

    role: PeerRole
    node_id: str | None = None
    key: str | None = None
    problem: str = ""


def target_name(node_id: str | None) -> str:
    """The TLS name to verify on a connection (pass as channel option ``grpc.ssl_target_name_override``).

    A caller that knows which node an address belongs to checks that exact node; one that only has an
    address (a seed endpoint) checks that it is some node of this cluster."""
    if node_id is None:
        return NODE_DOMAIN
    _check_node_id(node_id)
    return f"{node_id}.{NODE_DOMAIN}"


# ---------------------------------------------------------------------------------------------------
# Creating a cluster and issuing node certificates


def create_cluster(directory: str | os.PathLike[str], name: str) -> ClusterDir:
    """Write a new cluster's CA, layout-signing key pair and shared client certificate.

    Refuses to touch an existing cluster: losing the CA key or the signing key would cut every node
    off, so no file is ever overwritten (O_EXCL)."""
    if not name or not name.isprintable() or len(name) > 64:
        raise IdentityError(f"cluster name {name!r}: use 1-64 printable characters")
    cluster = ClusterDir.at(directory)
    existing = [p.name for p in cluster.files() if p.exists()]
    if existing:
        raise IdentityError(f"{cluster.directory}: already holds a cluster ({', '.join(existing)}); "
                            "refusing to overwrite it")
    cluster.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    now = _now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"maillage cluster {name}"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"maillage cluster {name} CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _leaf(ca_cert, ca_key, client_key, common_name=f"maillage client of {name}",
                        sans=[x509.UniformResourceIdentifier(CLIENT_URI)],
                        usages=[ExtendedKeyUsageOID.CLIENT_AUTH], days=CLIENT_DAYS)
    signer = LayoutSigner.generate()

    _write_new(cluster.ca_key, _key_pem(ca_key), private=True)
    _write_new(cluster.signing_key, signer.private_key_pem(), private=True)
    _write_new(cluster.client_key, _key_pem(client_key), private=True)
    _write_new(cluster.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write_new(cluster.signing_pub, signer.public_key_pem(), private=False)
    _write_new(cluster.client_cert, client_cert.public_bytes(serialization.Encoding.PEM), private=False)
    return cluster


def extra_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """Subject alternative names for a node's S3 endpoint: each a DNS name (``s3.example.com``, or
    ``*.s3.example.com`` for virtual-host-style buckets) or an IP address (v4 or v6). Names under
    ``.maillage`` are refused: they are the cluster's own, and one there would let this node pass
    the TLS host check as another node."""
    out: list[x509.GeneralName] = []
    for raw in names:
        name = raw.strip().lower().rstrip(".")
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
            continue
        except ValueError:
            pass
        if len(name) > 253 or not _DNS_NAME.match(name):
            raise IdentityError(f"subject alternative name {raw!r}: not an IP address nor a DNS name "
                                "(letters, digits and '-' in dot-separated labels; '*.' only in front)")
        if name == "maillage" or name.endswith(".maillage"):
            raise IdentityError(f"subject alternative name {raw!r}: names under .maillage are the "
                                "cluster's own (node certificates carry <id>.node.maillage already)")
        out.append(x509.DNSName(name))
    return out


def issue_node_certificate(cluster: ClusterDir, node_id: str, out_dir: str | os.PathLike[str], *,
                           days: int = 365, sans: Iterable[str] = ()) -> NodeFiles:
    """Issue (or rotate: issue again) the certificate of node `node_id` into its trust directory.

    The directory gets everything the node needs and nothing of the admin's secrets: node.pem,
    node.key, ca.pem and layout-signing.pub. Each file is replaced atomically (temp + rename); the
    key is renamed before the certificate, and `TlsIdentity.load_node` refuses a mismatched pair.
    `sans` adds DNS names and IP addresses (`extra_names`) by which S3 clients reach the node."""
    _check_node_id(node_id)
    added = extra_names(sans)
    if days < 1:
        raise IdentityError(f"certificate lifetime: {days} days; must be at least 1")
    ca_cert = _read_cert(cluster.ca_cert)
    ca_key = _read_ec_key(cluster.ca_key)
    if ca_cert.public_key() != ca_key.public_key():
        raise IdentityError(f"{cluster.ca_key}: does not belong to {cluster.ca_cert}")
    node_key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(ca_cert, ca_key, node_key, common_name=node_id,
                 sans=[x509.DNSName(f"{node_id}.{NODE_DOMAIN}"), x509.DNSName(NODE_DOMAIN),
                       x509.UniformResourceIdentifier(NODE_URI_PREFIX + node_id), *added],
                 usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], days=days)
    files = NodeFiles.at(out_dir)
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _replace(files.key, _key_pem(node_key), private=True)
    _replace(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    _replace(files.ca_cert, _read(cluster.ca_cert), private=False)
    _replace(files.signing_pub, _read(cluster.signing_pub), private=False)
    return files


def _leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey, *,
          common_name: str, sans: list[x509.GeneralName], usages: list[x509.ObjectIdentifier],
          days: int) -> x509.Certificate:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


# ---------------------------------------------------------------------------------------------------
# A process's loaded identity


@dataclass(frozen=True)
class TlsIdentity:
    """The PEM bytes a process presents and trusts; builds the gRPC credentials of both ends."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:  # never print the private key
        return f"TlsIdentity(cert={_subject_of(self.cert_pem)!r})"

    @classmethod
    def load(cls, ca: str | os.PathLike[str], cert: str | os.PathLike[str],
             key: str | os.PathLike[str]) -> TlsIdentity:
        """Read and check a CA, certificate and key (cert issued by that CA, key matching the cert),
        so a wrong file is reported at start-up rather than as an opaque handshake failure."""
        ca_cert, leaf = _read_cert(Path(ca)), _read_cert(Path(cert))
        leaf_key = _read_ec_key(Path(key))
        try:
            leaf.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            raise IdentityError(f"{cert}: not issued by the cluster CA in {ca}") from None
        if leaf.public_key() != leaf_key.public_key():
            raise IdentityError(f"{key}: does not belong to {cert}")
        if leaf.not_valid_after_utc <= _now():
            raise IdentityError(f"{cert}: expired on {leaf.not_valid_after_utc:%Y-%m-%d}; issue a new one")
        return cls(ca_pem=_read(Path(ca)), cert_pem=_read(Path(cert)), key_pem=_read(Path(key)))

    @classmethod
    def load_node(cls, trust_dir: str | os.PathLike[str]) -> TlsIdentity:
        """A node's identity from the directory `issue_node_certificate` wrote."""
        files = NodeFiles.at(trust_dir)
        return cls.load(files.ca_cert, files.cert, files.key)

    @classmethod
    def load_client(cls, directory: str | os.PathLike[str]) -> TlsIdentity:
        """The shared client identity from a directory holding ca.pem, client.pem and client.key
        (the cluster directory itself, or a profile directory the admin copied them into)."""
        d = Path(directory)
        return cls.load(d / "ca.pem", d / "client.pem", d / "client.key")

    def peer(self) -> Peer:
        """The role and node id this identity's own certificate claims."""
        return peer_of_certificate(x509.load_pem_x509_certificate(self.cert_pem))

    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS: without require_client_auth gRPC Python never asks for a client certificate."""
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)], root_certificates=self.ca_pem,
                                           require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Verify the node against the cluster CA and present this identity's certificate."""
        return grpc.ssl_channel_credentials(root_certificates=self.ca_pem, private_key=self.key_pem,
                                            certificate_chain=self.cert_pem)


# ---------------------------------------------------------------------------------------------------
# Telling the peer of a call


def peer_of(auth_context: Mapping[str, Iterable[bytes]]) -> Peer:
    """The peer of a call, from ``ServicerContext.auth_context()`` on a server built with
    `TlsIdentity.server_credentials` (the handshake already verified the certificate against the
    cluster CA; this only reads which role it was issued for). Anything else is role "none"."""
    if list(auth_context.get("transport_security_type", ())) != [b"ssl"]:
        return Peer("none")
    pems = list(auth_context.get("x509_pem_cert", ()))
    if len(pems) != 1:
        return Peer("none")
    return peer_of_pem(bytes(pems[0]))


@functools.lru_cache(maxsize=4096)
def peer_of_pem(pem: bytes) -> Peer:
    """The role a PEM certificate was issued for (cached: parsing costs more than the rest of a
    call's check, and a connection's calls share one certificate). The cache holds more than the
    nodes of a 1,000-site mesh: gossip reaches every peer in turn, and a cache smaller than the
    mesh would miss on every call (a few MB at most)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return Peer("none")
    return peer_of_certificate(cert)


def peer_of_certificate(cert: x509.Certificate) -> Peer:
    """The role a certificate (already verified against the cluster CA by the caller) was issued for."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Peer("none", problem="a certificate without subject alternative names")
    uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("maillage://")]
    if len(uris) != 1:  # none, or a certificate claiming two roles: trust neither
        return Peer("none", problem="a certificate naming no maillage role, or more than one")
    key = key_fingerprint(cert)
    usages = _extended_key_usages(cert)
    if uris[0] == CLIENT_URI:
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            return Peer("none", key=key, problem="a client certificate without the clientAuth extended key usage")
        return Peer("client", key=key)
    if uris[0].startswith(NODE_URI_PREFIX):
        node_id = uris[0][len(NODE_URI_PREFIX):]
        if _NODE_ID.match(node_id):
            if not NODE_USAGES <= usages:
                return Peer("none", node_id, key, f"a certificate of node {node_id!r} without the extended key "
                                                  "usages node certificates are issued with (serverAuth, clientAuth)")
            return Peer("node", node_id, key)
    return Peer("none", key=key, problem="a certificate naming no valid maillage role")


NODE_USAGES = frozenset({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH})


def _extended_key_usages(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier]:
    try:
        return frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return frozenset()


def key_fingerprint(cert: x509.Certificate) -> str:
    """What a layout pins for a node: ``sha256:`` and the hex SHA-256 of the certificate's
    SubjectPublicKeyInfo (DER). It names the key, not the certificate: the same key re-certified
    keeps it, a new key (every `issue_node_certificate`) changes it."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def certificate_key(path: str | os.PathLike[str]) -> str:
    """`key_fingerprint` of the PEM certificate in `path` (IdentityError naming the file if unreadable)."""
    return key_fingerprint(_read_cert(Path(path)))


# ---------------------------------------------------------------------------------------------------
# Files


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _check_node_id(node_id: str) -> None:
    if not isinstance(node_id, str) or not _NODE_ID.match(node_id):
        raise IdentityError(f"node id {node_id!r}: use 1-63 characters among A-Z, a-z, 0-9, '.', '_' and '-', "
                            "starting with a letter or digit")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _subject_of(cert_pem: bytes) -> str:
    try:
        return x509.load_pem_x509_certificate(cert_pem).subject.rfc4514_string()
    except ValueError:
        return "?"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise IdentityError(f"{path}: {err.strerror}") from None


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError:
        raise IdentityError(f"{path}: not a PEM certificate") from None


def _read_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IdentityError(f"{path}: not an ECDSA private key")
    return key


def _write_new(path: Path, data: bytes, *, private: bool) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    except FileExistsError:
        raise IdentityError(f"{path}: already exists; refusing to overwrite it") from None
    except OSError as err:
        raise IdentityError(f"{path}: {err.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace(path: Path, data: bytes, *, private: bool) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise IdentityError(f"{path.parent}: {err.strerror}") from None
    try:
        os.fchmod(fd, 0o600 if private else 0o644)  # mkstemp creates 0600; public files are readable
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
