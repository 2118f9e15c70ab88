"""Helper process for test_crash.py: writes chunks and manifests until it is killed.

Usage: python crash_writer.py ROOT ROUND THREADS

Each writer thread loops: encode a frame, ChunkStore.put it, MetaStore.put_manifest a manifest
naming it, then prints "ROUND THREAD I DIGEST_HEX" (flushed) - the acknowledgement. The parent
SIGKILLs this process at a random moment and checks every acknowledged line afterwards.
"""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path

from maillage.proto.frame import encode_frame, read_frame_header
from maillage.storage import ChunkRef, ChunkStore, HybridClock, Manifest, MetaStore


def payload(rnd: random.Random) -> bytes:
    n = rnd.randrange(1, 300_000)
    if rnd.random() < 0.5:
        return rnd.randbytes(n)
    word = rnd.randbytes(rnd.randrange(1, 64))
    return (word * (n // len(word) + 1))[:n]


def main() -> None:
    root, round_no, threads = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    chunks = ChunkStore(root / "chunks")
    meta = MetaStore(root / "meta")
    clock = HybridClock()
    out = threading.Lock()

    def writer(t: int) -> None:
        rnd = random.Random(round_no * 1000 + t)
        i = 0
        while True:
            data = payload(rnd)
            frame = encode_frame(data)
            digest = read_frame_header(frame).digest
            chunks.put(frame)
            meta.put_manifest(
                Manifest(
                    "crash",
                    f"r{round_no}/t{t}/{i:06d}",
                    clock.now(),
                    len(data),
                    digest.hex(),
                    chunks=(ChunkRef(digest, len(data)),),
                    writer="w",
                )
            )
            with out:
                sys.stdout.write(f"{round_no} {t} {i} {digest.hex()}\n")
                sys.stdout.flush()
            i += 1

    for t in range(threads):
        threading.Thread(target=writer, args=(t,), daemon=True).start()
    with out:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
