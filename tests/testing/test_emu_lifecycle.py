"""Process supervisor, teardown guarantees, disk faults and clock skew."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import SERVERS, require_netns  # noqa: E402

from maillage.testing import Mesh, Supervisor, Tmpfs, faketime_available, fill, flip_bit, truncate
from maillage.testing._sh import run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def _leftovers(prefix: str, host_if: str | None) -> list[str]:
    left = [n for n in run(["ip", "netns", "list"]).stdout.split() if n.startswith(prefix)]
    if host_if and run(["ip", "link", "show", host_if], check=False).returncode == 0:
        left.append(host_if)
    return left


def test_supervisor_kill_pause_resume_restart(net):
    with Supervisor(net) as sup:
        # the module's servers already use 7000/7001 in every site; use a second ns-local copy
        p = sup.start("n1", [sys.executable, "-c", SERVERS.replace("7000", "7100").replace("7001", "7101")],
                      site="b")
        sup.wait_port(7100, site="a", host=net.address("b"), name="n1")
        first = p.pid
        s = net.connect("a", (net.address("b"), 7100))
        s.settimeout(0.5)
        sup.pause("n1")
        s.sendall(b"ping")
        with pytest.raises(TimeoutError):
            s.recv(8)  # stopped: the kernel buffers, nobody answers
        sup.resume("n1")
        s.settimeout(5)
        assert s.recv(8) == b"ping"
        s.close()
        assert sup.kill("n1") == -9
        assert not net.can_connect("a", (net.address("b"), 7100), 0.5)
        sup.restart("n1")
        assert p.pid != first and p.starts == 2
        sup.wait_port(7100, site="b", host="127.0.0.1", name="n1")
        pid = p.pid
    assert not _alive(pid), "supervisor close must kill what it started"


def test_supervisor_reports_early_exit():
    with Supervisor() as sup:
        sup.start("bad", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
        with pytest.raises(RuntimeError, match="boom"):
            sup.wait_port(1, timeout=5, name="bad")


def test_teardown_leaves_no_namespace_interface_or_pid():
    require_netns()
    m = Mesh(["x", "y"])
    pids = [m.run_in(s, ["sleep", "300"]).pid for s in m.sites]
    m.faults.latency("x", "y", 5)
    m.faults.partition("x", "y", one_way=True)
    m.faults.bandwidth("x", "10mbit")
    pids += list(m.faults.relay_pids().values())
    prefix, host_if = m.prefix, m._host_if
    assert len(_leftovers(prefix, host_if)) == 4  # hub, x, y, host veth
    m.close()
    assert _leftovers(prefix, host_if) == []
    assert [p for p in pids if _alive(p)] == []


def test_teardown_at_interpreter_exit_without_close():
    """A harness that crashes (no close, no context manager) still cleans up via atexit."""
    require_netns()
    code = textwrap.dedent("""
        import sys
        from maillage.testing import Mesh
        m = Mesh(["p", "q"])
        m.faults.latency("p", "q", 5)
        sl = m.run_in("p", ["sleep", "300"])
        print(m.prefix, m._host_if, sl.pid, m.faults.relay_pids()["p"], flush=True)
        raise RuntimeError("harness crashed")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "harness crashed" in r.stderr
    prefix, host_if, *pids = r.stdout.split()
    assert _leftovers(prefix, host_if) == []
    assert [p for p in map(int, pids) if _alive(p)] == []


def test_tmpfs_fills_up_and_unmounts(tmp_path):
    require_netns()  # root
    with Tmpfs("4m") as t:
        assert 3 << 20 < t.free_bytes() <= 4 << 20
        filler = fill(t.path, leave_bytes=64 * 1024)
        assert t.free_bytes() <= 128 * 1024
        with pytest.raises(OSError) as e:
            with open(os.path.join(t.path, "chunk"), "wb") as f:
                f.write(os.urandom(1 << 20))
        assert e.value.errno == errno.ENOSPC
        os.unlink(filler)
        path = t.path
    assert not os.path.ismount(path)


def test_flip_bit_and_truncate(tmp_path):
    p = tmp_path / "frame"
    p.write_bytes(b"\x00" * 10 + b"\xff" * 10)
    assert flip_bit(str(p), 3, bit=2) == (0, 4)
    assert flip_bit(str(p), -1, bit=7) == (0xFF, 0x7F)
    assert p.read_bytes()[3] == 4 and p.read_bytes()[-1] == 0x7F
    assert truncate(str(p), drop=5) == 15 and p.stat().st_size == 15
    assert truncate(str(p), 4) == 4


@pytest.mark.parametrize("skew", [30, -30])
def test_clock_skew_in_a_site(net, skew):
    ok, why = faketime_available()
    if not ok:
        pytest.fail(f"clock skew unavailable: {why}", pytrace=False)
    with Supervisor(net) as sup:
        p = sup.start("clk", [sys.executable, "-c",
                              "import time, asyncio; asyncio.run(asyncio.sleep(0.05)); "
                              "time.sleep(0.05); print('T', time.time(), flush=True)"],
                      site="a", clock_skew=skew)
        p.popen.wait(15)
        now = time.time()
        line = [x for x in p.log_tail().splitlines() if x.startswith("T ")]
        assert line, p.log_tail()
        seen = float(line[0].split()[1])
        assert abs((seen - now) - skew) < 5, f"expected {skew:+} s, saw {seen - now:+.1f} s"
