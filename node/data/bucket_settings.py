"""A bucket's settings beyond its record (its tags): each one entry of the bucket's own index under
a reserved key, so it rests, replicates and is repaired inside the bucket's policy like the bucket's
objects, and the record (name, generation, policy) never changes. Newest write wins (HLC); read
from the index replicas, as the versioning state is (`versions.py`). An empty value is "not set"."""

from __future__ import annotations

import asyncio

from maillage.node import validation
from maillage.node.data.coordinator import Coordinator
from maillage.storage import BucketRecord, Manifest

__all__ = ["SETTINGS", "TAGS", "LIFECYCLE", "CORS", "BucketSettings", "read_setting", "read_settings", "write_setting",
           "write_settings"]

SETTINGS = validation.RESERVED_PREFIX + "settings/"  # + the setting's name
TAGS = "tags"                                        # the bucket's tag set (S3's PutBucketTagging)
LIFECYCLE = "lifecycle"                              # its lifecycle rules (`lifecycle.LifecycleConfig`)
CORS = "cors"                                        # its CORS rules, as the S3 door encoded them
_VALUE = "value"


async def read_settings(c: Coordinator, bucket: BucketRecord, key: str) -> dict[str, str]:
    """The attributes of the bucket's index entry `key`, newest across its index replicas ({}: none)."""
    m = await c.latest(bucket, key)
    return {} if m is None or m.deleted else dict(m.attributes)


async def read_setting(c: Coordinator, bucket: BucketRecord, key: str, attribute: str) -> str:
    """The `attribute` of the bucket's index entry `key` ("": none)."""
    return (await read_settings(c, bucket, key)).get(attribute, "")


async def write_settings(c: Coordinator, bucket: BucketRecord, key: str, attributes: dict[str, str]) -> None:
    """Write the bucket's index entry `key` holding `attributes` (empty values left out), numbered
    above its newest version."""
    version = await c.next_version(asyncio.ensure_future(c.latest(bucket, key)))
    kept = tuple(sorted((k, v) for k, v in attributes.items() if v))
    await c.write_newest(bucket, Manifest(bucket=bucket.name, key=key, version=version, size=0, etag="",
                                          writer=c.node_id, generation=bucket.generation, attributes=kept))


async def write_setting(c: Coordinator, bucket: BucketRecord, key: str, attribute: str, value: str) -> None:
    """Write the bucket's index entry `key` holding `attribute` alone."""
    await write_settings(c, bucket, key, {attribute: value})


class BucketSettings:
    """Read and write a bucket's settings through the coordinator; holds no state."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator

    async def get(self, bucket: BucketRecord, name: str) -> str:
        return await read_setting(self._c, bucket, SETTINGS + name, _VALUE)

    async def put(self, bucket: BucketRecord, name: str, value: str) -> None:
        await write_setting(self._c, bucket, SETTINGS + name, _VALUE, value)
