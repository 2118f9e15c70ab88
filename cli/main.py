"""The `maillage` command: run nodes, try a local mesh, move objects, see where they live."""

from __future__ import annotations

import argparse
import sys

from . import node_cmd


class CommandError(Exception):
    """A failure to report in one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maillage",
        description="maillage: a replicated object store for a mesh of many small sites, "
                    "with data-residency rules.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    node_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    except CommandError as exc:
        print(f"maillage: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)
