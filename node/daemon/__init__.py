"""Starting a node: configuration and stores (`bootstrap`), the composition root (`wiring`) and the
process with its gRPC and S3 ports (`server`). The only package that knows every other one."""
