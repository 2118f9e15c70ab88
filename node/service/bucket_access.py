"""Who besides its owner tenant may read a bucket, and what its owner's keys are denied: the one
decision `Tenancy` asks for every request naming a bucket, from the bucket's policy and public
access block (`bucket_policy.py`).

Both rest as settings in the bucket's own index (`data/bucket_settings.py`: inside its residency
policy, replicated and repaired with it) and are kept here a few seconds (`TTL`) per bucket: an
owner's request costs no read of them but one per bucket every few seconds, and a change made
through another node takes effect here within that time (at once through this node), much as S3's
own policy changes take a while to apply everywhere.

- The owner tenant's keys: allowed by ownership (`Caller.require`: a key's bucket limits, read-only
  keys never write), unless a Deny of the policy names them; an admin key is never denied the
  policy operations themselves, so no policy locks its owner out.
- Other tenants' keys and anonymous callers: allowed only to read, only where an Allow names them,
  and never where a Deny does; a key limited to other buckets stays limited.
- The policy is read only inside the bucket's territory: elsewhere an owner's HeadBucket and
  GetBucketLocation (answered anywhere) go without it, and anyone else is refused, with the nodes
  to ask instead (the S3 door forwards a request naming such a bucket before it gets here, an
  anonymous HeadBucket included).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from maillage.node.data.bucket_settings import BucketSettings
from maillage.node.errors import AccessDenied
from maillage.node.service.bucket_policy import (
    ALLOW,
    CANNED_ACLS,
    DENY,
    AccessBlock,
    Context,
    MalformedPolicy,
    Policy,
    Who,
    action_of,
    canned_acl,
    is_object_action,
    parse,
    resource_of,
)
from maillage.node.service.territory import Territory
from maillage.proto.trust.access import Action
from maillage.storage import BucketRecord

if TYPE_CHECKING:
    from maillage.node.service.tenancy import Caller

__all__ = ["ACCESS_BLOCK", "POLICY", "POLICY_OPERATIONS", "BucketAccess", "Rules"]

log = logging.getLogger(__name__)

POLICY = "policy"                     # the bucket setting holding the policy document, as its owner sent it
ACCESS_BLOCK = "public-access-block"  # the setting holding `AccessBlock.encode()`
ACL = "acl"                           # the bucket's canned ACL, when a public one ("": private)
TTL = 5.0                             # seconds a bucket's rules are kept
MAX_KEPT = 4096                       # buckets whose rules are kept at once
#: What a policy never denies an owner's admin key.
POLICY_OPERATIONS = frozenset({"GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy", "GetBucketPolicyStatus"})


#: An object's tags by (bucket record, key): the current version's ({} for none or no object).
TagReader = Callable[[BucketRecord, str], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True)
class Rules:
    """A bucket's policy (None: it has none), public access block and canned ACL."""

    policy: Policy | None
    block: AccessBlock
    acl: str = "private"

    def statements(self, bucket: str) -> Policy | None:
        """What decides: the policy, and the canned ACL's statements unless IgnorePublicAcls."""
        canned = () if self.block.ignore_public_acls else canned_acl(self.acl, bucket)
        if not canned:
            return self.policy
        if self.policy is None:
            return Policy(bucket, canned)
        return dataclasses.replace(self.policy, statements=self.policy.statements + canned)


