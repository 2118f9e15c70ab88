"""Layout edits, as pure functions, and what each would move.

Why it is built this way. An admin changes the mesh (add a site, drain a node, tighten a policy)
the way a Swift operator edits a ring builder: the edits are staged, looked at, then applied.
Each edit here takes a ``Layout`` and returns a new one with the SAME version (applying bumps it,
once, however many edits were staged), so a staged layout is simply "the current one plus some
edits" and can be shown, diffed and measured before anything moves. Every edit validates its
input and raises a typed error whose message starts with the field at fault (``capacity: ...``,
``site: unknown site 'x'``); the ``Layout`` constructor re-checks the whole result.

Retiring hardware takes two steps on purpose: ``drain`` marks nodes DRAINING (they leave every
policy ring, so placement moves their partitions to the others while they keep serving reads),
and only a drained node or site may be ``remove``d. Removing an ACTIVE node would drop its copies
from placement in one step, before repair has made new ones.

Two checks answer "what would this do": ``movement`` compares the partition tables of every
policy under the old and new layouts (partitions whose replica set changes, replica slots moved,
per-node gains and losses, against the ideal: the capacity share that must change hands), and
``unsatisfiable_buckets`` lists the existing buckets whose policy the new layout could not meet
(policy gone, or fewer eligible distinct sites than replicas): such a change must be refused,
never applied with data left nowhere to go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from maillage.placement.errors import LayoutError, PolicyUnsatisfiable, UnknownNode, UnknownPolicy
from maillage.placement.layout import (
    EDGE,
    PLACEMENT_ALGORITHMS,
    Layout,
    Node,
    NodeState,
    Policy,
    Site,
    format_location,
    parse_location,
)
from maillage.placement.layout_codec import parse_capacity
from maillage.placement.table import PartitionTable, moved_partitions, partition_table
from maillage.placement.tiers import unmet

__all__ = [
    "NotDrained",
    "BucketsUnsatisfiable",
    "add_site",
    "add_node",
    "set_site_energy",
    "set_site_power",
    "pin_keys",
    "set_capacity",
    "drain",
    "remove",
    "policy_set",
    "policy_remove",
    "set_placement",
    "targets",
    "bump",
    "layout_diff",
    "PolicyMovement",
    "MovementReport",
    "movement",
    "UnsatisfiableBucket",
    "unsatisfiable_buckets",
    "check_buckets",
    "check_cold_links",
]


class NotDrained(LayoutError):
    """``remove`` of a node (or a site with nodes) that is still ACTIVE: drain it first."""


class BucketsUnsatisfiable(PolicyUnsatisfiable):
    """A change would leave existing buckets with a policy the layout cannot meet."""

    def __init__(self, message: str, buckets: Sequence[UnsatisfiableBucket]) -> None:
        super().__init__(message)
        self.buckets = tuple(buckets)


# ----- edits ------------------------------------------------------------------------------------

def _location(value: str | Sequence[str], what: str = "location") -> tuple[str, ...]:
    try:
        return parse_location(value) if isinstance(value, str) else parse_location("/".join(value))
    except LayoutError as exc:
        raise LayoutError(f"{what}: {str(exc).removeprefix('location: ')}") from None


def _capacity(value: int | str) -> int:
    return parse_capacity(value, "capacity")


_T = TypeVar("_T")


def add_site(layout: Layout, name: str, location: str | Sequence[str], tier: str = EDGE) -> Layout:
    """A new site (no nodes yet) at ``location`` (``"eu/fr/idf"``), of ``tier`` (edge or backbone)."""
    if any(s.name == name for s in layout.sites):
        raise LayoutError(f"name: site {name!r} already exists")
    site = Site(name=name, location=_location(location), tier=tier)
    return dataclasses.replace(layout, sites=layout.sites + (site,))


def set_site_tier(layout: Layout, name: str, tier: str) -> Layout:
    """Site ``name`` becomes a backbone or an edge site (``TIERS``): the tables of policies with
    backbone copies change, and repair moves those copies."""
    site = layout.site(name)  # UnknownSite
    sites = tuple(dataclasses.replace(site, tier=tier) if s.name == name else s for s in layout.sites)
    return dataclasses.replace(layout, sites=sites)


def set_site_energy(layout: Layout, name: str, energy: str | None) -> Layout:
    """Where site ``name`` reads its energy signal (``file:...``, ``https://...``, ``solar:...``), or
    None for no source (background work as if the energy were unknown)."""
    site = layout.site(name)  # UnknownSite
    sites = tuple(dataclasses.replace(site, energy=energy) if s.name == name else s for s in layout.sites)
    return dataclasses.replace(layout, sites=sites)


def set_site_power(layout: Layout, name: str, power: str | None) -> Layout:
    """The power figures of site ``name``'s servers (``idle_w=..,read_nj=..,write_nj=..,transfer_nj=..``,
    `energy.parse_power`), or None for the defaults: what its nodes' energy estimates count."""
    site = layout.site(name)  # UnknownSite
    sites = tuple(dataclasses.replace(site, power=power) if s.name == name else s for s in layout.sites)
    return dataclasses.replace(layout, sites=sites)


