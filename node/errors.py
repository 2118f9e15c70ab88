"""Errors of the node's domain code, one class per thing a person can get wrong or the mesh can hit.

Domain code raises these (and the typed errors of placement and storage); the gRPC boundary
(`maillage.node.rpc.boundary`) turns each into a status code plus its class name in trailing metadata,
which the SDK turns back into its own exception of the same name.
"""


class NodeError(Exception):
    """Base of the node's errors."""


class InvalidArgument(NodeError):
    """The request itself is malformed."""


class InvalidBucketName(InvalidArgument):
    pass


class InvalidKey(InvalidArgument):
    pass


class MetadataTooLarge(InvalidArgument):
    pass


class InvalidRequest(InvalidArgument):
    """A malformed stream or message (e.g. a PutObject stream without its header)."""


class NoSuchBucket(NodeError):
    pass


class NoSuchKey(NodeError):
    pass


class BucketAlreadyExists(NodeError):
    pass


class BucketNotEmpty(NodeError):
    pass


class OutsidePolicy(NodeError):
    """This node's location is outside the bucket's policy: it must not store anything of it."""


class OutsideTerritory(NodeError):
    """This node is outside the policy of the bucket a request names: it serves none of that
    bucket's data (its peers would refuse it as coordinator), so the request must be served by a
    node of the policy's territory; `nodes` names them (the S3 door forwards to one, the SDK
    retries on one)."""

    def __init__(self, message: str, *, policy: str = "", nodes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.policy = policy
        self.nodes = nodes


class BucketDisputed(NodeError):
    """Nodes hold records of one bucket name under different policies (one of them forged, or a
    delete and re-create not yet repaired): the bucket is refused rather than risk placing its data
    where its true policy does not allow."""


class ResidencyWidening(NodeError):
    """A server-side copy would let data rest where its source bucket's policy does not allow:
    the destination's policy must allow nothing the source's does not (sent as OutsidePolicy)."""


class BucketConflict(BucketAlreadyExists):
    """A node holds another record (another generation or policy) of the bucket's name: a
    bucket's record is never replaced, so this one is refused."""


class BucketDeleted(NoSuchBucket):
    """This generation of the bucket was deleted (the node holds its tombstone)."""


class QuorumNotReached(NodeError):
    """Fewer distinct sites than required acknowledged a write, or answered a read."""


class IntegrityError(NodeError):
    """Bytes did not match their BLAKE3 digest."""


class PeerUnavailable(NodeError):
    """A peer did not answer (down, partitioned, or past its deadline)."""


class AccessDenied(NodeError):
    """The caller's credentials do not allow this request (another tenant's bucket, a read-only key)."""
