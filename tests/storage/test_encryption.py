"""Encryption at rest: chunk files, inline object bytes and user metadata never rest in plaintext.

What these tests pin (see ``maillage/storage/keys.py`` and ``chunks.py`` for the formats):

* no plaintext of a random marker anywhere under the data directory (chunk files, RocksDB WAL and
  SST files) after storing a chunk, an inline object and user metadata;
* chunk files 0600, their directories 0700; the node key file 0600, made with O_EXCL;
* a wrong node key cannot read (refused at open, and cannot decrypt another node's files);
* a flipped bit anywhere in an encrypted chunk file is ``CorruptFrame`` (and quarantined);
* wrapped keys survive a restart; files and records written before encryption still read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from maillage.proto import frame as wire
from maillage.proto.frame import chunk_digest, decode_frame, encode_frame
from maillage.storage import (
    BucketRecord,
    ChunkNotFound,
    ChunkRef,
    ChunkStore,
    CorruptFrame,
    CorruptRecord,
    DataKeys,
    Manifest,
    MetaStore,
    NodeKey,
    StorageError,
    decode_manifest,
    encode_manifest,
    open_chunk_file,
)
from maillage.storage.chunks import ENCRYPTED_MAGIC

KEY_ID = slice(5, 13)  # where an encrypted chunk file names its data key


class Node:
    """One node's stores as `maillage.node.daemon.bootstrap.open_stores` makes them."""

    def __init__(self, root: Path, key_file: Path | None = None) -> None:
        self.root = root
        self.key_file = key_file or root / "trust" / "data.key"
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        self.data = root / "data"
        self.meta = MetaStore(self.data / "meta")
        self.node_key = NodeKey.load_or_create(self.key_file)
        self.keys = DataKeys(self.meta, self.node_key)
        self.meta.use_data_keys(self.keys)
        self.chunks = ChunkStore(self.data / "chunks", fsync=False, keys=self.keys)

    def close(self) -> None:
        self.meta.close()


@pytest.fixture
def node(tmp_path: Path):
    n = Node(tmp_path)
    yield n
    n.close()


def marker(tag: str) -> bytes:
    return f"MARKER-{tag}-".encode() + os.urandom(12).hex().encode()


