"""`maillage mb / ls / cp / rm`: buckets and objects from a shell.

Mesh objects are named `mesh://BUCKET/KEY` in `cp` (anything else is a local path, `-` is
stdin/stdout); `ls` also accepts plain `BUCKET[/PREFIX]`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from maillage.cli.common import (
    CREDENTIALS_NOTE,
    MESH_SCHEME,
    CommandError,
    Progress,
    add_endpoint_option,
    human_size,
    is_mesh_path,
    open_client,
    split_mesh_path,
    table,
)

_ENV_NOTE = ("The mesh is reached through --endpoint HOST:PORT (repeatable) or $MAILLAGE_ENDPOINT "
             "(comma-separated); any node will do. " + CREDENTIALS_NOTE)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    mb = sub.add_parser(
        "mb", help="make a bucket bound to a residency policy",
        description="Create a bucket bound to a residency policy of the layout (e.g. france-only, "
                    "eu-wide). The policy decides where every byte of the bucket may rest and how "
                    "many copies it gets; it cannot be changed later. Refused if the policy is "
                    "unknown or the layout has too few eligible sites. The bucket belongs to the tenant of "
                    "the access key; other tenants cannot see or touch it. " + _ENV_NOTE)
    mb.add_argument("bucket", metavar="BUCKET", help="bucket name (lowercase letters, digits, '-', '.')")
    mb.add_argument("--policy", "-p", required=True, metavar="NAME", help="residency policy name from the layout")
    add_endpoint_option(mb)
    mb.set_defaults(func=mb_command)

    ls = sub.add_parser(
        "ls", help="list buckets, or objects of a bucket",
        description="Without an argument: list your tenant's buckets with their policies. With BUCKET[/PREFIX] "
                    f"(or {MESH_SCHEME}BUCKET[/PREFIX]): list objects whose key starts with PREFIX; "
                    "keys are grouped by '/' like directories (shown as PRE) unless --recursive. "
                    + _ENV_NOTE)
    ls.add_argument("target", nargs="?", metavar="BUCKET[/PREFIX]", help="bucket and optional key prefix")
    ls.add_argument("--recursive", "-r", action="store_true", help="list every key under the prefix, no grouping")
    add_endpoint_option(ls)
    ls.set_defaults(func=ls_command)

    cp = sub.add_parser(
        "cp", help="copy a file into or out of the mesh",
        description=f"Copy between a local file and a mesh object named {MESH_SCHEME}BUCKET/KEY. "
                    f"Upload: `maillage cp ./scan.dcm {MESH_SCHEME}scans/2026/scan.dcm`; a "
                    f"destination ending in '/' (e.g. {MESH_SCHEME}scans/2026/) appends the file "
                    f"name. Download: `maillage cp {MESH_SCHEME}scans/2026/scan.dcm ./scan.dcm`; a "
                    "destination directory keeps the key's last part as the file name, '-' writes "
                    "to stdout (and '-' as source reads stdin). Downloads are verified chunk by chunk "
                    "and written via a temporary file, so a failed copy leaves no half file. Large "
                    "transfers show progress (bytes, %%, MB/s) on stderr. " + _ENV_NOTE)
    cp.add_argument("source", metavar="SRC", help=f"local path, '-', or {MESH_SCHEME}BUCKET/KEY")
    cp.add_argument("dest", metavar="DST", help=f"local path, '-', or {MESH_SCHEME}BUCKET/KEY")
    cp.add_argument("--content-type", metavar="TYPE",
                    help="content type to store (upload; default: guessed from the name)")
    cp.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    add_endpoint_option(cp)
    cp.set_defaults(func=cp_command)

    rm = sub.add_parser(
        "rm", help="delete an object",
        description="Delete the object KEY of BUCKET (a tombstone replicated like a write). "
                    "Fails if the bucket or key does not exist. " + _ENV_NOTE)
    rm.add_argument("bucket", metavar="BUCKET")
    rm.add_argument("key", metavar="KEY")
    add_endpoint_option(rm)
    rm.set_defaults(func=rm_command)


# ----- mb ---------------------------------------------------------------------------------------

def mb_command(args: argparse.Namespace) -> int:
    bucket = args.bucket[len(MESH_SCHEME):] if is_mesh_path(args.bucket) else args.bucket
    bucket = bucket.rstrip("/")
    with open_client(args) as client:
        made = client.create_bucket(bucket, args.policy)
        layout = client.layout()
    policy = layout.policy(made.policy)
    allow = ", ".join("/".join(a) for a in policy.allow)
    print(f"made bucket {made.name} (policy {made.policy}: data rests only in {allow}, "
          f"{policy.replicas} copies on distinct sites)")
    return 0


# ----- ls ---------------------------------------------------------------------------------------

def _when(hlc: int) -> str:
    """Wall-clock part of a hybrid logical clock version (milliseconds in the high bits)."""
    try:
        ms = hlc >> 16
        return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "-"


def ls_command(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        if not args.target:
            buckets = client.list_buckets()
            if not buckets:
                print("no buckets yet (make one with `maillage mb BUCKET --policy NAME`)", file=sys.stderr)
                return 0
            layout = client.layout()
            rows = []
            for b in sorted(buckets, key=lambda b: b.name):
                try:
                    allow = ", ".join("/".join(a) for a in layout.policy(b.policy).allow)
                except Exception:  # a policy the layout no longer knows
                    allow = "?"
                rows.append([b.name, b.policy, allow])
            print(table(rows, header=["BUCKET", "POLICY", "DATA MAY REST IN"]))
            return 0
        bucket, prefix = split_mesh_path(args.target)
        client.head_bucket(bucket)                       # a clear NoSuchBucket before listing
        rows, total, count, prefixes = [], 0, 0, 0
        for item in client.list_objects(bucket, prefix=prefix, delimiter="" if args.recursive else "/"):
            if isinstance(item, str):
                rows.append(["", "PRE", item])
                prefixes += 1
            else:
                rows.append([_when(item.version), human_size(item.size), item.key])
                total += item.size
                count += 1
    if rows:
        print(table(rows, right=(1,)))
    summary = f"{count} object{'s' * (count != 1)}, {human_size(total)}"
    if prefixes:
        summary += f"; {prefixes} common prefix{'es' * (prefixes != 1)} (PRE; --recursive lists under them)"
    print(summary, file=sys.stderr)
    return 0


# ----- cp ---------------------------------------------------------------------------------------

def _guess_type(name: str) -> str:
    import mimetypes
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def cp_command(args: argparse.Namespace) -> int:
    src_mesh, dst_mesh = is_mesh_path(args.source), is_mesh_path(args.dest)
    if src_mesh == dst_mesh:
        raise CommandError(f"cp needs one local path and one {MESH_SCHEME}BUCKET/KEY "
                           f"(got {args.source!r} and {args.dest!r})")
    return _upload(args) if dst_mesh else _download(args)


def _upload(args: argparse.Namespace) -> int:
    bucket, key = split_mesh_path(args.dest)
    source = args.source
    if source != "-":
        path = Path(source)
        if not path.is_file():
            raise CommandError(f"{source}: no such file" if not path.exists() else f"{source}: not a regular file")
        if not key or key.endswith("/"):
            key += path.name
    elif not key or key.endswith("/"):
        raise CommandError(f"uploading stdin needs a full key: {MESH_SCHEME}{bucket}/KEY")
    ctype = args.content_type or _guess_type(key)
    with open_client(args) as client:
        if source == "-":
            result = client.put_object(bucket, key, _stdin_pieces(), content_type=ctype)
        else:
            size = os.path.getsize(source)
            progress = Progress(f"{source} -> {MESH_SCHEME}{bucket}/{key}", size) if not args.quiet else None
            result = client.upload_file(source, bucket, key, content_type=ctype, progress=progress)
            if progress:
                progress.finish()
    print(f"uploaded {MESH_SCHEME}{bucket}/{key} ({human_size(result.size)}, etag {result.etag[:16]}) "
          f"on {', '.join(result.sites)}")
    return 0


def _stdin_pieces():
    while True:
        piece = sys.stdin.buffer.read(1024 * 1024)
        if not piece:
            return
        yield piece


def _download(args: argparse.Namespace) -> int:
    bucket, key = split_mesh_path(args.source, need_key=True)
    with open_client(args) as client:
        if args.dest == "-":
            body = client.get_object(bucket, key)
            out = sys.stdout.buffer
            for piece in body.iter_chunks():
                out.write(piece)
            out.flush()
            return 0
        target = Path(args.dest)
        if target.is_dir() or args.dest.endswith(("/", os.sep)):
            if not target.is_dir():
                raise CommandError(f"{args.dest}: no such directory")
            target = target / key.rsplit("/", 1)[-1]
        if not target.parent.is_dir():
            raise CommandError(f"{target.parent}: no such directory")
        info = client.head_object(bucket, key)
        progress = Progress(f"{MESH_SCHEME}{bucket}/{key} -> {target}", info.size) if not args.quiet else None
        info = client.download_file(bucket, key, target, progress=progress)
        if progress:
            progress.finish()
    print(f"downloaded {MESH_SCHEME}{bucket}/{key} to {target} ({human_size(info.size)}, verified)")
    return 0


# ----- rm ---------------------------------------------------------------------------------------

def rm_command(args: argparse.Namespace) -> int:
    bucket = args.bucket[len(MESH_SCHEME):] if is_mesh_path(args.bucket) else args.bucket
    with open_client(args) as client:
        client.head_object(bucket, args.key)             # NoSuchKey is an error, not a silent no-op
        client.delete_object(bucket, args.key)
    print(f"deleted {MESH_SCHEME}{bucket}/{args.key}")
    return 0