def add_node(layout: Layout, node_id: str, address: str, site: str, capacity: int | str,
             cert_key: str | None = None) -> Layout:
    """A new ACTIVE node on an existing site; ``capacity`` in bytes or a size like ``"4TB"``;
    ``cert_key`` its certificate key (needed when the layout pins its nodes' keys)."""
    if any(n.id == node_id for n in layout.nodes):
        raise LayoutError(f"id: node {node_id!r} already exists")
    node = Node(id=node_id, address=address, site=site, capacity=_capacity(capacity), cert_key=cert_key)
    layout.site(site)  # UnknownSite
    for other in layout.nodes:
        if other.address == node.address:
            raise LayoutError(f"address: {address!r} is already used by node {other.id!r}")
    return dataclasses.replace(layout, nodes=layout.nodes + (node,))


def set_capacity(layout: Layout, node_id: str, capacity: int | str) -> Layout:
    """Change a node's capacity (its share of every policy it belongs to)."""
    node = layout.node(node_id)
    return _with_nodes(layout, {node_id: dataclasses.replace(node, capacity=_capacity(capacity))})


def pin_keys(layout: Layout, keys: Mapping[str, str]) -> Layout:
    """The nodes of ``layout`` named in ``keys`` pinned to those certificate keys (``sha256:<hex>``);
    ids the layout does not have are ignored. A layout pins every node's key or none, so pinning
    some nodes of a layout that pins none is refused (``LayoutError`` naming a node left out)."""
    replaced = {n.id: dataclasses.replace(n, cert_key=keys[n.id]) for n in layout.nodes
                if n.id in keys and keys[n.id] != n.cert_key}
    return _with_nodes(layout, replaced) if replaced else layout


def targets(layout: Layout, name: str) -> tuple[str, ...]:
    """Node ids meant by ``name``: every node of site ``name``, or node ``name``.

    A name that is both a site and a node of ANOTHER site is ambiguous and refused; when a
    single-node site and its node share a name (common), both readings mean the same node."""
    is_site = any(s.name == name for s in layout.sites)
    is_node = any(n.id == name for n in layout.nodes)
    if is_site:
        on_site = tuple(n.id for n in layout.nodes if n.site == name)
        if is_node and name not in on_site:
            raise LayoutError(f"target: {name!r} is both a site and a node of site "
                              f"{layout.node(name).site!r}; rename one of them")
        return on_site
    if is_node:
        return (name,)
    raise UnknownNode(f"target: no node or site named {name!r} in layout version {layout.version}")


def _with_nodes(layout: Layout, replaced: dict[str, Node]) -> Layout:
    return dataclasses.replace(layout, nodes=tuple(replaced.get(n.id, n) for n in layout.nodes))


def drain(layout: Layout, name: str) -> Layout:
    """Mark node ``name`` (or every node of site ``name``) DRAINING: out of every policy ring,
    still serving reads while its partitions move elsewhere. Draining twice changes nothing."""
    ids = targets(layout, name)
    return _with_nodes(layout, {
        i: dataclasses.replace(layout.node(i), state=NodeState.DRAINING)
        for i in ids if layout.node(i).state is NodeState.ACTIVE})


