"""Every method a node serves, against every kind of caller that must be refused (real TLS, real nodes).

The methods are read from the proto's service descriptors plus the raw bulk methods, so a new RPC
without an access rule fails `test_every_served_method_has_an_access_rule` and is walked by the
others. Each case dials a real node over the network with its own credentials and sends an empty
request: a refusal must come from the handshake (UNAVAILABLE) or the gate (UNAUTHENTICATED,
PERMISSION_DENIED), never from the handler, which a refused call must not reach.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from maillage.client import Client, PermissionDenied
from maillage.node.rpc.gate import REFUSAL_PREFIXES
from maillage.node.service.rules import GRPC_METHODS, OPERATIONS
from maillage.proto import bulk, pb
from maillage.proto.channels import open_blocking_channel
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import ClusterDir, TlsIdentity, create_cluster, issue_node_certificate
from maillage.testing.forged import forge_node_certificate
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import POLICIES, SITES

RULES = {method: OPERATIONS[operation] for method, operation in GRPC_METHODS.items()}
GATE_REFUSALS = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
HANDSHAKE_REFUSAL = {grpc.StatusCode.UNAVAILABLE}


def served_methods() -> list[str]:
    paths = [f"/{service.full_name}/{method.name}"
             for service in pb.DESCRIPTOR.services_by_name.values() for method in service.methods]
    return sorted([*paths, bulk.PUT_CHUNK, bulk.GET_CHUNK, bulk.PUT_OBJECT, bulk.PUT_SMALL_OBJECT])


METHODS = served_methods()


def test_every_served_method_has_an_access_rule() -> None:
    assert set(METHODS) == set(RULES), "a method without a rule (or a rule without a method)"


@dataclasses.dataclass(frozen=True)
class Who:
    """A caller: the TLS identity it presents (None: no client certificate) and the key it signs with."""

    name: str
    tls: TlsIdentity
    key: tuple[str, str] | None = None


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Iterator[LocalMesh]:
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("trust")) as m:
        yield m


@pytest.fixture(scope="module")
def callers(mesh: LocalMesh, tmp_path_factory) -> dict[str, Who]:
    tmp = tmp_path_factory.mktemp("callers")
    client_tls = TlsIdentity.load_client(mesh.cluster_dir)
    other_ca = create_cluster(tmp / "other-cluster", "someone else's")
    ghost = issue_node_certificate(ClusterDir.at(mesh.cluster_dir), "ghost-1", tmp / "ghost")
    # made with the CA key for a node of the layout, but not the certificate the layout pins for it
    unpinned = forge_node_certificate(mesh.cluster_dir, "paris-1", tmp / "unpinned")
    bare = forge_node_certificate(mesh.cluster_dir, "paris-1", tmp / "bare", usages=None)
    revoked = mesh.new_key("hospital")
    read_only = mesh.new_key("hospital", "read-only")
    with mesh.admin() as admin:
        admin.edit_access(lambda doc: _revoke(doc, revoked.credentials.key_id))
    user = mesh.profile.credentials
    admin_key = mesh.admin_profile.credentials
    return {
        "client certificate, no key": Who("client certificate, no key", client_tls),
        "another CA": Who("another CA", TlsIdentity.load_client(other_ca.directory), (user.key_id, user.secret)),
        "node not in the layout": Who("node not in the layout", TlsIdentity.load_node(ghost.directory)),
        "node certificate not pinned": Who("node certificate not pinned", TlsIdentity.load_node(unpinned.directory)),
        "node certificate without its usages": Who("node certificate without its usages",
                                                   TlsIdentity.load_node(bare.directory)),
        "tenant key": Who("tenant key", client_tls, (user.key_id, user.secret)),
        "read-only key": Who("read-only key", client_tls, (read_only.credentials.key_id, read_only.credentials.secret)),
        "revoked key": Who("revoked key", client_tls, (revoked.credentials.key_id, revoked.credentials.secret)),
        "wrong secret": Who("wrong secret", client_tls, (user.key_id, "x" * 40)),
        "admin key": Who("admin key", client_tls, (admin_key.key_id, admin_key.secret)),
        "node": Who("node", TlsIdentity.load_node(mesh.trust_dir("paris-1"))),
    }


def _revoke(doc, key_id):
    from maillage.proto.trust.access import revoke_key
    return revoke_key(doc, key_id)


def call(mesh: LocalMesh, who: Who, method: str) -> grpc.StatusCode:
    """The status of `method` called on toulouse-1 by `who` with an empty request: OK or the
    handler's own error once past the gate, UNAVAILABLE when the handshake refused, and the gate's
    UNAUTHENTICATED or PERMISSION_DENIED when it refused (told apart from a handler's by its words)."""
    metadata = requestauth.sign(method, *who.key, target="toulouse-1", body=b"") if who.key else ()
    with open_blocking_channel(mesh.address("toulouse-1"), tls=who.tls, peer="toulouse-1") as channel:
        try:
            if method == bulk.PUT_OBJECT:
                channel.stream_unary(method)(iter(()), timeout=10, metadata=metadata)
            else:
                channel.unary_unary(method)(b"", timeout=10, metadata=metadata)
        except grpc.RpcError as err:
            if err.code() in GATE_REFUSALS and not err.details().startswith(tuple(REFUSAL_PREFIXES.values())):
                return grpc.StatusCode.ABORTED   # refused by the handler, not by the gate
            return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", METHODS)
def test_callers_without_the_right_credentials_are_refused(mesh: LocalMesh, callers: dict[str, Who],
                                                           method: str) -> None:
    rule = RULES[method]
    refused = {
        "client certificate, no key": GATE_REFUSALS,
        "another CA": HANDSHAKE_REFUSAL,
        "node not in the layout": GATE_REFUSALS,
        "node certificate not pinned": GATE_REFUSALS,          # the CA key alone makes no node
        "node certificate without its usages": GATE_REFUSALS,  # serverAuth + clientAuth, as issued
        "revoked key": GATE_REFUSALS,
        "wrong secret": GATE_REFUSALS,
    }
    if rule.key is None:
        refused["tenant key"] = GATE_REFUSALS       # node-only: no key opens it
        refused["admin key"] = GATE_REFUSALS
    elif rule.key == "admin":
        refused["tenant key"] = GATE_REFUSALS       # a tenant's key is not an admin's
    if rule.key != "read":
        refused["read-only key"] = GATE_REFUSALS    # its role allows reads only
    if not rule.nodes:
        refused["node"] = GATE_REFUSALS             # a node certificate is not a tenant
    for name, codes in refused.items():
        got = call(mesh, callers[name], method)
        assert got in codes, f"{method} called with {name}: {got.name}, expected a refusal"


@pytest.mark.parametrize("method", METHODS)
def test_the_right_credentials_get_past_the_gate(mesh: LocalMesh, callers: dict[str, Who], method: str) -> None:
    rule = RULES[method]
    allowed = [callers["node"]] if rule.nodes else []
    if rule.key in ("read", "write"):
        allowed.append(callers["tenant key"])
    if rule.key == "read":
        allowed.append(callers["read-only key"])
    if rule.key is not None:
        allowed.append(callers["admin key"])
    for who in allowed:
        got = call(mesh, who, method)  # an empty request may be invalid; it must not be refused
        assert got not in GATE_REFUSALS | HANDSHAKE_REFUSAL, f"{method} called with {who.name}: {got.name}"


def test_tenants_see_and_touch_only_their_own_buckets(mesh: LocalMesh) -> None:
    city = mesh.new_key("city")
    reader = mesh.new_key("city", role="read-only")
    limited = mesh.new_key("city", buckets=("city-open",))
    with Client(profile=city) as c:
        c.create_bucket("city-data", "france-only")
        c.put_object("city-data", "budget.csv", b"1,2,3")
    with Client(profile=mesh.profile) as other:       # the demo tenant's key
        assert "city-data" not in {b.name for b in other.list_buckets()}
        for attempt in (lambda: other.get_object("city-data", "budget.csv").read(),
                        lambda: other.head_bucket("city-data"),
                        lambda: other.put_object("city-data", "x", b"x"),
                        lambda: other.delete_object("city-data", "budget.csv"),
                        lambda: other.delete_bucket("city-data"),
                        lambda: list(other.list_objects("city-data"))):
            with pytest.raises(PermissionDenied, match="another tenant"):
                attempt()
    with Client(profile=reader) as r:
        assert r.get_object("city-data", "budget.csv").read() == b"1,2,3"
        with pytest.raises(PermissionDenied, match="read-only"):
            r.put_object("city-data", "y", b"y")
    with Client(profile=limited) as lim:
        with pytest.raises(PermissionDenied, match="limited"):
            lim.head_object("city-data", "budget.csv")
    with Client(profile=city) as c:
        assert c.get_object("city-data", "budget.csv").read() == b"1,2,3"
        assert c.head_bucket("city-data").owner == "city"


def test_a_revoked_key_is_refused_on_every_node_within_seconds(mesh: LocalMesh) -> None:
    key = mesh.new_key("housing")
    with Client(profile=key) as c:
        c.create_bucket("housing-files", "eu-wide")
        with mesh.admin() as admin:
            admin.edit_access(lambda doc: _revoke(doc, key.credentials.key_id))
        for node in mesh.layout.nodes:  # pushed to every node at once: no waiting needed
            one = dataclasses.replace(key, endpoints=(node.address,))
            with Client(profile=one) as fresh, pytest.raises(PermissionDenied):
                fresh.list_buckets()


def test_errors_never_show_a_secret(mesh: LocalMesh, callers: dict[str, Who]) -> None:
    secret = mesh.profile.credentials.secret
    wrong = dataclasses.replace(mesh.profile, credentials=dataclasses.replace(mesh.profile.credentials,
                                                                              secret="y" * 40))
    with Client(profile=wrong) as c, pytest.raises(PermissionDenied) as info:
        c.list_buckets()
    assert secret not in str(info.value) and "y" * 40 not in str(info.value)
    for log in Path(mesh.log_dir).glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log


@pytest.mark.parametrize("method", [m for m in METHODS if not m.startswith(f"/{bulk.SERVICE}/")
                                    or m == bulk.PUT_SMALL_OBJECT])   # a protobuf message sent raw
def test_a_request_that_does_not_parse_is_invalid_argument_without_a_traceback(
        mesh: LocalMesh, callers: dict[str, Who], method: str) -> None:
    who = callers["node"] if RULES[method].nodes else callers["admin key"]
    if RULES[method].key in ("read", "write"):
        who = callers["tenant key"]
    metadata = requestauth.sign(method, *who.key, target="lyon-1", body=b"\xff" * 10) if who.key else ()
    with open_blocking_channel(mesh.address("lyon-1"), tls=who.tls, peer="lyon-1") as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(method)(b"\xff" * 10, timeout=10, metadata=metadata)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert "Traceback" not in (Path(mesh.log_dir) / "lyon-1.log").read_text(errors="replace")
