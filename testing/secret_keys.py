"""The node's key lookups (`node.s3.sigv4.Keys`) derived from secrets, for tests of the S3 door's
SigV4: a node never holds secrets, it looks derived keys up in its published access document."""

from __future__ import annotations

from maillage.proto.trust import requestauth
from maillage.proto.trust.access import AccessKey, KeyInfo

__all__ = ["SecretKeys"]


class SecretKeys:
    """`key(key_id)` and `signing_key(key_id, date, region, service)` of the given keys, derived
    from their secrets for any date and scope (the admin's publication derives them for a window)."""

    def __init__(self, *keys: AccessKey) -> None:
        self._keys = {k.key_id: k for k in keys}

    def key(self, key_id: str) -> KeyInfo | None:
        key = self._keys.get(key_id)
        return key.info() if key is not None and not key.revoked else None

    def signing_key(self, key_id: str, date: str, region: str, service: str) -> bytes:
        lookup = requestauth.from_secrets(lambda k: self._keys[k].secret if k in self._keys else None)
        return lookup(key_id, date, region, service)
