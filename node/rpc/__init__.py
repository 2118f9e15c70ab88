"""The gRPC edge: the gate that authenticates every call, thin servicers, the protobuf <-> domain
conversion, the error boundary (`boundary`) and the gRPC transport to peers (`grpc_transport`)."""
