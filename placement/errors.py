"""Errors of the placement surface.

One hierarchy, so callers can catch everything placement-related with one ``except``
and still tell a bad layout file from a policy that cannot be met::

    PlacementError
    ├── LayoutError           bad layout text or values; the message names the field
    ├── PolicyUnsatisfiable   fewer distinct eligible sites than the policy's replicas
    ├── UnknownNode
    ├── UnknownPolicy
    └── UnknownSite
"""

from __future__ import annotations

__all__ = [
    "PlacementError",
    "LayoutError",
    "PolicyUnsatisfiable",
    "UnknownNode",
    "UnknownPolicy",
    "UnknownSite",
]


class PlacementError(Exception):
    """Base of every error raised by ``maillage.placement``."""


class LayoutError(PlacementError):
    """A layout (text or values) is invalid. The message starts with the field path,
    e.g. ``nodes[2].capacity: must be a positive integer``."""


class PolicyUnsatisfiable(PlacementError):
    """A policy has fewer distinct eligible sites than replicas: refuse, never spill."""


class UnknownNode(PlacementError, KeyError):
    """No node with that id in the layout."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownPolicy(PlacementError, KeyError):
    """No policy with that name in the layout."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownSite(PlacementError, KeyError):
    """No site with that name in the layout."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


for _cls in (PlacementError, LayoutError, PolicyUnsatisfiable, UnknownNode, UnknownPolicy, UnknownSite):
    _cls.__module__ = "maillage.placement"
del _cls
