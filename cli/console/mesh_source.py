"""The real fleet source: the mesh, through the admin SDK, with the logged-in operator's key.

The console keeps the endpoints and the trust dir of its profile (TLS to the nodes) but no access
key: each call uses the key an operator logged in with. One `ClusterAdmin` per key is kept between
observations (its channels stay open: no TLS handshake per node per poll) and follows layout changes.
Every node is asked at once, at most 64 calls in flight (`ClusterAdmin.ask_all`), each with its own
deadline, so one dead or stalled node costs the observation at most that deadline.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from maillage.cli.console.fleet import (
    BucketInfo,
    NodeObs,
    Observation,
    PolicyInfo,
    Refused,
    SiteInfo,
    Unavailable,
)
from maillage.client import Credentials, MaillageError, PermissionDenied, Profile
from maillage.client.admin import ClusterAdmin, check_admin_key, status_rows

ADMINS_KEPT = 8     # distinct operator keys whose channels stay open


class MeshSource:
    """Observations of a real mesh; `profile` gives endpoints and trust dir (its key is not used)."""

    def __init__(self, profile: Profile, *, timeout: float = 2.0) -> None:
        self.profile = profile
        self.timeout = timeout
        self._admins: dict[tuple[str, str], ClusterAdmin] = {}
        self._lock = threading.Lock()

    def _profile_for(self, key_id: str, secret: str) -> Profile:
        return replace(self.profile, credentials=Credentials(key_id, secret))

    def verify(self, key_id: str, secret: str) -> None:
        try:
            check_admin_key(self._profile_for(key_id, secret), timeout=self.timeout)
        except PermissionDenied as exc:
            raise Refused(str(exc)) from None
        except MaillageError as exc:
            raise Unavailable(str(exc)) from None

    def _admin(self, key_id: str, secret: str) -> ClusterAdmin:
        with self._lock:
            admin = self._admins.get((key_id, secret))
        if admin is not None:
            admin.refresh_layout()
            return admin
        admin = ClusterAdmin(self._profile_for(key_id, secret), timeout=self.timeout)
        with self._lock:
            while len(self._admins) >= ADMINS_KEPT:
                self._admins.pop(next(iter(self._admins))).close()
            self._admins[(key_id, secret)] = admin
        return admin

    def forget(self, key_id: str, secret: str) -> None:
        with self._lock:
            admin = self._admins.pop((key_id, secret), None)
        if admin is not None:
            admin.close()

    def observe(self, key_id: str, secret: str) -> Observation:
        began = time.monotonic()
        try:
            admin = self._admin(key_id, secret)
            answers = admin.statuses(timeout=self.timeout)
        except PermissionDenied as exc:
            # the key was revoked, or one node refuses it (a node behind on the access document):
            # only the first ends the sessions of the key
            self.forget(key_id, secret)
            self.verify(key_id, secret)
            raise Unavailable(f"a node refused the key: {exc}") from None
        except MaillageError as exc:
            # no layout: nodes refuse the key (GetLayout's refusals are reported as no answer) or none answers
            self.forget(key_id, secret)
            self.verify(key_id, secret)
            raise Unavailable(str(exc)) from None
        try:
            buckets: tuple[BucketInfo, ...] | None = tuple(
                BucketInfo(name, policy, owner) for name, policy, owner in admin.bucket_owners())
        except PermissionDenied:
            self.verify(key_id, secret)        # Refused if the key itself is no longer taken
            buckets = None
        except MaillageError:
            buckets = None
        layout = admin.layout
        nodes = tuple(_node(row) for row in status_rows(layout.nodes, answers))
        addresses = {n.id: n.address for n in layout.nodes}
        nodes = tuple(replace(n, address=addresses[n.id]) for n in nodes)
        return Observation(
            layout_version=layout.version,
            sites=tuple(SiteInfo(s.name, s.location) for s in layout.sites),
            nodes=nodes,
            policies=tuple(PolicyInfo(p.name, p.allow, p.replicas, p.spread) for p in layout.policies),
            buckets=buckets, took=time.monotonic() - began, taken_ms=int(time.time() * 1000))

    def close(self) -> None:
        with self._lock:
            admins, self._admins = list(self._admins.values()), {}
        for admin in admins:
            admin.close()


def _node(row: dict) -> NodeObs:
    """A `status_rows` row (the same rows `maillage status` prints) as a `NodeObs`."""
    base = NodeObs(id=row["node"], site=row["site"], address="", capacity=row["capacity"],
                   layout_state=row["state"], seen_as=row["seen_as"])
    if not row["reachable"]:
        return replace(base, reachable=False, error=_short(row["error"]))
    return replace(base, stored_bytes=row["stored_bytes"], chunks=row["chunks"], disk_total=row["disk_total"],
                   disk_free=row["disk_free"], layout_version=row["layout_version"], peers=row["peers"],
                   repair=row["repair"], scrub=row["scrub"])


def _short(error: str) -> str:
    """The first words of why a node did not answer (a gRPC status name and its first line)."""
    for code in ("DEADLINE_EXCEEDED", "UNAVAILABLE", "PERMISSION_DENIED", "UNAUTHENTICATED"):
        if code in error:
            return {"DEADLINE_EXCEEDED": "no answer within the deadline", "UNAVAILABLE": "connection failed",
                    "PERMISSION_DENIED": "refused the key", "UNAUTHENTICATED": "refused the key"}[code]
    return error.splitlines()[0][:120] if error else "no answer"
