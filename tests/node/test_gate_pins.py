"""The gate takes a node certificate only with the key the current layout pins for that node and with
the usages node certificates are issued with (in process: `AuthGate.check` on real certificates)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from maillage.node.rpc.gate import AuthGate, Refused
from maillage.node.trust.access_state import AccessState
from maillage.node.trust.layout_state import LayoutState, pin_warnings
from maillage.placement import Layout, LayoutError, changes
from maillage.proto.trust.identity import ClusterDir, certificate_key, create_cluster, issue_node_certificate
from maillage.proto.trust.signing import LayoutSigner
from maillage.testing.forged import forge_node_certificate

from .conftest import make_layout

HEARTBEAT = "/maillage.v1.Cluster/Heartbeat"   # open to nodes only


class Context:
    def __init__(self, cert: Path) -> None:
        self._auth = {"transport_security_type": [b"ssl"], "x509_pem_cert": [cert.read_bytes()]}

    def auth_context(self):
        return self._auth

    def invocation_metadata(self):
        return ()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> ClusterDir:
    return create_cluster(tmp_path_factory.mktemp("gate") / "cluster", "gate")


@pytest.fixture(scope="module")
def certs(cluster: ClusterDir, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("certs")
    issued = {n.id: issue_node_certificate(cluster, n.id, tmp / n.id).cert for n in make_layout().nodes}
    issued["forged"] = forge_node_certificate(cluster.directory, "paris-1", tmp / "forged").cert
    issued["no-usage"] = forge_node_certificate(cluster.directory, "paris-1", tmp / "no-usage", usages=None).cert
    return issued


def pinned(certs: dict[str, Path], version: int = 1) -> Layout:
    layout = make_layout(version=version)
    return changes.pin_keys(layout, {n.id: certificate_key(certs[n.id]) for n in layout.nodes})


def gate_on(layout: Layout, tmp_path: Path) -> tuple[AuthGate, LayoutState]:
    state = LayoutState(tmp_path / "layout.toml", layout)
    access = AccessState(tmp_path / "access.signed", LayoutSigner.generate().verifier())
    return AuthGate(state, access, "toulouse-1"), state


def test_a_pinned_layout_admits_the_pinned_certificate_only(certs, tmp_path) -> None:
    gate, _ = gate_on(pinned(certs), tmp_path)
    assert gate.check(HEARTBEAT, Context(certs["paris-1"])).node_id == "paris-1"
    with pytest.raises(Refused) as refused:
        gate.check(HEARTBEAT, Context(certs["forged"]))       # the CA key alone
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    message = str(refused.value)
    assert "node 'paris-1'" in message and "layout v1 pins" in message
    assert certificate_key(certs["forged"]) in message and certificate_key(certs["paris-1"]) in message
    assert gate.check(HEARTBEAT, Context(certs["lyon-1"])).node_id == "lyon-1"


def test_a_rotation_retires_the_old_certificate(certs, tmp_path) -> None:
    gate, state = gate_on(pinned(certs), tmp_path)
    rotated = changes.bump(changes.pin_keys(state.current, {"paris-1": certificate_key(certs["forged"])}), 2)
    assert state.offer(rotated)
    assert gate.check(HEARTBEAT, Context(certs["forged"])).node_id == "paris-1"
    with pytest.raises(Refused, match="layout v2 pins"):
        gate.check(HEARTBEAT, Context(certs["paris-1"]))


def test_an_unpinned_layout_admits_any_ca_certificate_of_a_node_id_and_warns(certs, tmp_path) -> None:
    layout = make_layout()
    gate, _ = gate_on(layout, tmp_path)
    assert gate.check(HEARTBEAT, Context(certs["forged"])).node_id == "paris-1"   # as before pinning
    assert "pins no node certificate key" in pin_warnings(layout, "paris-1", None)[0]
    assert pin_warnings(pinned(certs), "paris-1", certificate_key(certs["paris-1"])) == []
    assert "not the one layout v1 pins" in pin_warnings(pinned(certs), "paris-1",
                                                         certificate_key(certs["forged"]))[0]


def test_a_node_certificate_without_its_usages_is_no_one(certs, tmp_path) -> None:
    for layout in (make_layout(), pinned(certs)):
        (tmp_path / str(layout.pins_keys)).mkdir()
        gate, _ = gate_on(layout, tmp_path / str(layout.pins_keys))
        with pytest.raises(Refused) as refused:
            gate.check(HEARTBEAT, Context(certs["no-usage"]))
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "serverAuth, clientAuth" in str(refused.value)


def test_once_pinned_a_layout_without_pins_is_refused(certs, tmp_path) -> None:
    _, state = gate_on(pinned(certs), tmp_path)
    with pytest.raises(LayoutError, match="pins no node certificate key"):
        state.offer(make_layout(version=2))
    assert state.current.version == 1
    with pytest.raises(LayoutError, match="pins no node certificate key"):   # nor at start from a file
        LayoutState(tmp_path / "layout.toml", make_layout(version=3))
