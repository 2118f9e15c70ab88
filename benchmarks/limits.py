"""The physical limits of this machine, measured in the same run as the mesh figures.

A throughput figure alone says little: 300 MB/s is excellent on a spinning disk and poor on
NVMe. So the harness measures, on the same machine and the same data directory, the ceilings each
figure runs into, and prints every result as a ratio to its ceiling:

* ``disk_write_fsync``: sequential writes of 4 MiB blocks, each followed by ``fsync`` (what a
  durable chunk write costs at best, without the per-file create/rename overhead);
* ``disk_read_cold``: reading that file back after ``posix_fadvise(DONTNEED)`` evicted it;
* ``blake3`` and ``zstd_*``: one thread, at the zstd level the frame codec uses
  (``proto.frame.encode_frame``'s default), on incompressible and on text-like data;
* ``loopback_tcp``: one TCP stream through 127.0.0.1 between two threads;
* ``grpc_raw_put`` / ``grpc_raw_get``: 1 MiB raw-bytes messages (no protobuf) streamed to and
  from a gRPC server in another process: the floor of our bulk path.
* ``measure_grpc_unary`` (not in ``measure_limits``): unary calls of 4 KiB raw bytes over mutual
  TLS, 32 in flight, to a server in another process doing nothing: the floor of every small
  request, in calls/s and CPU per call on each side (``python -m maillage.benchmarks.limits
  --unary``).

Each figure is the median of ``repeat`` runs, in MB/s (10^6 bytes/s).

Run alone: ``python -m maillage.benchmarks.limits [--dir PATH] [--mb 256]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import zstandard

__all__ = ["measure_limits", "measure_disk_write", "measure_grpc", "measure_grpc_unary", "zstd_level", "main"]

BLOCK = 4 << 20
MESSAGE = 1 << 20
_PUT, _GET, _UNARY = "/maillage.bench.Raw/Put", "/maillage.bench.Raw/Get", "/maillage.bench.Raw/Unary"


def zstd_level() -> int:
    """The level the frame codec compresses chunks at (read from the code, not assumed)."""
    from maillage.proto.frame import encode_frame
    return int(inspect.signature(encode_frame).parameters["level"].default)


def _median_rate(run: Callable[[], tuple[int, float]], repeat: int) -> dict:
    rates = []
    for _ in range(repeat):
        nbytes, seconds = run()
        rates.append(nbytes / seconds / 1e6)
    return {"mb_per_s": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates]}


# ----- disk ----------------------------------------------------------------------------------

def _disk_write(path: Path, total: int) -> tuple[int, float]:
    block = os.urandom(BLOCK)
    began = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(total // BLOCK):
            os.write(fd, block)
            os.fsync(fd)
    finally:
        os.close(fd)
    return total, time.perf_counter() - began


def measure_disk_write(directory: Path, total: int = 256 << 20, repeat: int = 3) -> dict:
    """``disk_write_fsync`` alone (4 MiB writes, each fsync'd) in `directory`, the file removed after:
    {"mb_per_s", "runs", "label"}. The ceiling of a durable PUT is this rate divided by R."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "limits-disk.bin"
    try:
        row = _median_rate(lambda: _disk_write(path, total), repeat)
    finally:
        path.unlink(missing_ok=True)
    return {**row, "label": LABELS["disk_write_fsync"], "bytes": total}


def _disk_read_cold(path: Path) -> tuple[int, float]:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        buf = bytearray(BLOCK)
        total = 0
        began = time.perf_counter()
        while n := os.readv(fd, [buf]):
            total += n
        return total, time.perf_counter() - began
    finally:
        os.close(fd)


# ----- CPU -----------------------------------------------------------------------------------

def _text_like(n: int) -> bytes:
    """JSON-log-like lines: compresses about 4-5x at zstd level 1, like real logs and records."""
    rnd = random.Random(7)
    levels, paths = ("INFO", "WARN", "DEBUG"), [f"/api/v1/item/{i}" for i in range(300)]
    out, size = [], 0
    while size < n:
        line = (f'{{"ts":{1700000000 + rnd.randrange(10**6)},"level":"{rnd.choice(levels)}",'
                f'"path":"{rnd.choice(paths)}","ms":{rnd.random() * 50:.3f},"user":{rnd.randrange(5000)}}}\n')
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def _hash_rate(data: bytes, rounds: int) -> tuple[int, float]:
    view = memoryview(data)
    began = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(view), BLOCK):
            blake3.blake3(view[i:i + BLOCK]).digest()
    return len(data) * rounds, time.perf_counter() - began


