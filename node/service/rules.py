"""Who may do what: one rule table for both front doors.

An operation is named once (`GetObject`, `PutObject`, `Heartbeat`...), whichever door it comes
through: the gRPC gate looks a method up in `GRPC_METHODS`, the S3 door names the operation of each
route (`maillage.node.s3.routes`). Its `Rule` says, in three parts:

* `nodes`: whether a node of the layout may call it with its certificate alone (node-to-node
  traffic: replication, repair, gossip);
* `key`: what an access key must be allowed to do (`read`, `write` or `admin`, by its role), or
  None when no key opens it;
* `bucket`: what the caller must be allowed on the bucket the request names (`read` or `write`),
  checked by the service layer (`tenancy.Tenancy`) against the bucket's record: a tenant's key
  touches only its tenant's buckets (unless the bucket's policy lets it read), a key limited to
  some buckets only those, a read-only key never writes; anonymous callers only read, where the
  bucket's policy allows. None: the operation names no bucket (cluster calls, ListBuckets);
* `territory`: whose authority over a policy's data the operation needs (`territory.py`). For a
  node's call, the calling node must be inside the policy of: the request (`policy`: chunks named
  with their policy), this node's own record of the bucket named (`bucket`), the record or
  tombstone sent (`record`), or one the chunk is held here for (`chunk`). For a client's call,
  `bucket` means this node must be inside the bucket's policy to serve it (else OutsideTerritory,
  naming nodes inside). None: no policy's data is touched (cluster calls, bucket record reads:
  a node outside a policy must learn where to send a request; records rest only inside it).

`admit` applies the first two parts to an identified caller; the doors call it before any
handler runs. A method or operation missing from the table is refused: nothing new is served by
accident. `tests/node/test_rules.py` and `tests/cluster/test_trust.py` walk every gRPC method and
every S3 operation with every kind of caller against this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from maillage.node.errors import AccessDenied
from maillage.node.service.tenancy import Caller
from maillage.proto import bulk
from maillage.proto.trust.access import Action

__all__ = ["GRPC_METHODS", "OPERATIONS", "Rule", "S3_OPERATIONS", "admit", "rule_of_method"]


Territory = Literal["policy", "bucket", "record", "chunk"]


@dataclass(frozen=True)
class Rule:
    nodes: bool
    key: Action | None
    bucket: Action | None = None
    territory: Territory | None = None


NODE = Rule(nodes=True, key=None)
ADMIN = Rule(nodes=False, key="admin")
NODE_OR_ADMIN = Rule(nodes=True, key="admin")
NODE_OR_READ = Rule(nodes=True, key="read")
READ = Rule(nodes=False, key="read")
READ_BUCKET = Rule(nodes=False, key="read", bucket="read", territory="bucket")
WRITE_BUCKET = Rule(nodes=False, key="write", bucket="write", territory="bucket")
NODE_IN_POLICY = Rule(nodes=True, key=None, territory="policy")
NODE_IN_BUCKET = Rule(nodes=True, key=None, territory="bucket")
NODE_IN_RECORD = Rule(nodes=True, key=None, territory="record")
AUDIT_IN_BUCKET = Rule(nodes=True, key="admin", territory="bucket")  # an admin's key reads it for the audit

OPERATIONS: Mapping[str, Rule] = {
    # The cluster: the layout is public to any caller of the cluster; the rest is for nodes and admins.
    "GetInfo": NODE_OR_READ,
    "GetLayout": NODE_OR_READ,
    "PushLayout": ADMIN,
    "GetStagedLayout": ADMIN,
    "StageLayout": ADMIN,
    "Heartbeat": NODE,
    "GetStatus": ADMIN,
    "Repair": ADMIN,
    "GetAccess": NODE_OR_ADMIN,   # derived verification keys: forge requests within their window
    "PushAccess": ADMIN,
    # Replicas: node to node, each inside the policy of the data it touches (`nodeplane.py`); an
    # admin may read what the audit needs.
    "HasChunks": NODE_IN_POLICY,
    "PutManifest": NODE_IN_BUCKET,
    "GetManifest": AUDIT_IN_BUCKET,
    "ListIndex": AUDIT_IN_BUCKET,
    "PutBucketRecord": NODE_IN_RECORD,  # and never against a holder of the name under another policy
    "GetBucketRecord": NODE_OR_ADMIN,
    "DeleteBucketRecord": NODE_IN_RECORD,
    "ListBucketRecords": NODE_OR_ADMIN,
    "SyncSummaries": NODE_IN_POLICY,    # index groups: the bucket's own policy here too
    "SyncListing": NODE_IN_POLICY,
    "ReferencedChunks": NODE_IN_POLICY,
    "Inventory": ADMIN,                 # a node's whole holdings: for the audit only
    "PutChunk": NODE_IN_POLICY,
    # Chunks read by clients name their bucket and are checked like object reads; a node reads
    # chunks held here for a policy it is inside of.
    "GetChunk": Rule(nodes=True, key="read", bucket="read", territory="chunk"),
    # Buckets (both doors).
    "CreateBucket": WRITE_BUCKET,    # the bucket will be the caller's tenant's, made inside its policy
    "HeadBucket": Rule(nodes=False, key="read", bucket="read"),  # any node says where a bucket is
    "ListBuckets": READ,             # shows a tenant its own buckets only (`Caller.sees`)
    "DeleteBucket": WRITE_BUCKET,
    "GetBucketLocation": Rule(nodes=False, key="read", bucket="read"),
    "ListObjects": READ_BUCKET,
    "DeleteObjects": WRITE_BUCKET,
    # A bucket's default encryption: AES256 at rest for every object, read from the record alone.
    "GetBucketEncryption": Rule(nodes=False, key="read", bucket="read"),
    "PutBucketEncryption": Rule(nodes=False, key="write", bucket="write"),
    "DeleteBucketEncryption": Rule(nodes=False, key="write", bucket="write"),
    # Versioning: the state rests in the bucket's index (inside its policy); only its owner tenant's
    # keys may change it (`bucket="write"`: the owner, never a read-only key).
    "GetBucketVersioning": READ_BUCKET,
    "PutBucketVersioning": WRITE_BUCKET,
    "ListObjectVersions": READ_BUCKET,
    # Bucket tags: a setting in the bucket's index (`data/bucket_settings.py`), like the versioning state.
    "GetBucketTagging": READ_BUCKET,
    "PutBucketTagging": WRITE_BUCKET,
    "DeleteBucketTagging": WRITE_BUCKET,
    # ACLs, disabled as S3's "bucket owner enforced" (`s3/acl.py`): read by readers, set (to what
    # holds anyway) by writers.
    "GetBucketAcl": READ_BUCKET,
    "PutBucketAcl": WRITE_BUCKET,
    "GetObjectAcl": READ_BUCKET,
    "PutObjectAcl": WRITE_BUCKET,
    "GetBucketOwnershipControls": READ_BUCKET,
    "PutBucketOwnershipControls": WRITE_BUCKET,
    "GetPublicAccessBlock": READ_BUCKET,
    "PutPublicAccessBlock": WRITE_BUCKET,
    "DeletePublicAccessBlock": WRITE_BUCKET,
    # Bucket policies (`bucket_policy.py`): a setting in the bucket's index, set by its owner's write
    # keys; it may let other tenants and anonymous callers read (`bucket_access.py`).
    "GetBucketPolicy": READ_BUCKET,
    "PutBucketPolicy": WRITE_BUCKET,
    "DeleteBucketPolicy": WRITE_BUCKET,
    "GetBucketPolicyStatus": READ_BUCKET,
    # CORS rules: a setting in the bucket's index; a browser's preflight reads them with no
    # credentials (`s3/cors.py`), outside this table.
    "GetBucketCors": READ_BUCKET,
    "PutBucketCors": WRITE_BUCKET,
    "DeleteBucketCors": WRITE_BUCKET,
    # Lifecycle rules: a setting in the bucket's index, applied by the node leading the bucket.
    "GetBucketLifecycleConfiguration": READ_BUCKET,
    "PutBucketLifecycleConfiguration": WRITE_BUCKET,
    "DeleteBucketLifecycle": WRITE_BUCKET,
    # Object lock (`node/object_lock.py`): the bucket's configuration rests with its versioning
    # state, a version's retention and legal hold with the version; bypassing a GOVERNANCE
    # retention also needs a key for all the tenant's buckets (`objects._may_bypass`).
    "GetObjectLockConfiguration": READ_BUCKET,
    "PutObjectLockConfiguration": WRITE_BUCKET,
    "GetObjectRetention": READ_BUCKET,
    "PutObjectRetention": WRITE_BUCKET,
    "GetObjectLegalHold": READ_BUCKET,
    "PutObjectLegalHold": WRITE_BUCKET,
    # Objects (both doors).
    "HeadObject": READ_BUCKET,
    "GetObject": READ_BUCKET,
    "PutObject": WRITE_BUCKET,
    "PutSmallObject": WRITE_BUCKET,
    "PostObject": WRITE_BUCKET,      # a browser's form upload, signed by its policy document (`s3/post_object.py`)
    "DeleteObject": WRITE_BUCKET,
    "CopyObject": WRITE_BUCKET,      # and read on the source bucket
    "GetObjectAttributes": READ_BUCKET,
    "GetObjectTagging": READ_BUCKET,
    "PutObjectTagging": WRITE_BUCKET,
    "DeleteObjectTagging": WRITE_BUCKET,
    "ChunkKey": Rule(nodes=False, key="read", bucket="read"),  # the key naming a bucket's chunks, for its readers
    # Multipart uploads (the S3 door).
    "CreateMultipartUpload": WRITE_BUCKET,
    "UploadPart": WRITE_BUCKET,
    "UploadPartCopy": WRITE_BUCKET,  # and read on the source bucket
    "CompleteMultipartUpload": WRITE_BUCKET,
    "AbortMultipartUpload": WRITE_BUCKET,
    "ListParts": READ_BUCKET,
    "ListMultipartUploads": READ_BUCKET,
}

_V1 = "/maillage.v1"
_SERVICES = {
    "Cluster": ("GetInfo", "GetLayout", "PushLayout", "GetStagedLayout", "StageLayout", "Heartbeat", "GetStatus",
                "Repair", "GetAccess", "PushAccess"),
    "Replica": ("HasChunks", "PutManifest", "GetManifest", "ListIndex", "PutBucketRecord", "GetBucketRecord",
                "DeleteBucketRecord", "ListBucketRecords", "SyncSummaries", "SyncListing", "ReferencedChunks",
                "Inventory"),
    "Objects": ("CreateBucket", "HeadBucket", "ListBuckets", "DeleteBucket", "HeadObject", "GetObject", "DeleteObject",
                "CopyObject", "ListObjects", "ChunkKey", "PutBucketVersioning", "GetBucketVersioning",
                "ListObjectVersions", "PutObjectLockConfiguration", "GetObjectLockConfiguration",
                "PutObjectRetention", "GetObjectRetention", "PutObjectLegalHold", "GetObjectLegalHold",
                "PutBucketLifecycleConfiguration", "GetBucketLifecycleConfiguration", "DeleteBucketLifecycle"),
}
#: gRPC method path -> the operation it is.
GRPC_METHODS: Mapping[str, str] = {
    **{f"{_V1}.{service}/{op}": op for service, ops in _SERVICES.items() for op in ops},
    bulk.PUT_CHUNK: "PutChunk",
    bulk.GET_CHUNK: "GetChunk",
    bulk.PUT_OBJECT: "PutObject",
    bulk.PUT_SMALL_OBJECT: "PutSmallObject",
}

#: The operations the S3 door serves (each route names one: `maillage.node.s3.routes`).
S3_OPERATIONS = frozenset({
    "ListBuckets", "CreateBucket", "HeadBucket", "DeleteBucket", "GetBucketLocation", "ListObjects",
    "DeleteObjects", "ListMultipartUploads", "PutObject", "CopyObject", "GetObject", "HeadObject", "DeleteObject",
    "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload",
    "ListParts", "GetObjectAttributes", "GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging",
    "GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption",
    "GetBucketVersioning", "PutBucketVersioning", "ListObjectVersions",
    "GetBucketTagging", "PutBucketTagging", "DeleteBucketTagging",
    "GetBucketAcl", "PutBucketAcl", "GetObjectAcl", "PutObjectAcl",
    "GetBucketOwnershipControls", "PutBucketOwnershipControls", "GetPublicAccessBlock", "PutPublicAccessBlock",
    "DeletePublicAccessBlock", "GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy", "GetBucketPolicyStatus",
    "GetObjectLockConfiguration", "PutObjectLockConfiguration", "GetObjectRetention", "PutObjectRetention",
    "GetObjectLegalHold", "PutObjectLegalHold",
    "GetBucketLifecycleConfiguration", "PutBucketLifecycleConfiguration", "DeleteBucketLifecycle",
    "GetBucketCors", "PutBucketCors", "DeleteBucketCors", "PostObject",
})

_ROLE_ALLOWS: Mapping[str, frozenset[str]] = {
    "read-only": frozenset({"read"}),
    "read-write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}


def rule_of_method(method: str) -> Rule | None:
    """The rule of a gRPC method path, None for a method nobody is served."""
    operation = GRPC_METHODS.get(method)
    return None if operation is None else OPERATIONS[operation]


def admit(operation: str, rule: Rule, caller: Caller) -> None:
    """Raise AccessDenied unless this kind of caller may call the operation at all (its bucket is
    checked later, with the bucket's record). An anonymous caller (the S3 door's unsigned requests)
    may only read a bucket: its policy decides then."""
    if caller.anonymous:
        if rule.bucket != "read":
            raise AccessDenied(f"{operation} needs an access key: an anonymous request may only read a bucket "
                               "whose policy allows it")
        return
    if caller.node_id is not None:
        if not rule.nodes:
            raise AccessDenied(f"{operation} is for clients with an access key, not for nodes")
        return
    key = caller.key
    if key is None or rule.key is None:
        raise AccessDenied(f"{operation} is for nodes of the cluster only" if rule.key is None
                           else f"{operation} needs an access key")
    if rule.key not in _ROLE_ALLOWS[key.role]:
        raise AccessDenied(f"{operation} needs a key allowed to {rule.key}; key {key.key_id} of tenant "
                           f"{key.tenant!r} is {key.role}")
