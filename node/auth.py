"""Layout authentication on the node: the signature scheme itself is `maillage.proto.signing`."""

from __future__ import annotations

from maillage.proto.signing import SECRET_ENV, ClusterKey, LayoutAuthError, new_secret_file

__all__ = ["ClusterKey", "LayoutAuthError", "new_secret_file", "SECRET_ENV"]
