"""Real S3 tools, run unchanged as their users run them, against the S3 front door of a real mesh.

aws-cli (from the `test` extra, `python -m awscli`), rclone, s3cmd and restic (Debian packages,
installed by `.ci/run`) run as subprocesses, each with its own settings in environment variables or a temporary
config file, never the user's (~/.aws, ~/.config/rclone, ~/.s3cfg): HOME is a temporary directory.
Each tool talks to a different node's front door. What they write is checked with the tools
themselves (listings, downloads, rclone's MD5 check, s3cmd's MD5 comparison of ETags) and, for the
France-only buckets they create, from the nodes' own inventories. aws-cli's `s3api` drives versioning,
object lock, lifecycle and tagging one operation at a time (its JSON output asserted on), and rclone
lists and reads old versions (--s3-versions, --s3-version-at). The Python data tools (minio, s3fs,
pyarrow) are in test_s3_data_tools.py.

The front doors serve HTTPS with the nodes' certificates (clients trust the cluster CA, as a user
of a real mesh does) and the tools keep their defaults (checksums, multipart thresholds), so aws-cli
sends aws-chunked bodies with trailing CRC32 checksums, and its 20 MiB copy is a multipart upload.
"""

from __future__ import annotations

import filecmp
import hashlib
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from maillage.client.admin import fetch_inventories
from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import CHUNK, FRENCH, POLICIES, SITES

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402

REGION = "us-east-1"
MIB = 1024 * 1024
TOOL_TIMEOUT = 120


def _missing(tool: str) -> str:
    return f"{tool} is not installed: .ci/run installs it (apt-get install -y rclone s3cmd restic)"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("s3clients"),
                  extra_args=("--chunk-size", str(CHUNK)), s3=True, s3_default_policy="eu-wide", s3_tls=True)
    with m:
        yield m


def ca_file(mesh: LocalMesh, endpoint: str) -> str | None:
    """The CA a client must trust for an HTTPS endpoint of the mesh (None for plain HTTP)."""
    return str(mesh.s3_ca_file) if urlsplit(endpoint).scheme == "https" else None


def check(mesh: LocalMesh, argv: list[str], env: dict[str, str], *, ok: bool = True,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool; on an unexpected exit status, fail with its output and where the nodes' logs are."""
    r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    if (r.returncode == 0) != ok:
        pytest.fail(f"{' '.join(argv)} exited {r.returncode}\nstdout:\n{r.stdout[-4000:]}\n"
                    f"stderr:\n{r.stderr[-4000:]}\nnode logs: {mesh.log_dir}", pytrace=False)
    return r


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without any AWS, rclone or maillage setting, HOME a fresh dir."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RCLONE_", "MAILLAGE_", "BOTO_", "S3CMD"))}
    env["HOME"] = str(home)
    return env