def remove(layout: Layout, name: str) -> Layout:
    """Remove a drained node, or a site whose nodes are all drained (the site goes too)."""
    ids = targets(layout, name)
    active = [i for i in ids if layout.node(i).state is NodeState.ACTIVE]
    if active:
        raise NotDrained(f"target: {', '.join(active)} still active: drain {name!r} first, let repair "
                         "move its data, then remove it")
    nodes = tuple(n for n in layout.nodes if n.id not in ids)
    is_site = any(s.name == name for s in layout.sites)
    sites = tuple(s for s in layout.sites if s.name != name) if is_site else layout.sites
    return dataclasses.replace(layout, nodes=nodes, sites=sites)


def policy_set(layout: Layout, name: str, allow: Iterable[str | Sequence[str]], replicas: int = 2,
               spread: int | None = None, backbone: int = 0, cold: str = "") -> Layout:
    """Create policy ``name`` or replace its rule (``backbone``: copies on backbone sites; ``cold``:
    the policy its cold objects' chunks move to)."""
    prefixes = tuple(_location(a, f"allow[{i}]") for i, a in enumerate(allow))
    policy = Policy(name=name, allow=prefixes, replicas=replicas, spread=spread, backbone=backbone, cold=cold)
    changed = dataclasses.replace(layout, policies=tuple(p for p in layout.policies if p.name != name) + (policy,))
    check_cold_links(layout, changed)
    return changed


def check_cold_links(current: Layout, new: Layout) -> None:
    """LayoutError when ``new`` drops or changes a policy's cold policy that ``current`` names: the
    objects moved there are found (read, and kept from GC) through that link, so it stays once set."""
    for policy in current.policies:
        if policy.cold and any(p.name == policy.name and p.cold != policy.cold for p in new.policies):
            raise LayoutError(f"policy {policy.name!r} moves its cold objects to {policy.cold!r}: that link is "
                              "kept once set (the objects moved there are found through it)")


def policy_remove(layout: Layout, name: str) -> Layout:
    """Remove policy ``name`` (refused later by ``check_buckets`` while a bucket uses it)."""
    layout.policy(name)
    return dataclasses.replace(layout, policies=tuple(p for p in layout.policies if p.name != name))


def set_placement(layout: Layout, algorithm: int) -> Layout:
    """Switch the placement algorithm (``Layout.placement``). Never implied by an upgrade: a layout
    keeps the algorithm it was made with, because switching reassigns most partitions (``movement``
    shows how many) and every node must run software that knows the new one."""
    if isinstance(algorithm, bool) or not isinstance(algorithm, int) or algorithm not in PLACEMENT_ALGORITHMS:
        raise LayoutError(f"placement: must be one of {list(PLACEMENT_ALGORITHMS)}, got {algorithm!r}")
    return dataclasses.replace(layout, placement=algorithm)


def bump(layout: Layout, version: int) -> Layout:
    """The same layout as version ``version`` (applying a staged change: current + 1)."""
    if isinstance(version, bool) or not isinstance(version, int) or version <= layout.version:
        raise LayoutError(f"version: must be an integer above {layout.version}, got {version!r}")
    return dataclasses.replace(layout, version=version)


