"""`maillage demo`: a local mesh on loopback, two buckets with different residency rules, proof.

Zero setup: the local mesh makes its own cluster (CA, node certificates, signed layout, a tenant
'demo' with a read-write key and an admin key) as `maillage cluster init` would, so every call is
TLS and signed as on a real mesh. Starts one real node process per site in a temporary directory,
creates a France-only bucket and an EU-wide bucket, stores objects of several sizes, reads each back
and verifies it, then asks every node what it stores (Replica.Inventory) and shows where each
object's bytes rest, with a residency verdict. Exits non-zero if anything of the France-only bucket
rests outside France.

Every node serves Prometheus metrics on its ops port, HTTPS with a certificate of the cluster CA
and the scrape token in {mesh.metrics_token_file} (deploy/prometheus/ has a scrape config and the
alert rules), e.g.:

  curl --cacert {mesh.cluster_dir}/ca.pem -H "Authorization: Bearer $(cat {mesh.metrics_token_file})" \\
       {mesh.ops_url(mesh.layout.nodes[0].id)}/metrics

Every node also serves the S3 API (`--s3-listen`), buckets created without a LocationConstraint get
the EU-wide policy; while the mesh keeps running the demo prints ready-to-paste AWS_* variables for
aws-cli, boto3 and rclone (`s3_exports`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from maillage.client.admin import ObjectResidency

from maillage.cli.common import CommandError, Progress, describe_error, human_size, table

FRANCE_BUCKET = "france-data"
EU_BUCKET = "eu-data"
BIG = 20 * 1024 * 1024
MESH_UP_TIMEOUT = 20.0  # seconds the demo waits for every node to see every other up before its first write
S3_DEFAULT_POLICY = "eu-wide"  # of a bucket created through S3 without a LocationConstraint

# sites beyond the six of the default demo layout, for --sites up to 12
_EXTRA_SITES = (
    ("lyon-1", "eu/fr/ara"), ("berlin-1", "eu/de/berlin"), ("grenoble-1", "eu/fr/ara"),
    ("hamburg-1", "eu/de/hamburg"), ("milano-1", "eu/it/lombardia"), ("torino-1", "eu/it/piemonte"),
)
MIN_SITES, MAX_SITES = 3, 6 + len(_EXTRA_SITES)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="start a local mesh, store objects, show where they live",
        description="Start a local mesh of real node processes on loopback (one per site: Paris, "
                    "Toulouse, Montpellier in France; Munich, Nuremberg in Germany), create a "
                    f"France-only bucket ({FRANCE_BUCKET}) and an EU-wide bucket ({EU_BUCKET}), "
                    "store a 4 KiB text, a 1 MiB and a 20 MiB binary, read each back and verify it, "
                    "then show which sites hold each object, proven from every node's own inventory, "
                    "with a residency verdict. The mesh then keeps running so you can use it with "
                    "`maillage ls/cp/where/...`, or with aws-cli, boto3 or rclone through the S3 API "
                    "every node serves, until Ctrl-C. Exit status: 0 on success, 2 if any "
                    "data of the France-only bucket rests outside France, 1 on other errors.")
    p.add_argument("--once", action="store_true",
                   help="stop the mesh and exit after the report instead of running until Ctrl-C")
    p.add_argument("--sites", type=int, default=6, metavar="N",
                   help=f"number of sites (one node each), {MIN_SITES}..{MAX_SITES}; the first "
                        "six are the demo's French and German sites (default: 6)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="put the nodes' data and logs in DIR and keep them after exit "
                        "(default: a temporary directory, removed on exit)")
    p.set_defaults(func=run_command)


def _sites(count: int):
    from maillage.testing.localmesh import DEMO_SITES, SiteSpec

    if not MIN_SITES <= count <= MAX_SITES:
        raise CommandError(f"--sites must be between {MIN_SITES} and {MAX_SITES} (got {count})")
    specs = list(DEMO_SITES) + [SiteSpec(n, loc) for n, loc in _EXTRA_SITES]
    return tuple(specs[:count])


def _say(text: str = "") -> None:
    print(text, flush=True)


def _text_object(size: int) -> bytes:
    line = (b"maillage demo: this text lives on at least two French sites and never leaves "
            b"France.\n")
    return (line * (size // len(line) + 1))[:size]


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):  # noqa: ARG001
    raise _Stop()


def run_command(args: argparse.Namespace) -> int:
    from maillage.client import Client, MaillageError
    from maillage.testing.localmesh import LocalMesh, make_layout

    energy_dir = Path(tempfile.mkdtemp(prefix="maillage-demo-energy-"))
    layout = _with_energy(make_layout(_sites(args.sites)), energy_dir)
    policies = {p.name: p for p in layout.policies}
    france, eu = policies["france-only"], policies["eu-wide"]
    if args.keep is not None:
        args.keep = args.keep.resolve()
        if args.keep.exists() and any(args.keep.iterdir()):
            raise CommandError(f"--keep {args.keep}: directory exists and is not empty")

    previous = signal.signal(signal.SIGTERM, _raise_stop)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    began = time.monotonic()
    finished = False
    kept = f" Data and logs kept in {args.keep}" if args.keep else ""
    _say(f"maillage demo: a local mesh of {len(layout.sites)} sites on loopback, one node each")
    try:
        mesh = LocalMesh(layout, base_dir=args.keep, s3=True, s3_default_policy=S3_DEFAULT_POLICY, s3_tls=True,
                         ops=True)
        _say(f"  starting nodes in {mesh.base_dir} ...")
        t0 = time.monotonic()
        with mesh:
            if not mesh.wait_all_up(timeout=MESH_UP_TIMEOUT):
                _say(f"  (some nodes still suspect a peer after {MESH_UP_TIMEOUT:.0f} s; going on)")
            _say(f"  {len(layout.nodes)} nodes ready in {time.monotonic() - t0:.1f} s\n")
            _say(table([[n.site, format_loc(layout, n.id), n.address, mesh.s3_endpoint(n.id)]
                        for n in layout.nodes],
                       header=["site", "location", "node address", "S3 endpoint"], indent="  "))
            _say()
            try:
                with Client(profile=mesh.profile) as client:
                    code = _scenario(client, mesh, layout, france, eu)
            except MaillageError as exc:
                raise CommandError(f"demo failed: {describe_error(exc)} (node logs: {mesh.log_dir})") from exc
            _energy_report(mesh, layout)
            finished = True
            _say(f"\ndemo finished in {time.monotonic() - began:.1f} s.")
            if code != 0 or args.once:
                if code != 0:
                    _say(f"node logs: {mesh.log_dir}")
                if args.keep:
                    _say(kept.strip())
                return code
            _usage(mesh)
            _wait(mesh, lambda: _write_energy(layout, energy_dir))
    except (_Stop, KeyboardInterrupt):
        _say("\nstopped the mesh." + kept)
        return 0 if finished else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        shutil.rmtree(energy_dir, ignore_errors=True)


def format_loc(layout, node_id: str) -> str:
    from maillage.placement import format_location
    return format_location(layout.location_of(node_id))


def _scenario(client, mesh, layout, france, eu) -> int:
    from maillage.client import admin

    def allow(p):
        return ", ".join("/".join(a) for a in p.allow)

    for bucket, policy in ((FRANCE_BUCKET, france), (EU_BUCKET, eu)):
        client.create_bucket(bucket, policy.name)
        _say(f"  created bucket {bucket:<12} policy {policy.name:<12} "
             f"(data may rest only in {allow(policy)}; {policy.replicas} copies on distinct sites)")

    objects = [
        (FRANCE_BUCKET, "notes/hello.txt", _text_object(4 * 1024), "text/plain; charset=utf-8"),
        (FRANCE_BUCKET, "scans/ct-0001.bin", os.urandom(1024 * 1024), "application/octet-stream"),
        (FRANCE_BUCKET, "archive/backup-2026.bin", os.urandom(BIG), "application/octet-stream"),
        (EU_BUCKET, "notes/hello.txt", _text_object(4 * 1024), "text/plain; charset=utf-8"),
        (EU_BUCKET, "datasets/sensors.bin", os.urandom(1024 * 1024), "application/octet-stream"),
    ]
    _say("\nstoring objects (acknowledged once fsync'd on at least 2 sites):")
    width = max(len(f"{b}/{k}") for b, k, _, _ in objects)
    for bucket, key, data, ctype in objects:
        name = f"{bucket}/{key}"
        progress = Progress(f"    uploading {name}", len(data), threshold=BIG, stream=sys.stdout)
        t0 = time.monotonic()
        result = client.put_object(bucket, key, data, content_type=ctype, progress=progress)
        progress.finish()
        took = time.monotonic() - t0
        _say(f"    put {name:<{width}}  {human_size(len(data)):>9}  {took * 1000:6.0f} ms  "
             f"acked by {', '.join(result.sites)}")

    _say("\nreading back and verifying (every chunk against its BLAKE3 digest):")
    for bucket, key, data, _ in objects:
        t0 = time.monotonic()
        got = client.get_object(bucket, key).read()
        took = time.monotonic() - t0
        if got != data:
            raise CommandError(f"{bucket}/{key}: read back {len(got)} bytes that differ from what was stored")
        _say(f"    get {bucket + '/' + key:<{width}}  {human_size(len(data)):>9}  {took * 1000:6.0f} ms  identical")

    _say("\nwhere the data rests, from every node's own inventory (not from placement):")
    inventories, unreachable = admin.fetch_inventories(layout, mesh.admin_profile)
    failures = 0
    results = []
    for bucket, key, _data, _ in objects:
        policy = france if bucket == FRANCE_BUCKET else eu
        manifest = admin.fetch_manifest(layout, policy.name, bucket, key, mesh.admin_profile)
        r = admin.survey(layout, inventories, unreachable, policy, manifest)
        results.append(r)
        pieces = "inline in manifest" if r.chunk_count == 0 else f"{r.chunk_count} chunk{'s' * (r.chunk_count > 1)}"
        _say(f"\n  {bucket}/{key}  {human_size(r.size)}, {pieces}, policy {policy.name} "
             f"(allow {r.allow_text}, R={policy.replicas})")
        _say(table(holding_rows(r), indent="      "))
        mark = "ok" if r.ok else "!!"
        _say(f"    {mark} {r.verdict()}")
        for v in r.violations:
            _say(f"       !! {v}")
        if not r.ok:
            failures += 1

    stray = admin.bucket_violations(layout, inventories, FRANCE_BUCKET, france)
    for v in stray:
        _say(f"  !! RESIDENCY VIOLATION: {v}")

    _say("\nsummary:")
    rows = []
    for r in results:
        rows.append([r.bucket, r.key, r.policy.name, human_size(r.size), " ".join(admin.sites_of(r)), r.verdict()])
    _say(table(rows, header=["bucket", "key", "policy", "size", "sites holding data", "residency"],
               indent="  ", right=(3,)))
    french_nodes = sum(1 for n in layout.nodes if france.allows(layout.location_of(n.id)))
    if failures or stray:
        print(f"\nmaillage demo: FAILED: {failures} object(s) failed the check, "
              f"{len(stray)} stray key(s) of {FRANCE_BUCKET} outside France", file=sys.stderr, flush=True)
        return 2
    _say(f"\nresidency proven: nothing of {FRANCE_BUCKET} rests outside eu/fr "
         f"({len(layout.nodes)} nodes asked, {french_nodes} of them in France).")
    return 0


def _usage(mesh) -> None:
    from maillage.cli.console_cmd import DEFAULT_LISTEN

    first = mesh.addresses[0]
    admin = mesh.admin_profile.credentials
    console_url = f"https://{DEFAULT_LISTEN}/"
    _say(f"""