def boto(mesh: LocalMesh, node: int = 0):
    """boto3 for checking what the tools did (path-style, the demo tenant's key)."""
    endpoint = mesh.s3_endpoints[node]
    creds = mesh.profile.credentials
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=creds.key_id,
                        aws_secret_access_key=creds.secret, region_name=REGION,
                        verify=ca_file(mesh, endpoint) or True,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two trees (missing on either side or different bytes)."""
    names = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    names |= {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    return sorted(n for n in names if not ((a / n).is_file() and (b / n).is_file()
                                           and filecmp.cmp(a / n, b / n, shallow=False)))


def assert_only_in_france(mesh: LocalMesh, bucket: str) -> None:
    """Every node that holds a key or a chunk reference of `bucket`, by its own inventory, is French."""
    inventories, unreachable = fetch_inventories(mesh.layout, mesh.admin_profile)
    assert not unreachable
    holders = {n for n, inv in inventories.items() if inv.keys.get(bucket) or inv.refs.get(bucket)}
    assert holders, f"no node holds anything of {bucket}"
    assert {mesh.layout.node(n).site for n in holders} <= FRENCH, holders
    assert len(holders) >= 2, holders


def tree_files(seed: int) -> dict[str, bytes]:
    rnd = os.urandom
    return {
        "readme.txt": b"a small text file\n" * (3 + seed),
        "docs/a.txt": b"alpha " * 100,
        "docs/b.txt": b"bravo " * 200,
        "docs/deep/c.bin": rnd(3 * CHUNK + 123),   # several chunks
        "images/d.bin": rnd(40_000),
        "empty.dat": b"",
    }


# ----- aws-cli -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def aws(mesh, tmp_path_factory):
    """`aws ...` (aws-cli v1 of this environment) configured by environment variables and its own
    AWS_CONFIG_FILE; returns stdout. `aws(..., ok=False)` expects a failure and returns the result."""
    if importlib.util.find_spec("awscli") is None:
        pytest.fail("aws-cli is not installed: it comes with the test extra (pip install -e '.[test]')")
    home = tmp_path_factory.mktemp("aws-home")
    endpoint = mesh.s3_endpoints[0]
    config = home / "aws-config"
    # Path-style, and SigV4 presigned URLs (aws-cli v1 presigns with SigV2 in us-east-1 unless told),
    # as for any S3 service outside AWS; every other setting is aws-cli's default.
    config.write_text(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n"
                      "    signature_version = s3v4\n")
    creds = mesh.profile.credentials
    env = clean_env(home) | {
        "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": creds.key_id, "AWS_SECRET_ACCESS_KEY": creds.secret,
        "AWS_DEFAULT_REGION": REGION, "AWS_PAGER": "", "AWS_MAX_ATTEMPTS": "1",
    }
    if ca := ca_file(mesh, endpoint):
        env["AWS_CA_BUNDLE"] = ca

    def run(*args: str, ok: bool = True, cwd: Path | None = None):
        r = check(mesh, [sys.executable, "-m", "awscli", *args], env, ok=ok, cwd=cwd)
        return r.stdout if ok else r

    return run


def test_aws_cli_makes_buckets_with_a_residency_policy(mesh, aws):
    aws("s3api", "create-bucket", "--bucket", "cli-fr",
        "--create-bucket-configuration", "LocationConstraint=france-only")
    assert boto(mesh).get_bucket_location(Bucket="cli-fr")["LocationConstraint"] == "france-only"
    assert "make_bucket: cli-eu" in aws("s3", "mb", "s3://cli-eu")  # no constraint: the default policy
    assert boto(mesh).get_bucket_location(Bucket="cli-eu")["LocationConstraint"] == "eu-wide"
    # `aws s3 mb` sends its region as the LocationConstraint: a policy name as the region works too
    aws("s3", "mb", "s3://cli-region-fr", "--region", "france-only")
    assert boto(mesh).get_bucket_location(Bucket="cli-region-fr")["LocationConstraint"] == "france-only"
    listed = aws("s3", "ls")
    assert {"cli-fr", "cli-eu", "cli-region-fr"} <= {line.split()[-1] for line in listed.splitlines()}


def test_aws_cli_cp_small_and_server_side_copy(mesh, aws, tmp_path):
    small = tmp_path / "note.txt"
    small.write_bytes(b"hello from aws-cli\n" * 500)
    aws("s3", "cp", str(small), "s3://cli-fr/notes/note.txt", "--no-progress",
        "--content-type", "text/plain", "--metadata", "ward=b2")
    head = boto(mesh, node=1).head_object(Bucket="cli-fr", Key="notes/note.txt")
    assert head["ContentLength"] == small.stat().st_size
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"ward": "b2"}
    assert head["ETag"] == f'"{hashlib.md5(small.read_bytes()).hexdigest()}"'  # an S3 ETag: MD5

    # s3 -> s3 is a CopyObject, metadata kept
    aws("s3", "cp", "s3://cli-fr/notes/note.txt", "s3://cli-fr/copied/note.txt", "--no-progress")
    copied = boto(mesh).get_object(Bucket="cli-fr", Key="copied/note.txt")
    assert copied["Body"].read() == small.read_bytes()
    assert copied["Metadata"] == {"ward": "b2"} and copied["ETag"] == head["ETag"]
    # but France-only data is not copied into a bucket whose policy allows more than France
    refused = aws("s3", "cp", "s3://cli-fr/notes/note.txt", "s3://cli-eu/note.txt", ok=False)
    assert "AccessDenied" in refused.stderr and "france-only" in refused.stderr, refused.stderr


def test_aws_cli_cp_of_a_large_file_is_a_multipart_upload(mesh, aws, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MIB))  # aws-cli's threshold is 8 MiB: 3 parts of 8, 8, 4 MiB
    aws("s3", "cp", str(big), "s3://cli-fr/big/scan.bin", "--no-progress")
    head = boto(mesh, node=3).head_object(Bucket="cli-fr", Key="big/scan.bin")
    assert head["ContentLength"] == 20 * MIB
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # AWS's multipart ETag form
    listed = aws("s3", "ls", "s3://cli-fr/big/")
    assert listed.split()[-2:] == [str(20 * MIB), "scan.bin"], listed
    back = tmp_path / "back.bin"
    aws("s3", "cp", "s3://cli-fr/big/scan.bin", str(back), "--no-progress")  # ranged GETs in parallel
    assert filecmp.cmp(big, back, shallow=False)


def test_aws_cli_sync_twice_then_rm_recursive(mesh, aws, tmp_path):
    tree = make_tree(tmp_path / "tree", tree_files(0))
    first = aws("s3", "sync", str(tree), "s3://cli-eu/tree", "--no-progress")
    uploaded = sorted(line.split()[-1] for line in first.splitlines() if line.startswith("upload:"))
    assert uploaded == sorted(f"s3://cli-eu/tree/{name}" for name in tree_files(0)), first
    # nothing changed: nothing is uploaded again (sizes and times of the listing match)
    assert aws("s3", "sync", str(tree), "s3://cli-eu/tree", "--no-progress").strip() == ""
    (tree / "docs" / "a.txt").write_bytes(b"alpha changed, and longer " * 100)
    again = aws("s3", "sync", str(tree), "s3://cli-eu/tree", "--no-progress")
    assert [line.split()[-1] for line in again.splitlines()] == ["s3://cli-eu/tree/docs/a.txt"], again

    down = tmp_path / "down"
    aws("s3", "sync", "s3://cli-eu/tree", str(down), "--no-progress")
    assert same_tree(tree, down) == []

    removed = aws("s3", "rm", "s3://cli-eu/tree", "--recursive")
    assert sum(line.startswith("delete:") for line in removed.splitlines()) == len(tree_files(0)), removed
    left = boto(mesh).list_objects_v2(Bucket="cli-eu", Prefix="tree/")
    assert left["KeyCount"] == 0 and "Contents" not in left, left


def test_aws_cli_presigned_url_reads_with_plain_http(mesh, aws, tmp_path):
    body = b"shared through a presigned URL\n" * 100
    (tmp_path / "shared.txt").write_bytes(body)
    aws("s3", "cp", str(tmp_path / "shared.txt"), "s3://cli-fr/shared.txt", "--no-progress")
    url = aws("s3", "presign", "s3://cli-fr/shared.txt", "--expires-in", "300").strip()
    assert "X-Amz-Signature=" in url and urlsplit(url).netloc == urlsplit(mesh.s3_endpoints[0]).netloc, url
    ca = ca_file(mesh, url)
    context = ssl.create_default_context(cafile=ca) if ca else None
    with urllib.request.urlopen(url, timeout=30, context=context) as answer:  # no credentials, no SDK
        assert answer.status == 200
        assert answer.read() == body
    # the signature covers the key: the same URL for another object is refused
    forged = url.replace("/shared.txt?", "/notes/note.txt?")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(forged, timeout=30, context=context)
    assert err.value.code == 403
    assert b"SignatureDoesNotMatch" in err.value.read()


# ----- rclone --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rclone(mesh, tmp_path_factory):
    """`rclone ...` with the remote `mesh:` defined by RCLONE_CONFIG_MESH_* variables only."""
    if shutil.which("rclone") is None:
        pytest.fail(_missing("rclone"))
    home = tmp_path_factory.mktemp("rclone-home")
    endpoint = mesh.s3_endpoints[1]
    creds = mesh.profile.credentials
    env = clean_env(home) | {
        "RCLONE_CONFIG": str(home / "rclone.conf"),  # absent: the remote comes from the variables
        "RCLONE_CONFIG_MESH_TYPE": "s3", "RCLONE_CONFIG_MESH_PROVIDER": "Other",
        "RCLONE_CONFIG_MESH_ENDPOINT": endpoint, "RCLONE_CONFIG_MESH_REGION": REGION,
        "RCLONE_CONFIG_MESH_ACCESS_KEY_ID": creds.key_id, "RCLONE_CONFIG_MESH_SECRET_ACCESS_KEY": creds.secret,
        "RCLONE_CONFIG_MESH_FORCE_PATH_STYLE": "true",
        # buckets rclone creates are France-only: the LocationConstraint names the residency policy
        "RCLONE_CONFIG_MESH_LOCATION_CONSTRAINT": "france-only",
    }
    if ca := ca_file(mesh, endpoint):
        env["RCLONE_CA_CERT"] = ca

    def run(*args: str, ok: bool = True):
        return check(mesh, ["rclone", "--retries", "1", "--low-level-retries", "1", *args], env, ok=ok)

    return run


def test_rclone_copy_ls_check_delete(mesh, rclone, tmp_path):
    files = tree_files(1) | {"big/archive.bin": os.urandom(5 * MIB + 7)}
    src = make_tree(tmp_path / "src", files)
    rclone("copy", str(src), "mesh:rclone-fr/data")  # creates the bucket
    assert boto(mesh).get_bucket_location(Bucket="rclone-fr")["LocationConstraint"] == "france-only"

    listed = {line.split(maxsplit=1)[1]: int(line.split()[0])
              for line in rclone("ls", "mesh:rclone-fr").stdout.splitlines()}
    assert listed == {f"data/{name}": len(data) for name, data in files.items()}

    # size and MD5 of every file against the listing's ETags: every one compared, none differ
    checked = rclone("check", str(src), "mesh:rclone-fr/data")
    assert "0 differences found" in checked.stderr, checked.stderr
    assert f"{len(files)} matching files" in checked.stderr, checked.stderr
    assert "hashes could not be checked" not in checked.stderr, checked.stderr
    # a changed file is found by its MD5 alone (same size)
    changed = bytearray(files["docs/a.txt"])
    changed[0] ^= 1
    (src / "docs" / "a.txt").write_bytes(changed)
    differs = rclone("check", str(src), "mesh:rclone-fr/data", ok=False)
    assert "1 differences found" in differs.stderr, differs.stderr
    (src / "docs" / "a.txt").write_bytes(files["docs/a.txt"])

    down = tmp_path / "down"
    rclone("copy", "mesh:rclone-fr/data", str(down))  # rclone checks each download's MD5
    assert same_tree(src, down) == []

    rclone("delete", "mesh:rclone-fr/data/docs")
    remaining = rclone("ls", "mesh:rclone-fr").stdout
    assert "docs/" not in remaining and "data/readme.txt" in remaining
    rclone("delete", "mesh:rclone-fr")
    assert rclone("ls", "mesh:rclone-fr").stdout == ""
    rclone("rmdir", "mesh:rclone-fr")  # DeleteBucket
    assert "rclone-fr" not in [b["Name"] for b in boto(mesh).list_buckets()["Buckets"]]


# ----- s3cmd ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3cmd(mesh, tmp_path_factory):
    """`s3cmd -c <temp config> ...`, path-style (host_bucket = host_base), signature V4."""
    if shutil.which("s3cmd") is None:
        pytest.fail(_missing("s3cmd"))
    home = tmp_path_factory.mktemp("s3cmd-home")
    endpoint = mesh.s3_endpoints[2]
    url = urlsplit(endpoint)
    creds = mesh.profile.credentials
    ca = ca_file(mesh, endpoint)
    config = home / "s3cfg"
    config.write_text("\n".join([
        "[default]",
        f"access_key = {creds.key_id}",
        f"secret_key = {creds.secret}",
        f"host_base = {url.netloc}",
        f"host_bucket = {url.netloc}",
        f"use_https = {url.scheme == 'https'}",
        f"ca_certs_file = {ca or ''}",
        "check_ssl_certificate = True",
        f"bucket_location = {REGION}",
        "signature_v2 = False",
        "",
    ]))
    env = clean_env(home)

    def run(*args: str, ok: bool = True):
        return check(mesh, ["s3cmd", "-c", str(config), "--no-progress", *args], env, ok=ok)

    return run


def test_s3cmd_put_ls_get_del(mesh, s3cmd, tmp_path):
    s3cmd("mb", "--bucket-location=france-only", "s3://s3cmd-fr")
    assert boto(mesh).get_bucket_location(Bucket="s3cmd-fr")["LocationConstraint"] == "france-only"
    assert "s3://s3cmd-fr" in s3cmd("ls").stdout

    files = {"report.txt": b"s3cmd report\n" * 300, "scan.bin": os.urandom(2 * MIB + 5)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        # s3cmd compares the ETag the front door answers with its own MD5 of the file
        put = s3cmd("put", str(tmp_path / name), f"s3://s3cmd-fr/in/{name}")
        assert "MD5 Sums don't match" not in put.stderr + put.stdout, put.stderr

    listing = s3cmd("ls", "s3://s3cmd-fr/in/").stdout
    sizes = {line.split()[-1]: int(line.split()[-2]) for line in listing.splitlines() if "s3://" in line}
    assert sizes == {f"s3://s3cmd-fr/in/{n}": len(d) for n, d in files.items()}, listing
    assert "DIR" in s3cmd("ls", "s3://s3cmd-fr/").stdout  # in/ as a common prefix

    for name, data in files.items():
        got = s3cmd("get", f"s3://s3cmd-fr/in/{name}", str(tmp_path / f"got-{name}"))
        assert "MD5 signatures do not match" not in got.stderr, got.stderr
        assert (tmp_path / f"got-{name}").read_bytes() == data

    s3cmd("del", "s3://s3cmd-fr/in/report.txt")
    assert "report.txt" not in s3cmd("ls", "s3://s3cmd-fr/in/").stdout
    (tmp_path / "more").mkdir()
    for i in range(3):
        (tmp_path / "more" / f"f{i}").write_bytes(b"%d" % i * 100)
    s3cmd("put", "--recursive", str(tmp_path / "more"), "s3://s3cmd-fr/")
    s3cmd("del", "--recursive", "s3://s3cmd-fr/more/")  # one DeleteObjects request
    assert "s3://s3cmd-fr/more/" not in s3cmd("ls", "--recursive", "s3://s3cmd-fr").stdout


# ----- aws-cli s3api: versioning, object lock, lifecycle, tagging ------------------------------

def aws_json(aws, *args: str) -> dict:
    """`aws s3api ...` whose output is JSON (aws-cli prints nothing for an empty answer)."""
    out = aws(*args)
    return json.loads(out) if out.strip() else {}


def refused(aws, *args: str) -> str:
    """`aws ...` expected to fail: its stderr (which names the S3 error code in parentheses)."""
    return aws(*args, ok=False).stderr


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def retention_json(mode: str, until: datetime) -> str:
    return json.dumps({"Mode": mode, "RetainUntilDate": iso(until)})


def test_aws_cli_s3api_versioning_versions_and_delete_markers(mesh, aws, tmp_path):
    aws("s3api", "create-bucket", "--bucket", "api-versions",
        "--create-bucket-configuration", "LocationConstraint=france-only")
    assert aws_json(aws, "s3api", "get-bucket-versioning", "--bucket", "api-versions") == {}  # never versioned
    aws("s3api", "put-bucket-versioning", "--bucket", "api-versions", "--versioning-configuration", "Status=Enabled")
    assert aws_json(aws, "s3api", "get-bucket-versioning", "--bucket", "api-versions")["Status"] == "Enabled"

    bodies = {"first": b"first draft\n", "second": b"second draft, longer\n"}
    ids = {}
    for name, body in bodies.items():
        (tmp_path / name).write_bytes(body)
        put = aws_json(aws, "s3api", "put-object", "--bucket", "api-versions", "--key", "report.txt",
                       "--body", str(tmp_path / name))
        assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        ids[name] = put["VersionId"]
    assert ids["first"] != ids["second"] and "null" not in ids.values(), ids

    listed = aws_json(aws, "s3api", "list-object-versions", "--bucket", "api-versions")
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in listed["Versions"]] == [
        ("report.txt", ids["second"], True, len(bodies["second"])),   # newest first
        ("report.txt", ids["first"], False, len(bodies["first"]))]
    assert not listed.get("DeleteMarkers"), listed
    old = aws_json(aws, "s3api", "get-object", "--bucket", "api-versions", "--key", "report.txt",
                   "--version-id", ids["first"], str(tmp_path / "old"))
    assert old["VersionId"] == ids["first"] and (tmp_path / "old").read_bytes() == bodies["first"]

    # a DELETE without a version id writes a delete marker; the versions stay
    deleted = aws_json(aws, "s3api", "delete-object", "--bucket", "api-versions", "--key", "report.txt")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in ids.values()
    assert "(NoSuchKey)" in refused(aws, "s3api", "get-object", "--bucket", "api-versions", "--key", "report.txt",
                                    str(tmp_path / "gone"))
    assert "(405)" in refused(aws, "s3api", "head-object", "--bucket", "api-versions", "--key", "report.txt",
                              "--version-id", marker)  # a marker by its id: MethodNotAllowed
    listed = aws_json(aws, "s3api", "list-object-versions", "--bucket", "api-versions")
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker, True)]
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(ids["second"], False),
                                                                              (ids["first"], False)]
    lister = aws_json(aws, "s3api", "list-objects-v2", "--bucket", "api-versions")
    assert not lister.get("Contents"), lister

    # deleting the marker by its id brings the second version back; deleting a version removes it
    undone = aws_json(aws, "s3api", "delete-object", "--bucket", "api-versions", "--key", "report.txt",
                      "--version-id", marker)
    assert undone == {"DeleteMarker": True, "VersionId": marker}
    back = aws_json(aws, "s3api", "get-object", "--bucket", "api-versions", "--key", "report.txt",
                    str(tmp_path / "back"))
    assert back["VersionId"] == ids["second"] and (tmp_path / "back").read_bytes() == bodies["second"]
    aws("s3api", "delete-object", "--bucket", "api-versions", "--key", "report.txt", "--version-id", ids["first"])
    listed = aws_json(aws, "s3api", "list-object-versions", "--bucket", "api-versions")
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(ids["second"], True)]
    assert "(NoSuchVersion)" in refused(aws, "s3api", "get-object", "--bucket", "api-versions", "--key",
                                        "report.txt", "--version-id", ids["first"], str(tmp_path / "none"))

    # the version that is current again keeps its own Last-Modified, in listings and on HEAD
    # (S3 never changes a version's Last-Modified; removing the marker is not a write of it)
    current = aws_json(aws, "s3api", "list-objects-v2", "--bucket", "api-versions")["Contents"]
    assert [(c["Key"], c["LastModified"]) for c in current] == [("report.txt", listed["Versions"][0]["LastModified"])]
    assert (aws_json(aws, "s3api", "head-object", "--bucket", "api-versions", "--key", "report.txt")["LastModified"]
            == aws_json(aws, "s3api", "head-object", "--bucket", "api-versions", "--key", "report.txt",
                        "--version-id", ids["second"])["LastModified"])

    aws("s3api", "put-bucket-versioning", "--bucket", "api-versions", "--versioning-configuration", "Status=Suspended")
    assert aws_json(aws, "s3api", "get-bucket-versioning", "--bucket", "api-versions")["Status"] == "Suspended"


def test_aws_cli_s3api_object_lock_retention_and_legal_hold(mesh, aws, tmp_path):
    aws("s3api", "create-bucket", "--bucket", "api-lock", "--object-lock-enabled-for-bucket",
        "--create-bucket-configuration", "LocationConstraint=france-only")
    assert aws_json(aws, "s3api", "get-bucket-versioning", "--bucket", "api-lock")["Status"] == "Enabled"
    config = aws_json(aws, "s3api", "get-object-lock-configuration", "--bucket", "api-lock")
    assert config["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    # a bucket made without object lock refuses a retention
    aws("s3api", "create-bucket", "--bucket", "api-nolock")
    (tmp_path / "scan.dcm").write_bytes(b"DICM" + os.urandom(4000))
    aws("s3api", "put-object", "--bucket", "api-nolock", "--key", "scan.dcm", "--body", str(tmp_path / "scan.dcm"))
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    assert "(InvalidRequest)" in refused(aws, "s3api", "put-object-retention", "--bucket", "api-nolock", "--key",
                                         "scan.dcm", "--retention", retention_json("GOVERNANCE", until))

    version = aws_json(aws, "s3api", "put-object", "--bucket", "api-lock", "--key", "scan.dcm",
                       "--body", str(tmp_path / "scan.dcm"))["VersionId"]
    aws("s3api", "put-object-retention", "--bucket", "api-lock", "--key", "scan.dcm", "--version-id", version,
        "--retention", retention_json("COMPLIANCE", until))
    retention = aws_json(aws, "s3api", "get-object-retention", "--bucket", "api-lock", "--key", "scan.dcm")["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert datetime.fromisoformat(retention["RetainUntilDate"]) == until, retention
    aws("s3api", "put-object-legal-hold", "--bucket", "api-lock", "--key", "scan.dcm", "--legal-hold", "Status=ON")
    assert aws_json(aws, "s3api", "get-object-legal-hold", "--bucket", "api-lock", "--key", "scan.dcm",
                    "--version-id", version) == {"LegalHold": {"Status": "ON"}}
    head = aws_json(aws, "s3api", "head-object", "--bucket", "api-lock", "--key", "scan.dcm")
    assert (head["VersionId"], head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == (
        version, "COMPLIANCE", "ON")
    assert datetime.fromisoformat(head["ObjectLockRetainUntilDate"]) == until

    # the locked version cannot be deleted, by the hold nor, once lifted, by the COMPLIANCE retention
    delete = ("s3api", "delete-object", "--bucket", "api-lock", "--key", "scan.dcm", "--version-id", version)
    assert "(AccessDenied)" in refused(aws, *delete)
    aws("s3api", "put-object-legal-hold", "--bucket", "api-lock", "--key", "scan.dcm", "--legal-hold", "Status=OFF")
    assert aws_json(aws, "s3api", "get-object-legal-hold", "--bucket", "api-lock", "--key",
                    "scan.dcm")["LegalHold"]["Status"] == "OFF"
    assert "(AccessDenied)" in refused(aws, *delete)
    assert "(AccessDenied)" in refused(aws, *delete, "--bypass-governance-retention")
    sooner = retention_json("COMPLIANCE", until - timedelta(hours=1))
    assert "(AccessDenied)" in refused(aws, "s3api", "put-object-retention", "--bucket", "api-lock", "--key",
                                       "scan.dcm", "--retention", sooner)  # COMPLIANCE is never shortened
    # a plain DELETE only hides it behind a marker: the version is still there and readable
    assert aws_json(aws, "s3api", "delete-object", "--bucket", "api-lock", "--key", "scan.dcm")["DeleteMarker"] is True
    aws("s3api", "get-object", "--bucket", "api-lock", "--key", "scan.dcm", "--version-id", version,
        str(tmp_path / "kept.dcm"))
    assert (tmp_path / "kept.dcm").read_bytes() == (tmp_path / "scan.dcm").read_bytes()

    # GOVERNANCE: refused, unless the owner's (unrestricted) key asks to bypass it
    gov = aws_json(aws, "s3api", "put-object", "--bucket", "api-lock", "--key", "draft.txt",
                   "--body", str(tmp_path / "scan.dcm"), "--object-lock-mode", "GOVERNANCE",
                   "--object-lock-retain-until-date", iso(until))["VersionId"]
    delete_gov = ("s3api", "delete-object", "--bucket", "api-lock", "--key", "draft.txt", "--version-id", gov)
    assert "(AccessDenied)" in refused(aws, *delete_gov)
    aws(*delete_gov, "--bypass-governance-retention")
    left = aws_json(aws, "s3api", "list-object-versions", "--bucket", "api-lock", "--prefix", "draft.txt")
    assert not left.get("Versions"), left


def test_aws_cli_s3api_bucket_policy_and_public_access_block(mesh, aws, tmp_path):
    """put/get/delete-bucket-policy and get-bucket-policy-status through aws-cli: a public policy
    waits for the public access block to be lifted, then an unsigned aws-cli reads what it shares."""
    aws("s3api", "create-bucket", "--bucket", "api-policy",
        "--create-bucket-configuration", "LocationConstraint=france-only")
    (tmp_path / "page.html").write_bytes(b"<p>public</p>")
    aws("s3", "cp", str(tmp_path / "page.html"), "s3://api-policy/public/page.html")
    aws("s3", "cp", str(tmp_path / "page.html"), "s3://api-policy/private/page.html")
    assert "(NoSuchBucketPolicy)" in refused(aws, "s3api", "get-bucket-policy", "--bucket", "api-policy")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicPages", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::api-policy/public/*"}]})
    put = ("s3api", "put-bucket-policy", "--bucket", "api-policy", "--policy", policy)
    assert "(AccessDenied)" in refused(aws, *put)   # BlockPublicPolicy: on for a new bucket
    aws("s3api", "delete-public-access-block", "--bucket", "api-policy")
    aws(*put)
    stored = json.loads(aws_json(aws, "s3api", "get-bucket-policy", "--bucket", "api-policy")["Policy"])
    assert stored["Statement"][0]["Sid"] == "PublicPages"
    status = aws_json(aws, "s3api", "get-bucket-policy-status", "--bucket", "api-policy")
    assert status["PolicyStatus"]["IsPublic"] is True
    out = tmp_path / "got.html"
    aws("s3", "cp", "--no-sign-request", "s3://api-policy/public/page.html", str(out))
    assert out.read_bytes() == b"<p>public</p>"
    assert "403" in refused(aws, "s3", "cp", "--no-sign-request", "s3://api-policy/private/page.html", str(out))
    aws("s3api", "delete-bucket-policy", "--bucket", "api-policy")
    assert "(NoSuchBucketPolicy)" in refused(aws, "s3api", "get-bucket-policy", "--bucket", "api-policy")


def test_aws_cli_s3api_lifecycle_configuration(mesh, aws, tmp_path):
    aws("s3api", "create-bucket", "--bucket", "api-lifecycle")
    get = ("s3api", "get-bucket-lifecycle-configuration", "--bucket", "api-lifecycle")
    assert "(NoSuchLifecycleConfiguration)" in refused(aws, *get)
    rules = [
        {"ID": "expire-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}},
        {"ID": "old-scans", "Status": "Enabled",
         "Filter": {"And": {"Prefix": "scans/", "Tags": [{"Key": "class", "Value": "tmp"}],
                            "ObjectSizeGreaterThan": 1024}},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2}},
        {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": "archive/"},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"ID": "tagged", "Status": "Enabled", "Filter": {"Tag": {"Key": "team", "Value": "imaging"}},
         "Expiration": {"Days": 365}},
        {"ID": "uploads", "Status": "Disabled", "Filter": {"Prefix": "tmp/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
    ]
    (tmp_path / "lifecycle.json").write_text(json.dumps({"Rules": rules}))
    aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", "api-lifecycle",
        "--lifecycle-configuration", f"file://{tmp_path / 'lifecycle.json'}")
    assert aws_json(aws, *get)["Rules"] == rules

    # a transition to a class read only after a restore is refused, and the rules stay as they were
    transition = {"Rules": [{"ID": "cold", "Status": "Enabled", "Filter": {"Prefix": "x/"},
                             "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}]}
    assert "(InvalidArgument)" in refused(aws, "s3api", "put-bucket-lifecycle-configuration", "--bucket",
                                          "api-lifecycle", "--lifecycle-configuration", json.dumps(transition))
    assert aws_json(aws, *get)["Rules"] == rules
    # a PUT replaces the whole configuration
    one = [{"ID": "only", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
            "Expiration": {"Date": "2030-01-01T00:00:00Z"}}]
    aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", "api-lifecycle",
        "--lifecycle-configuration", json.dumps({"Rules": one}))
    got = aws_json(aws, *get)["Rules"]
    assert [(r["ID"], r["Status"], r["Filter"]) for r in got] == [("only", "Enabled", {"Prefix": "logs/"})], got
    assert datetime.fromisoformat(got[0]["Expiration"]["Date"]) == datetime(2030, 1, 1, tzinfo=UTC), got
    aws("s3api", "delete-bucket-lifecycle", "--bucket", "api-lifecycle")
    assert "(NoSuchLifecycleConfiguration)" in refused(aws, *get)


def test_aws_cli_s3api_object_and_bucket_tagging(mesh, aws, tmp_path):
    aws("s3api", "create-bucket", "--bucket", "api-tags", "--create-bucket-configuration",
        "LocationConstraint=france-only")
    (tmp_path / "note.txt").write_bytes(b"tagged note\n")
    aws("s3api", "put-object", "--bucket", "api-tags", "--key", "note.txt", "--body", str(tmp_path / "note.txt"),
        "--tagging", "project=alpha&ward=b%202")
    tags = ("s3api", "get-object-tagging", "--bucket", "api-tags", "--key", "note.txt")
    assert aws_json(aws, *tags)["TagSet"] == [{"Key": "project", "Value": "alpha"}, {"Key": "ward", "Value": "b 2"}]
    assert aws_json(aws, "s3api", "head-object", "--bucket", "api-tags", "--key", "note.txt")["TagCount"] == 2
    written = aws_json(aws, "s3api", "list-objects-v2", "--bucket", "api-tags")["Contents"][0]

    aws("s3api", "put-object-tagging", "--bucket", "api-tags", "--key", "note.txt", "--tagging",
        "TagSet=[{Key=class,Value=tmp},{Key=owner,Value=radiology},{Key=path,Value=a/b:c@d+e}]")
    assert aws_json(aws, *tags)["TagSet"] == [{"Key": "class", "Value": "tmp"}, {"Key": "owner", "Value": "radiology"},
                                              {"Key": "path", "Value": "a/b:c@d+e"}]
    assert aws_json(aws, "s3api", "head-object", "--bucket", "api-tags", "--key", "note.txt")["TagCount"] == 3
    assert "(InvalidTag)" in refused(aws, "s3api", "put-object-tagging", "--bucket", "api-tags", "--key",
                                     "note.txt", "--tagging", "TagSet=[{Key=bad*key,Value=x}]")
    eleven = ",".join(f"{{Key=k{i},Value=v}}" for i in range(11))
    assert "(InvalidTag)" in refused(aws, "s3api", "put-object-tagging", "--bucket", "api-tags", "--key",
                                     "note.txt", "--tagging", f"TagSet=[{eleven}]")
    assert len(aws_json(aws, *tags)["TagSet"]) == 3  # unchanged by the refused sets
    aws("s3api", "delete-object-tagging", "--bucket", "api-tags", "--key", "note.txt")
    assert aws_json(aws, *tags)["TagSet"] == []
    aws("s3api", "get-object", "--bucket", "api-tags", "--key", "note.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == b"tagged note\n"  # the object itself is untouched

    bucket_tags = ("s3api", "get-bucket-tagging", "--bucket", "api-tags")
    assert "(NoSuchTagSet)" in refused(aws, *bucket_tags)
    aws("s3api", "put-bucket-tagging", "--bucket", "api-tags", "--tagging",
        "TagSet=[{Key=cost-centre,Value=4521},{Key=team,Value=imaging}]")
    assert aws_json(aws, *bucket_tags)["TagSet"] == [{"Key": "cost-centre", "Value": "4521"},
                                                     {"Key": "team", "Value": "imaging"}]
    aws("s3api", "put-bucket-tagging", "--bucket", "api-tags", "--tagging", "TagSet=[{Key=team,Value=oncology}]")
    assert aws_json(aws, *bucket_tags)["TagSet"] == [{"Key": "team", "Value": "oncology"}]  # replaced whole
    listed = aws_json(aws, "s3api", "list-objects-v2", "--bucket", "api-tags")
    assert [c["Key"] for c in listed["Contents"]] == ["note.txt"]  # bucket tags are never listed as objects
    aws("s3api", "delete-bucket-tagging", "--bucket", "api-tags")
    assert "(NoSuchTagSet)" in refused(aws, *bucket_tags)

    # changing an object's tags is not a write of the object: its ETag and Last-Modified stay (as in S3)
    after = aws_json(aws, "s3api", "list-objects-v2", "--bucket", "api-tags")["Contents"][0]
    assert (after["Key"], after["ETag"], after["Size"]) == (written["Key"], written["ETag"], written["Size"])
    assert after["LastModified"] == written["LastModified"], (written, after)


# ----- rclone with versions ------------------------------------------------------------------

def test_rclone_lists_and_reads_old_versions(mesh, aws, rclone, tmp_path):
    """rclone's --s3-versions (old versions listed as name-vYYYY-MM-DD-HHMMSS-mmm.ext) and
    --s3-version-at (the bucket as it was then) on a versioned bucket, after two copies of one file.
    The file sits at the top of the bucket: rclone 1.60 finds a single versioned object only there
    (its "fix --s3-versions on individual objects", 542677d, came later)."""
    flags = rclone("help", "flags").stdout
    assert "--s3-versions" in flags and "--s3-version-at" in flags, "this rclone has no S3 version flags"
    aws("s3api", "create-bucket", "--bucket", "rclone-versions",
        "--create-bucket-configuration", "LocationConstraint=france-only")
    aws("s3api", "put-bucket-versioning", "--bucket", "rclone-versions", "--versioning-configuration",
        "Status=Enabled")
    src = tmp_path / "src"
    src.mkdir()
    first, second = b"first draft\n", b"second draft, longer\n"
    (src / "report.txt").write_bytes(first)
    rclone("copy", str(src), "mesh:rclone-versions")
    between = datetime.now(UTC)
    time.sleep(1.1)  # rclone's version names and --s3-version-at have millisecond steps; keep them apart
    (src / "report.txt").write_bytes(second)
    rclone("copy", str(src), "mesh:rclone-versions")

    assert rclone("lsf", "mesh:rclone-versions").stdout.split() == ["report.txt"]
    listed = {line.split(maxsplit=1)[1]: int(line.split()[0])
              for line in rclone("ls", "--s3-versions", "mesh:rclone-versions").stdout.splitlines()}
    old = [name for name in listed if name != "report.txt"]
    assert len(listed) == 2 and len(old) == 1, listed
    assert re.fullmatch(r"report-v\d{4}-\d\d-\d\d-\d{6}-\d{3}\.txt", old[0]), old
    assert listed == {"report.txt": len(second), old[0]: len(first)}
    assert rclone("cat", "--s3-versions", f"mesh:rclone-versions/{old[0]}").stdout.encode() == first
    assert rclone("cat", "--s3-versions", "mesh:rclone-versions/report.txt").stdout.encode() == second

    at = between.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert rclone("ls", "--s3-version-at", at, "mesh:rclone-versions").stdout.split() == [str(len(first)), "report.txt"]
    assert rclone("cat", "--s3-version-at", at, "mesh:rclone-versions/report.txt").stdout.encode() == first
    # and the whole bucket as it was then, downloaded (rclone checks each version's MD5)
    rclone("copy", "--s3-version-at", at, "mesh:rclone-versions", str(tmp_path / "then"))
    assert (tmp_path / "then" / "report.txt").read_bytes() == first
    versions = aws_json(aws, "s3api", "list-object-versions", "--bucket", "rclone-versions")["Versions"]
    assert [v["Size"] for v in versions] == [len(second), len(first)]


# ----- residency through S3 ------------------------------------------------------------------

def test_restic_backs_up_checks_restores_and_prunes_into_a_france_only_bucket(mesh, tmp_path):
    """restic (Debian package, minio-go inside) with its own settings only: init a repository in a
    France-only bucket, two backups, a check that reads every pack, a restore equal to the source,
    then forget --prune (which deletes packs and lists again)."""
    if shutil.which("restic") is None:
        pytest.fail(_missing("restic"))
    boto(mesh).create_bucket(Bucket="backups-fr", CreateBucketConfiguration={"LocationConstraint": "france-only"})
    creds = mesh.profile.credentials
    endpoint = mesh.s3_endpoints[2]
    env = clean_env(tmp_path / "home") | {
        "AWS_ACCESS_KEY_ID": creds.key_id, "AWS_SECRET_ACCESS_KEY": creds.secret,
        "RESTIC_REPOSITORY": f"s3:{endpoint}/backups-fr", "RESTIC_PASSWORD": "correct horse battery staple",
        "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    tls = ["--cacert", ca] if (ca := ca_file(mesh, endpoint)) else []

    def restic(*args: str) -> subprocess.CompletedProcess[str]:
        return check(mesh, ["restic", *tls, *args], env)

    src = make_tree(tmp_path / "src", tree_files(3) | {"scan.dcm": os.urandom(3 * MIB + 5)})
    restic("init")
    restic("backup", str(src))
    (src / "scan.dcm").write_bytes(os.urandom(2 * MIB))
    restic("backup", str(src))
    assert "no errors were found" in restic("check", "--read-data").stdout
    restic("restore", "latest", "--target", str(tmp_path / "out"))
    assert same_tree(src, tmp_path / "out" / str(src).lstrip("/")) == []
    restic("forget", "--keep-last", "1", "--prune")
    assert len(json.loads(restic("snapshots", "--json").stdout)) == 1
    assert "no errors were found" in restic("check").stdout
    assert_only_in_france(mesh, "backups-fr")


def test_france_only_buckets_made_through_s3_rest_only_in_france(mesh, aws, tmp_path):
    """From every node's own inventory: a France-only bucket made and filled with aws-cli, and every
    other France-only bucket the tools above made, hold data only on French nodes (at least two)."""
    aws("s3api", "create-bucket", "--bucket", "residency-fr",
        "--create-bucket-configuration", "LocationConstraint=france-only")
    aws("s3", "cp", str(make_tree(tmp_path / "t", tree_files(2))), "s3://residency-fr/dossiers", "--recursive",
        "--no-progress")
    s3 = boto(mesh)
    french = [b["Name"] for b in s3.list_buckets()["Buckets"]
              if s3.get_bucket_location(Bucket=b["Name"])["LocationConstraint"] == "france-only"
              and s3.list_objects_v2(Bucket=b["Name"], MaxKeys=1).get("KeyCount")]
    assert "residency-fr" in french
    for bucket in french:
        assert_only_in_france(mesh, bucket)


# ----- the demo's lines ----------------------------------------------------------------------

def test_the_demo_s3_lines_work_pasted_into_a_shell(mesh, tmp_path):
    """`maillage demo` prints `export AWS_...` and rclone lines for its mesh: pasted into one shell
    with no other setting, aws-cli (a France-only bucket through its region, an upload, a presigned
    URL) and rclone both work with them as printed."""
    from maillage.cli.demo import rclone_exports, s3_exports

    if shutil.which("rclone") is None:
        pytest.fail(_missing("rclone"))
    (tmp_path / "hello.txt").write_text("pasted\n")
    script = "\n".join([
        s3_exports(mesh), rclone_exports(mesh),
        '"$PYTHON" -m awscli s3 mb s3://pasted --region france-only',
        '"$PYTHON" -m awscli s3 cp hello.txt s3://pasted/hello.txt --no-progress',
        'rclone cat demo:pasted/hello.txt',
        '"$PYTHON" -m awscli s3 presign s3://pasted/hello.txt',
    ])
    r = check(mesh, ["bash", "-euc", script], clean_env(tmp_path / "home") | {"PYTHON": sys.executable},
              cwd=tmp_path)
    *_, cat, url = r.stdout.splitlines()
    assert cat == "pasted", r.stdout
    ca = ca_file(mesh, url)
    with urllib.request.urlopen(url, timeout=30, context=ssl.create_default_context(cafile=ca)) as answer:
        assert answer.read() == b"pasted\n"
    assert boto(mesh).get_bucket_location(Bucket="pasted")["LocationConstraint"] == "france-only"
