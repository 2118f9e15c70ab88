"""`maillage where BUCKET KEY`: where a key lives under its bucket's policy, and why."""

from __future__ import annotations

import argparse
import dataclasses
import json

from maillage.cli.common import CREDENTIALS_NOTE, MESH_SCHEME, add_endpoint_option, open_client, table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "where", help="show which partition, nodes and sites hold a key, and why",
        description="Show where KEY of BUCKET lives according to placement (a pure function of "
                    "layout, policy and key, computed here exactly as the nodes do): the bucket's "
                    "policy (the location prefixes its data may rest in and the number of copies R), "
                    "the index partition holding the key's manifest, its replica nodes with their "
                    "sites and locations, and the handoff nodes that stand in when a replica is down "
                    "(always inside the policy). If the object exists, the replicas of each of its "
                    "chunks are shown too. The key need not exist. The mesh is reached through "
                    "--endpoint HOST:PORT or $MAILLAGE_ENDPOINT. " + CREDENTIALS_NOTE)
    p.add_argument("bucket", metavar="BUCKET")
    p.add_argument("key", metavar="KEY")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    add_endpoint_option(p)
    p.set_defaults(func=run_command)


def _chunk_placement(client, layout, policy: str, bucket: str, key: str) -> list[dict] | None:
    """Replicas of each chunk of the object, or None if it does not exist (or is inline: [])."""
    from maillage.client import NoSuchKey
    from maillage.placement import chunk_partition, format_location, partition_table

    try:
        refs = client.object_chunks(bucket, key)
    except NoSuchKey:
        return None
    table_ = partition_table(layout, policy)
    chunks = []
    for digest, length in refs:
        p = chunk_partition(digest, table_.bits)
        chunks.append({"digest": digest.hex(), "length": length, "partition": p,
                       "replicas": [{"node": n, "site": layout.node(n).site,
                                     "location": format_location(layout.location_of(n))}
                                    for n in table_.replicas(p)]})
    return chunks


def _replica_row(r, layout) -> list[str]:
    return [r.site if r.node == r.site else f"{r.node} (site {r.site})", r.location, layout.node(r.node).address]


def run_command(args: argparse.Namespace) -> int:
    bucket = args.bucket[len(MESH_SCHEME):] if args.bucket.startswith(MESH_SCHEME) else args.bucket
    with open_client(args) as client:
        placement = client.where(bucket, args.key)
        layout = client.layout()
        chunks = _chunk_placement(client, layout, placement.policy, bucket, args.key)
    policy = layout.policy(placement.policy)
    if args.json:
        doc = dataclasses.asdict(placement)
        doc.update(layout_version=layout.version, partitions=1 << layout.partition_bits,
                   exists=chunks is not None, chunks=chunks or [])
        print(json.dumps(doc, indent=2))
        return 0
    allow = ", ".join(placement.allow)
    eligible = layout.eligible_nodes(policy.name)
    eligible_sites = sorted({n.site for n in eligible})
    print(f"{bucket}/{args.key}")
    print(f"  policy     {placement.policy}: data may rest only in {allow}; "
          f"{placement.replicas_required} copies, each on a distinct site")
    print(f"  eligible   {len(eligible)} node(s) on {len(eligible_sites)} site(s): {', '.join(eligible_sites)}")
    print(f"  partition  {placement.partition} of {1 << layout.partition_bits} "
          f"(the bucket's index partition: the manifest of every key of {bucket} lives there; "
          f"layout v{layout.version})")
    print("  index replicas (hold the key's manifest; first = preferred coordinator):")
    print(table([_replica_row(r, layout) for r in placement.index_replicas], indent="    "))
    if placement.handoffs:
        print("  handoffs (take writes while a replica is down, then hand them back):")
        print(table([_replica_row(r, layout) for r in placement.handoffs], indent="    "))
    else:
        print("  handoffs: none (no further eligible site)")
    if chunks is None:
        print("  object: does not exist (yet); its chunks will be placed by their content digest")
    elif not chunks:
        print("  object: stored inline in its manifest (small object): no separate chunks")
    else:
        print(f"  object: {len(chunks)} chunk(s), each placed by its BLAKE3 digest:")
        rows = [[c["digest"][:16], str(c["length"]), f"p{c['partition']}",
                 ", ".join(f"{r['site']} ({r['location']})" for r in c["replicas"])] for c in chunks]
        print(table(rows, indent="    ", right=(1,)))
    return 0
