"""Random faults against the real node code in the simulator, and the invariants that must hold.

Each example builds a 9-site simulated mesh (France, Germany, Spain, Italy, Belgium), creates a
France-only and an EU-wide bucket, then runs a random program: PUT, GET and DELETE through random
nodes, interleaved with crashes and restarts, partitions and heals, message loss and clock skew,
virtual time moving on between steps. Then the faults end (heal, restart, no loss, no skew), the
mesh gossips and repairs, and:

* no acknowledged write is lost: every key whose last PUT or DELETE was acknowledged reads back
  that value (or NoSuchKey) through any node; a key whose last write failed may hold either;
* residency: no node outside France holds a key name of the France-only bucket, at any time;
* convergence: every node holding a key's index entry holds the same latest version of it.

Skew stays below the second that separates two steps, so versions (hybrid clocks) order writes as
their callers did.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maillage.node.errors import NodeError
from maillage.testing.examples import examples
from maillage.testing.sim import SimMesh, run_virtual, sim_layout

SITES = 9
KEYS = ("a", "b", "c", "d")
BUCKETS = {"res-fr": "france-only", "res-eu": "eu-wide"}

_op = st.tuples(st.sampled_from(sorted(BUCKETS)), st.sampled_from(KEYS), st.integers(0, SITES - 1))
data_steps = st.one_of(
    _op.map(lambda t: ("put", *t)), _op.map(lambda t: ("put", *t)),   # writes twice as often
    _op.map(lambda t: ("get", *t)), _op.map(lambda t: ("delete", *t)),
)
fault_steps = st.one_of(
    st.tuples(st.just("crash"), st.integers(0, SITES - 1)),
    st.tuples(st.just("restart"), st.integers(0, SITES - 1)),
    st.tuples(st.just("partition"), st.sets(st.integers(0, SITES - 1), min_size=1, max_size=3)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("loss"), st.sampled_from((0.0, 0.01, 0.05))),
    st.tuples(st.just("skew"), st.integers(0, SITES - 1), st.floats(-0.4, 0.4)),
    st.tuples(st.just("wait"), st.floats(0.5, 12.0)),
)
steps = st.one_of(data_steps, data_steps, fault_steps)   # two data steps for one fault, on average


async def _program(mesh: SimMesh, program: list[tuple]) -> None:  # type: ignore[type-arg]
    ids = sorted(mesh.nodes)
    outside_france = [n for n in ids if mesh.layout.location_of(n)[1] != "fr"]
    french = [n for n in ids if n not in outside_france]
    mesh.start()
    for bucket, policy in BUCKETS.items():
        await mesh.create_bucket(bucket, policy, via=french[0])
    acked: dict[tuple[str, str], bytes | None] = {}   # the last acknowledged value (None: deleted)
    uncertain: set[tuple[str, str]] = set()           # the last write failed: either value may hold
    for i, step in enumerate(program):
        kind = step[0]
        if kind in ("put", "get", "delete"):
            _, bucket, key, via = step
            via_id = ids[via]
            if mesh.network.is_down(via_id):
                continue
            try:
                if kind == "put":
                    value = f"{bucket}/{key}#{i}".encode()
                    uncertain.add((bucket, key))
                    await mesh.put(bucket, key, value, via=via_id)
                    acked[(bucket, key)] = value
                    uncertain.discard((bucket, key))
                elif kind == "delete":
                    uncertain.add((bucket, key))
                    await mesh.delete(bucket, key, via=via_id)
                    acked[(bucket, key)] = None
                    uncertain.discard((bucket, key))
                else:
                    await mesh.get(bucket, key, via=via_id)
            except NodeError:
                pass  # refused or unreachable during a fault: only what was acknowledged counts
        elif kind == "crash":
            if len(mesh.crashed) < 2 and not mesh.network.is_down(ids[step[1]]):
                await mesh.crash(ids[step[1]])
        elif kind == "restart":
            if ids[step[1]] in mesh.crashed:
                await mesh.restart(ids[step[1]])
        elif kind == "partition":
            mesh.sim.partition([ids[j] for j in sorted(step[1])])
        elif kind == "heal":
            mesh.sim.heal()
        elif kind == "loss":
            mesh.sim.loss = step[1]
        elif kind == "skew":
            mesh.skew(ids[step[1]], step[2])
        else:
            await mesh.run_for(step[1])
        await mesh.run_for(1.0)
        for node_id in outside_france:   # residency, at every step
            assert not {b for b, _ in mesh.key_names(node_id)} & {"res-fr"}, node_id

    # The faults end; gossip, then repair everywhere.
    mesh.sim.heal()
    mesh.sim.loss = 0.0
    for node_id in ids:
        mesh.skew(node_id, 0.0)
    for node_id in sorted(mesh.crashed):
        await mesh.restart(node_id)
    await mesh.run_for(12.0)
    await mesh.repair(rounds=2)

    for (bucket, key), value in sorted(acked.items()):
        if (bucket, key) in uncertain:
            continue
        for via in (french[0], outside_france[-1]):
            if value is None:
                try:
                    got = await mesh.get(bucket, key, via=via)
                except NodeError:
                    continue
                raise AssertionError(f"{bucket}/{key} was deleted (acknowledged) but reads {got!r} via {via}")
            assert await mesh.get(bucket, key, via=via) == value, (bucket, key, via)
    for bucket in BUCKETS:
        for key in KEYS:
            latest = {mesh.nodes[n].local.meta.get_manifest(bucket, key) for n in mesh.holders(bucket, key)}
            assert len({(m.version, m.deleted) for m in latest if m is not None}) <= 1, (bucket, key)
    for node_id in outside_france:
        assert not {b for b, _ in mesh.key_names(node_id)} & {"res-fr"}, node_id


@settings(max_examples=examples(0.1, minimum=4), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program=st.lists(steps, min_size=6, max_size=20), seed=st.integers(0, 2**16))
def test_random_faults_keep_acknowledged_writes_residency_and_convergence(program, seed) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="maillage-sim-") as root:
        async def main() -> None:
            mesh = SimMesh(sim_layout(SITES), Path(root), seed=seed)
            try:
                await _program(mesh, program)
            finally:
                await mesh.stop()

        run_virtual(main())
