"""Benchmarks of a local maillage mesh, each figure next to the limit of the machine it runs on.

`python -m maillage.benchmarks` (or `maillage bench`) runs the harness (`harness.py`): limits,
throughput, repair time and placement, written as JSON, markdown and PNG charts. Each part also
runs alone: `python -m maillage.benchmarks.limits`, `.throughput`, `.repair`, `.placement_bench`,
and the single-node `.storage_bench`. `maillage bench --energy` (`.energy`) is a simulation instead:
a week of energy-aware background work on simulated sites, next to fixed intervals.
"""