the mesh keeps running, with its own cluster (CA, layout-signing key, access keys) in
{mesh.cluster_dir}. Its profiles are in {mesh.config_file}: [default] is tenant
'demo' (read-write, owns the buckets above), [profile admin] an admin key. In another shell try:

  export MAILLAGE_CONFIG_FILE={mesh.config_file}
  export MAILLAGE_CLUSTER_DIR={mesh.cluster_dir}     # signs layout and access changes
  maillage ls                                    # tenant demo's buckets and their policies
  maillage ls {FRANCE_BUCKET} --recursive
  maillage where {FRANCE_BUCKET} scans/ct-0001.bin
  maillage cp ./some-file mesh://{EU_BUCKET}/some-file
  maillage cp mesh://{FRANCE_BUCKET}/notes/hello.txt ./hello.txt
  maillage status --profile admin                # every node, as the mesh sees it
  maillage console --profile admin               # the web console: {console_url}
  maillage audit --profile admin                 # every copy checked against its policy
  maillage layout show --profile admin           # the layout; add-site, drain, apply change it
  maillage tenant create hospital --profile admin
  maillage key create --tenant hospital --profile admin    # prints a key and a profile for it

or pass a node explicitly, e.g. `maillage ls {FRANCE_BUCKET} --endpoint {first}`.