def layout_diff(old: Layout, new: Layout) -> list[str]:
    """One line per site, node or policy that differs, e.g. ``~ node n1: capacity 4TB -> 8TB``."""
    from maillage.placement.layout_codec import format_capacity

    def site_text(s: Site) -> str:
        energy = "" if s.energy is None else f", energy {s.energy}"
        tier = "" if s.tier == EDGE else f", {s.tier}"
        power = "" if s.power is None else f", power {s.power}"
        return f"site {s.name} at {format_location(s.location)}{tier}{energy}{power}"

    def node_text(n: Node) -> str:
        key = "" if n.cert_key is None else f", key {_short_key(n.cert_key)}"
        return f"node {n.id} on {n.site}, {n.address}, {format_capacity(n.capacity)}, {n.state.value}{key}"

    def policy_text(p: Policy) -> str:
        spread = "" if p.spread is None else f", spread {p.spread}"
        backbone = f", {p.backbone} on backbone" if p.backbone else ""
        cold = f", cold objects to {p.cold}" if p.cold else ""
        return (f"policy {p.name}: allow {', '.join(format_location(a) for a in p.allow)}, R={p.replicas}"
                f"{spread}{backbone}{cold}")

    def fields(a: Node, b: Node) -> str:
        changes = []
        for name, show in (("site", str), ("address", str), ("capacity", format_capacity),
                           ("state", lambda s: s.value), ("cert_key", _short_key)):
            x, y = getattr(a, name), getattr(b, name)
            if x != y:
                changes.append(f"{name} {show(x)} -> {show(y)}")
        return ", ".join(changes)

    lines: list[str] = []
    if old.placement != new.placement:
        lines.append(f"~ placement algorithm {old.placement} -> {new.placement}")

    def section(before_items: tuple[_T, ...], after_items: tuple[_T, ...], key: Callable[[_T], str],
                text: Callable[[_T], str], changed: Callable[[str, _T, _T], str]) -> None:
        before = {key(x): x for x in before_items}
        after = {key(x): x for x in after_items}
        for k in sorted(set(before) | set(after)):
            a, b = before.get(k), after.get(k)
            if a == b:
                continue
            if a is not None and b is not None:
                lines.append(changed(k, a, b))
            elif b is not None:
                lines.append(f"+ {text(b)}")
            elif a is not None:
                lines.append(f"- {text(a)}")

    section(old.sites, new.sites, lambda s: s.name, site_text,
            lambda k, a, b: f"~ {site_text(a)}  ->  {site_text(b)}")
    section(old.nodes, new.nodes, lambda n: n.id, node_text,
            lambda k, a, b: f"~ node {k}: {fields(a, b)}")
    section(old.policies, new.policies, lambda p: p.name, policy_text,
            lambda k, a, b: f"~ {policy_text(a)}  ->  {policy_text(b).split(': ', 1)[-1]}")
    return lines


def _short_key(key: str | None) -> str:
    """A pinned certificate key as a diff shows it: ``sha256:`` and its first 16 hex digits."""
    return "none" if key is None else f"{key[:23]}…"


# ----- movement ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyMovement:
    """What one policy's partition table does between two layouts.

    ``status``: ``"unchanged"``, ``"moved"``, ``"added"`` (no table before), ``"removed"`` (none
    after) or ``"unsatisfiable"`` (the new layout cannot meet it: see ``reason``); in the last
    three nothing moves (no bucket can have data under a policy without a table on one side).
    ``fraction`` counts replica slots that change node; ``ideal`` is the least that a perfect
    capacity-proportional placement would move (see ``_ideal_shares``)."""

    policy: str
    status: str
    partitions: int                    # 2^P
    replicas: int                      # R under the new layout (old if removed)
    changed: int                       # partitions whose replica set changes
    slots_moved: int                   # replica slots that change node (copies to make)
    fraction: float                    # slots_moved / (R * 2^P): the share of the policy's data moved
    ideal: float                       # capacity share that must change hands (total variation)
    gained: dict[str, int]             # node -> replica slots it gains
    lost: dict[str, int]               # node -> replica slots it loses
    reason: str = ""                   # why a policy is unsatisfiable


@dataclass(frozen=True)
class MovementReport:
    policies: tuple[PolicyMovement, ...]

    def policy(self, name: str) -> PolicyMovement:
        for p in self.policies:
            if p.policy == name:
                return p
        raise UnknownPolicy(f"no policy {name!r} in this movement report")

    @property
    def changed(self) -> int:
        return sum(p.changed for p in self.policies)

    @property
    def slots_moved(self) -> int:
        return sum(p.slots_moved for p in self.policies)


def _table(layout: Layout, name: str) -> tuple[PartitionTable | None, str]:
    if name not in {p.name for p in layout.policies}:
        return None, "not in the layout"
    try:
        return partition_table(layout, name), ""
    except PolicyUnsatisfiable as exc:
        return None, str(exc)


