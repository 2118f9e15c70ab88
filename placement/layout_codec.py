"""Layout <-> TOML text.

Why it is built this way: the layout file is edited by humans, so reading is strict
(unknown keys are typos and are refused, every error names its field path as it appears
in the file, e.g. ``nodes[2].capacity``) and writing is canonical (fixed key order, sorted
entries, capacities in the largest exact unit), so that the fingerprint of a layout is a
stable cache key and ``parse_layout(format_layout(x)) == x`` holds. Reading uses the
stdlib ``tomllib``; the writer is a few lines because the shape is flat.

Shape::

    version = 3                  # required, integer >= 0, increases with every change
    partition_bits = 10          # optional, 4..20, default 10 (2^P partitions)
    placement = 3                # optional, 1..3, default 1: the placement algorithm (table.py);
                                 # absent means 1, the algorithm of the layouts made before it
                                 # existed, so their tables (and canonical text) never change

    [[sites]]
    name = "paris-1"             # [A-Za-z0-9][A-Za-z0-9._-]{0,62}
    location = "eu/fr/idf"       # labels [a-z0-9-]+, wide to narrow
    energy = "file:/var/lib/maillage/energy.json"  # optional: its energy signal (placement/energy.py)
    tier = "backbone"            # optional: edge (default) | backbone (a 24/7 datacenter)
    power = "idle_w=35,read_nj=1.5"  # optional: its servers' power figures (placement/energy.py)

    [[nodes]]
    id = "n1"
    site = "paris-1"             # must name a site above
    address = "127.0.0.1:7001"   # host:port
    capacity = "4TB"             # bytes: integer, or string with B/KB/MB/GB/TB/PB or KiB..PiB
    state = "active"             # optional: active (default) | draining | out
    cert_key = "sha256:9f86..."  # optional: SHA-256 of its certificate's public key (every node or none)

    [[policies]]
    name = "france-only"
    allow = ["eu/fr"]            # location prefixes, matched label-wise
    replicas = 2                 # optional, >= 2, default 2
    spread = 3                   # optional: leading labels forming a failure domain to keep distinct
    backbone = 1                 # optional, 0..replicas, default 0: copies that rest on backbone sites
    cold = "france-backbone"     # optional: the policy an object's chunks move to once cold (lifecycle)
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from maillage.placement.errors import LayoutError
from maillage.placement.layout import (
    DEFAULT_PARTITION_BITS,
    EDGE,
    Layout,
    Node,
    NodeState,
    Policy,
    Site,
    format_location,
    parse_location,
)

__all__ = ["parse_layout", "format_layout", "parse_capacity", "format_capacity"]

_UNITS = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50,
}
_UNIT_SPELLING = {
    "B": "B", "KB": "KB", "MB": "MB", "GB": "GB", "TB": "TB", "PB": "PB",
    "KIB": "KiB", "MIB": "MiB", "GIB": "GiB", "TIB": "TiB", "PIB": "PiB",
}
_CAPACITY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*\Z")

_TOP_KEYS = {"version", "partition_bits", "placement", "sites", "nodes", "policies"}
_PLACEMENT_ABSENT = 1  # what a layout text without `placement` was placed with
_SITE_KEYS = {"name", "location", "energy", "tier", "power"}
_NODE_KEYS = {"id", "site", "address", "capacity", "state", "cert_key"}
_POLICY_KEYS = {"name", "allow", "replicas", "spread", "backbone", "cold"}


def parse_capacity(value: object, field: str = "capacity") -> int:
    """An int of bytes, or a string like ``"4TB"``, ``"500 GiB"``, ``"1.5TB"``."""
    if isinstance(value, bool):
        raise LayoutError(f"{field}: must be a positive integer or a size like '4TB', got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _CAPACITY.match(value)
        unit = m.group(2).upper() if m else ""
        if not m or (unit and unit not in _UNITS):
            raise LayoutError(
                f"{field}: {value!r} must be bytes or a size like '4TB' "
                "(units B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB)"
            )
        number, factor = m.group(1), _UNITS[unit or "B"]
        whole, _, frac = number.partition(".")
        scaled = int(whole + frac) * factor
        div = 10 ** len(frac)
        if scaled % div:
            raise LayoutError(f"{field}: {value!r} is not a whole number of bytes")
        n = scaled // div
    else:
        raise LayoutError(f"{field}: must be a positive integer or a size like '4TB', got {value!r}")
    if n <= 0:
        raise LayoutError(f"{field}: must be a positive integer, got {value!r}")
    return n


def format_capacity(n: int) -> str | int:
    """Largest unit that divides exactly (``4TB``), else the plain integer."""
    for unit in ("PIB", "PB", "TIB", "TB", "GIB", "GB", "MIB", "MB", "KIB", "KB"):
        factor = _UNITS[unit]
        if n % factor == 0:
            return f"{n // factor}{_UNIT_SPELLING[unit]}"
    return n


_T = TypeVar("_T")


def _table(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise LayoutError(f"{where}: must be a table")
    return doc


def _unknown(doc: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in doc:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise LayoutError(f"{prefix}{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _required(doc: dict[str, Any], key: str, where: str) -> Any:
    if key not in doc:
        raise LayoutError(f"{where}.{key}: missing")
    return doc[key]


def _entries(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise LayoutError(f"{key}: must be an array of tables ([[{key}]])")
    return value


def _build(where: str, make: Callable[[], _T]) -> _T:
    try:
        return make()
    except LayoutError as exc:
        raise LayoutError(f"{where}.{exc}") from None


def _location(value: object, where: str) -> tuple[str, ...]:
    try:
        return parse_location(value)  # type: ignore[arg-type]
    except LayoutError as exc:
        raise LayoutError(f"{where}: {str(exc).removeprefix('location: ')}") from None


def parse_layout(text: str) -> Layout:
    """Parse and validate layout TOML. Any problem is a ``LayoutError`` naming the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(f"<toml>: {exc}") from None
    _unknown(doc, _TOP_KEYS, "")
    if "version" not in doc:
        raise LayoutError("version: missing")

    sites = []
    for i, raw in enumerate(_entries(doc, "sites")):
        where = f"sites[{i}]"
        raw = _table(raw, where)
        _unknown(raw, _SITE_KEYS, where)
        name = _required(raw, "name", where)
        loc = _location(_required(raw, "location", where), f"{where}.location")
        sites.append(_build(where, partial(Site, name=name, location=loc, energy=raw.get("energy"),
                                           tier=raw.get("tier", EDGE), power=raw.get("power"))))

    nodes = []
    for i, raw in enumerate(_entries(doc, "nodes")):
        where = f"nodes[{i}]"
        raw = _table(raw, where)
        _unknown(raw, _NODE_KEYS, where)
        capacity = parse_capacity(_required(raw, "capacity", where), f"{where}.capacity")
        state_text = raw.get("state", "active")
        try:
            state = NodeState(state_text)
        except ValueError:
            raise LayoutError(
                f"{where}.state: {state_text!r} must be one of {', '.join(s.value for s in NodeState)}"
            ) from None
        kw = dict(
            id=_required(raw, "id", where),
            address=_required(raw, "address", where),
            site=_required(raw, "site", where),
            capacity=capacity,
            state=state,
            cert_key=raw.get("cert_key"),
        )
        nodes.append(_build(where, partial(Node, **kw)))

    policies = []
    for i, raw in enumerate(_entries(doc, "policies")):
        where = f"policies[{i}]"
        raw = _table(raw, where)
        _unknown(raw, _POLICY_KEYS, where)
        allow_raw = _required(raw, "allow", where)
        if isinstance(allow_raw, str):
            allow_raw = [allow_raw]
        if not isinstance(allow_raw, list):
            raise LayoutError(f"{where}.allow: must be an array of location prefixes")
        allow = tuple(_location(a, f"{where}.allow[{j}]") for j, a in enumerate(allow_raw))
        kw = dict(
            name=_required(raw, "name", where),
            allow=allow,
            replicas=raw.get("replicas", 2),
            spread=raw.get("spread"),
            backbone=raw.get("backbone", 0),
            cold=raw.get("cold", ""),
        )
        policies.append(_build(where, partial(Policy, **kw)))

    return Layout(
        version=doc["version"],
        partition_bits=doc.get("partition_bits", DEFAULT_PARTITION_BITS),
        sites=tuple(sites),
        nodes=tuple(nodes),
        policies=tuple(policies),
        placement=doc.get("placement", _PLACEMENT_ABSENT),
    )


