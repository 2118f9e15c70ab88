"""`maillage tenant create|list|delete` and `maillage key create|list|revoke|refresh`: who may use the mesh.

Tenants and their access keys live in the master access document, in the admin's cluster dir
(access.signed: every key's secret and the naming secret; it never leaves the admin machine). Each
edit reads it, applies one pure edit of `maillage.proto.trust.access`, saves it and publishes the
nodes' version (derived verification keys for a window of dates, no secret) signed to every node
(`ClusterAdmin.edit_access`). `key refresh` publishes again to roll the window forward: run it at
least weekly (a daily timer). Listings read the published document from the mesh. A key's secret
is printed once, by `key create`, and never appears in a listing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
from collections.abc import Callable

from maillage.cli.admin import CLUSTER_DIR_ENV, add_cluster_dir_option, open_admin, signer
from maillage.cli.common import CREDENTIALS_NOTE, CommandError, add_endpoint_option, table
from maillage.proto.trust.access import (
    AccessDoc,
    AccessError,
    AccessKey,
    Role,
    add_s3_region,
    add_tenant,
    create_key,
    delete_tenant,
    revoke_key,
)
from maillage.proto.trust.node_access import WINDOW_FUTURE_DAYS, WINDOW_PAST_DAYS, NodeAccess

_NOTE = ("Needs a profile with an admin access key. " + CREDENTIALS_NOTE + " Changes are signed with the "
         f"cluster's layout-signing key, from the cluster dir (--cluster-dir DIR or ${CLUSTER_DIR_ENV}), and "
         "reach every node within seconds.")


def _now_ms() -> int:
    return int(time.time() * 1000)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    tenant = sub.add_parser(
        "tenant", help="create, list or delete tenants (who owns buckets)",
        description="A tenant (a hospital, a utility, a city service) owns buckets; its access keys see "
                    "and touch only its buckets. " + _NOTE)
    tenant_sub = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    create = tenant_sub.add_parser("create", help="create a tenant",
                                   description="Create tenant NAME (then give it keys with `maillage key "
                                               "create --tenant NAME`). " + _NOTE)
    create.add_argument("name", metavar="NAME")
    _common(create, signing=True)
    create.set_defaults(func=tenant_create_command)
    listing = tenant_sub.add_parser("list", help="list tenants and how many keys each has",
                                    description="List the tenants with their active and revoked keys. " + _NOTE)
    _common(listing, signing=False)
    listing.set_defaults(func=tenant_list_command)
    delete = tenant_sub.add_parser("delete", help="delete a tenant without buckets or active keys",
                                   description="Delete tenant NAME. Refused while it owns a bucket or has "
                                               "an active key (revoke them first). " + _NOTE)
    delete.add_argument("name", metavar="NAME")
    _common(delete, signing=True)
    delete.set_defaults(func=tenant_delete_command)

    key = sub.add_parser(
        "key", help="create, list or revoke access keys",
        description="An access key (id + secret, as with S3) authenticates every SDK and CLI request. "
                    "Roles: read-write (default), read-only, admin (layout, repair, status, audit, "
                    "tenants and keys). A key may be limited to named buckets. " + _NOTE)
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    kc = key_sub.add_parser(
        "create", help="create an access key; prints its secret once",
        description="Create an access key for --tenant and print its id and secret (shown this once: "
                    "store it) with a ready-to-paste profile. " + _NOTE)
    kc.add_argument("--tenant", required=True, metavar="TENANT")
    role = kc.add_mutually_exclusive_group()
    role.add_argument("--read-only", action="store_true", help="may read, not write")
    role.add_argument("--admin", action="store_true", help="an admin key (layout, repair, status, audit, keys)")
    kc.add_argument("--bucket", action="append", default=[], metavar="BUCKET",
                    help="limit the key to this bucket of the tenant (repeatable; default: all its buckets)")
    kc.add_argument("--trust-dir", metavar="DIR",
                    help="the trust dir to write in the printed profile (default: the one of your profile); "
                         "`maillage cluster client-trust` makes one without the cluster's private keys")
    _common(kc, signing=True)
    kc.set_defaults(func=key_create_command)
    kl = key_sub.add_parser("list", help="list access keys (never their secrets)",
                            description="List access keys: id, tenant, role, buckets, state. " + _NOTE)
    kl.add_argument("--tenant", metavar="TENANT", help="only this tenant's keys")
    _common(kl, signing=False)
    kl.set_defaults(func=key_list_command)
    kr = key_sub.add_parser("revoke", help="revoke an access key on every node",
                            description="Revoke KEY_ID: every node refuses it within seconds; its secret "
                                        "is erased from the access document. " + _NOTE)
    kr.add_argument("key_id", metavar="KEY_ID")
    _common(kr, signing=True)
    kr.set_defaults(func=key_revoke_command)
    kf = key_sub.add_parser(
        "refresh", help="publish the access document again, for a fresh window of dates (at least weekly)",
        description="Nodes hold no secret: they verify requests with keys derived for a window of UTC dates "
                    f"({WINDOW_PAST_DAYS} days back to {WINDOW_FUTURE_DAYS} days ahead of the day it is published) "
                    "and for the published scopes (gRPC; S3 in us-east-1, each policy name and the --s3-region "
                    "ones). Every key edit publishes; this command publishes without an edit, to roll the window "
                    f"forward. It MUST run at least weekly (a daily timer, e.g. cron `0 3 * * * maillage key "
                    f"refresh`): {WINDOW_FUTURE_DAYS} days after the last publication, every node refuses every "
                    "request, saying it has no verification key for that date. " + _NOTE)
    kf.add_argument("--s3-region", action="append", default=[], metavar="REGION",
                    help="also publish S3 verification keys in this region (repeatable; kept for later "
                         "publications): the region your S3 clients sign with, if neither us-east-1 nor a policy name")
    _common(kf, signing=True)
    kf.set_defaults(func=key_refresh_command)


def _common(parser: argparse.ArgumentParser, *, signing: bool) -> None:
    add_endpoint_option(parser)
    add_cluster_dir_option(parser)   # listings accept it too (unused), so one set of options fits every action


def _edit(args: argparse.Namespace, edit: Callable[[AccessDoc], AccessDoc],
          check: Callable[..., None] | None = None) -> AccessDoc:
    """Read the master from the cluster dir, edit, save, publish to every node."""
    signer(args)   # a clear error before anything is asked of the mesh
    with open_admin(args, signing=True) as admin:
        if check is not None:
            check(admin)
        try:
            doc, adopted, problems = admin.edit_access(edit)
        except AccessError as exc:
            raise CommandError(str(exc)) from None
        total = len({n.address for n in admin.layout.nodes} | {admin.address})
    print(f"access document v{doc.version}: adopted by {adopted} of {total} node(s) directly; the others "
          "learn it by gossip", file=sys.stderr)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return doc


def _read(args: argparse.Namespace) -> NodeAccess:
    with open_admin(args) as admin:
        return admin.access()


# ----- tenants --------------------------------------------------------------------------------

def tenant_create_command(args: argparse.Namespace) -> int:
    _edit(args, lambda doc: add_tenant(doc, args.name, now_ms=_now_ms()))
    print(f"created tenant {args.name}; give it a key with `maillage key create --tenant {args.name}`")
    return 0


def tenant_list_command(args: argparse.Namespace) -> int:
    doc = _read(args)
    rows = []
    for t in doc.tenants:
        keys = [k for k in doc.keys if k.tenant == t.name]
        active = sum(not k.revoked for k in keys)
        rows.append([t.name, str(active), str(len(keys) - active), _when(t.created_ms)])
    print(table(rows, header=["TENANT", "ACTIVE KEYS", "REVOKED", "CREATED"], right=(1, 2)))
    return 0


def tenant_delete_command(args: argparse.Namespace) -> int:
    def no_buckets(admin) -> None:
        owned = admin.buckets_of(args.name)
        if owned:
            raise CommandError(f"tenant {args.name!r} still owns {len(owned)} bucket(s) ({', '.join(owned)}); "
                               "delete them first")

    _edit(args, lambda doc: delete_tenant(doc, args.name), check=no_buckets)
    print(f"deleted tenant {args.name}")
    return 0


# ----- keys -----------------------------------------------------------------------------------

def key_create_command(args: argparse.Namespace) -> int:
    from maillage.cli.common import profile_of

    role: Role = "admin" if args.admin else "read-only" if args.read_only else "read-write"
    made: list[AccessKey] = []

    def edit(doc: AccessDoc) -> AccessDoc:
        new, key = create_key(doc, args.tenant, role, args.bucket, now_ms=_now_ms())
        made.append(key)
        return new

    _edit(args, edit)
    key = made[-1]
    profile = profile_of(args)
    trust = args.trust_dir or profile.trust_dir
    limited = f", buckets {', '.join(key.buckets)}" if key.buckets else ""
    print(f"created {role} access key for tenant {key.tenant}{limited}")
    print(f"  access key id:     {key.key_id}")
    print(f"  secret access key: {key.secret}")
    print("the secret is shown only now. A profile for ~/.maillage/config (or $MAILLAGE_CONFIG_FILE):\n")
    print(f"[profile {key.tenant}]")
    print(f"endpoint = {','.join(profile.endpoints)}")
    print(f"access_key_id = {key.key_id}")
    print(f"secret_access_key = {key.secret}")
    print(f"trust_dir = {trust}")
    print(f"\nthen e.g. `maillage ls --profile {key.tenant}` (or export MAILLAGE_PROFILE={key.tenant})")
    return 0


def key_list_command(args: argparse.Namespace) -> int:
    doc = _read(args)
    keys = [k for k in doc.keys if args.tenant is None or k.tenant == args.tenant]
    rows = [[k.key_id, k.tenant, k.role, ", ".join(k.buckets) or "(all)", "revoked" if k.revoked else "active",
             _when(k.created_ms)] for k in keys]
    print(table(rows, header=["KEY ID", "TENANT", "ROLE", "BUCKETS", "STATE", "CREATED"]))
    return 0


def key_revoke_command(args: argparse.Namespace) -> int:
    _edit(args, lambda doc: revoke_key(doc, args.key_id))
    print(f"revoked access key {args.key_id}")
    return 0


def key_refresh_command(args: argparse.Namespace) -> int:
    def edit(doc: AccessDoc) -> AccessDoc:
        for region in args.s3_region:
            doc = add_s3_region(doc, region)
        return dataclasses.replace(doc, version=doc.version + 1)

    doc = _edit(args, edit)
    first = datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=WINDOW_PAST_DAYS)
    last = first + datetime.timedelta(days=WINDOW_PAST_DAYS + WINDOW_FUTURE_DAYS)
    print(f"published access document v{doc.version}: nodes verify requests dated {first} to {last} (UTC); "
          f"S3 regions {', '.join(sorted(set(doc.s3_regions) | set(doc.policies)))}. Refresh again before {last}, "
          "at least weekly")
    return 0


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")
