"""The S3 front door: the S3 HTTP API served by a node on top of its own coordinator (no extra hop).

Phase 1 of issue 15: path-style addressing, SigV4 in the Authorization header (signed or unsigned
payload), buckets (with the residency policy as LocationConstraint), Put/Get (Range)/Head/Delete
Object and ListObjectsV2. See ARCHITECTURE.md, "S3 front door".
"""

from .server import S3Server

__all__ = ["S3Server"]
