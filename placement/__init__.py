"""maillage.placement: where data rests. Pure: no I/O, no network; stdlib + blake3.

Layering, bottom to top: ``errors`` (one exception tree) -> ``energy`` (a site's declared energy
source) -> ``layout`` (frozen model and validation) -> ``layout_codec`` (TOML text) and ``keys``
(key -> partition) -> ``ring`` (capacity-weighted tokens, per-policy sub-ring) and ``tiers``
(which copies rest on backbone sites) -> ``accept``
(placement algorithm 2: deferred acceptance) and ``shed`` (algorithm 3: uncapped walk, surplus shed)
-> ``table`` (replica walk with distinct sites, spread preference and bounded loads, by the layout's
algorithm; cached tables). Everything users touch is re-exported here; the modules are
implementation detail.
"""

from maillage.placement.errors import (
    LayoutError,
    PlacementError,
    PolicyUnsatisfiable,
    UnknownNode,
    UnknownPolicy,
    UnknownSite,
)
from maillage.placement.keys import bucket_partition, chunk_partition
from maillage.placement.layout import (
    BACKBONE,
    EDGE,
    TIERS,
    Layout,
    Node,
    NodeState,
    Policy,
    Site,
    format_location,
    parse_location,
)
from maillage.placement.layout_codec import format_layout, parse_layout
from maillage.placement.table import PartitionTable, moved_partitions, partition_table

PartitionTable.__module__ = __name__

__all__ = [
    "PlacementError",
    "LayoutError",
    "PolicyUnsatisfiable",
    "UnknownNode",
    "UnknownPolicy",
    "UnknownSite",
    "NodeState",
    "TIERS",
    "EDGE",
    "BACKBONE",
    "Site",
    "Node",
    "Policy",
    "Layout",
    "parse_location",
    "format_location",
    "parse_layout",
    "format_layout",
    "chunk_partition",
    "bucket_partition",
    "partition_table",
    "PartitionTable",
    "moved_partitions",
]
