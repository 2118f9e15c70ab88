"""Cluster life, beside the data path: membership and gossip, repair, chunk GC and scrub."""
