"""`maillage node run`: start one node daemon."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from maillage.placement import parse_layout


def add_parser(sub: argparse._SubParsersAction) -> None:
    node = sub.add_parser("node", help="run a node daemon")
    node_sub = node.add_subparsers(dest="node_command", required=True)
    run = node_sub.add_parser(
        "run", help="serve one node until SIGTERM",
        description="Start a node daemon. Its site and location come from the layout (the admin's "
                    "truth), never from this command line: the node id must be in the layout.")
    run.add_argument("--id", required=True, help="this node's id in the layout")
    run.add_argument("--data-dir", required=True, type=Path, help="where chunks and metadata live")
    run.add_argument("--layout", type=Path, help="layout TOML file (else the stored one, else --seed)")
    run.add_argument("--seed", action="append", default=[], metavar="HOST:PORT",
                     help="a peer to fetch the layout from (repeatable)")
    run.add_argument("--listen", help="listen address (default: this node's address in the layout)")
    run.add_argument("--chunk-size", type=int, default=4 * 1024 * 1024, help="chunk size in bytes")
    run.add_argument("--no-fsync", action="store_true",
                     help="skip fsync (unsafe: for throwaway benchmarks only)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from maillage.node.server import NodeConfig, run_node

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    layout = parse_layout(args.layout.read_text()) if args.layout else None
    run_node(NodeConfig(node_id=args.id, data_dir=args.data_dir, layout=layout, seeds=tuple(args.seed),
                        listen=args.listen, fsync=not args.no_fsync, chunk_size=args.chunk_size))
    return 0
