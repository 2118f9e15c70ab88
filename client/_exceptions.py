"""The SDK's exceptions: one tree, each with a message a person can act on.

    MaillageError
    ├── InvalidRequest            bad input: nothing was stored
    │   ├── InvalidBucketName
    │   ├── InvalidKey
    │   ├── MetadataTooLarge
    │   └── UnknownPolicy
    ├── NoSuchBucket
    ├── NoSuchKey
    ├── NoSuchChunk               a chunk a manifest names is missing on the node asked
    ├── BucketAlreadyExists
    ├── BucketNotEmpty
    ├── PolicyUnsatisfiable       the layout has fewer eligible sites than the policy's replicas
    ├── OutsidePolicy             a node refused data its location may not hold
    ├── OutsideTerritory          the node asked serves none of this bucket (the SDK asks another)
    ├── BucketDisputed            nodes hold the bucket's name under two policies: refused
    ├── PermissionDenied          the caller may not do this (credentials, signatures)
    │   └── CredentialsError      no usable access key, trust dir or endpoint was given
    ├── IntegrityError            bytes did not match their BLAKE3 digest on every copy
    ├── StorageFull               a node's disk is full
    ├── Unavailable               the mesh could not do it now; retrying later may work
    │   ├── QuorumNotReached      fewer than two sites acknowledged
    │   ├── NodeUnavailable       no node answered
    │   └── Overloaded            a node's memory budget for uploads in flight was spent
    └── InternalError             a bug on a node: it said so (please report it)

gRPC errors are translated in one place (`_errors.exception_for`, `_errors.translate`), keeping the
original as __cause__.
"""


class MaillageError(Exception):
    """Base of every error the SDK raises."""


class InvalidRequest(MaillageError):
    pass


class InvalidBucketName(InvalidRequest):
    pass


class InvalidKey(InvalidRequest):
    pass


class MetadataTooLarge(InvalidRequest):
    pass


class UnknownPolicy(InvalidRequest):
    pass


class NoSuchBucket(MaillageError):
    pass


class NoSuchKey(MaillageError):
    pass


class NoSuchChunk(MaillageError):
    pass


class BucketAlreadyExists(MaillageError):
    pass


class BucketNotEmpty(MaillageError):
    pass


class PolicyUnsatisfiable(MaillageError):
    pass


class OutsidePolicy(MaillageError):
    pass


class OutsideTerritory(MaillageError):
    pass


class BucketDisputed(MaillageError):
    pass


class PermissionDenied(MaillageError):
    pass


class CredentialsError(PermissionDenied):
    pass


class IntegrityError(MaillageError):
    pass


class StorageFull(MaillageError):
    pass


class Unavailable(MaillageError):
    pass


class QuorumNotReached(Unavailable):
    pass


class NodeUnavailable(Unavailable):
    pass


class Overloaded(Unavailable):
    pass


class InternalError(MaillageError):
    pass