def _s(value: str) -> str:
    return json.dumps(value)  # a JSON string with ASCII escapes is a valid TOML basic string


def _v(value: object) -> str:
    return _s(value) if isinstance(value, str) else str(value)


def format_layout(layout: Layout) -> str:
    """Canonical TOML text of ``layout`` (sorted entries, fixed key order)."""
    out = [f"version = {layout.version}", f"partition_bits = {layout.partition_bits}"]
    if layout.placement != _PLACEMENT_ABSENT:  # a layout of algorithm 1 keeps its text byte for byte
        out.append(f"placement = {layout.placement}")
    for site in layout.sites:
        out += ["", "[[sites]]", f"name = {_s(site.name)}", f"location = {_s(format_location(site.location))}"]
        if site.energy is not None:  # a site without a source keeps its text byte for byte
            out.append(f"energy = {_s(site.energy)}")
        if site.tier != EDGE:  # likewise an edge site (every site before tiers)
            out.append(f"tier = {_s(site.tier)}")
        if site.power is not None:  # and one without power figures
            out.append(f"power = {_s(site.power)}")
    for node in layout.nodes:
        out += [
            "",
            "[[nodes]]",
            f"id = {_s(node.id)}",
            f"site = {_s(node.site)}",
            f"address = {_s(node.address)}",
            f"capacity = {_v(format_capacity(node.capacity))}",
        ]
        if node.state is not NodeState.ACTIVE:
            out.append(f"state = {_s(node.state.value)}")
        if node.cert_key is not None:
            out.append(f"cert_key = {_s(node.cert_key)}")
    for policy in layout.policies:
        allow = ", ".join(_s(format_location(a)) for a in policy.allow)
        out += ["", "[[policies]]", f"name = {_s(policy.name)}", f"allow = [{allow}]", f"replicas = {policy.replicas}"]
        if policy.spread is not None:
            out.append(f"spread = {policy.spread}")
        if policy.backbone:
            out.append(f"backbone = {policy.backbone}")
        if policy.cold:
            out.append(f"cold = {_s(policy.cold)}")
    return "\n".join(out) + "\n"