def _ideal_shares(layout: Layout, name: str) -> dict[str, float]:
    """Each eligible node's ideal share of the policy's replica slots: proportional to capacity,
    except that a site holds at most one replica per partition (1/R of the slots); a site above
    that bound keeps exactly 1/R and the excess is shared by the others (water-filling). The
    ``spread`` preference is ignored, so the ideal is a lower bound of what must move."""
    policy = layout.policy(name)
    nodes = layout.eligible_nodes(name)
    site_cap: dict[str, int] = {}
    for n in nodes:
        site_cap[n.site] = site_cap.get(n.site, 0) + n.capacity
    if len(site_cap) < policy.replicas:
        return {}
    bound = 1.0 / policy.replicas
    site_share: dict[str, float] = {}
    free, left = dict(site_cap), 1.0
    while free:
        total = sum(free.values())
        over = {s for s, c in free.items() if left * c / total > bound}
        if not over:
            site_share.update({s: left * c / total for s, c in free.items()})
            break
        for s in over:
            site_share[s] = bound
            left -= bound
            del free[s]
    return {n.id: site_share[n.site] * n.capacity / site_cap[n.site] for n in nodes}


def _policy_movement(old: Layout, new: Layout, name: str) -> PolicyMovement:
    before, _ = _table(old, name)
    after, why = _table(new, name)
    nparts = 1 << new.partition_bits
    in_new = name in {p.name for p in new.policies}
    replicas = (new if in_new else old).policy(name).replicas
    if before is None or after is None:
        # a policy with no table on one side has no data that could move: a new policy has no
        # bucket yet, and one that is gone or unmet cannot be applied while buckets use it
        status = "added" if after is not None else ("unsatisfiable" if in_new else "removed")
        return PolicyMovement(name, status, nparts, replicas, 0, 0, 0.0, 0.0, {}, {}, why)
    a, b = _ideal_shares(old, name), _ideal_shares(new, name)
    ideal = sum(max(0.0, b.get(n, 0.0) - a.get(n, 0.0)) for n in set(a) | set(b))
    moved = moved_partitions(before, after)
    gained: dict[str, int] = {}
    lost: dict[str, int] = {}
    for was, now in moved.values():
        for node in set(now) - set(was):
            gained[node] = gained.get(node, 0) + 1
        for node in set(was) - set(now):
            lost[node] = lost.get(node, 0) + 1
    slots = sum(gained.values())
    return PolicyMovement(name, "moved" if moved else "unchanged", nparts, replicas, len(moved), slots,
                          slots / (replicas * nparts), ideal, gained, lost)


def movement(old: Layout, new: Layout) -> MovementReport:
    """Per policy (of either layout), what changes between the partition tables of ``old`` and ``new``."""
    if old.partition_bits != new.partition_bits:
        raise LayoutError(f"partition_bits: cannot change from {old.partition_bits} to "
                          f"{new.partition_bits} by a layout edit")
    names = sorted({p.name for p in old.policies} | {p.name for p in new.policies})
    return MovementReport(tuple(_policy_movement(old, new, n) for n in names))


# ----- buckets a change would strand ------------------------------------------------------------

@dataclass(frozen=True)
class UnsatisfiableBucket:
    bucket: str
    policy: str
    reason: str


def unsatisfiable_buckets(layout: Layout, buckets: Iterable[tuple[str, str]]) -> list[UnsatisfiableBucket]:
    """The ``(bucket, policy)`` pairs whose policy ``layout`` cannot meet, sorted by bucket."""
    verdicts: dict[str, str] = {}
    out = []
    for bucket, name in buckets:
        if name not in verdicts:
            verdicts[name] = _unmet(layout, name)
        if verdicts[name]:
            out.append(UnsatisfiableBucket(bucket, name, verdicts[name]))
    return sorted(out, key=lambda u: (u.bucket, u.policy))


def _unmet(layout: Layout, name: str) -> str:
    try:
        policy = layout.policy(name)
    except UnknownPolicy:
        return f"policy {name!r} is not in the layout"
    return unmet(layout, policy, change=True)


def check_buckets(layout: Layout, buckets: Iterable[tuple[str, str]]) -> None:
    """Raise ``BucketsUnsatisfiable`` (listing them) when any bucket's policy cannot be met."""
    stranded = unsatisfiable_buckets(layout, buckets)
    if stranded:
        names = ", ".join(f"{u.bucket} ({u.policy})" for u in stranded)
        raise BucketsUnsatisfiable(f"buckets: {len(stranded)} bucket(s) would have an unsatisfiable policy: "
                                   f"{names}", stranded)