The console (HTTPS, a self-signed certificate whose fingerprint it prints) asks for an admin key:
access key id {admin.key_id} and secret {admin.secret} ([profile admin]).

Every node serves Prometheus metrics on its ops port, HTTPS with a certificate of the cluster CA
and the scrape token in {mesh.metrics_token_file} (deploy/prometheus/ has a scrape config and the
alert rules), e.g.:

  curl --cacert {mesh.cluster_dir}/ca.pem -H "Authorization: Bearer $(cat {mesh.metrics_token_file})" \\
       {mesh.ops_url(mesh.layout.nodes[0].id)}/metrics

Every node also serves the S3 API (its S3 endpoint above, HTTPS with a certificate of the
cluster CA). A bucket's LocationConstraint names its residency policy, and `aws s3 mb` sends the
region as the LocationConstraint, so the region here is a policy. aws-cli and boto3, as tenant 'demo':

{s3_exports(mesh)}
  aws s3 ls s3://{FRANCE_BUCKET}/ --recursive
  aws s3 cp ./some-file s3://{EU_BUCKET}/some-file
  aws s3 mb s3://scans --region france-only      # a France-only bucket
  aws s3 presign s3://{FRANCE_BUCKET}/notes/hello.txt

rclone, with the same endpoint and key:

{rclone_exports(mesh)}
  rclone ls demo:{FRANCE_BUCKET}

