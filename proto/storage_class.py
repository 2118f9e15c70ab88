"""Where a version's chunks rest, as its manifest says: read alike by the node and the SDK.

A lifecycle Transition (issue 26's cold tier) moves a version's chunks from its bucket's policy to
that policy's cold policy (`Policy.cold` in the layout: inside the same territory, e.g. every copy
on the backbone) and restates its manifest with two attributes: the policy the chunks now rest
under (`CHUNK_POLICY_ATTRIBUTE`) and the S3 storage class the rule named (`STORAGE_CLASS_ATTRIBUTE`).
A manifest without them has its chunks under its bucket's policy, class STANDARD.

The classes accepted are those S3 reads at once (STANDARD_IA, GLACIER_IR): a cold version is read as
any other, from the backbone. GLACIER and DEEP_ARCHIVE, which S3 makes readers restore first, are
refused rather than served with a meaning they do not have.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CHUNK_POLICY_ATTRIBUTE", "STORAGE_CLASS_ATTRIBUTE", "STANDARD", "COLD_CLASSES",
           "chunk_policy_named", "storage_class"]

CHUNK_POLICY_ATTRIBUTE = "chunk-policy"
STORAGE_CLASS_ATTRIBUTE = "storage-class"
STANDARD = "STANDARD"
COLD_CLASSES = ("STANDARD_IA", "GLACIER_IR")


def chunk_policy_named(attributes: Mapping[str, str], bucket_policy: str) -> str:
    """The policy a version's chunks rest under, as its manifest names it (its bucket's when none)."""
    return attributes.get(CHUNK_POLICY_ATTRIBUTE) or bucket_policy


def storage_class(attributes: Mapping[str, str]) -> str:
    """The S3 storage class of a version: the one its transition set, else STANDARD."""
    return attributes.get(STORAGE_CLASS_ATTRIBUTE) or STANDARD
