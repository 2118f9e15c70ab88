"""Hostile and malformed input (issue 14, cases 7 and 8): every handler of a real in-process node,
fed random and extreme messages and raw bytes, answers with a clean typed status (or succeeds),
never INTERNAL or an uncaught exception; the upload budget pushes back, then says Overloaded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maillage.node.replicas.transport import MAX_NEWS
from maillage.node.rpc import convert
from maillage.node.rpc.servicers import BulkHandlers, ClusterServicer, ObjectsServicer, ReplicaServicer
from maillage.node.runtime.budget import Overloaded, UploadBudget
from maillage.node.service.tenancy import CALLER, Caller
from maillage.proto import bulk, pb
from maillage.proto.reasons import ERROR_KEY, Reason
from maillage.proto.trust.access import AccessKey
from maillage.testing import eventually_async
from maillage.testing.examples import examples
from maillage.testing.inmemory import InMemoryMesh

from .conftest import TIMINGS, make_layout


class Aborted(Exception):
    pass


class FakeContext:
    """Enough of grpc.aio.ServicerContext for the handlers: abort records the status."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.reason: str | None = None
        self._metadata = metadata

    def invocation_metadata(self):
        return self._metadata

    def set_trailing_metadata(self, md) -> None:
        self.reason = dict(md).get(ERROR_KEY)

    async def abort(self, code, details) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


KEPT = "kept/out-of-the-fuzzers-reach"  # no string the fuzz draws: the object nothing may change


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator:
    mesh = InMemoryMesh(make_layout(), tmp_path_factory.mktemp("hostile"), timings=TIMINGS)
    loop = asyncio.new_event_loop()
    admin = AccessKey("AK1", "secret", "acme", "admin")
    token = CALLER.set(Caller(key=admin))
    loop.run_until_complete(mesh.nodes["lyon-1"].coordinator.create_bucket("scans", "france-only", "acme"))
    loop.run_until_complete(mesh.put("scans", "a", b"stored before the fuzzing"))  # a target the fuzz may hit
    loop.run_until_complete(mesh.put("scans", KEPT, b"stored before the fuzzing"))  # one it never names
    n = mesh.nodes["paris-1"]
    handlers = {
        "cluster": ClusterServicer(n.local, n.layout, n.signed, n.access, n.gossip, n.detector, n.repairer,
                                   n.scrubber, n.collector, n.clock),
        "replica": ReplicaServicer(n.plane),
        "objects": ObjectsServicer(n.service),
        "bulk": BulkHandlers(n.local, n.service, n.plane),
    }
    yield mesh, loop, handlers, admin
    CALLER.reset(token)
    loop.close()
    mesh.close()


def _call(loop, handler, request, caller: Caller, metadata=()) -> FakeContext:
    context = FakeContext(metadata)

    async def go() -> None:
        CALLER.set(caller)
        try:
            await asyncio.wait_for(handler(request, context), 30)
        except Aborted:
            pass

    loop.run_until_complete(go())
    return context


def _assert_clean(context: FakeContext, what: str) -> None:
    if context.code is None:
        return
    assert context.code is not grpc.StatusCode.INTERNAL, f"{what}: {context.details}"
    assert context.reason != Reason.INTERNAL.value, f"{what}: {context.details}"
    assert context.reason is not None, what


# Methods whose effect the fuzzing must not make global (layout and access pushes need a valid
# signature, so they are fuzzed too: a random signature is a clean PERMISSION_DENIED).
_UNARY = {
    "cluster": ["GetInfo", "GetLayout", "PushLayout", "GetStagedLayout", "StageLayout", "GetAccess",
                "PushAccess", "Heartbeat", "GetStatus", "Repair"],
    "replica": ["HasChunks", "PutManifest", "GetManifest", "ListIndex", "PutBucketRecord", "GetBucketRecord",
                "DeleteBucketRecord", "ListBucketRecords", "SyncSummaries", "SyncListing", "ReferencedChunks",
                "Inventory"],
    "objects": ["CreateBucket", "HeadBucket", "ListBuckets", "DeleteBucket", "HeadObject", "DeleteObject",
                "CopyObject", "ListObjects", "PutBucketVersioning", "GetBucketVersioning", "ListObjectVersions",
                "PutObjectLockConfiguration", "GetObjectLockConfiguration", "PutObjectRetention", "GetObjectRetention",
                "PutObjectLegalHold", "GetObjectLegalHold", "PutBucketLifecycleConfiguration",
                "GetBucketLifecycleConfiguration", "DeleteBucketLifecycle"],
}


def _input_type(service: str, method: str):
    descriptor = pb.DESCRIPTOR.services_by_name[service.capitalize()].methods_by_name[method]
    return descriptor.input_type


_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "scans", "a", "../../etc/passwd", "a\x00b",
                                                          "x" * 2000, "\ud800", "é/ü/🙂", "paris-1"]))
_INT = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1]))
_INT64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 2**63, 2**64 - 1]))
_BYTES = st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"\x00" * 5, b"\xff" * 32, b"\x00" * 33]))