node logs: {mesh.log_dir}
press Ctrl-C to stop the mesh.""")


def s3_environment(mesh, node: int = 0) -> dict[str, str]:
    """The AWS_* variables that point aws-cli, boto3 and other AWS SDKs at a node's S3 endpoint with
    tenant demo's key (writes the AWS config file they name, for an HTTPS endpoint).

    The region is the default policy's name: `aws s3 mb` turns its region into a LocationConstraint,
    and the SDKs presign with SigV4 in a region they do not know (with SigV2 in us-east-1). For an
    HTTPS endpoint the cluster CA goes in an AWS config file (`ca_bundle`), not in AWS_CA_BUNDLE:
    rclone's AWS SDK refuses to start when AWS_CA_BUNDLE is set ("LoadCustomCABundleError")."""
    endpoint = mesh.s3_endpoints[node]
    creds = mesh.profile.credentials
    region = mesh.s3_default_policy or S3_DEFAULT_POLICY
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": creds.key_id,
           "AWS_SECRET_ACCESS_KEY": creds.secret, "AWS_DEFAULT_REGION": region}
    if endpoint.startswith("https:"):
        config = mesh.base_dir / "aws.conf"
        config.write_text(f"# aws-cli and boto3 settings for the local mesh in {mesh.base_dir}\n"
                          f"[default]\nregion = {region}\nca_bundle = {mesh.s3_ca_file}\n")
        env["AWS_CONFIG_FILE"] = str(config)
    return env


def _exports(env: dict[str, str], *lines: tuple[str, ...]) -> str:
    """`export` lines (indented), one per group of variable names."""
    return "\n".join("  export " + " ".join(f"{n}={shlex.quote(env[n])}" for n in names if n in env)
                     for names in lines)


def s3_exports(mesh) -> str:
    """Ready-to-paste `export AWS_...` lines (indented) for the mesh's first S3 endpoint."""
    return _exports(s3_environment(mesh), ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                    ("AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"))


