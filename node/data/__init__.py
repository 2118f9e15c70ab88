"""The data path: the coordinator (placement, quorum, chunks, manifests), multipart uploads, the
chunker and the cache of bucket records."""
