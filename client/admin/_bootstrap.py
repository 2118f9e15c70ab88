"""Files of a new cluster, made on the admin machine: what `maillage cluster init`, `cluster node-cert`
and `layout sign` write, and what the local mesh of the demo and the tests writes for itself.

A cluster dir (`proto.trust.identity.create_cluster`) holds the CA, the layout-signing key pair and the
shared client certificate; `init_cluster` adds the master access document (tenant "admin" with one
admin key; every key's secret and the naming secret), signed as kind "access-master", as
``access.signed``, and an INI profile ``admin.conf`` using that key with the cluster dir as trust
dir. The master never leaves the admin machine: a node's trust dir (`node_trust_dir`) gets its
certificate, the CA, the layout-signing public key and the nodes' version of the access document
(`node_access.publish`: derived verification keys for a window of dates, naming keys per tenant and
policy, no secret), signed as kind "access"; its first layout is a signed layout file
(`write_signed_layout`). Nothing here talks to a node.

Pinning: issuing a node's certificate (`node_trust_dir`) records the fingerprint of its key in the
cluster dir's ``node-keys.json`` (`record_node_key`; `pin_certificate` records one issued earlier),
and every layout the admin tooling signs pins the recorded keys (`pin_layout`). A rotation is a new
certificate and the next applied layout, which pins its key and so retires the old certificate.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from maillage.client._profile import Credentials, Profile, write_profile
from maillage.placement import Layout, changes, format_layout
from maillage.placement.layout import CERT_KEY
from maillage.proto.trust.access import AccessDoc, AccessKey, add_tenant, create_key, encode_access, parse_access
from maillage.proto.trust.identity import (
    ClusterDir,
    IdentityError,
    NodeFiles,
    certificate_key,
    create_cluster,
    issue_node_certificate,
    peer_of_pem,
)
from maillage.proto.trust.node_access import encode_node_access, publish
from maillage.proto.trust.signing import LayoutAuthError, LayoutSigner, read_signed, write_durably, write_signed

__all__ = ["ACCESS_FILE", "ADMIN_PROFILE_FILE", "ADMIN_TENANT", "NODE_KEYS_FILE", "NewCluster", "client_trust_dir",
           "init_cluster", "load_signer", "node_trust_dir", "pin_certificate", "pin_layout", "read_access_file",
           "read_node_keys", "record_node_key", "signed_node_access", "write_access_file", "write_node_access_file",
           "write_signed_layout"]

ACCESS_FILE = "access.signed"
NODE_KEYS_FILE = "node-keys.json"
ADMIN_PROFILE_FILE = "admin.conf"
ADMIN_TENANT = "admin"


@dataclass(frozen=True)
class NewCluster:
    cluster: ClusterDir
    access: AccessDoc
    admin_key: AccessKey
    access_file: Path
    profile_file: Path
    profile: Profile


def _now_ms() -> int:
    return int(time.time() * 1000)


def load_signer(cluster_dir: str | os.PathLike[str]) -> LayoutSigner:
    """The layout-signing private key of a cluster dir (ValueError naming the file if unusable)."""
    return LayoutSigner.from_file(ClusterDir.at(cluster_dir).signing_key)


def write_access_file(path: str | os.PathLike[str], doc: AccessDoc, signer: LayoutSigner) -> Path:
    """The master access document, signed (kind "access-master"), in one file (owner-only: it holds
    every secret; it stays on the admin machine)."""
    text = encode_access(doc)
    written = write_signed(path, text, signer.sign(doc.version, text, kind="access-master"))
    os.chmod(written, 0o600)
    return written


def read_access_file(path: str | os.PathLike[str], signer: LayoutSigner) -> AccessDoc:
    """The master access file, checked against the cluster's key (a cluster dir from before the
    master had its own signature domain holds it signed as kind "access": still read)."""
    text, signature = read_signed(path)
    doc = parse_access(text)
    try:
        signer.verifier().verify(doc.version, text, signature, kind="access-master")
    except LayoutAuthError:
        signer.verifier().verify(doc.version, text, signature, kind="access")
    return doc


def signed_node_access(master: AccessDoc, signer: LayoutSigner, *, today: datetime.date | None = None,
                       policies: Sequence[str] | None = None) -> tuple[int, str, bytes]:
    """(version, text, signature) of the nodes' document of `master` (`node_access.publish`, the
    date window around `today`, by default the current UTC date), signed as kind "access"."""
    day = today if today is not None else datetime.datetime.now(datetime.UTC).date()
    doc = publish(master, today=day, policies=policies)
    text = encode_node_access(doc)
    return doc.version, text, signer.sign(doc.version, text, kind="access")


def write_node_access_file(path: str | os.PathLike[str], master: AccessDoc, signer: LayoutSigner) -> Path:
    """The nodes' document of `master` (derived keys, no secret), signed, in one file."""
    version, text, signature = signed_node_access(master, signer)
    written = write_signed(path, text, signature)
    os.chmod(written, 0o600)
    return written


def write_signed_layout(path: str | os.PathLike[str], layout: Layout, signer: LayoutSigner) -> Path:
    """A layout file a node can start from (`maillage node run --layout`)."""
    text = format_layout(layout)
    return write_signed(path, text, signer.sign(layout.version, text, kind="layout"))


