"""deploy/container/Containerfile, checked offline (it cannot be built here: the python:3.11-slim base
image cannot be pulled): every COPY source exists, every package folder pyproject.toml maps is
copied, and the image runs as a user that is not root."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "deploy" / "container" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", FILE.read_text())
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M) if not m.group(0).lstrip().startswith("#")]


def test_every_copied_path_exists():
    copies = [args.split() for op, args in instructions() if op == "COPY"]
    assert copies
    for args in copies:
        for source in [a for a in args[:-1] if not a.startswith("--")]:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"


def test_every_package_folder_is_copied():
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    tops = {d.split("/")[0] for d in dirs}
    copied = {args.split()[0] for op, args in instructions() if op == "COPY"}
    assert tops <= copied, tops - copied


def test_the_base_and_the_user():
    ops = instructions()
    assert ops[0] == ("FROM", "python:3.11-slim")
    user = [args for op, args in ops if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert ("ENTRYPOINT", '["maillage"]') in ops