def rclone_exports(mesh) -> str:
    """Ready-to-paste lines defining the rclone remote `demo:` from the AWS_* variables above. Not
    with env_auth: rclone's AWS SDK would then read the AWS config file, and it refuses a ca_bundle."""
    env = {"RCLONE_CONFIG_DEMO_TYPE": "s3", "RCLONE_CONFIG_DEMO_PROVIDER": "Other",
           "RCLONE_CONFIG_DEMO_FORCE_PATH_STYLE": "true"}
    lines = [_exports(env, tuple(env)),
             '  export RCLONE_CONFIG_DEMO_ENDPOINT="$AWS_ENDPOINT_URL" '
             'RCLONE_CONFIG_DEMO_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"',
             '  export RCLONE_CONFIG_DEMO_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"']
    if mesh.s3_endpoints[0].startswith("https:"):
        lines.append(_exports({"RCLONE_CA_CERT": str(mesh.s3_ca_file)}, ("RCLONE_CA_CERT",)))
    return "\n".join(lines)


# What the demo's simulated building systems say, in turn by site: PV surplus, a grey evening on a
# carbon-heavy grid, and a demand-response order (the file each site's nodes read; see README, Energy).
DEMO_SIGNALS = ({"surplus_w": 1800, "carbon_g_per_kwh": 45, "order": "normal"},
                {"surplus_w": -600, "carbon_g_per_kwh": 420, "order": "normal"},
                {"surplus_w": 300, "carbon_g_per_kwh": 60, "order": "shed"})


def _with_energy(layout, energy_dir: Path):
    """Each site of `layout` reading its energy from a file in `energy_dir`, written now."""
    from maillage.placement.changes import set_site_energy

    for site in layout.sites:
        layout = set_site_energy(layout, site.name, f"file:{energy_dir / site.name}.json")
    _write_energy(layout, energy_dir)
    return layout


def _write_energy(layout, energy_dir: Path) -> None:
    """(Re)write every site's signal with the time now: a reading older than 15 min is stale."""
    for i, site in enumerate(layout.sites):
        path = energy_dir / f"{site.name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"time": time.time(), **DEMO_SIGNALS[i % len(DEMO_SIGNALS)]}))
        os.replace(tmp, path)


def _energy_report(mesh, layout) -> None:
    """Each site's energy state as its node reads it, and the background work it defers."""
    from maillage.cli.status_cmd import energy_note
    from maillage.client.admin import ClusterAdmin, status_rows

    def deferring(row) -> bool:  # a node under grey or shed has its first GC pass waiting, a second in
        e = row["energy"]
        return e["state"] not in ("grey", "shed") or any(k["waiting"] for k in e["kinds"].values())

    with ClusterAdmin(mesh.admin_profile) as admin:
        deadline = time.monotonic() + 5.0
        while True:
            rows = status_rows(list(layout.nodes), admin.statuses(timeout=5.0))
            if all(deferring(r) for r in rows if r["reachable"]) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    _say("\nenergy (simulated building signals; scrub, GC, hand-back and rebalance wait for green windows "
         "and stop on a shed order, repair of a missing copy never waits):")
    _say(table([[r["site"], energy_note(r["energy"]) if r["reachable"] else "unreachable"] for r in rows],
               header=["site", "energy as its node reads it"], indent="  "))


def _wait(mesh, refresh: Callable[[], None]) -> NoReturn:
    last = time.monotonic()
    while True:
        if time.monotonic() - last > 60:
            refresh()
            last = time.monotonic()
        for node_id, proc in mesh.processes.items():
            if proc.poll() is not None:
                time.sleep(0.5)     # a Ctrl-C reaches the nodes too: let ours arrive first
                raise CommandError(f"node {node_id} stopped (exit code {proc.returncode}), stopping "
                                   f"the demo; log: {mesh.log_dir / (node_id + '.log')}")
        time.sleep(0.5)


def holding_rows(r: ObjectResidency) -> list[list[str]]:
    """One table row per node holding a piece of the object."""
    rows = []
    for h in r.holdings:
        what = []
        if h.manifest:
            what.append("manifest" + (" (inline data)" if r.chunk_count == 0 else ""))
        if h.chunks:
            what.append(f"{h.chunks}/{r.chunk_count} chunk{'s' if r.chunk_count != 1 else ''}")
        rows.append([h.site, h.location, ", ".join(what), "" if h.allowed else "<-- OUTSIDE POLICY"])
    return rows