def _zstd_rate(data: bytes, level: int, rounds: int) -> tuple[int, float]:
    compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
    view = memoryview(data)
    began = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(view), BLOCK):
            compressor.compress(view[i:i + BLOCK])
    return len(data) * rounds, time.perf_counter() - began


# ----- network -------------------------------------------------------------------------------

def _loopback_tcp(total: int) -> tuple[int, float]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = [0]

    def sink() -> None:
        conn, _ = server.accept()
        buf = bytearray(MESSAGE)
        with conn:
            while n := conn.recv_into(buf):
                received[0] += n

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    payload = memoryview(os.urandom(MESSAGE))
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as client:
        for _ in range(total // MESSAGE):
            client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        thread.join()
    elapsed = time.perf_counter() - began
    server.close()
    return received[0], elapsed


async def _grpc_sink(port_file: str, tls_dir: str | None = None) -> None:
    import grpc

    from maillage.proto.channels import new_server

    async def put(messages, context) -> bytes:
        total = 0
        async for message in messages:
            total += len(message)
        return total.to_bytes(8, "big")

    async def get(request: bytes, context):
        payload = os.urandom(MESSAGE)
        for _ in range(int.from_bytes(request, "big")):
            yield payload

    async def unary(request: bytes, context) -> bytes:
        return request[:8]

    handlers = {"Put": grpc.stream_unary_rpc_method_handler(put),
                "Get": grpc.unary_stream_rpc_method_handler(get),
                "Unary": grpc.unary_unary_rpc_method_handler(unary)}
    tls = None
    if tls_dir:  # mutual TLS as between nodes (the transport cost of the secure mesh)
        from maillage.proto.trust.identity import TlsIdentity
        tls = TlsIdentity.load_node(tls_dir)
    server, port = new_server("127.0.0.1:0", tls=tls)  # plaintext unless tls_dir: gRPC itself
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("maillage.bench.Raw", handlers),))
    await server.start()
    Path(port_file).write_text(str(port))
    await server.wait_for_termination()


@contextlib.contextmanager
def _grpc_sink_process(tls: bool):
    """A gRPC sink in a child process (mutual TLS between two node identities of a throwaway cluster
    when `tls`): yields (address, the caller's identity or None, the sink's pid)."""
    with tempfile.TemporaryDirectory(prefix="maillage-grpc-") as tmp:
        port_file = Path(tmp) / "port"
        argv = [sys.executable, "-m", "maillage.benchmarks.limits", "--grpc-sink", str(port_file)]
        identity = None
        if tls:
            from maillage.proto.trust.identity import TlsIdentity, create_cluster, issue_node_certificate
            cluster = create_cluster(Path(tmp) / "cluster", "limits")
            issue_node_certificate(cluster, "sink", Path(tmp) / "sink")
            issue_node_certificate(cluster, "source", Path(tmp) / "source")
            identity = TlsIdentity.load_node(Path(tmp) / "source")
            argv += ["--tls-dir", str(Path(tmp) / "sink")]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the gRPC sink did not start")
                time.sleep(0.05)
            yield f"127.0.0.1:{port_file.read_text()}", identity, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _grpc_raw(total: int, repeat: int, tls: bool = False) -> dict[str, dict]:
    """Stream 1 MiB raw messages to and from a gRPC server in a child process."""
    import grpc

    with _grpc_sink_process(tls) as (address, identity, pid):
        return asyncio.run(_grpc_client(grpc, address, total, repeat, identity, pid))


