"""Files of a new cluster, made on the admin machine: what `maillage cluster init`, `cluster node-cert`
and `layout sign` write, and what the local mesh of the demo and the tests writes for itself.

A cluster dir (`proto.trust.identity.create_cluster`) holds the CA, the layout-signing key pair and the
shared client certificate; `init_cluster` adds the first access document (tenant "admin" with one
admin key), signed, as ``access.signed``, and an INI profile ``admin.conf`` using that key with the
cluster dir as trust dir. A node's trust dir (`node_trust_dir`) gets its certificate, the CA, the
layout-signing public key and a copy of ``access.signed``; its first layout is a signed layout file
(`write_signed_layout`). Nothing here talks to a node.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from maillage.client._profile import Credentials, Profile, write_profile
from maillage.placement import Layout, format_layout
from maillage.proto.trust.access import AccessDoc, AccessKey, add_tenant, create_key, encode_access, parse_access
from maillage.proto.trust.identity import ClusterDir, NodeFiles, create_cluster, issue_node_certificate
from maillage.proto.trust.signing import LayoutSigner, read_signed, write_signed

__all__ = ["ACCESS_FILE", "ADMIN_PROFILE_FILE", "ADMIN_TENANT", "NewCluster", "client_trust_dir", "init_cluster",
           "load_signer", "node_trust_dir", "read_access_file", "write_access_file", "write_signed_layout"]

ACCESS_FILE = "access.signed"
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
    """The access document, signed (kind "access"), in one file (owner-only: it holds secrets)."""
    text = encode_access(doc)
    written = write_signed(path, text, signer.sign(doc.version, text, kind="access"))
    os.chmod(written, 0o600)
    return written


def read_access_file(path: str | os.PathLike[str], signer: LayoutSigner) -> AccessDoc:
    """A signed access file, checked against the cluster's key."""
    text, signature = read_signed(path)
    doc = parse_access(text)
    signer.verifier().verify(doc.version, text, signature, kind="access")
    return doc


def write_signed_layout(path: str | os.PathLike[str], layout: Layout, signer: LayoutSigner) -> Path:
    """A layout file a node can start from (`maillage node run --layout`)."""
    text = format_layout(layout)
    return write_signed(path, text, signer.sign(layout.version, text, kind="layout"))


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
    """Issue node `node_id` its certificate into `out_dir`, with the cluster's current access file
    (the node's first access document; later ones come from the mesh). `sans`: extra DNS names and
    IP addresses for its S3 endpoint (`maillage.proto.trust.identity.extra_names`)."""
    cluster = ClusterDir.at(cluster_dir)
    files = issue_node_certificate(cluster, node_id, out_dir, days=days, sans=sans)
    access = cluster.directory / ACCESS_FILE
    if access.is_file():
        target = files.directory / ACCESS_FILE
        shutil.copyfile(access, target)
        os.chmod(target, 0o600)
    return files