def _fields(descriptor, depth: int = 0) -> st.SearchStrategy[dict]:
    from google.protobuf.descriptor import FieldDescriptor as F

    out = {}
    for f in descriptor.fields:
        if f.type == F.TYPE_MESSAGE:
            if depth >= 2 or f.message_type.GetOptions().map_entry:
                continue
            value = _fields(f.message_type, depth + 1)
        elif f.type == F.TYPE_STRING:
            value = _TEXT.filter(lambda t: "\ud800" not in t)  # protobuf refuses to hold it
        elif f.type == F.TYPE_BYTES:
            value = _BYTES
        elif f.type == F.TYPE_BOOL:
            value = st.booleans()
        elif f.type in (F.TYPE_UINT64, F.TYPE_FIXED64):
            value = _INT64
        elif f.type in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
            value = st.integers(-(2**63), 2**63 - 1)
        elif f.type in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32, F.TYPE_ENUM):
            value = st.integers(-(2**31), 2**31 - 1) if f.type != F.TYPE_ENUM else st.just(0)
        elif f.type in (F.TYPE_UINT32, F.TYPE_FIXED32):
            value = _INT
        elif f.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            value = st.floats(allow_nan=False, width=32)
        else:
            continue
        if f.is_repeated:
            value = st.lists(value, max_size=3)
        out[f.name] = st.one_of(st.nothing(), value) if depth else value
    return st.fixed_dictionaries({}, optional=out)


def _build(descriptor, values: dict):
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(descriptor)
    msg = cls()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        if field.message_type is not None:
            if isinstance(value, list):
                for v in value:
                    getattr(msg, name).add().CopyFrom(_build(field.message_type, v))
            else:
                getattr(msg, name).CopyFrom(_build(field.message_type, value))
        elif isinstance(value, list):
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return msg


CASES = [(service, method) for service, methods in _UNARY.items() for method in methods]


@pytest.mark.parametrize(("service", "method"), CASES, ids=[f"{s}.{m}" for s, m in CASES])
def test_random_messages_get_a_clean_answer(node, service, method, caplog) -> None:
    mesh, loop, handlers, admin = node
    descriptor = _input_type(service, method)
    caller = Caller(node_id="toulouse-1") if service != "objects" else Caller(key=admin)

    @given(st.data())
    @settings(max_examples=examples(0.4), deadline=None)
    def check(data) -> None:
        request = _build(descriptor, data.draw(_fields(descriptor)))
        context = _call(loop, getattr(handlers[service], method), request, caller)
        _assert_clean(context, f"{method}({request})")

    with caplog.at_level(logging.ERROR):
        check()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    # nothing already stored changed (scans/a may be: the admin's random DeleteObject can name it)
    assert loop.run_until_complete(mesh.get("scans", KEPT)) == b"stored before the fuzzing"


@given(st.binary(max_size=200))
@settings(max_examples=examples(1.5), deadline=None)
def test_random_raw_bytes_to_the_bulk_methods(node, raw: bytes) -> None:
    mesh, loop, handlers, admin = node
    bulk_handlers = handlers["bulk"]
    peer = Caller(node_id="toulouse-1")
    for handler, caller in ((bulk_handlers.put_chunk, peer), (bulk_handlers.get_chunk, peer)):
        _assert_clean(_call(loop, handler, raw, caller, ((bulk.POLICY_KEY, "france-only"),)), handler.__name__)

    async def stream(*messages):
        for m in messages:
            yield m

    for messages in ((raw,), (bulk.header_message(pb.PutObjectHeader(bucket="scans", key="k")), raw),
                     (raw, raw)):
        _assert_clean(_call(loop, bulk_handlers.put_object, stream(*messages), Caller(key=admin)), "PutObject")
    header = pb.PutObjectHeader(bucket="scans", key="k")
    for message in (raw, bulk.small_object_message(header, raw, raw[:32]),
                    bulk.small_object_message(header, raw, b"") + raw):
        _assert_clean(_call(loop, bulk_handlers.put_small_object, message, Caller(key=admin)), "PutSmallObject")


@pytest.mark.parametrize("digest", [b"\x00" * 5, b"", b"\x00" * 33])
def test_a_wrong_sized_digest_is_invalid_argument(node, digest: bytes) -> None:
    mesh, loop, handlers, admin = node
    peer = Caller(node_id="toulouse-1")
    ctx = _call(loop, handlers["bulk"].get_chunk, digest, peer)
    assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT and "32 bytes" in ctx.details
    ctx = _call(loop, handlers["replica"].HasChunks, pb.HasChunksRequest(digests=[digest]), peer)
    assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT


def test_invalid_utf8_in_a_put_object_header_is_invalid_argument(node, caplog) -> None:
    mesh, loop, handlers, admin = node
    header = bulk.header_message(pb.PutObjectHeader(bucket="scans", key="KEY"))
    broken = header.replace(b"KEY", b"\xff\xfe\xfd")

    async def stream():
        yield broken

    with caplog.at_level(logging.INFO):
        ctx = _call(loop, handlers["bulk"].put_object, stream(), Caller(key=admin))
    assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT, ctx.details
    assert not [r for r in caplog.records if r.exc_info]


