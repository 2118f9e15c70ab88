"""Chunk names keyed per (tenant, policy): dedup inside one tenant's policy, no oracle across tenants.

A chunk used to be named by the unkeyed BLAKE3 of its bytes, so anyone who could compute the digest
of a suspected piece of a document could ask whether (and read whether) the mesh stores it. Now the
coordinator names a chunk ``BLAKE3(plain, key=K)`` with ::

    K(tenant, policy) = BLAKE3-derive_key("maillage chunk names v1",
                                          secret || 0x00 || tenant || 0x00 || policy)

where ``secret`` is the cluster's naming secret: 32 random bytes kept (hex) in the signed access
document, which every node holds and no tenant ever sees. Two buckets of one tenant under one
policy share K, so their chunks still dedup; another tenant, or another policy, gets another K and
other names. A tenant learns K of its own buckets (the ``ChunkKey`` call, answered only to a key
that may read the bucket) so the SDK verifies every chunk end to end.

With no secret (a document written before this existed, or a cluster without an access
document), :func:`chunk_key` is None and names stay the unkeyed BLAKE3 digest; frames say which
they are (``frame.FLAG_KEYED``), so old data keeps reading.
"""

from __future__ import annotations

import blake3

__all__ = ["NAMING_CONTEXT", "CHUNK_KEY_SIZE", "chunk_key"]

NAMING_CONTEXT = "maillage chunk names v1"
CHUNK_KEY_SIZE = 32


def chunk_key(secret: str, tenant: str, policy: str) -> bytes | None:
    """K(tenant, policy) from the access document's hex ``secret``; None when ``secret`` is empty."""
    if not secret:
        return None
    material = b"".join((bytes.fromhex(secret), b"\x00", tenant.encode(), b"\x00", policy.encode()))
    return blake3.blake3(material, derive_key_context=NAMING_CONTEXT).digest()
