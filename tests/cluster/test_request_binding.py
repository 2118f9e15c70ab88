"""A captured request signature is good for one request to one node, once (real nodes, real TLS).

The attacker is a compromised node of the mesh: as a coordinator it receives clients' signed calls
and may send them on, to other nodes, for other objects. Each test captures a signature the way such
a node would see it (the metadata and the request bytes of a call signed by the tenant's key) and
replays it: on another method, with another request body (another object), on another node, and on
the same node a second time. Every replay is refused by the gate (UNAUTHENTICATED, with words that
say why), and the objects they aimed at are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import blake3
import grpc
import pytest

from maillage.client import Client
from maillage.client._trust import method_path
from maillage.client.admin._connect import Channels
from maillage.node.rpc.gate import REFUSAL_PREFIXES
from maillage.proto import bulk, pb
from maillage.proto.channels import open_blocking_channel
from maillage.proto.trust import requestauth
from maillage.proto.trust.identity import TlsIdentity
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import POLICIES, SITES

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

BUCKET = "bound"
HEAD, DELETE = method_path("Objects", "HeadObject"), method_path("Objects", "DeleteObject")
REFUSED = REFUSAL_PREFIXES[grpc.StatusCode.UNAUTHENTICATED]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Iterator[LocalMesh]:
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("binding")) as m:
        with Client(profile=m.profile) as c:
            c.create_bucket(BUCKET, "eu-wide")
        yield m


def capture(mesh: LocalMesh, path: str, body: bytes, target: str) -> tuple[tuple[str, str], ...]:
    """What a coordinator sees of a call the tenant signed for node `target`: its metadata."""
    key = mesh.profile.credentials
    return requestauth.sign(path, key.key_id, key.secret, target=target, body=body)


def send(mesh: LocalMesh, node_id: str, path: str, body: bytes, metadata) -> bytes:
    """`body` sent as it is to `path` on node `node_id` (its certificate checked) with `metadata`."""
    with open_blocking_channel(mesh.address(node_id), tls=TlsIdentity.load_client(mesh.cluster_dir),
                               peer=node_id) as channel:
        raw: bytes = channel.unary_unary(path, request_serializer=None, response_deserializer=None)(
            body, timeout=10, metadata=metadata)
        return raw


def refusal(mesh: LocalMesh, node_id: str, path: str, body: bytes, metadata) -> str:
    """The gate's refusal of the call (fails the test if the call got through)."""
    with pytest.raises(grpc.RpcError) as info:
        send(mesh, node_id, path, body, metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
    details: str = info.value.details()
    assert details.startswith(REFUSED), details
    return details


def head(bucket: str, key: str) -> bytes:
    return pb.HeadObjectRequest(bucket=bucket, key=key).SerializeToString()


def delete(bucket: str, key: str) -> bytes:
    return pb.DeleteObjectRequest(bucket=bucket, key=key).SerializeToString()


def exists(mesh: LocalMesh, key: str) -> bool:
    with Client(profile=mesh.profile) as c:
        return any(o.key == key for o in c.list_objects(BUCKET))


def test_a_captured_head_object_signature_reads_one_object_on_one_node_once(mesh: LocalMesh) -> None:
    with Client(profile=mesh.profile) as c:
        c.put_object(BUCKET, "mine", b"the tenant's object")
        c.put_object(BUCKET, "other", b"another object of the tenant")
    body = head(BUCKET, "mine")
    captured = capture(mesh, HEAD, body, "toulouse-1")
    # another node: as it is, and with the target rewritten to it
    assert "sent to node 'lyon-1'" in refusal(mesh, "lyon-1", HEAD, body, captured)
    retargeted = tuple((k, "lyon-1" if k == requestauth.TARGET_HEADER else v) for k, v in captured)
    assert "does not match" in refusal(mesh, "lyon-1", HEAD, body, retargeted)
    # another object, another method (a DeleteObjectRequest has the same bytes as this HeadObjectRequest)
    assert "does not match" in refusal(mesh, "toulouse-1", HEAD, head(BUCKET, "other"), captured)
    assert delete(BUCKET, "mine") == body
    assert "does not match" in refusal(mesh, "toulouse-1", DELETE, body, captured)
    # the call it was made for, once
    manifest = pb.Manifest.FromString(send(mesh, "toulouse-1", HEAD, body, captured))
    assert manifest.key == "mine"
    assert "already used" in refusal(mesh, "toulouse-1", HEAD, body, captured)
    assert exists(mesh, "mine") and exists(mesh, "other")


def test_a_captured_delete_object_signature_deletes_one_key_on_one_node_once(mesh: LocalMesh) -> None:
    with Client(profile=mesh.profile) as c:
        for key in ("doomed", "kept", "kept-too"):
            c.put_object(BUCKET, key, key.encode())
    body = delete(BUCKET, "doomed")
    captured = capture(mesh, DELETE, body, "paris-1")
    assert "does not match" in refusal(mesh, "paris-1", DELETE, delete(BUCKET, "kept"), captured)
    for node in ("toulouse-1", "lyon-1", "munich-1"):
        assert "sent to node" in refusal(mesh, node, DELETE, body, captured)
    assert exists(mesh, "doomed") and exists(mesh, "kept")
    pb.DeleteObjectReply.FromString(send(mesh, "paris-1", DELETE, body, captured))
    assert not exists(mesh, "doomed")
    with Client(profile=mesh.profile) as c:
        c.put_object(BUCKET, "doomed", b"written again")
    assert "already used" in refusal(mesh, "paris-1", DELETE, body, captured)
    assert exists(mesh, "doomed") and exists(mesh, "kept") and exists(mesh, "kept-too")


def test_a_captured_put_object_stream_signature_writes_one_key(mesh: LocalMesh) -> None:
    """The stream's signature covers its header message (bucket, key, metadata); its trailer's BLAKE3
    covers the data."""
    data = b"a streamed object"
    signed_header = bulk.header_message(pb.PutObjectHeader(bucket=BUCKET, key="streamed"))
    captured = capture(mesh, bulk.PUT_OBJECT, signed_header, "munich-1")

    def stream(first: bytes) -> grpc.StatusCode:
        messages = iter((first, bulk.data_message(data), bulk.trailer_message(blake3.blake3(data).digest())))
        with open_blocking_channel(mesh.address("munich-1"), tls=TlsIdentity.load_client(mesh.cluster_dir),
                                   peer="munich-1") as channel:
            try:
                channel.stream_unary(bulk.PUT_OBJECT)(messages, timeout=20, metadata=captured)
            except grpc.RpcError as err:
                assert err.code() != grpc.StatusCode.UNAUTHENTICATED or err.details().startswith(REFUSED)
                return err.code()
        return grpc.StatusCode.OK

    elsewhere = bulk.header_message(pb.PutObjectHeader(bucket=BUCKET, key="planted"))
    assert stream(elsewhere) == grpc.StatusCode.UNAUTHENTICATED
    assert not exists(mesh, "planted")
    assert stream(signed_header) == grpc.StatusCode.OK
    assert stream(signed_header) == grpc.StatusCode.UNAUTHENTICATED   # the replay cache
    with Client(profile=mesh.profile) as c:
        assert c.get_object(BUCKET, "streamed").read() == data


def test_any_node_only_for_cluster_wide_reads(mesh: LocalMesh) -> None:
    """A client that does not know which node an endpoint is signs for any node: GetLayout and
    GetInfo take it (once per node), nothing else does."""
    body = pb.GetLayoutRequest().SerializeToString()
    captured = capture(mesh, method_path("Cluster", "GetLayout"), body, requestauth.ANY_NODE)
    for node in ("paris-1", "lyon-1"):
        doc = pb.LayoutDoc.FromString(send(mesh, node, method_path("Cluster", "GetLayout"), body, captured))
        assert doc.version >= 1
    assert "already used" in refusal(mesh, "paris-1", method_path("Cluster", "GetLayout"), body, captured)
    body = delete(BUCKET, "kept")
    anywhere = capture(mesh, DELETE, body, requestauth.ANY_NODE)
    assert "for the node it is sent to" in refusal(mesh, "paris-1", DELETE, body, anywhere)
    assert exists(mesh, "kept")


def test_the_sdk_and_admin_api_sign_for_the_node_they_call(mesh: LocalMesh) -> None:
    """Every SDK and admin call is signed anew for its node: many identical requests in one second
    all get through (no false replay), including an endpoint not matched to a node id yet."""
    with Client(profile=mesh.profile) as c:
        c.put_object(BUCKET, "again", b"x" * 10)
        for _ in range(20):
            assert c.head_object(BUCKET, "again").size == 10
            assert c.get_object(BUCKET, "again").read() == b"x" * 10
    channels = Channels(mesh.admin_profile)
    try:
        address = mesh.address("lyon-1")
        for _ in range(3):   # not CLUSTER_WIDE: the channel learns the node's id first, then signs for it
            status = channels.call("Cluster", "GetStatus", pb.GetStatusRequest(), address=address, peer=None,
                                   timeout=10)
            assert status is not None
        assert channels.node_id_of(address, 10) == "lyon-1"
    finally:
        channels.close()
