"""Replicas and how to reach them: this node's `LocalReplica`, the `Transport` seam to the others,
replica sets and quorums, and the anti-entropy summaries replicas compare."""
