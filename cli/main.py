"""The `maillage` command: run nodes, try a local mesh, move objects, see where they live."""

from __future__ import annotations

import argparse
import sys

from maillage.cli import (
    access_cmd,
    audit_cmd,
    bench_cmd,
    chaos_cmd,
    cluster_cmd,
    demo,
    layout_cmd,
    node_cmd,
    objects_cmd,
    sim_cmd,
    status_cmd,
    where_cmd,
)
from maillage.cli.common import CommandError
from maillage.node.runtime.allocator import keep_large_buffers

__all__ = ["CommandError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maillage",
        description="maillage: a replicated object store for a mesh of many small sites, "
                    "with data-residency rules.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    objects_cmd.add_parsers(sub)
    where_cmd.add_parser(sub)
    node_cmd.add_parser(sub)
    chaos_cmd.add_parser(sub)
    audit_cmd.add_parser(sub)
    layout_cmd.add_parser(sub)
    cluster_cmd.add_parser(sub)
    access_cmd.add_parsers(sub)
    bench_cmd.add_parser(sub)
    sim_cmd.add_parser(sub)
    status_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_large_buffers()  # every command may move chunks: the node, transfers, benchmarks
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    except CommandError as exc:
        print(f"maillage: {exc}", file=sys.stderr)
        code = 1
    except BrokenPipeError:
        code = 1
    except Exception as exc:  # an SDK error that escaped a command: still one line
        from maillage.client import MaillageError
        if not isinstance(exc, MaillageError):
            raise
        from maillage.cli.common import describe_error
        print(f"maillage: {describe_error(exc)}", file=sys.stderr)
        code = 1
    sys.exit(code)