def test_absurd_page_sizes_are_refused_large_ones_clamped(node) -> None:
    mesh, loop, handlers, admin = node
    peer = Caller(node_id="toulouse-1")
    ctx = _call(loop, handlers["replica"].ListIndex, pb.ListIndexRequest(bucket="scans", limit=2**32 - 1), peer)
    assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT and "out of range" in ctx.details
    ctx = _call(loop, handlers["objects"].ListObjects, pb.ListObjectsRequest(bucket="scans", max_keys=10**9),
                Caller(key=admin))
    assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT
    ctx = _call(loop, handlers["objects"].ListObjects, pb.ListObjectsRequest(bucket="scans", max_keys=5000),
                Caller(key=admin))
    assert ctx.code is None
    ctx = _call(loop, handlers["replica"].HasChunks, pb.HasChunksRequest(digests=[b"\x00" * 32] * 10_001), peer)
    assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT and "limit" in ctx.details


def test_a_heartbeat_in_another_node_name_is_refused(node) -> None:
    mesh, loop, handlers, admin = node
    ctx = _call(loop, handlers["cluster"].Heartbeat, pb.HeartbeatRequest(node_id="lyon-1"),
                Caller(node_id="toulouse-1"))
    assert ctx.code is grpc.StatusCode.INVALID_ARGUMENT


def test_a_ping_req_is_carried_out_only_for_a_member_about_another_member(node) -> None:
    mesh, loop, handlers, admin = node

    def ask(asker: str, target: str) -> pb.HeartbeatReply:
        async def go() -> pb.HeartbeatReply:
            CALLER.set(Caller(node_id=asker))
            return await handlers["cluster"].Heartbeat(pb.HeartbeatRequest(node_id=asker, probe=target),
                                                       FakeContext(()))
        return loop.run_until_complete(go())

    assert ask("toulouse-1", "lyon-1").acked
    for asker, target in (("toulouse-1", "nobody"), ("toulouse-1", "paris-1"), ("toulouse-1", "toulouse-1"),
                          ("nobody", "lyon-1")):
        assert not ask(asker, target).acked, (asker, target)
    mesh.down("lyon-1")
    try:
        assert not ask("toulouse-1", "lyon-1").acked
    finally:
        mesh.up("lyon-1")
    many = [pb.Suspicion(node_id="munich-1", incarnation=i) for i in range(1000)]
    assert len(convert.heartbeat_from_pb(pb.HeartbeatRequest(node_id="lyon-1", suspects=many)).suspects) == MAX_NEWS


# ----- the upload budget ---------------------------------------------------------------------------

def test_the_budget_waits_then_says_overloaded() -> None:
    async def go() -> None:
        budget = UploadBudget(100, wait=0.2)
        held = await budget.acquire(80)
        waiter = asyncio.ensure_future(budget.acquire(30))
        await eventually_async(lambda: budget.waiting == 1, timeout=10, what="the second acquire waiting")
        assert not waiter.done()  # backpressure
        budget.release(held)
        assert await waiter == 30 and budget.used == 30
        with pytest.raises(Overloaded, match="overloaded.*retry later"):
            await budget.acquire(10_000)  # more than the whole budget waits for all of it
        budget.release(30)
        assert budget.used == 0 and await budget.acquire(10_000) == 100

    asyncio.run(go())


def test_hanging_uploads_hold_at_most_the_budget_then_get_resource_exhausted(node) -> None:
    """Uploads that each send one large message and hang: the budget caps what they hold; the
    next one waits, then fails with RESOURCE_EXHAUSTED (reason Overloaded) and frees its bytes."""
    mesh, loop, handlers, admin = node
    n = mesh.nodes["paris-1"]
    budget = UploadBudget(3 << 20, wait=0.3)
    bulk_handlers = BulkHandlers(n.local, n.service, n.plane, budget)
    header = bulk.header_message(pb.PutObjectHeader(bucket="scans", key="big"))
    piece = bulk.data_message(bytes(1 << 20))
    hang = asyncio.Event()

    async def hanging():
        yield header
        yield piece
        await hang.wait()

    async def go() -> list[FakeContext]:
        CALLER.set(Caller(key=admin))
        contexts = [FakeContext() for _ in range(5)]

        async def one(ctx):
            try:
                await bulk_handlers.put_object(hanging(), ctx)
            except Aborted:
                pass
        tasks = [asyncio.ensure_future(one(c)) for c in contexts]
        # every upload holds its bytes and hangs, or was refused after waiting `wait` for them
        await eventually_async(lambda: budget.waiting == 0 and any(c.code is not None for c in contexts),
                               timeout=10, what="the uploads that do not fit refused, the others hanging")
        assert budget.used <= budget.limit
        hang.set()
        await asyncio.gather(*tasks)
        return contexts

    contexts = loop.run_until_complete(go())
    refused = [c for c in contexts if c.code is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert refused and all(c.reason == Reason.OVERLOADED.value for c in refused)
    assert budget.used == 0
