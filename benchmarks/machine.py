"""What the figures were measured on, and how much memory and CPU the processes used.

Read straight from /proc (Linux) rather than through psutil: the harness needs three numbers
(a process's resident set, its peak, the machine's load) and a dependency for them would be
one more thing to install on every machine that runs the benchmarks.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import threading
from collections.abc import Callable

__all__ = ["machine_facts", "loadavg", "rss_bytes", "peak_rss_bytes", "reset_peak", "RssSampler",
           "snapshot_rss", "cpu_seconds", "process_cpu_seconds"]

PACKAGES = ("maillage", "grpcio", "protobuf", "blake3", "zstandard", "rocksdict", "uvloop", "matplotlib")


def _proc_field(path: str, name: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages: other work on the machine shows here."""
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return []


def machine_facts(data_dir: str | None = None) -> dict:
    mem = _proc_field("/proc/meminfo", "MemTotal")
    packages: dict[str, str | None] = {}
    facts: dict[str, object] = {
        "cores": os.cpu_count(),
        "cpu": _proc_field("/proc/cpuinfo", "model name"),
        "ram_bytes": int(mem.split()[0]) * 1024 if mem else None,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "loadavg_at_start": loadavg(),
        "packages": packages,
    }
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    if data_dir:
        facts["data_dir"] = data_dir
        facts["data_fs"] = _filesystem_of(data_dir)
    return facts


def _filesystem_of(path: str) -> str | None:
    """Filesystem type and device of the mount holding `path` (longest matching mount point)."""
    path = os.path.realpath(path)
    best, found = "", None
    try:
        with open("/proc/mounts") as f:
            for line in f:
                device, mount, fstype = line.split()[:3]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, found = mount, f"{fstype} on {device} ({mount})"
    except OSError:
        return None
    return found


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a live process, or None once it has gone."""
    value = _proc_field(f"/proc/{pid}/status", "VmRSS")
    return int(value.split()[0]) * 1024 if value else None


def peak_rss_bytes(pid: int) -> int | None:
    """Highest resident set since start or since the last `reset_peak` (VmHWM)."""
    value = _proc_field(f"/proc/{pid}/status", "VmHWM")
    return int(value.split()[0]) * 1024 if value else None


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs; allowed for our own children)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    t = os.times()
    return t.user + t.system


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of another process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class RssSampler:
    """Samples the RSS of some processes every `interval` seconds in a thread; keeps the peak.

    The peak also folds in VmHWM (read at `stop`), so a spike shorter than the interval is not
    missed. `pids` is called at each sample, so a restarted node is followed by its new pid.
    """

    def __init__(self, pids: Callable[[], dict[str, int]], interval: float = 0.2) -> None:
        self._pids = pids
        self.interval = interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        for pid in self._pids().values():
            reset_peak(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(peak_rss_bytes)

    def _sample(self, read: Callable[[int], int | None] = rss_bytes) -> None:
        for name, pid in self._pids().items():
            value = read(pid)
            if value is not None and value > self.peak.get(name, 0):
                self.peak[name] = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()


def snapshot_rss(pids: dict[str, int]) -> dict[str, int | None]:
    return {name: rss_bytes(pid) for name, pid in pids.items()}