def measure_grpc_unary(size: int = 4096, concurrency: int = 32, seconds: float = 5.0, *,
                       tls: bool = True) -> dict:
    """Unary calls of `size` raw bytes, `concurrency` in flight, to a sink in another process that
    answers 8 bytes: calls/s and CPU ms per call of the caller and of the sink. Both sides run on
    uvloop, as nodes and the benchmarks' clients do. What a small PUT or GET cannot go below: it
    makes at least two such calls (client to coordinator, coordinator to the other index replica)."""
    import uvloop

    from maillage.benchmarks.machine import process_cpu_seconds
    from maillage.proto.channels import open_channel

    async def drive(address: str, identity, pid: int) -> dict:
        payload = os.urandom(size)
        async with open_channel(address, tls=identity, peer="sink" if identity else None) as channel:
            call = channel.unary_unary(_UNARY, request_serializer=None, response_deserializer=None)
            for _ in range(200):  # warm the connection and both sides' caches up
                await call(payload)
            calls, stop = 0, time.monotonic() + seconds

            async def worker() -> None:
                nonlocal calls
                while time.monotonic() < stop:
                    await call(payload)
                    calls += 1

            t0, s0, began = os.times(), process_cpu_seconds(pid), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            t1, s1, elapsed = os.times(), process_cpu_seconds(pid), time.perf_counter() - began
        return {"calls_per_s": round(calls / elapsed, 1), "size": size, "concurrency": concurrency,
                "caller_cpu_ms_per_call": round((t1.user + t1.system - t0.user - t0.system) / calls * 1e3, 3),
                "server_cpu_ms_per_call": None if s0 is None or s1 is None else round((s1 - s0) / calls * 1e3, 3),
                "tls": tls}

    with _grpc_sink_process(tls) as (address, identity, pid):
        return uvloop.run(drive(address, identity, pid))


async def _grpc_client(grpc, address: str, total: int, repeat: int, tls=None,
                       sink_pid: int | None = None) -> dict[str, dict]:
    from maillage.benchmarks.machine import process_cpu_seconds
    from maillage.proto.channels import open_channel

    count = total // MESSAGE
    payload = os.urandom(MESSAGE)
    async with open_channel(address, tls=tls, peer="sink" if tls else None) as channel:
        put = channel.stream_unary(_PUT, request_serializer=None, response_deserializer=None)
        get = channel.unary_stream(_GET, request_serializer=None, response_deserializer=None)

        async def messages():
            for _ in range(count):
                yield payload

        async def one_put() -> tuple[int, float]:
            began = time.perf_counter()
            got = int.from_bytes(await put(messages()), "big")
            return got, time.perf_counter() - began

        async def one_get() -> tuple[int, float]:
            began, got = time.perf_counter(), 0
            async for message in get(count.to_bytes(8, "big")):
                got += len(message)
            return got, time.perf_counter() - began

        await one_put()  # warm the connection up
        result = {}
        prefix = "grpc_tls" if tls else "grpc_raw"
        for name, fn in ((f"{prefix}_put", one_put), (f"{prefix}_get", one_get)):
            rates, mine, theirs = [], [], []
            for _ in range(repeat):
                t0, s0 = os.times(), process_cpu_seconds(sink_pid) if sink_pid else None
                nbytes, seconds = await fn()
                t1, s1 = os.times(), process_cpu_seconds(sink_pid) if sink_pid else None
                rates.append(nbytes / seconds / 1e6)
                mib = nbytes / MESSAGE
                mine.append((t1.user + t1.system - t0.user - t0.system) / mib * 1e3)
                if s0 is not None and s1 is not None:
                    theirs.append((s1 - s0) / mib * 1e3)
            # CPU per MiB moved: this process (the caller) and the server process
            result[name] = {"mb_per_s": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates],
                            "caller_cpu_ms_per_mib": round(statistics.median(mine), 3),
                            "server_cpu_ms_per_mib": round(statistics.median(theirs), 3) if theirs else None}
        return result


