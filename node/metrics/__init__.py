"""Telemetry of a node: Prometheus metrics on a registry of its own, and the ops port
(`/metrics`, `/livez`, `/readyz`)."""
