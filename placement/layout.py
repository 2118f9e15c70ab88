"""The layout model: sites, nodes, residency policies, as frozen values.

Why it is built this way: the layout is the single source of truth for *where* a node is.
A node's location is derived from the site the admin put it on (``Layout.location_of``),
never from anything the node says about itself, so a misconfigured or hostile node cannot
claim to be in France. Every value validates itself on construction and a ``Layout``
normalises its collections (sorted by id/name), so two layouts that list the same things in
a different order are equal, format to the same canonical text and share a fingerprint.
Validation messages start with the path of the offending field (``nodes[2].capacity: ...``)
using the order the caller gave, which is the order of the file being edited.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from maillage.placement.energy import parse_energy_source, parse_power
from maillage.placement.errors import LayoutError, UnknownNode, UnknownPolicy, UnknownSite

__all__ = [
    "NodeState",
    "Site",
    "Node",
    "Policy",
    "Layout",
    "parse_location",
    "format_location",
    "MIN_PARTITION_BITS",
    "MAX_PARTITION_BITS",
    "DEFAULT_PARTITION_BITS",
    "CERT_KEY",
    "PLACEMENT_ALGORITHMS",
    "PLACEMENT_LATEST",
    "TIERS",
    "EDGE",
    "BACKBONE",
]

_T = TypeVar("_T")

MIN_PARTITION_BITS = 4
MAX_PARTITION_BITS = 20
DEFAULT_PARTITION_BITS = 10
# How partitions are assigned to nodes (table.py): 1, the in-order bounded walk of the first
# layouts; 2, deferred acceptance on the same ring (moves less on a change); 3, the uncapped walk
# with each node's farthest partitions above its cap shed (moves less again). A layout keeps the
# algorithm it was made with until the admin changes it (`changes.set_placement`), so upgrading
# the software never reshuffles a mesh; a layout built in code gets the latest.
PLACEMENT_ALGORITHMS = (1, 2, 3)
PLACEMENT_LATEST = 3

# A site's tier: "backbone" sites are the operator's 24/7 datacenters, "edge" sites the proximity
# micro-datacenters (the default). A policy may require some of its copies on backbone sites
# (`Policy.backbone`), e.g. "France-only, 2 copies, one on the French backbone".
EDGE = "edge"
BACKBONE = "backbone"
TIERS = (EDGE, BACKBONE)

_LABEL = re.compile(r"[a-z0-9-]+\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))\Z")
# A node's certificate key as the layout pins it: SHA-256 of the certificate's SubjectPublicKeyInfo
# (DER), in lowercase hex (`maillage.proto.trust.identity.key_fingerprint` computes it).
CERT_KEY = re.compile(r"sha256:[0-9a-f]{64}\Z")


def parse_location(text: str) -> tuple[str, ...]:
    """``"eu/fr/occitanie"`` -> ``("eu", "fr", "occitanie")``. Labels are ``[a-z0-9-]+``."""
    if not isinstance(text, str):
        raise LayoutError(f"location: must be a string like 'eu/fr/idf', got {type(text).__name__}")
    labels = tuple(text.split("/"))
    _check_labels(labels)
    return labels


def format_location(loc: Iterable[str]) -> str:
    """``("eu", "fr")`` -> ``"eu/fr"`` (validates the labels)."""
    labels = tuple(loc)
    _check_labels(labels)
    return "/".join(labels)


def _check_labels(labels: tuple[str, ...]) -> None:
    if not labels:
        raise LayoutError("location: must have at least one label")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not _LABEL.match(label):
            raise LayoutError(
                f"location: label {i} {label!r} must be non-empty and use only a-z, 0-9 and '-'"
            )


def _check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise LayoutError(
            f"{what}: {value!r} must be 1-63 characters of A-Z, a-z, 0-9, '.', '_', '-' "
            "starting with a letter or digit"
        )


def _check_int(value: object, what: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
        high is not None and value > high
    ):
        bound = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise LayoutError(f"{what}: must be {bound}, got {value!r}")


def _check_address(value: object) -> None:
    if not isinstance(value, str) or ":" not in value:
        raise LayoutError(f"address: {value!r} must look like 'host:port'")
    host, _, port = value.rpartition(":")
    if not _HOST.match(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise LayoutError(f"address: {value!r} must look like 'host:port' with port 1..65535")


class NodeState(enum.Enum):
    """Only ACTIVE nodes own tokens; DRAINING and OUT nodes receive nothing new."""

    ACTIVE = "active"
    DRAINING = "draining"
    OUT = "out"


@dataclass(frozen=True)
class Site:
    """One micro-datacenter: the unit of failure that replicas must span. ``energy`` names where its
    energy signal comes from (`maillage.placement.energy`); None: no source, background work runs as
    if the energy were unknown. ``power``: its servers' power figures (`energy.parse_power`); None:
    the defaults."""

    name: str
    location: tuple[str, ...]
    energy: str | None = None
    tier: str = EDGE
    power: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        if not isinstance(self.location, tuple):
            raise LayoutError("location: must be a tuple of labels")
        _check_labels(self.location)
        if self.energy is not None:
            parse_energy_source(self.energy)
        if self.power is not None:
            parse_power(self.power)
        if self.tier not in TIERS:
            raise LayoutError(f"tier: {self.tier!r} must be one of {', '.join(TIERS)}")


@dataclass(frozen=True)
class Node:
    """One daemon with one data directory; ``capacity`` is in bytes. ``cert_key`` pins the key of
    the node's certificate (``sha256:<hex>`` of its SubjectPublicKeyInfo): nodes accept a caller
    as this node only with a certificate of that key, so a certificate made with the CA key alone,
    or the one a rotation replaced, is refused. None: not pinned (a layout pins all or none)."""

    id: str
    address: str
    site: str
    capacity: int
    state: NodeState = NodeState.ACTIVE
    cert_key: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.id, "id")
        _check_address(self.address)
        _check_name(self.site, "site")
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity <= 0:
            raise LayoutError(f"capacity: must be a positive integer, got {self.capacity!r}")
        if not isinstance(self.state, NodeState):
            raise LayoutError(f"state: must be one of {[s.value for s in NodeState]}, got {self.state!r}")
        if self.cert_key is not None and (not isinstance(self.cert_key, str) or not CERT_KEY.match(self.cert_key)):
            raise LayoutError(f"cert_key: {self.cert_key!r} must be 'sha256:' and 64 lowercase hex digits "
                              "(the SHA-256 of the certificate's public key info)")


@dataclass(frozen=True)
class Policy:
    """A residency rule: data rests only under one of the ``allow`` prefixes, on
    ``replicas`` distinct sites, preferring distinct ``spread``-label domains. ``backbone``: how
    many of the copies rest on backbone sites (exactly that many; the others on edge sites), 0:
    any site, whatever its tier. ``cold``: the policy an object's chunks move to when a lifecycle
    rule turns it cold ("" none): named in the same layout, inside this policy's territory, with
    at least as many copies (checked by ``Layout``), e.g. every copy on the backbone."""

    name: str
    allow: tuple[tuple[str, ...], ...]
    replicas: int = 2
    spread: int | None = None
    backbone: int = 0
    cold: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        if self.cold:
            _check_name(self.cold, "cold")
        if not isinstance(self.allow, tuple) or not self.allow:
            raise LayoutError("allow: must list at least one location prefix")
        seen = set()
        for i, prefix in enumerate(self.allow):
            if not isinstance(prefix, tuple):
                raise LayoutError(f"allow[{i}]: must be a tuple of labels")
            try:
                _check_labels(prefix)
            except LayoutError as exc:
                raise LayoutError(f"allow[{i}]: {exc}") from None
            if prefix in seen:
                raise LayoutError(f"allow[{i}]: duplicate prefix {'/'.join(prefix)!r}")
            seen.add(prefix)
        _check_int(self.replicas, "replicas", 2)
        if self.spread is not None:
            _check_int(self.spread, "spread", 1)
        _check_int(self.backbone, "backbone", 0, self.replicas)

    def allows(self, location: tuple[str, ...]) -> bool:
        """Label-wise prefix match: ("eu","fr") allows ("eu","fr","idf"), not ("eu","fra")."""
        loc = tuple(location)
        return any(loc[: len(prefix)] == prefix for prefix in self.allow)

    def within(self, other: Policy) -> bool:
        """Whether every location this policy allows, ``other`` allows too (this policy is
        narrower than or equal to ``other``): true iff each of our ``allow`` prefixes extends one
        of ``other``'s. (A prefix is itself a location, so a prefix of ours that extends none of
        theirs is a location we allow and they do not.) Replicas and spread play no part: this
        is about where data may rest, e.g. whether a copy from ``other`` into us widens it."""
        return all(other.allows(prefix) for prefix in self.allow)

    def domain(self, location: tuple[str, ...]) -> tuple[str, ...] | None:
        """The failure domain the walk tries to keep distinct (None when no ``spread``)."""
        return None if self.spread is None else tuple(location[: self.spread])


@dataclass(frozen=True)
class Layout:
    """A versioned description of the whole mesh. Collections are stored sorted."""

    version: int
    partition_bits: int
    sites: tuple[Site, ...]
    nodes: tuple[Node, ...]
    policies: tuple[Policy, ...] = field(default=())
    placement: int = PLACEMENT_LATEST
    if TYPE_CHECKING:
        # Indexes for the lookups below, set by __post_init__; declared here for the type checker
        # only, so that they stay out of the dataclass's fields at run time.
        _sites_by_name: dict[str, Site] = field(init=False, repr=False, compare=False)
        _nodes_by_id: dict[str, Node] = field(init=False, repr=False, compare=False)
        _policies_by_name: dict[str, Policy] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_int(self.version, "version", 0)
        _check_int(self.partition_bits, "partition_bits", MIN_PARTITION_BITS, MAX_PARTITION_BITS)
        _check_int(self.placement, "placement", PLACEMENT_ALGORITHMS[0], PLACEMENT_ALGORITHMS[-1])
        sites = self._checked("sites", self.sites, Site, lambda s: s.name, "name")
        nodes = self._checked("nodes", self.nodes, Node, lambda n: n.id, "id")
        policies = self._checked("policies", self.policies, Policy, lambda p: p.name, "name")
        site_names = {s.name for s in sites}
        addresses: dict[str, int] = {}
        for i, node in enumerate(nodes):
            if node.site not in site_names:
                raise LayoutError(f"nodes[{i}].site: unknown site {node.site!r}")
            if node.address in addresses:
                raise LayoutError(
                    f"nodes[{i}].address: {node.address!r} already used by nodes[{addresses[node.address]}]"
                )
            addresses[node.address] = i
        self._check_pins(nodes)
        self._check_cold(policies)
        object.__setattr__(self, "sites", tuple(sorted(sites, key=lambda s: s.name)))
        object.__setattr__(self, "nodes", tuple(sorted(nodes, key=lambda n: n.id)))
        object.__setattr__(self, "policies", tuple(sorted(policies, key=lambda p: p.name)))
        object.__setattr__(self, "_sites_by_name", {s.name: s for s in self.sites})
        object.__setattr__(self, "_nodes_by_id", {n.id: n for n in self.nodes})
        object.__setattr__(self, "_policies_by_name", {p.name: p for p in self.policies})

    @staticmethod
    def _check_cold(policies: tuple[Policy, ...]) -> None:
        """A policy's cold sibling is another policy of the layout, inside its territory (a move to
        it never widens residency), keeping at least its copies, and not itself cold-linked (one
        step: a cold object never moves again)."""
        by_name = {p.name: p for p in policies}
        for i, policy in enumerate(policies):
            if not policy.cold:
                continue
            cold = by_name.get(policy.cold)
            where = f"policies[{i}].cold"
            if cold is None or cold.name == policy.name:
                raise LayoutError(f"{where}: {policy.cold!r} is not another policy of the layout")
            if not cold.within(policy):
                raise LayoutError(f"{where}: policy {cold.name!r} allows locations policy {policy.name!r} "
                                  "does not; a cold move must stay inside the policy's territory")
            if cold.replicas < policy.replicas:
                raise LayoutError(f"{where}: policy {cold.name!r} keeps {cold.replicas} copies, fewer than "
                                  f"{policy.name!r}'s {policy.replicas}")
            if cold.cold:
                raise LayoutError(f"{where}: policy {cold.name!r} has a cold policy of its own")

    @staticmethod
    def _check_pins(nodes: tuple[Node, ...]) -> None:
        """Every node's certificate key pinned, or none (a layout from before pinning); one key per node."""
        pinned = [n for n in nodes if n.cert_key is not None]
        if not pinned:
            return
        keys: dict[str, int] = {}
        for i, node in enumerate(nodes):
            if node.cert_key is None:
                raise LayoutError(f"nodes[{i}].cert_key: missing: the layout pins node {pinned[0].id!r}'s "
                                  "certificate key, and a layout pins every node's or none")
            if node.cert_key in keys:
                raise LayoutError(f"nodes[{i}].cert_key: already pinned for nodes[{keys[node.cert_key]}] "
                                  "(each node has a certificate key of its own)")
            keys[node.cert_key] = i

    @property
    def pins_keys(self) -> bool:
        """Whether this layout pins its nodes' certificate keys (then every node's: see `Node`)."""
        return bool(self.nodes) and self.nodes[0].cert_key is not None

    @staticmethod
    def _checked(what: str, items: object, cls: type[_T], key: Callable[[_T], str], key_field: str) -> tuple[_T, ...]:
        if not isinstance(items, (tuple, list)):
            raise LayoutError(f"{what}: must be a sequence of {cls.__name__}")
        checked: list[_T] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if not isinstance(item, cls):
                raise LayoutError(f"{what}[{i}]: must be a {cls.__name__}, got {type(item).__name__}")
            k = key(item)
            if k in seen:
                raise LayoutError(f"{what}[{i}].{key_field}: duplicate {k!r} (also {what}[{seen[k]}])")
            seen[k] = i
            checked.append(item)
        return tuple(checked)

    # -- lookups -------------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        try:
            return self._nodes_by_id[node_id]
        except KeyError:
            raise UnknownNode(f"unknown node {node_id!r} in layout version {self.version}") from None

    def site(self, name: str) -> Site:
        try:
            return self._sites_by_name[name]
        except KeyError:
            raise UnknownSite(f"unknown site {name!r} in layout version {self.version}") from None

    def policy(self, name: str) -> Policy:
        try:
            return self._policies_by_name[name]
        except KeyError:
            raise UnknownPolicy(f"unknown policy {name!r} in layout version {self.version}") from None

    def chunk_policy(self, bucket_policy: str, named: str) -> str:
        """The policy a version's chunks rest under, ``named`` by its manifest (its bucket's policy,
        or that policy's cold one after a lifecycle transition): refused (``LayoutError``) when it
        names a policy wider than the bucket's, so no manifest sends a read or a copy outside the
        bucket's territory."""
        if not named or named == bucket_policy:
            return bucket_policy
        if not self.policy(named).within(self.policy(bucket_policy)):
            raise LayoutError(f"a manifest of a bucket of policy {bucket_policy!r} names chunks under policy "
                              f"{named!r}, which allows locations {bucket_policy!r} does not")
        return named

    def resting_under(self, policy: str) -> tuple[Policy, ...]:
        """The policies whose buckets' chunks may rest under `policy`: itself, and those naming it
        cold. Their manifests are what references such chunks (GC asks the nodes inside them)."""
        return tuple(p for p in self.policies if p.name == policy or p.cold == policy)

    def location_of(self, node_id: str) -> tuple[str, ...]:
        """The node's location as the admin's layout says (from its site)."""
        return self.site(self.node(node_id).site).location

    def eligible_nodes(self, policy_name: str) -> tuple[Node, ...]:
        """ACTIVE nodes whose site location the policy allows, sorted by id."""
        policy = self.policy(policy_name)
        sites = self._sites_by_name
        return tuple(
            n for n in self.nodes if n.state is NodeState.ACTIVE and policy.allows(sites[n.site].location)
        )

    def tier_of(self, node_id: str) -> str:
        """The tier of the node's site (`EDGE` or `BACKBONE`)."""
        return self.site(self.node(node_id).site).tier

    def nodes_within(self, policy_name: str) -> tuple[Node, ...]:
        """Nodes in any state whose site location the policy allows: every node that may hold the
        policy's data or records (a draining node still does until it has handed them back)."""
        policy = self.policy(policy_name)
        sites = self._sites_by_name
        return tuple(n for n in self.nodes if policy.allows(sites[n.site].location))

    def fingerprint(self) -> bytes:
        """BLAKE3 of the canonical text (``format_layout``); a cache key."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            import blake3

            from maillage.placement.layout_codec import format_layout

            cached = blake3.blake3(format_layout(self).encode("utf-8")).digest()
            object.__setattr__(self, "_fingerprint", cached)
        return cached


for _cls in (NodeState, Site, Node, Policy, Layout):
    _cls.__module__ = "maillage.placement"
del _cls