class BucketAccess:
    def __init__(self, settings: BucketSettings, territory: Territory, *,
                 clock: Callable[[], float] = time.monotonic, tags: TagReader | None = None) -> None:
        """`tags(record, key)`: an object's tags, read only for a policy that tests them."""
        self._settings = settings
        self._territory = territory
        self._clock = clock
        self._tags = tags
        self._kept: dict[str, tuple[str, float, Rules]] = {}  # name -> (generation, read at, rules)

    async def rules(self, record: BucketRecord, *, fresh: bool = False) -> Rules:
        """The bucket's rules, read from its index unless kept for less than `TTL` (or `fresh`)."""
        kept = self._kept.get(record.name)
        now = self._clock()
        if not fresh and kept is not None and kept[0] == record.generation and now - kept[1] < TTL:
            return kept[2]
        text, block, acl = await asyncio.gather(*(self._settings.get(record, name)
                                                  for name in (POLICY, ACCESS_BLOCK, ACL)))
        rules = Rules(_stored_policy(text, record.name), AccessBlock.decode(block), acl or "private")
        if len(self._kept) >= MAX_KEPT:
            self._kept.pop(next(iter(self._kept)))
        self._kept[record.name] = (record.generation, now, rules)
        return rules

    def forget(self, name: str) -> None:
        """After this node changed the bucket's rules: read them again next time."""
        self._kept.pop(name, None)

    async def check(self, caller: Caller, record: BucketRecord, action: Action, operation: str, *,
                    key: str | None = None, prefix: str | None = None) -> None:
        """Raise AccessDenied unless `caller` may `action` (as `operation`) the bucket, or its
        object `key`; `prefix` is a listing's."""
        if caller.key is not None and caller.key.tenant == record.owner:
            caller.require(action, record.name, record.owner)
            if not self._territory.inside(record.policy):
                return  # HeadBucket, GetBucketLocation: answered anywhere; the policy rests inside
            if caller.key.role == "admin" and operation in POLICY_OPERATIONS:
                return
            decision, sid = await self._decide(caller, record, operation, key, prefix)
            if decision == DENY:
                raise AccessDenied(f"{caller.describe()}: {operation} on bucket {record.name!r} is denied by "
                                   f"its policy{_statement(sid)}")
            return
        if caller.key is None and not caller.anonymous:
            caller.require(action, record.name, record.owner)  # a node: never as a tenant
        if caller.key is not None and caller.key.buckets and record.name not in caller.key.buckets:
            raise AccessDenied(f"{caller.describe()} is limited to bucket(s) {', '.join(caller.key.buckets)}")
        if action != "read":
            raise AccessDenied(f"bucket {record.name!r} belongs to another tenant: only its owner's keys change "
                               f"it ({caller.describe()})")
        if not self._territory.inside(record.policy):  # its policy is read inside its territory only
            raise AccessDenied(f"bucket {record.name!r} belongs to another tenant; whether its policy lets "
                               f"{caller.describe()} in is known only to nodes inside its residency policy "
                               f"({', '.join(self._territory.nodes_inside(record.policy))})")
        decision, sid = await self._decide(caller, record, operation, key, prefix)
        if decision != ALLOW:
            why = f"denied by its policy{_statement(sid)}" if decision == DENY else "not allowed by its policy"
            raise AccessDenied(f"bucket {record.name!r} belongs to another tenant: {operation or action} is {why} "
                               f"({caller.describe()})")

    async def _decide(self, caller: Caller, record: BucketRecord, operation: str, key: str | None,
                      prefix: str | None) -> tuple[str | None, str]:
        rules = await self.rules(record)
        action = action_of(operation)
        policy = rules.statements(record.name)
        if policy is None or not action:
            return None, ""
        who = Who() if caller.key is None else Who(caller.key.tenant, caller.key.key_id)
        tags = None  # unknown: a statement testing them neither grants nor spares
        if policy.tests_tags and key is not None and self._tags is not None and is_object_action(action):
            tags = await self._tags(record, key)
        context = Context(secure=caller.secure, source_ip=caller.source_ip, prefix=prefix, tags=tags)
        return policy.evaluate(who, action, resource_of(record.name, action, key), context,
                                     restrict_public=rules.block.restrict_public_buckets)

    async def set_policy(self, record: BucketRecord, text: str, policy: Policy | None) -> None:
        """Store the bucket's policy (`text` as its owner sent it; "" removes it). A public one is
        refused while the bucket's public access block has BlockPublicPolicy."""
        if policy is not None and policy.public and (await self.rules(record, fresh=True)).block.block_public_policy:
            raise AccessDenied(f"bucket {record.name!r}: this policy grants public access, and the bucket's public "
                               "access block has BlockPublicPolicy (PutPublicAccessBlock lifts it)")
        await self._settings.put(record, POLICY, text)
        self.forget(record.name)

    async def set_acl(self, record: BucketRecord, name: str) -> None:
        """Store the bucket's canned ACL (one of `CANNED_ACLS`). A public one (public-read,
        authenticated-read, as S3 counts them) is refused while BlockPublicAcls is set."""
        if CANNED_ACLS.get(name) is not None and (await self.rules(record, fresh=True)).block.block_public_acls:
            raise AccessDenied(f"bucket {record.name!r}: the ACL {name} grants public access, and the bucket's public "
                               "access block has BlockPublicAcls (PutPublicAccessBlock lifts it)")
        await self._settings.put(record, ACL, "" if CANNED_ACLS.get(name) is None else name)
        self.forget(record.name)

    async def set_block(self, record: BucketRecord, block: AccessBlock) -> None:
        await self._settings.put(record, ACCESS_BLOCK, block.encode())
        self.forget(record.name)


def _stored_policy(text: str, bucket: str) -> Policy | None:
    if not text:
        return None
    try:
        return parse(text, bucket)
    except MalformedPolicy as exc:  # stored by a version that took more: grants nothing now
        log.warning("bucket %s: its stored policy no longer parses (%s); it grants nothing", bucket, exc)
        return Policy(bucket, ())


def _statement(sid: str) -> str:
    return f" (statement {sid!r})" if sid else ""
