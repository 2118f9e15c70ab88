"""`maillage cluster init | node-cert`: a new cluster's trust, made on the admin machine.

`init` writes the cluster dir (CA, layout-signing key pair, shared client certificate), the first
access document (tenant "admin" with one admin key, signed: access.signed) and an admin profile
(admin.conf); `node-cert` issues one node's trust dir and records its certificate key (node-keys.json),
which the next layout pins; `pin` records the key of a certificate issued before pinning. The files
are made by `maillage.client.admin` (`init_cluster`, `node_trust_dir`, `pin_certificate`); this
module parses and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maillage.cli.admin import CLUSTER_DIR_ENV, add_cluster_dir_option, cluster_dir
from maillage.cli.common import CommandError

_FLOW = """\
A new mesh, step by step (admin machine first, then each node's machine):
  1. maillage cluster init ./cluster --name NAME            (keep ./cluster on the admin machine only)
  2. per node: maillage cluster node-cert NODE_ID --cluster-dir ./cluster --out ./trust-NODE_ID
     and copy ./trust-NODE_ID to that node's machine
  3. write layout.toml (sites, nodes with their addresses, policies), then
     maillage layout sign layout.toml --cluster-dir ./cluster --out layout.signed
     (it pins each node's certificate key, recorded by node-cert) and copy it to every node's machine
  4. on each node: maillage node run --id NODE_ID --data-dir /var/lib/maillage --trust-dir ./trust-NODE_ID \\
       --layout layout.signed
  5. on the admin machine: export MAILLAGE_CONFIG_FILE=./cluster/admin.conf MAILLAGE_ENDPOINT=HOST:PORT
     maillage status; maillage tenant create NAME; maillage key create --tenant NAME"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster", help="create a cluster's trust (CA, signing key, admin key) and node certificates",
        description="Create the trust of a new cluster and issue node certificates. Run on the admin "
                    "machine; the cluster dir holds the CA key and the layout-signing key: keep it "
                    "there (nodes get only their own trust dir).",
        epilog=_FLOW, formatter_class=argparse.RawDescriptionHelpFormatter)
    cluster_sub = p.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")

    init = cluster_sub.add_parser(
        "init", help="create a cluster dir, the first admin key and an admin profile",
        description="Create DIR with the cluster's CA (ca.pem, ca.key), layout-signing key pair "
                    "(layout-signing.key, .pub), the client certificate every SDK and CLI presents "
                    "(client.pem, client.key), the first access document with tenant 'admin' and one "
                    "admin access key (access.signed), and a profile using that key (admin.conf, with "
                    "DIR as trust dir). Refuses to overwrite an existing cluster.",
        epilog=_FLOW, formatter_class=argparse.RawDescriptionHelpFormatter)
    init.add_argument("directory", metavar="DIR", type=Path)
    init.add_argument("--name", default=None, help="the cluster's name, shown in its certificates "
                                                   "(default: DIR's name)")
    init.add_argument("--endpoint", "-e", action="append", default=[], metavar="HOST:PORT",
                      help="a node address to put in the admin profile (repeatable; can be set later "
                           "with $MAILLAGE_ENDPOINT)")
    init.set_defaults(func=init_command)

    cert = cluster_sub.add_parser(
        "node-cert", help="issue (or rotate) a node's certificate into its trust dir",
        description="Issue the certificate of NODE_ID (the id it has in the layout) into --out: "
                    "node.pem, node.key, ca.pem, layout-signing.pub and the cluster's current "
                    "access.signed. Copy that directory to the node's machine and start the node "
                    "with `maillage node run --trust-dir`. The certificate's key is recorded in the "
                    "cluster dir (node-keys.json) and pinned by the next layout the admin tooling "
                    "signs: nodes accept a caller as NODE_ID only with that key. Running it again "
                    "rotates the certificate: then `maillage layout pin` and `maillage layout apply` "
                    "(the old certificate is refused from then on) and restart the node with the new "
                    "trust dir. The node's S3 port serves HTTPS with this "
                    "certificate: --san adds the names S3 clients connect by. "
                    f"Needs the cluster dir (--cluster-dir or ${CLUSTER_DIR_ENV}).")
    cert.add_argument("node_id", metavar="NODE_ID")
    cert.add_argument("--out", required=True, type=Path, metavar="TRUST_DIR")
    cert.add_argument("--days", type=int, default=365, help="certificate lifetime (default 365)")
    cert.add_argument("--san", action="append", default=[], metavar="NAME",
                      help="a DNS name or IP address by which S3 clients reach this node's S3 port "
                           "(`node run --s3-listen` serves HTTPS with this certificate), e.g. "
                           "s3.example.com, *.s3.example.com (virtual-host-style buckets with "
                           "--s3-domain s3.example.com) or 192.0.2.10; repeatable or comma-separated")
    add_cluster_dir_option(cert)
    cert.set_defaults(func=node_cert_command)

    pin = cluster_sub.add_parser(
        "pin", help="record the key of a node certificate issued before pinning",
        description="Record, in the cluster dir's node-keys.json, the key of NODE_ID's certificate "
                    "CERT (its trust dir's node.pem), issued before certificates were pinned: it must "
                    "be issued by this cluster's CA for NODE_ID, with the node usages. Once a key is "
                    "recorded for every node, `maillage layout pin` and `apply` pin them all. "
                    f"Needs the cluster dir (--cluster-dir or ${CLUSTER_DIR_ENV}).")
    pin.add_argument("node_id", metavar="NODE_ID")
    pin.add_argument("--cert", required=True, type=Path, metavar="CERT")
    add_cluster_dir_option(pin)
    pin.set_defaults(func=pin_command)

    client = cluster_sub.add_parser(
        "client-trust", help="copy the files SDK and CLI users need (no private cluster key)",
        description="Write --out with ca.pem, client.pem, client.key and layout-signing.pub: the trust "
                    "dir of a tenant's profile (`trust_dir`). It holds none of the cluster's private "
                    f"keys. Needs the cluster dir (--cluster-dir or ${CLUSTER_DIR_ENV}).")
    client.add_argument("--out", required=True, type=Path, metavar="TRUST_DIR")
    add_cluster_dir_option(client)
    client.set_defaults(func=client_trust_command)


def init_command(args: argparse.Namespace) -> int:
    from maillage.client.admin import init_cluster
    from maillage.proto.trust.identity import IdentityError

    directory: Path = args.directory
    name = args.name or directory.resolve().name
    endpoints = [a.strip() for v in args.endpoint for a in v.split(",") if a.strip()]
    try:
        made = init_cluster(directory, name, endpoints=endpoints)
    except IdentityError as exc:
        raise CommandError(str(exc)) from None
    d = made.cluster.directory
    print(f"created cluster {name!r} in {d}:")
    print("  ca.pem, ca.key                  the cluster CA (ca.key stays here)")
    print("  layout-signing.key, .pub        signs layouts and access documents (the .key stays here)")
    print("  client.pem, client.key          the certificate SDK and CLI processes present")
    print(f"  {made.access_file.name:<31} master access document v{made.access.version}: tenant 'admin', "
          f"admin key {made.admin_key.key_id} (every secret: it stays here; nodes get derived keys)")
    print(f"  {made.profile_file.name:<31} profile [default] with that key (the secret is only there)")
    print()
    print("next:")
    print(f"  export {CLUSTER_DIR_ENV}={d.resolve()}")
    print(f"  export MAILLAGE_CONFIG_FILE={made.profile_file.resolve()}")
    print("  maillage cluster node-cert NODE_ID --out ./trust-NODE_ID        # per node, copy it there")
    print("  maillage layout sign layout.toml --out layout.signed             # the first layout")
    print("  maillage node run --id NODE_ID --data-dir DIR --trust-dir ./trust-NODE_ID --layout layout.signed")
    print("  export MAILLAGE_ENDPOINT=HOST:PORT                                # any node")
    print("  maillage status; maillage tenant create NAME; maillage key create --tenant NAME")
    return 0


def client_trust_command(args: argparse.Namespace) -> int:
    from maillage.client.admin import client_trust_dir

    try:
        out = client_trust_dir(cluster_dir(args), args.out)
    except OSError as exc:
        raise CommandError(f"{exc.filename}: {exc.strerror}") from None
    print(f"wrote {out}: ca.pem, client.pem, client.key, layout-signing.pub; give it to SDK and CLI users "
          "as their profile's trust_dir")
    return 0


def node_cert_command(args: argparse.Namespace) -> int:
    from maillage.client.admin import ACCESS_FILE, NODE_KEYS_FILE, node_trust_dir, read_node_keys
    from maillage.proto.trust.identity import IdentityError

    directory = cluster_dir(args)
    sans = [name.strip() for value in args.san for name in value.split(",") if name.strip()]
    try:
        files = node_trust_dir(directory, args.node_id, args.out, days=args.days, sans=sans)
    except IdentityError as exc:
        raise CommandError(str(exc)) from None
    has_access = (files.directory / ACCESS_FILE).exists()
    print(f"issued node {args.node_id}'s certificate ({args.days} days) into {files.directory}: node.pem, "
          f"node.key, ca.pem, layout-signing.pub{', ' + ACCESS_FILE if has_access else ''}"
          f"{' (derived verification keys, no secret)' if has_access else ''}")
    print(f"recorded its key {read_node_keys(directory)[args.node_id]} in {NODE_KEYS_FILE}: the next layout "
          "pins it (a rotation: `maillage layout pin` and `maillage layout apply`, then restart the node "
          "with this trust dir; its old certificate is refused from the applied layout on)")
    if sans:
        print(f"S3 clients may reach it as {', '.join(sans)} (HTTPS; they trust the cluster CA, ca.pem)")
    print(f"copy it to the node's machine and run: maillage node run --id {args.node_id} --data-dir DIR "
          f"--trust-dir {files.directory} --layout layout.signed")
    return 0


def pin_command(args: argparse.Namespace) -> int:
    from maillage.client.admin import NODE_KEYS_FILE, pin_certificate
    from maillage.proto.trust.identity import IdentityError

    try:
        key = pin_certificate(cluster_dir(args), args.node_id, args.cert)
    except IdentityError as exc:
        raise CommandError(str(exc)) from None
    print(f"recorded node {args.node_id}'s certificate key {key} in {NODE_KEYS_FILE}; once every node has "
          "one, `maillage layout pin` and `maillage layout apply` pin them")
    return 0
