"""Shared pieces of the admin commands: the cluster dir (layout-signing key), sizes, the admin API.

The calls themselves are the SDK's admin API (`maillage.client.admin.ClusterAdmin`); its errors are
`AdminError`s, printed in one line by `maillage.cli.main`, so no admin command ends in a traceback.
Admin commands use a profile with an admin access key (see `maillage cluster init`); the commands
that change the layout or the access document also sign it with the cluster's layout-signing key,
found in the cluster dir (--cluster-dir or $MAILLAGE_CLUSTER_DIR).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from maillage.cli.common import CommandError, profile_of
from maillage.client.admin import ClusterAdmin, load_signer, read_node_keys
from maillage.placement import LayoutError
from maillage.placement.layout_codec import parse_capacity
from maillage.proto.trust.identity import IdentityError
from maillage.proto.trust.signing import LayoutSigner

__all__ = ["CLUSTER_DIR_ENV", "add_cluster_dir_option", "cluster_dir", "node_keys", "open_admin", "parse_size",
           "signer"]

CLUSTER_DIR_ENV = "MAILLAGE_CLUSTER_DIR"
_SHORT_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP])\s*\Z", re.IGNORECASE)


def add_cluster_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-dir", metavar="DIR", type=Path, default=os.environ.get(CLUSTER_DIR_ENV) or None,
        help=f"the cluster dir made by `maillage cluster init` (default: ${CLUSTER_DIR_ENV}); its "
             "layout-signing.key signs layouts and access documents, and nodes refuse unsigned ones")


def cluster_dir(args: argparse.Namespace) -> Path:
    directory = getattr(args, "cluster_dir", None)
    if not directory:
        raise CommandError(f"no cluster dir: pass --cluster-dir DIR or set {CLUSTER_DIR_ENV}=DIR (the "
                           "directory `maillage cluster init` made; it holds layout-signing.key)")
    return Path(directory)


def signer(args: argparse.Namespace) -> LayoutSigner:
    try:
        return load_signer(cluster_dir(args))
    except ValueError as exc:
        raise CommandError(f"{exc} (is --cluster-dir the directory `maillage cluster init` made?)") from None


def parse_size(text: str, what: str = "capacity") -> int:
    """Bytes from ``4TB``, ``500GiB``, ``1.5T`` (a lone K/M/G/T/P is decimal: 4T = 4TB = 4e12 bytes)."""
    m = _SHORT_UNIT.match(text)
    if m:
        text = f"{m.group(1)}{m.group(2).upper()}B"
    try:
        return parse_capacity(text, what)
    except LayoutError as exc:
        raise CommandError(f"bad size: {exc}") from None


def node_keys(args: argparse.Namespace) -> dict[str, str]:
    """The certificate keys recorded in the cluster dir (`maillage cluster node-cert` records them)."""
    try:
        return read_node_keys(cluster_dir(args))
    except IdentityError as exc:
        raise CommandError(str(exc)) from None


def open_admin(args: argparse.Namespace, *, signing: bool = False) -> ClusterAdmin:
    """The SDK's admin API on the command's profile (an admin key); with `signing`, the cluster
    dir's layout-signing key (checked before anything is asked of the mesh) and recorded node
    certificate keys (pinned in every layout it signs) and the master access document (every key
    edit, and a layout apply that changes the policies, publishes the nodes' version of it) too."""
    key = signer(args) if signing else None
    keys = node_keys(args) if signing else None
    directory = cluster_dir(args) if signing else None
    return ClusterAdmin(profile_of(args), signer=key, node_keys=keys, cluster_dir=directory)
