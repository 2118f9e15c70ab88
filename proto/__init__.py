"""The gRPC contract of a maillage node (package `maillage.v1`): generated stubs plus bulk names."""

from . import bulk
from . import maillage_pb2 as pb
from . import maillage_pb2_grpc as rpc

__all__ = ["bulk", "pb", "rpc"]