def read_node_keys(cluster_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The certificate keys recorded in a cluster dir: node id -> ``sha256:<hex>`` ({} if none yet)."""
    path = Path(cluster_dir) / NODE_KEYS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise IdentityError(f"{path}: not readable as node keys ({err})") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) and CERT_KEY.match(v)
                                            for k, v in raw.items()):
        raise IdentityError(f"{path}: not a JSON object of node id -> 'sha256:<hex>'")
    return dict(raw)


def record_node_key(cluster_dir: str | os.PathLike[str], node_id: str, key: str) -> None:
    """Record (or replace) node `node_id`'s certificate key in the cluster dir, for the next layout."""
    keys = read_node_keys(cluster_dir)
    keys[node_id] = key
    write_durably(Path(cluster_dir) / NODE_KEYS_FILE, json.dumps(keys, indent=2, sort_keys=True) + "\n")


def pin_certificate(cluster_dir: str | os.PathLike[str], node_id: str, cert: str | os.PathLike[str]) -> str:
    """Record the key of a node certificate issued earlier (a mesh from before pinning): it must be
    issued by this cluster's CA, name `node_id` and carry the node usages. Returns the key."""
    cluster = ClusterDir.at(cluster_dir)
    try:
        pem = Path(cert).read_bytes()
        leaf = x509.load_pem_x509_certificate(pem)
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(cluster.ca_cert.read_bytes()))
    except OSError as err:
        raise IdentityError(f"{err.filename}: {err.strerror}") from None
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError(f"{cert}: not a certificate issued by the cluster CA in {cluster.ca_cert}") from None
    peer = peer_of_pem(pem)
    if peer.node_id != node_id or peer.role != "node":
        raise IdentityError(f"{cert}: not a node certificate of {node_id!r} "
                            f"({peer.problem or f'it names {peer.node_id or peer.role!r}'})")
    key = certificate_key(cert)
    record_node_key(cluster_dir, node_id, key)
    return key


def pin_layout(layout: Layout, keys: Mapping[str, str]) -> tuple[Layout, list[str]]:
    """`layout` pinning the recorded `keys` of its nodes, and what could not be pinned. A layout
    that pins its keys takes the recorded ones (a rotation); one that pins none (a mesh from before
    pinning) is pinned only once a key is recorded for every node, and left as it is until then,
    with a warning naming the nodes without a key."""
    known = {n.id: keys[n.id] for n in layout.nodes if n.id in keys}
    if layout.pins_keys or (layout.nodes and len(known) == len(layout.nodes)):
        return changes.pin_keys(layout, known), []
    missing = sorted(n.id for n in layout.nodes if n.id not in keys)
    return layout, [f"layout v{layout.version} pins no node certificate key (nodes accept any certificate "
                    f"of the cluster CA for a node id): no key recorded for {', '.join(missing) or 'any node'} "
                    f"(`maillage cluster pin NODE --cert FILE` records a certificate issued earlier)"]


def init_cluster(directory: str | os.PathLike[str], name: str, *, endpoints: Sequence[str] = (),
                 extra_tenants: Sequence[str] = ()) -> NewCluster:
    """Create a cluster dir, its first access document (version 1: tenant "admin" and one admin key,
    plus empty `extra_tenants`) signed in ``access.signed``, and the admin profile ``admin.conf``."""
    cluster = create_cluster(directory, name)
    signer = load_signer(cluster.directory)
    now = _now_ms()
    doc = add_tenant(AccessDoc(), ADMIN_TENANT, now_ms=now)
    for tenant in extra_tenants:
        doc = add_tenant(doc, tenant, now_ms=now)
    doc, key = create_key(doc, ADMIN_TENANT, "admin", now_ms=now)
    doc = replace(doc, version=1)
    access_file = write_access_file(cluster.directory / ACCESS_FILE, doc, signer)
    profile = Profile(tuple(endpoints), Credentials(key.key_id, key.secret), cluster.directory.resolve(), "default")
    profile_file = write_profile(cluster.directory / ADMIN_PROFILE_FILE, profile)
    return NewCluster(cluster, doc, key, access_file, profile_file, profile)


CLIENT_TRUST_FILES = ("ca.pem", "client.pem", "client.key", "layout-signing.pub")


def client_trust_dir(cluster_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """A trust dir for SDK and CLI users: the CA, the shared client certificate and key, and the
    layout-signing public key, without the cluster's private keys (ca.key, layout-signing.key)."""
    source, target = Path(cluster_dir), Path(out_dir)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in CLIENT_TRUST_FILES:
        shutil.copyfile(source / name, target / name)
        os.chmod(target / name, 0o600 if name.endswith(".key") else 0o644)
    return target


def node_trust_dir(cluster_dir: str | os.PathLike[str], node_id: str, out_dir: str | os.PathLike[str], *,
                   days: int = 365, sans: Sequence[str] = ()) -> NodeFiles:
    """Issue node `node_id` its certificate into `out_dir`, with the nodes' version of the cluster's
    master access document (the node's first access document, without secrets; later ones come from
    the mesh), and record its key in the cluster dir (the next layout pins it). `sans`: extra DNS
    names and IP addresses for its S3 endpoint (`maillage.proto.trust.identity.extra_names`)."""
    cluster = ClusterDir.at(cluster_dir)
    files = issue_node_certificate(cluster, node_id, out_dir, days=days, sans=sans)
    record_node_key(cluster.directory, node_id, certificate_key(files.cert))
    access = cluster.directory / ACCESS_FILE
    if access.is_file():
        signer = load_signer(cluster.directory)
        write_node_access_file(files.directory / ACCESS_FILE, read_access_file(access, signer), signer)
    return files
