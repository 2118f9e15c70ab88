"""`maillage <command>` builds only its own module's parser: the table saying which is right."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from maillage.cli.main import COMMANDS, build_parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_is_in_the_table_under_the_module_that_registers_it():
    full = _commands(build_parser())
    assert set(full) == set(COMMANDS)
    for name in full:
        alone = _commands(build_parser(name))
        assert name in alone, name
        # the lone parser is the same command: same options
        assert sorted(a.dest for a in alone[name]._actions) == sorted(a.dest for a in full[name]._actions)


def test_a_node_process_never_imports_the_sdk_nor_the_harness():
    script = ("import sys; from maillage.cli.main import build_parser; build_parser('node'); "
              "import maillage.node.daemon.server; "
              "print(' '.join(m for m in sys.modules if m.startswith(('maillage.client', 'maillage.benchmarks', "
              "'maillage.cli.access_cmd', 'aiohttp', 'awscrt', 'maillage.node.s3.server'))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_the_admin_commands_never_import_the_clients():
    # `maillage status` and `audit` talk to the admin API only: the SDK's clients are 70 ms of
    # their start (lazy names of `maillage.client`), yet the exceptions and profiles still load.
    script = ("import sys; from maillage.cli.main import build_parser; build_parser('status'); "
              "import maillage.cli.status_cmd, maillage.cli.audit_cmd; from maillage.client import NoSuchKey, Profile; "
              "print(' '.join(m for m in sys.modules if m in ('maillage.client._async', 'maillage.client._sync')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
    lazy = subprocess.run([sys.executable, "-c", "from maillage.client import Client; print(Client.__module__)"],
                          capture_output=True, text=True, check=True)
    assert lazy.stdout.strip() == "maillage.client"


def test_an_unknown_command_still_lists_them_all(capsys):
    with pytest.raises(SystemExit):
        build_parser("stauts").parse_args(["stauts"])
    assert "status" in capsys.readouterr().err
