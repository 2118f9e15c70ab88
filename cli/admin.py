"""Shared pieces of the admin commands: the cluster secret, sizes, and the admin API client.

The calls themselves are the SDK's admin API (`maillage.client.admin.ClusterAdmin`); its errors are
`AdminError`s, printed in one line by `maillage.cli.main`, so no admin command ends in a traceback.
"""

from __future__ import annotations

import argparse
import os
import re

from maillage.client.admin import ClusterAdmin
from maillage.placement import LayoutError
from maillage.placement.layout_codec import parse_capacity
from maillage.proto.signing import SECRET_ENV, ClusterKey

from .common import CommandError, endpoints

__all__ = ["add_secret_option", "cluster_key", "open_admin", "parse_size"]

_SHORT_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP])\s*\Z", re.IGNORECASE)


def add_secret_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-file", metavar="PATH",
        help=f"the cluster secret the nodes were started with (default: ${SECRET_ENV}); "
             "layout changes are signed with it and nodes refuse unsigned ones")


def cluster_key(args: argparse.Namespace) -> ClusterKey:
    path = getattr(args, "secret_file", None) or os.environ.get(SECRET_ENV)
    if not path:
        raise CommandError(f"no cluster secret: pass --secret-file PATH or set {SECRET_ENV}=PATH "
                           "(the file the nodes were started with)")
    try:
        return ClusterKey.from_file(path)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def parse_size(text: str, what: str = "capacity") -> int:
    """Bytes from ``4TB``, ``500GiB``, ``1.5T`` (a lone K/M/G/T/P is decimal: 4T = 4TB = 4e12 bytes)."""
    m = _SHORT_UNIT.match(text)
    if m:
        text = f"{m.group(1)}{m.group(2).upper()}B"
    try:
        return parse_capacity(text, what)
    except LayoutError as exc:
        raise CommandError(f"bad size: {exc}") from None


def open_admin(args: argparse.Namespace) -> ClusterAdmin:
    """The SDK's admin API on the command's endpoints; signs with the secret only when needed."""
    return ClusterAdmin(endpoints(args), key=lambda: cluster_key(args))
