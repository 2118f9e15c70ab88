"""The node's runtime services: clocks, background loops, bounded fan-out, rate limits, the upload
memory budget and the allocator settings."""