def incompressible_frame(mark: bytes, size: int = 200_000) -> tuple[bytes, bytes]:
    data = os.urandom(size // 2) + mark + os.urandom(size // 2)
    frame = encode_frame(data)
    assert mark in frame, "the plain frame holds the marker as is (raw codec)"
    return frame, chunk_digest(data)


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def flush_rocksdb(path: Path) -> None:
    """Move everything from the WAL into SST files too, so both are searched."""
    db = Rdict(str(path), Options(raw_mode=True))
    try:
        db.flush()
        db.compact_range(None, None)
    finally:
        db.close()


# ----- nothing in plaintext ------------------------------------------------------------------

def test_no_plaintext_of_chunk_inline_bytes_or_user_metadata_under_the_data_dir(node: Node) -> None:
    chunk_mark, inline_mark, meta_mark = marker("chunk"), marker("inline"), marker("usermeta")
    frame, digest = incompressible_frame(chunk_mark)
    assert node.chunks.put(frame, "france-only")
    assert node.meta.put_bucket(BucketRecord("scans", "france-only", 1, owner="hospital")) is None
    big = Manifest("scans", "big", 2, 200_012, "etag", user_metadata=(("note", meta_mark.decode()),),
                   chunks=(ChunkRef(digest, 200_012),))
    small = Manifest("scans", "small", 3, len(inline_mark), "etag2", inline=inline_mark,
                     user_metadata=(("x-" + meta_mark.decode(), "v"),))
    assert node.meta.put_manifests([big, small]) == [True, True]
    # everything reads back as it was written
    assert node.chunks.get(digest) == frame
    assert node.meta.get_manifest("scans", "big") == big
    assert node.meta.get_manifest("scans", "small") == small
    assert node.meta.list_manifests("scans") == [big, small]
    # ... and nothing of it rests in plaintext: WAL first, then the SST files after a flush
    node.close()
    for mark in (chunk_mark, inline_mark, meta_mark):
        assert files_containing(node.data, mark) == [], mark
    flush_rocksdb(node.data / "meta")
    assert any(p.suffix == ".sst" for p in (node.data / "meta").iterdir())
    for mark in (chunk_mark, inline_mark, meta_mark):
        assert files_containing(node.data, mark) == [], mark
    # what stays in clear, as documented: key names (ordered listings)
    assert files_containing(node.data / "meta", b"small")


def test_the_same_writes_without_keys_would_show_the_markers(tmp_path: Path) -> None:
    """The control of the test above: the search finds plaintext where there is some."""
    chunk_mark, inline_mark = marker("chunk"), marker("inline")
    frame, _ = incompressible_frame(chunk_mark)
    ChunkStore(tmp_path / "chunks", fsync=False).put(frame)
    with MetaStore(tmp_path / "meta") as meta:
        meta.put_manifest(Manifest("b", "k", 1, len(inline_mark), "e", inline=inline_mark))
    assert files_containing(tmp_path / "chunks", chunk_mark)
    assert files_containing(tmp_path / "meta", inline_mark)


def test_chunk_files_are_0600_in_0700_directories(node: Node) -> None:
    frame, digest = incompressible_frame(marker("m"), 1000)
    node.chunks.put(frame, "p")
    path = node.chunks.path_of(digest)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert path.read_bytes()[:4] == ENCRYPTED_MAGIC


def test_node_key_file_is_0600_made_once_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    key = NodeKey.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_size == 32
    with pytest.raises(FileExistsError):
        NodeKey.create(path)  # O_EXCL: never overwritten
    assert NodeKey.load_or_create(path).key_id == key.key_id
    assert path.read_bytes().hex() not in repr(key)
    path.chmod(0o644)
    with pytest.raises(StorageError, match="readable by others"):
        NodeKey.load(path)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(StorageError, match="32 bytes"):
        NodeKey.load(path)


# ----- keys ------------------------------------------------------------------------------------

def test_a_key_per_policy_for_chunks_and_per_tenant_for_manifests(node: Node) -> None:
    f1, d1 = incompressible_frame(marker("a"), 1000)
    f2, d2 = incompressible_frame(marker("b"), 1000)
    node.chunks.put(f1, "france-only")
    node.chunks.put(f2, "eu-wide")
    id1 = node.chunks.path_of(d1).read_bytes()[KEY_ID]
    id2 = node.chunks.path_of(d2).read_bytes()[KEY_ID]
    assert id1 == node.keys.policy_key("france-only") and id2 == node.keys.policy_key("eu-wide")
    assert id1 != id2
    assert node.keys.tenant_key("hospital") != node.keys.tenant_key("townhall")
    assert node.keys.tenant_key("hospital") not in (id1, id2)
    # a chunk shared by two policies is one file; either policy reads it
    assert not node.chunks.put(f1, "eu-wide")
    assert node.chunks.get(d1) == f1


def keyed_frame(mark: bytes, name_key: bytes, size: int = 1000) -> tuple[bytes, bytes]:
    data = os.urandom(size // 2) + mark + os.urandom(size // 2)
    digest = chunk_digest(data, name_key)
    return encode_frame(data, digest=digest, key=name_key), digest


def test_a_chunk_put_for_a_tenant_is_sealed_with_that_tenants_key(node: Node) -> None:
    f1, d1 = keyed_frame(marker("h"), b"h" * 32)
    f2, d2 = keyed_frame(marker("t"), b"t" * 32)
    assert node.chunks.put(f1, "france-only", tenant="hospital")
    assert node.chunks.put(f2, "france-only", tenant="townhall")
    id1 = node.chunks.path_of(d1).read_bytes()[KEY_ID]
    id2 = node.chunks.path_of(d2).read_bytes()[KEY_ID]
    assert id1 == node.keys.tenant_key("hospital") and id2 == node.keys.tenant_key("townhall")
    assert id1 != id2 and node.keys.policy_key("france-only") not in (id1, id2)
    assert node.chunks.tenant_of(d1) == "hospital" and node.chunks.tenant_of(d2) == "townhall"
    assert node.chunks.get(d1) == f1 and node.chunks.get(d2) == f2
    # the key that already seals the tenant's manifests, named as a tenant's
    assert node.keys.scope_of(id1) == ("tenant", "hospital")
    assert node.keys.scope_of(node.keys.policy_key("france-only")) == ("policy", "france-only")
    assert node.keys.scope_of(b"\0" * 8) is None
    # a file already stored keeps its key
    assert not node.chunks.put(f1, "france-only", tenant="townhall")
    assert node.chunks.tenant_of(d1) == "hospital"


def test_without_a_tenant_or_a_keyed_name_the_policy_key_seals(node: Node) -> None:
    f1, d1 = keyed_frame(marker("k"), b"k" * 32)
    f2, d2 = incompressible_frame(marker("u"), 1000)  # an unkeyed name: shared across tenants
    node.chunks.put(f1, "eu-wide")
    node.chunks.put(f2, "eu-wide", tenant="hospital")
    for d in (d1, d2):
        assert node.chunks.path_of(d).read_bytes()[KEY_ID] == node.keys.policy_key("eu-wide")
        assert node.chunks.tenant_of(d) == ""
    assert node.chunks.get(d1) == f1 and node.chunks.get(d2) == f2
    with pytest.raises(ChunkNotFound):
        node.chunks.tenant_of(b"\1" * 32)


def test_wrapped_keys_survive_a_restart(tmp_path: Path) -> None:
    n = Node(tmp_path)
    frame, digest = incompressible_frame(marker("r"), 5000)
    n.chunks.put(frame, "p")
    n.meta.put_bucket(BucketRecord("b", "p", 1, owner="t"))
    m = Manifest("b", "k", 1, 3, "e", inline=b"abc", user_metadata=(("a", "b"),))
    n.meta.put_manifest(m)
    ids = n.keys.policy_key("p"), n.keys.tenant_key("t")
    n.close()
    again = Node(tmp_path)
    try:
        assert again.chunks.get(digest) == frame
        assert again.meta.get_manifest("b", "k") == m
        assert (again.keys.policy_key("p"), again.keys.tenant_key("t")) == ids  # no new key made
        assert len(again.meta.key_records()) == 2
    finally:
        again.close()


def test_a_wrong_node_key_cannot_read(tmp_path: Path) -> None:
    n = Node(tmp_path / "a")
    frame, digest = incompressible_frame(marker("w"), 5000)
    n.chunks.put(frame, "p")
    n.meta.put_manifest(Manifest("b", "k", 1, 3, "e", inline=b"abc"))
    raw_chunk = n.chunks.path_of(digest).read_bytes()
    # the data keys of this directory do not unwrap with another node key
    with pytest.raises(StorageError, match="wrapped by node key"):
        DataKeys(n.meta, NodeKey.generate())
    n.close()
    # another node (its own node key and data keys) cannot decrypt this node's files
    other = Node(tmp_path / "b")
    try:
        other.keys.policy_key("p")
        with pytest.raises(CorruptFrame, match="no data key"):
            open_chunk_file(raw_chunk, digest, other.keys)
    finally:
        other.close()
    # and a record wrapped by this node key but altered does not unwrap either
    meta = MetaStore(tmp_path / "a" / "data" / "meta")
    try:
        key_id, record = meta.key_records()[0]
        meta.put_key_record(key_id, record[:-1] + bytes([record[-1] ^ 1]))
        with pytest.raises(StorageError, match="does not unwrap"):
            DataKeys(meta, n.node_key)
    finally:
        meta.close()


def test_read_only_keys_of_a_running_store_decrypt_its_files(node: Node) -> None:
    frame, digest = incompressible_frame(marker("ro"), 5000)
    node.chunks.put(frame, "p")
    keys = DataKeys.read_only(node.data / "meta", node.key_file)  # while the store is open
    plain = open_chunk_file(node.chunks.path_of(digest).read_bytes(), digest, keys)
    assert decode_frame(plain, expected_digest=digest) == decode_frame(frame)
    with pytest.raises(StorageError, match="read only"):
        keys.policy_key("another")


# ----- corruption ----------------------------------------------------------------------------

def test_every_flipped_bit_of_an_encrypted_chunk_file_is_corrupt(node: Node) -> None:
    frame, digest = incompressible_frame(marker("f"), 64)
    node.chunks.put(frame, "p")
    raw = node.chunks.path_of(digest).read_bytes()
    for i in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            with pytest.raises(wire.CorruptFrame):
                wire.verify_frame(open_chunk_file(bytes(bad), digest, node.keys), expected_digest=digest)
    for cut in range(len(raw)):
        with pytest.raises(wire.CorruptFrame):
            wire.verify_frame(open_chunk_file(raw[:cut], digest, node.keys), expected_digest=digest)
    # a valid file under another digest's name fails too (the digest is authenticated)
    _, other = incompressible_frame(marker("g"), 64)
    with pytest.raises(CorruptFrame):
        open_chunk_file(raw, other, node.keys)


@pytest.mark.parametrize("where", ["header", "key id", "nonce", "ciphertext", "tag"])
def test_a_corrupt_encrypted_file_is_quarantined_and_a_good_copy_restores_it(node: Node, where: str) -> None:
    frame, digest = incompressible_frame(marker("q"), 20_000)
    node.chunks.put(frame, "p")
    path = node.chunks.path_of(digest)
    raw = bytearray(path.read_bytes())
    offset = {"header": 4, "key id": 7, "nonce": 20, "ciphertext": len(raw) // 2, "tag": len(raw) - 3}[where]
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFrame, match="quarantine"):
        node.chunks.get(digest)
    assert not path.exists()
    quarantined = list((node.chunks.root / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].read_bytes() == bytes(raw)
    assert node.chunks.stats().quarantined == 1 and node.chunks.stats().chunks == 0
    assert node.chunks.put(frame, "p")  # repair: a good copy from another replica
    assert node.chunks.get(digest) == frame


def test_a_manifest_whose_clear_fields_were_altered_does_not_decrypt(node: Node) -> None:
    m = Manifest("b", "k", 7, 3, "e", inline=b"abc")
    raw = encode_manifest(m, node.keys, "t")
    assert raw[0] == 5 and b"abc" not in raw
    assert decode_manifest(raw, node.keys) == m
    moved = bytearray(raw)
    moved[8] ^= 1  # the version: the sealed part belongs to version 7 only
    with pytest.raises(CorruptRecord, match="encrypted part"):
        decode_manifest(bytes(moved), node.keys)
    with pytest.raises(CorruptRecord, match="no data keys"):
        decode_manifest(raw)
    # nothing secret: no key needed, nothing sealed
    tomb = Manifest("b", "gone", 8, 0, "", deleted=True)
    assert decode_manifest(encode_manifest(tomb, node.keys, "t")) == tomb


# ----- what was written before encryption ------------------------------------------------------

def test_plaintext_files_and_records_written_before_still_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    frame, digest = incompressible_frame(marker("old"), 5000)
    ChunkStore(data / "chunks", fsync=False).put(frame)
    old = Manifest("b", "k", 1, 3, "e", inline=b"abc", user_metadata=(("a", "b"),))
    with MetaStore(data / "meta") as meta:
        meta.put_bucket(BucketRecord("b", "p", 1, owner="t"))
        meta.put_manifest(old)
    n = Node(tmp_path)  # the same directory, now with keys
    try:
        assert n.chunks.path_of(digest).read_bytes() == frame  # untouched plain frame
        assert n.chunks.get(digest) == frame
        assert n.chunks.tenant_of(digest) == ""
        assert n.meta.get_manifest("b", "k") == old
        newer = Manifest("b", "k", 2, 3, "e2", inline=b"xyz")
        assert n.meta.put_manifest(newer)
        assert n.meta.get_manifest("b", "k") == newer
        assert [m.key for m in n.meta.list_manifests("b")] == ["k"]
        f2, d2 = incompressible_frame(marker("new"), 5000)
        n.chunks.put(f2, "p")
        assert n.chunks.path_of(d2).read_bytes()[:4] == ENCRYPTED_MAGIC
        # an old plain file found corrupt is still quarantined as before
        path = n.chunks.path_of(digest)
        raw = bytearray(path.read_bytes())
        raw[-10] ^= 1
        path.write_bytes(bytes(raw))
        with pytest.raises(CorruptFrame, match="quarantine"):
            n.chunks.get(digest)
    finally:
        n.close()


def test_a_store_without_keys_refuses_encrypted_files_without_quarantining_them(node: Node) -> None:
    frame, digest = incompressible_frame(marker("nk"), 5000)
    node.chunks.put(frame, "p")
    plain_store = ChunkStore(node.chunks.root, fsync=False)
    with pytest.raises(StorageError, match="no data keys") as err:
        plain_store.get(digest)
    assert not isinstance(err.value, CorruptFrame)
    assert node.chunks.path_of(digest).exists()


# ----- the node's bootstrap --------------------------------------------------------------------

def _config(tmp_path: Path, **kw):
    from maillage.node.daemon.bootstrap import NodeConfig

    (tmp_path / "trust").mkdir(exist_ok=True)
    return NodeConfig(node_id="n1", data_dir=tmp_path / "data", trust_dir=tmp_path / "trust", fsync=False, **kw)


def test_a_node_makes_its_key_in_the_trust_dir_on_first_start_and_needs_it_after(tmp_path: Path) -> None:
    from maillage.node.daemon.bootstrap import open_stores

    cfg = _config(tmp_path)
    stores = open_stores(cfg)
    key_file = tmp_path / "trust" / "data.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    frame, digest = incompressible_frame(marker("boot"), 5000)
    stores.chunks.put(frame, "p")
    stores.close()
    stores = open_stores(cfg)  # restart: same key
    assert stores.chunks.get(digest) == frame
    stores.close()
    key_file.rename(tmp_path / "elsewhere.key")
    with pytest.raises(StorageError, match="missing"):
        open_stores(cfg)  # never a new key for a directory whose data the old one wrapped
    assert not key_file.exists()
    stores = open_stores(_config(tmp_path, data_key=tmp_path / "elsewhere.key"))  # --data-key
    assert stores.chunks.get(digest) == frame
    stores.close()


def test_a_node_refuses_a_data_key_inside_its_data_dir(tmp_path: Path) -> None:
    from maillage.node.daemon.bootstrap import open_stores

    with pytest.raises(StorageError, match="inside the data directory"):
        open_stores(_config(tmp_path, data_key=tmp_path / "data" / "data.key"))
    assert not (tmp_path / "data" / "data.key").exists()


def test_rotating_the_node_key_rewraps_every_data_key_and_the_old_key_no_longer_opens(tmp_path: Path) -> None:
    n = Node(tmp_path)
    frame, digest = incompressible_frame(marker("rot"), 5000)
    n.chunks.put(frame, "p")
    n.meta.put_bucket(BucketRecord("b", "p", 1, owner="t"))
    m = Manifest("b", "k", 1, 3, "e", inline=b"abc", user_metadata=(("a", "b"),))
    n.meta.put_manifest(m)
    raw_chunk = n.chunks.path_of(digest).read_bytes()
    new_file = tmp_path / "trust" / "data.key.new"
    assert n.keys.rewrap(NodeKey.create(new_file)) == 2
    n.close()
    again = Node(tmp_path, key_file=new_file)
    try:
        assert again.chunks.get(digest) == frame                  # files untouched, still readable
        assert again.chunks.path_of(digest).read_bytes() == raw_chunk
        assert again.meta.get_manifest("b", "k") == m
        with pytest.raises(StorageError, match="wrapped by node key"):
            DataKeys(again.meta, NodeKey.load(tmp_path / "trust" / "data.key"))
    finally:
        again.close()


def test_rotate_data_key_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    n = Node(tmp_path)
    frame, digest = incompressible_frame(marker("cmd"), 5000)
    n.chunks.put(frame, "p")
    new_file = tmp_path / "new.key"
    argv = [sys.executable, "-m", "maillage.cli", "node", "rotate-data-key", "--data-dir", str(tmp_path / "data"),
            "--data-key", str(tmp_path / "trust" / "data.key"), "--new-data-key", str(new_file)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)   # the store is open: refused
    assert r.returncode == 1 and "in use by another process" in r.stderr and "Traceback" not in r.stderr
    assert not new_file.exists()
    n.close()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "re-wrapped 1 data key" in r.stdout
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    again = Node(tmp_path, key_file=new_file)
    try:
        assert again.chunks.get(digest) == frame
    finally:
        again.close()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)   # the new key file exists now
    assert r.returncode == 1 and "exists" in r.stderr and "Traceback" not in r.stderr


def test_a_chunk_file_written_in_short_pieces_is_whole(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is written from its parts (header, nonce, ciphertext) with writev; a kernel that
    takes a few bytes at a time, across the parts' boundaries, still gets every byte in order."""
    import os
    real_writev = os.writev
    calls = []

    def short_writev(fd: int, buffers) -> int:
        calls.append(len(buffers))
        joined = b"".join(bytes(b) for b in buffers)
        return real_writev(fd, [joined[:7 + len(calls) % 5]])

    frame, digest = incompressible_frame(marker("w"), 3_000)
    monkeypatch.setattr(os, "writev", short_writev)
    node.chunks.put(frame, "p")
    monkeypatch.undo()
    assert len(calls) > 100 and max(calls) == 3  # three parts, many short writes
    assert node.chunks.get(digest) == frame
