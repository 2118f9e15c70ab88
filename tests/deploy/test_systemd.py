"""deploy/systemd/maillage-node.service passes `systemd-analyze verify` (Debian `systemd`, installed by
.ci/run), which needs the ExecStart binary to exist: the test verifies a copy whose ExecStart names
the `maillage` script pip installed for this Python (the unit itself names /opt/maillage/bin)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "maillage-node.service"
INSTALLED = "/opt/maillage/bin/maillage"


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: install Debian's `systemd` (.ci/run does as root)")
    path = tmp_path / UNIT.name
    path.write_text(unit_text)
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)


def installed_script() -> Path:
    """The `maillage` script pip installed for this Python (its scripts dir; else the one on PATH)."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "maillage", Path(sys.executable).parent / "maillage",
                      Path(shutil.which("maillage") or "/nonexistent")):
        if candidate.exists():
            return candidate
    pytest.fail("no `maillage` script: install the package (pip install -e .)")


def local_unit() -> str:
    script = installed_script()
    text = UNIT.read_text()
    assert INSTALLED in text
    return text.replace(INSTALLED, str(script))


def test_the_unit_verifies_without_a_word(tmp_path):
    done = verify(local_unit(), tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and UNIT.name not in out, out


def test_verify_catches_a_bad_setting(tmp_path):
    """The check has teeth: a wrong value is reported (systemd ignores it with a warning)."""
    done = verify(local_unit().replace("ProtectSystem=strict", "ProtectSystem=bogus"), tmp_path)
    assert "ProtectSystem" in done.stdout + done.stderr or "protect system" in (done.stdout + done.stderr).lower()


def test_the_unit_is_hardened_and_sized():
    text = UNIT.read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert settings["User"] == "maillage" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["Restart"] == "on-failure"
    assert settings["EnvironmentFile"].startswith("/etc/maillage/")
    # the node's caps: 4096 gRPC + 512 S3 connections, 512 more for stores and channels
    from maillage.node.rpc.deadlines import GrpcLimits
    from maillage.node.runtime.fdlimit import OTHER_FDS
    from maillage.node.s3.door import DoorLimits
    assert int(settings["LimitNOFILE"]) >= GrpcLimits().max_connections + DoorLimits().max_connections + OTHER_FDS
    assert "--ops-listen" in settings["ExecStart"] + text
