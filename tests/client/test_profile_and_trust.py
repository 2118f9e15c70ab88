"""The SDK's credentials and trust without a mesh: profile resolution, trust dir checks, and a
layout from an endpoint used only when the cluster admin signed it."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
from pathlib import Path

import pytest

from maillage.client import (
    AsyncClient,
    Client,
    Credentials,
    CredentialsError,
    PermissionDenied,
    Profile,
    resolve_profile,
    write_profile,
)
from maillage.client.admin import init_cluster, node_trust_dir
from maillage.placement import format_layout
from maillage.proto import pb, rpc
from maillage.proto.channels import new_server
from maillage.proto.trust.identity import TlsIdentity
from maillage.proto.trust.signing import LayoutSigner
from maillage.testing.localmesh import make_layout

KEY_ID, SECRET = "MK" + "A" * 18, "s" * 40


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    return init_cluster(tmp_path_factory.mktemp("c") / "cluster", "test")


def test_arguments_beat_environment_beat_profile_file(tmp_path: Path):
    config = tmp_path / "config"
    write_profile(config, Profile(("10.0.0.1:7000",), Credentials("MKFILE", "file-secret"), tmp_path, "default"))
    write_profile(config, Profile(("10.0.0.2:7000",), Credentials("MKOTHER", "other"), tmp_path, "other"))
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    p = resolve_profile(config_file=config, environ={})
    assert p.endpoints == ("10.0.0.1:7000",) and p.credentials.key_id == "MKFILE"
    p = resolve_profile(config_file=config, environ={"MAILLAGE_ACCESS_KEY_ID": "MKENV", "MAILLAGE_PROFILE": "other"})
    assert p.name == "other" and p.credentials.key_id == "MKENV" and p.credentials.secret == "other"
    p = resolve_profile("10.0.0.9:1,10.0.0.8:1", key_id="MKARG", config_file=config,
                        environ={"MAILLAGE_ACCESS_KEY_ID": "MKENV"})
    assert p.endpoints == ("10.0.0.9:1", "10.0.0.8:1") and p.credentials.key_id == "MKARG"
    assert "file-secret" not in repr(p)
    with pytest.raises(CredentialsError, match="nobody"):
        resolve_profile(profile="nobody", config_file=config, environ={})


def test_missing_credentials_name_what_is_missing(tmp_path: Path):
    with pytest.raises(CredentialsError) as err:
        resolve_profile(config_file=tmp_path / "none", environ={})
    for needle in ("endpoint", "MAILLAGE_ACCESS_KEY_ID", "trust dir"):
        assert needle in str(err.value)
    with pytest.raises(CredentialsError):
        Client("127.0.0.1:1", config_file=tmp_path / "none")


def test_a_trust_dir_without_the_cluster_files_is_a_credentials_error(tmp_path: Path):
    with pytest.raises(CredentialsError, match="does not exist"):
        AsyncClient(profile=Profile(("127.0.0.1:1",), Credentials(KEY_ID, SECRET), tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CredentialsError, match="ca.pem"):
        AsyncClient(profile=Profile(("127.0.0.1:1",), Credentials(KEY_ID, SECRET), tmp_path / "empty"))


def test_init_cluster_writes_a_usable_admin_profile(cluster):
    assert cluster.admin_key.role == "admin" and cluster.access.version == 1
    p = resolve_profile("127.0.0.1:1", config_file=cluster.profile_file, environ={})
    assert p.credentials == Credentials(cluster.admin_key.key_id, cluster.admin_key.secret)
    assert p.trust_dir == cluster.cluster.directory.resolve()


def _serve_layout(cluster, tmp_path: Path, signer: LayoutSigner | None, *, version: int | None = None):
    """A fake node (a real node certificate of the cluster) answering GetLayout with `signer`'s signature."""
    trust = node_trust_dir(cluster.cluster.directory, "paris-1", tmp_path / "node")
    layout = make_layout()
    text = format_layout(layout)
    signed_version = layout.version if version is None else version
    signature = signer.sign(signed_version, text, kind="layout") if signer is not None else b""

    class Cluster(rpc.ClusterServicer):
        async def GetLayout(self, request, context):
            return pb.LayoutDoc(version=signed_version, text=text, signature=signature)

    server, port = new_server("127.0.0.1:0", tls=TlsIdentity.load_node(trust.directory))
    rpc.add_ClusterServicer_to_server(Cluster(), server)
    return server, f"127.0.0.1:{port}", layout


@pytest.mark.parametrize("case", ["forged", "unsigned", "wrong-version", "signed"])
def test_the_layout_is_used_only_when_the_admin_signed_it(cluster, tmp_path: Path, case):
    from maillage.client.admin import load_signer

    real = load_signer(cluster.cluster.directory)
    signer = {"forged": LayoutSigner.generate(), "unsigned": None}.get(case, real)

    async def scenario():
        server, address, layout = _serve_layout(cluster, tmp_path, signer,
                                                version=7 if case == "wrong-version" else None)
        await server.start()
        try:
            profile = dataclasses.replace(cluster.profile, endpoints=(address,))
            async with AsyncClient(profile=profile) as client:
                if case == "signed":
                    assert await client.layout() == layout
                    return
                with pytest.raises(PermissionDenied, match="refused the layout") as err:
                    await client.layout()
                assert cluster.admin_key.secret not in str(err.value)
                assert client._layout is None           # never used
        finally:
            await server.stop(None)

    asyncio.run(scenario())
