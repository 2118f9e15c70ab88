"""A deterministic simulator of the mesh: hundreds to a thousand real nodes in one process, on
virtual time, over a simulated network (latency by distance, loss, partitions, crashes, slow
nodes, clock skew), one seed reproducing one run exactly. See ARCHITECTURE.md, "Simulation"."""

from maillage.testing.sim.loop import InlineExecutor, Stalled, VirtualClock, VirtualTimeLoop, run_virtual
from maillage.testing.sim.mesh import SimMesh, sim_layout
from maillage.testing.sim.metrics import Metrics, fan_out
from maillage.testing.sim.network import Latencies, SimNetwork
from maillage.testing.sim.scenario import SimConfig, SimResult, percentile, simulate

__all__ = ["InlineExecutor", "Stalled", "VirtualClock", "VirtualTimeLoop", "run_virtual", "SimMesh", "sim_layout",
           "Metrics", "fan_out", "Latencies", "SimNetwork", "SimConfig", "SimResult", "percentile", "simulate"]