def measure_grpc(total: int = 256 << 20, repeat: int = 3, *, tls: bool = True) -> dict[str, dict]:
    """gRPC streaming of 1 MiB raw messages to and from another process, over mutual TLS by default:
    MB/s and the CPU milliseconds per MiB of the caller and of the server."""
    found = _grpc_raw(total, repeat, tls=tls)
    for name, row in found.items():
        row["label"] = LABELS[name]
    return found


# ----- all -----------------------------------------------------------------------------------

LABELS = {
    "disk_write_fsync": "disk sequential write, fsync every 4 MiB",
    "disk_read_cold": "disk sequential read, page cache evicted",
    "blake3": "BLAKE3, 1 thread, 4 MiB buffers",
    "zstd_random": "zstd compress (frame level), incompressible, 1 thread",
    "zstd_text": "zstd compress (frame level), text-like, 1 thread",
    "loopback_tcp": "loopback TCP, 1 stream, 1 MiB sends",
    "grpc_raw_put": "gRPC raw bytes, client-stream of 1 MiB messages",
    "grpc_raw_get": "gRPC raw bytes, server-stream of 1 MiB messages",
    "grpc_tls_put": "gRPC raw bytes over mutual TLS, client-stream of 1 MiB messages",
    "grpc_tls_get": "gRPC raw bytes over mutual TLS, server-stream of 1 MiB messages",
}


def measure_limits(directory: Path, *, disk_bytes: int = 256 << 20, cpu_bytes: int = 64 << 20,
                   net_bytes: int = 512 << 20, repeat: int = 3,
                   step: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Every limit as {"mb_per_s", "runs", "label"} (zstd rows also carry "level")."""
    say = step or (lambda name: None)
    directory.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    path = directory / "limits-disk.bin"
    try:
        say("disk write+fsync")
        results["disk_write_fsync"] = _median_rate(lambda: _disk_write(path, disk_bytes), repeat)
        say("disk cold read")
        results["disk_read_cold"] = _median_rate(lambda: _disk_read_cold(path), repeat)
    finally:
        path.unlink(missing_ok=True)
    say("BLAKE3 and zstd")
    random_data, text = os.urandom(cpu_bytes), _text_like(cpu_bytes)
    results["blake3"] = _median_rate(lambda: _hash_rate(random_data, 2), repeat)
    level = zstd_level()
    results["zstd_random"] = {**_median_rate(lambda: _zstd_rate(random_data, level, 1), repeat), "level": level}
    results["zstd_text"] = {**_median_rate(lambda: _zstd_rate(text, level, 1), repeat), "level": level}
    say("loopback TCP")
    results["loopback_tcp"] = _median_rate(lambda: _loopback_tcp(net_bytes), repeat)
    say("gRPC raw bytes")
    try:
        results.update(_grpc_raw(net_bytes, repeat))
    except Exception as exc:  # a limit we could not take is reported, not fatal
        results["grpc_raw_put"] = results["grpc_raw_get"] = {"mb_per_s": None, "error": str(exc)}
    for name, row in results.items():
        row["label"] = LABELS[name]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maillage.benchmarks.limits",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="data directory to measure (default: a temp dir)")
    parser.add_argument("--mb", type=int, default=256, help="MiB written and read for the disk figures")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grpc-sink", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", help=argparse.SUPPRESS)
    parser.add_argument("--unary", action="store_true",
                        help="only the floor of a small request: unary 4 KiB calls over mutual TLS, 32 in flight")
    args = parser.parse_args(argv)
    if args.grpc_sink:
        import uvloop
        uvloop.run(_grpc_sink(args.grpc_sink, args.tls_dir))
        return 0
    if args.unary:
        print(json.dumps(measure_grpc_unary(), indent=2))
        return 0
    with tempfile.TemporaryDirectory(prefix="maillage-limits-", dir=args.dir) as tmp:
        results = measure_limits(Path(tmp), disk_bytes=args.mb << 20, repeat=args.repeat,
                                 step=lambda name: print(f"... {name}", file=sys.stderr, flush=True))
    for row in results.values():
        print(f"{row['label']:<55} {row['mb_per_s'] or 0:>10,.1f} MB/s")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
