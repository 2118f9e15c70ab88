"""Crash safety: SIGKILL a writer process at random moments, then check what it acknowledged.

A real subprocess (crash_writer.py) writes chunks and manifests from several threads and prints
each id only after both puts returned. We kill it with SIGKILL at a random moment, many times,
reusing the same directories, and after each kill reopen the stores and check that:

* every acknowledged chunk reads back and verifies (BLAKE3 of its plain bytes == its name);
* every acknowledged manifest is there and names that chunk;
* no stored frame is torn: ``get`` of every digest present returns a verified frame (nothing is
  quarantined), and temp files left by the kill are cleaned at reopen.

SIGKILL exercises process crashes (torn writes, half-done renames); it cannot simulate a power
cut, which would need a block-device fault injector (dm-flakey / dm-log-writes).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from maillage.proto.frame import decode_frame
from maillage.storage import ChunkNotFound, ChunkStore, MetaStore

HELPER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 15


def _run_and_kill(root: Path, round_no: int, rnd: random.Random) -> list[tuple[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(root), str(round_no), "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[tuple[str, str]] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if parts == ["ready"]:
                ready.set()
            elif len(parts) == 4:
                acked.append((f"r{parts[0]}/t{parts[1]}/{int(parts[2]):06d}", parts[3]))
        ready.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        assert ready.wait(30), "writer did not start"
        time.sleep(rnd.uniform(0.02, 0.9))
        assert proc.poll() is None, f"writer died on its own: {proc.stderr.read() if proc.stderr else ''}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # only the pid we started
        proc.wait(10)
    thread.join(10)
    assert proc.returncode == -signal.SIGKILL
    return list(acked)


def _check(chunks: ChunkStore, meta: MetaStore, acked: list[tuple[str, str]], when: str) -> None:
    for key, hexdigest in acked:
        digest = bytes.fromhex(hexdigest)
        frame = chunks.get(digest)  # CorruptFrame if torn, ChunkNotFound if lost
        plain = decode_frame(frame, expected_digest=digest)
        m = meta.get_manifest("crash", key)
        assert m is not None, f"acknowledged manifest {key} lost {when}"
        assert m.chunks[0].digest == digest and m.size == len(plain)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    rnd = random.Random(20240611)
    root = tmp_path / "node"
    all_acked: list[tuple[str, str]] = []
    seen: set[bytes] = set()
    kills_mid_write = 0
    for round_no in range(ROUNDS):
        acked = _run_and_kill(root, round_no, rnd)
        all_acked.extend(acked)
        tmp = root / "chunks" / "tmp"
        kills_mid_write += bool(tmp.exists() and any(tmp.iterdir()))

        chunks = ChunkStore(root / "chunks")
        assert list(tmp.iterdir()) == [], "temp files survived reopen"
        meta = MetaStore(root / "meta")
        try:
            _check(chunks, meta, acked, f"after kill {round_no}")
            # Everything visible that this round may have written, acknowledged or not, is whole.
            present = list(chunks.iter_digests())
            for digest in present:
                if digest in seen:
                    continue
                try:
                    decode_frame(chunks.get(digest), expected_digest=digest)
                except ChunkNotFound:
                    pass
                seen.add(digest)
            assert chunks.stats().quarantined == 0
            assert chunks.stats().chunks == len(present)
        finally:
            meta.close()
    chunks = ChunkStore(root / "chunks")
    with MetaStore(root / "meta") as meta:
        _check(chunks, meta, all_acked, "at the end")
        assert len(list(meta.iter_manifests("crash"))) >= len(all_acked)
    assert len(all_acked) > ROUNDS * 3, "the writer acknowledged too little to mean anything"
    print(f"{len(all_acked)} acknowledged writes over {ROUNDS} kills, "
          f"{kills_mid_write} kills left a temp file behind")
