"""The `maillage` command: run nodes, try a local mesh, move objects, see where they live."""

from __future__ import annotations

import argparse
import importlib
import sys

from maillage.cli.common import CommandError
from maillage.node.runtime.allocator import keep_large_buffers

__all__ = ["COMMANDS", "CommandError", "build_parser", "main"]


# The module registering each top-level command. `maillage <command>` builds that module's parser
# alone, so a command imports only what it runs: a node (a long-lived daemon) never loads the SDK,
# the admin API or the benchmark harness (~20 MB of resident memory each), and `status` starts in
# less time. Anything else (no command, --help, a typo) builds them all. tests/cli/test_cli_table.py
# checks this table against the full parser.
COMMANDS = {
    "demo": "demo", "mb": "objects_cmd", "ls": "objects_cmd", "cp": "objects_cmd", "rm": "objects_cmd",
    "where": "where_cmd", "node": "node_cmd", "chaos": "chaos_cmd", "audit": "audit_cmd",
    "layout": "layout_cmd", "cluster": "cluster_cmd", "tenant": "access_cmd", "key": "access_cmd",
    "bench": "bench_cmd", "sim": "sim_cmd", "status": "status_cmd", "repair": "status_cmd",
    "energy": "energy_cmd", "console": "console_cmd",
}
ORDER = ("demo", "objects_cmd", "where_cmd", "node_cmd", "chaos_cmd", "audit_cmd", "layout_cmd", "cluster_cmd",
         "access_cmd", "bench_cmd", "sim_cmd", "status_cmd", "energy_cmd", "console_cmd")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line: every command, or only the module of `command` when it is a known one."""
    parser = argparse.ArgumentParser(
        prog="maillage",
        description="maillage: a replicated object store for a mesh of many small sites, "
                    "with data-residency rules.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (COMMANDS[command],) if command in COMMANDS else ORDER:
        module = importlib.import_module(f"maillage.cli.{name}")
        register = getattr(module, "add_parsers", None) or module.add_parser
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    given = sys.argv[1:] if argv is None else argv
    parser = build_parser(given[0] if given else None)
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
