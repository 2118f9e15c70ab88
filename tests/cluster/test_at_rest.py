"""Encryption at rest on real node processes: after writes through a LocalMesh, no node's data
directory holds the plaintext of an object, of an inline object or of user metadata; the node key
lives in the trust dir (0600), never in the data directory; and decrypting with the node's own keys
finds the bytes again (the search is not vacuous)."""

from __future__ import annotations

import os
import stat

from maillage.client import Client
from maillage.client.admin import read_access_file
from maillage.proto.frame import decode_frame
from maillage.proto.naming import chunk_key
from maillage.storage import ChunkStore, DataKeys, open_chunk_file
from maillage.testing.localmesh import DEMO_TENANT

from .conftest import CHUNK, FRENCH
from .helpers import files_containing, manifest_digests, sealing_scopes


def test_no_node_data_dir_holds_plaintext_after_writes(mesh):
    big_mark = b"DOSSIER-MEDICAL-" + os.urandom(8).hex().encode()
    small_mark = b"PETIT-SECRET-" + os.urandom(8).hex().encode()
    meta_mark = "note-" + os.urandom(8).hex()
    big = os.urandom(CHUNK // 2) + big_mark + os.urandom(2 * CHUNK)  # incompressible: raw frames
    with Client(profile=mesh.profile) as c:
        c.create_bucket("at-rest-fr", "france-only")
        c.create_bucket("at-rest-eu", "eu-wide")
        c.put_object("at-rest-fr", "scan.bin", big, metadata={"note": meta_mark})
        c.put_object("at-rest-fr", "small.txt", small_mark, metadata={"note": meta_mark})
        c.put_object("at-rest-eu", "copy.bin", big)  # the same chunks under another policy
        c.put_object("at-rest-eu", "small.txt", small_mark, metadata={"x-" + meta_mark: "v"})
        assert c.get_object("at-rest-fr", "scan.bin").read() == big
        assert c.get_object("at-rest-fr", "small.txt").read() == small_mark
        assert c.head_object("at-rest-fr", "small.txt").metadata == {"note": meta_mark}

    for node in mesh.layout.nodes:
        data_dir = mesh.data_dir(node.id)
        for mark in (big_mark, small_mark, meta_mark.encode()):
            assert files_containing(data_dir, mark) == [], f"{mark!r} in plaintext on {node.id}"
        key_file = mesh.trust_dir(node.id) / "data.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert not list(data_dir.rglob("data.key"))
        for path in (data_dir / "chunks").glob("??/??/*"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # the control: with a node's own keys, its chunk files give back the object's bytes
    digest = manifest_digests(mesh, "at-rest-fr", "scan.bin")[0]
    # chunk names are keyed per (tenant, policy): the key comes from the access document's secret
    secret = read_access_file(mesh.cluster_dir / "access.signed", mesh.signer).naming_secret
    name_key = chunk_key(secret, DEMO_TENANT, "france-only")  # mesh.profile is the demo tenant's
    found = 0
    for node_id in FRENCH:
        path = ChunkStore.path_in(mesh.data_dir(node_id) / "chunks", digest)
        if not path.exists():
            continue
        keys = DataKeys.read_only(mesh.data_dir(node_id) / "meta", mesh.trust_dir(node_id) / "data.key")
        plain = decode_frame(open_chunk_file(path.read_bytes(), digest, keys), expected_digest=digest,
                             key=name_key)
        assert big_mark in plain
        found += 1
    assert found >= 2
    # every chunk file is sealed with the data key of its bucket's owner, not with a policy's
    for bucket, key in (("at-rest-fr", "scan.bin"), ("at-rest-eu", "copy.bin")):
        digests = manifest_digests(mesh, bucket, key)
        sealed = [s for node in mesh.layout.nodes for s in sealing_scopes(mesh, node.id, digests).values()]
        assert len(sealed) >= 2 * len(digests) and set(sealed) == {("tenant", DEMO_TENANT)}, sealed
