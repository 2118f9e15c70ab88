"""Python data tools on the S3 front door of a real mesh, as their users call them: the `minio` SDK,
`s3fs` (fsspec) and pyarrow's S3 filesystem writing and reading a partitioned Parquet dataset.

Each is given the endpoint, an access key and the cluster CA (HTTPS with the nodes' certificates,
verified: minio through its urllib3 pool, s3fs through botocore's `verify`, pyarrow through its
`tls_ca_file_path`) and otherwise keeps its defaults: its own multipart thresholds and part sizes,
its own signing region (minio asks GetBucketLocation and signs with the policy name it gets). What
they write is read back with the tool itself, checked with boto3, and, for the France-only buckets
they make, checked from the nodes' own inventories. The libraries come with the `test` extra.
"""

from __future__ import annotations

import hashlib
import io
import os
import ssl
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from maillage.testing.localmesh import LocalMesh, make_layout

from .conftest import CHUNK, POLICIES, SITES
from .test_s3_clients import MIB, REGION, assert_only_in_france, boto, ca_file


def _need(module: str):
    """Import a library of the test extra, or fail saying where it comes from (never skip)."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        pytest.fail(f"{module} is not installed: it comes with the test extra (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("s3datatools"),
                  extra_args=("--chunk-size", str(CHUNK)), s3=True, s3_default_policy="eu-wide", s3_tls=True)
    with m:
        yield m


def location(mesh: LocalMesh, bucket: str) -> str:
    return boto(mesh).get_bucket_location(Bucket=bucket)["LocationConstraint"]


# ----- minio ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minio_client(mesh):
    """`minio.Minio` on node 0's door, trusting the cluster CA through its own urllib3 pool."""
    minio = _need("minio")
    urllib3 = _need("urllib3")
    endpoint = urlsplit(mesh.s3_endpoints[0])
    ca = ca_file(mesh, mesh.s3_endpoints[0])
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=ca, retries=urllib3.Retry(total=1)) if ca \
        else urllib3.PoolManager(retries=urllib3.Retry(total=1))
    creds = mesh.profile.credentials
    return minio.Minio(endpoint.netloc, access_key=creds.key_id, secret_key=creds.secret,
                       secure=endpoint.scheme == "https", http_client=http)


def test_minio_sdk_bucket_objects_multipart_presign_in_france(mesh, minio_client):
    from minio.commonconfig import CopySource
    from minio.deleteobjects import DeleteObject
    from minio.error import S3Error

    mc = minio_client
    mc.make_bucket("minio-fr", location="france-only")
    assert mc.bucket_exists("minio-fr") and not mc.bucket_exists("minio-none")
    assert location(mesh, "minio-fr") == "france-only"
    assert "minio-fr" in [b.name for b in mc.list_buckets()]

    note = b"a note written with the minio SDK\n" * 200
    put = mc.put_object("minio-fr", "notes/note.txt", io.BytesIO(note), len(note), content_type="text/plain",
                        metadata={"ward": "b2"})
    assert put.etag == hashlib.md5(note).hexdigest()
    stat = mc.stat_object("minio-fr", "notes/note.txt")
    assert (stat.size, stat.etag, stat.content_type) == (len(note), put.etag, "text/plain")
    assert stat.metadata["x-amz-meta-ward"] == "b2"
    with mc.get_object("minio-fr", "notes/note.txt") as answer:
        assert answer.read() == note
    with mc.get_object("minio-fr", "notes/note.txt", offset=100, length=50) as answer:  # a Range GET
        assert answer.read() == note[100:150]

    # multipart: a known length in 5 MiB parts, and a stream of unknown length (-1)
    big = os.urandom(12 * MIB + 5)
    parts = mc.put_object("minio-fr", "scans/big.bin", io.BytesIO(big), len(big), part_size=5 * MIB)
    assert parts.etag.endswith("-3"), parts.etag   # 5 + 5 + 2 MiB: S3's multipart ETag
    streamed = mc.put_object("minio-fr", "scans/streamed.bin", io.BytesIO(big), -1, part_size=5 * MIB)
    assert streamed.etag == parts.etag   # same parts, same bytes: the same MD5 of MD5s
    for key in ("scans/big.bin", "scans/streamed.bin"):
        assert mc.stat_object("minio-fr", key).size == len(big)
        with mc.get_object("minio-fr", key) as answer:
            assert answer.read() == big
    mc.copy_object("minio-fr", "notes/copy.txt", CopySource("minio-fr", "notes/note.txt"))
    assert mc.stat_object("minio-fr", "notes/copy.txt").etag == put.etag

    top = list(mc.list_objects("minio-fr"))
    assert sorted((o.object_name, o.is_dir) for o in top) == [("notes/", True), ("scans/", True)]
    everything = {o.object_name: o.size for o in mc.list_objects("minio-fr", recursive=True)}
    assert everything == {"notes/note.txt": len(note), "notes/copy.txt": len(note),
                          "scans/big.bin": len(big), "scans/streamed.bin": len(big)}
    assert [o.object_name for o in mc.list_objects("minio-fr", prefix="notes/n")] == ["notes/note.txt"]

    # a presigned GET read with nothing but urllib; its signature covers the key
    url = mc.presigned_get_object("minio-fr", "notes/note.txt", expires=timedelta(minutes=5))
    assert "X-Amz-Signature=" in url and "france-only" in url, url   # signed in the bucket's region
    ca = ca_file(mesh, url)
    context = ssl.create_default_context(cafile=ca) if ca else None
    with urllib.request.urlopen(url, timeout=30, context=context) as answer:
        assert answer.read() == note
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url.replace("/notes/note.txt?", "/notes/copy.txt?"), timeout=30, context=context)
    assert err.value.code == 403

    assert_only_in_france(mesh, "minio-fr")

    mc.remove_object("minio-fr", "notes/copy.txt")
    with pytest.raises(S3Error) as missing:
        mc.stat_object("minio-fr", "notes/copy.txt")
    assert missing.value.code == "NoSuchKey" and missing.value.response.status == 404
    errors = list(mc.remove_objects("minio-fr", [DeleteObject(k) for k in ("notes/note.txt", "scans/big.bin",
                                                                            "scans/streamed.bin")]))
    assert errors == []
    assert list(mc.list_objects("minio-fr", recursive=True)) == []
    mc.remove_bucket("minio-fr")
    assert not mc.bucket_exists("minio-fr")


# ----- s3fs (fsspec) -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3(mesh):
    """`s3fs.S3FileSystem` on node 1's door, configured as its documentation shows for other S3
    services: key, secret, and client_kwargs with endpoint_url, verify and region_name."""
    s3fs = _need("s3fs")
    endpoint = mesh.s3_endpoints[1]
    creds = mesh.profile.credentials
    return s3fs.S3FileSystem(key=creds.key_id, secret=creds.secret, skip_instance_cache=True,
                             client_kwargs={"endpoint_url": endpoint, "verify": ca_file(mesh, endpoint) or True,
                                            "region_name": REGION})


def test_s3fs_writes_lists_globs_reads_and_removes(mesh, s3):
    s3.mkdir("s3fs-fr", region_name="france-only")   # CreateBucket with the policy as LocationConstraint
    assert location(mesh, "s3fs-fr") == "france-only"
    with s3.open("s3fs-fr/ward/a.txt", "wb") as f:
        f.write(b"alpha\n")
    s3.pipe({"s3fs-fr/ward/b.txt": b"bravo\n" * 10, "s3fs-fr/ward/sub/c.csv": b"x,y\n1,2\n",
             "s3fs-fr/other.txt": b"other\n"})
    assert s3.cat("s3fs-fr/ward/a.txt") == b"alpha\n"
    assert s3.cat_file("s3fs-fr/ward/b.txt", start=6, end=12) == b"bravo\n"   # a Range GET

    assert s3.ls("s3fs-fr/ward", refresh=True) == ["s3fs-fr/ward/a.txt", "s3fs-fr/ward/b.txt", "s3fs-fr/ward/sub"]
    detail = {e["name"]: (e["type"], e["size"]) for e in s3.ls("s3fs-fr/ward", detail=True, refresh=True)}
    assert detail == {"s3fs-fr/ward/a.txt": ("file", 6), "s3fs-fr/ward/b.txt": ("file", 60),
                      "s3fs-fr/ward/sub": ("directory", 0)}
    assert s3.glob("s3fs-fr/ward/*.txt") == ["s3fs-fr/ward/a.txt", "s3fs-fr/ward/b.txt"]
    assert s3.glob("s3fs-fr/**/*.csv") == ["s3fs-fr/ward/sub/c.csv"]
    assert s3.find("s3fs-fr") == ["s3fs-fr/other.txt", "s3fs-fr/ward/a.txt", "s3fs-fr/ward/b.txt",
                                  "s3fs-fr/ward/sub/c.csv"]
    assert s3.isdir("s3fs-fr/ward/sub") and s3.isfile("s3fs-fr/ward/sub/c.csv")
    assert s3.info("s3fs-fr/ward/a.txt")["ETag"] == f'"{hashlib.md5(b"alpha" + bytes([10])).hexdigest()}"'

    # a file written in blocks: a multipart upload of 5 MiB parts, then read back with seeks
    big = os.urandom(13 * MIB + 11)
    with s3.open("s3fs-fr/scans/big.bin", "wb", block_size=5 * MIB) as f:
        for i in range(0, len(big), 1_000_003):
            f.write(big[i:i + 1_000_003])
    info = s3.info("s3fs-fr/scans/big.bin")
    assert info["size"] == len(big) and info["ETag"].strip('"').endswith("-3"), info
    with s3.open("s3fs-fr/scans/big.bin", "rb", block_size=MIB) as f:
        f.seek(7 * MIB + 3)
        assert f.read(1000) == big[7 * MIB + 3:7 * MIB + 1003]
    assert s3.cat("s3fs-fr/scans/big.bin") == big
    assert_only_in_france(mesh, "s3fs-fr")

    s3.rm("s3fs-fr/other.txt")
    assert not s3.exists("s3fs-fr/other.txt")
    s3.rm("s3fs-fr/ward", recursive=True)   # one DeleteObjects for the three keys
    assert s3.find("s3fs-fr", refresh=True) == ["s3fs-fr/scans/big.bin"]
    assert not s3.exists("s3fs-fr/ward/a.txt")
    assert boto(mesh).list_objects_v2(Bucket="s3fs-fr")["KeyCount"] == 1


# ----- pyarrow -------------------------------------------------------------------------------

def test_pyarrow_writes_and_reads_a_partitioned_parquet_dataset_in_france(mesh):
    """pyarrow.fs.S3FileSystem (the AWS C++ SDK) on node 2's door over HTTPS, trusting the cluster
    CA with tls_ca_file_path. Its region is the policy's name, so the bucket it creates is France-only."""
    pa = _need("pyarrow")
    ds = _need("pyarrow.dataset")
    pafs = _need("pyarrow.fs")
    pq = _need("pyarrow.parquet")
    endpoint = urlsplit(mesh.s3_endpoints[2])
    creds = mesh.profile.credentials
    ca = ca_file(mesh, mesh.s3_endpoints[2])
    fs = pafs.S3FileSystem(access_key=creds.key_id, secret_key=creds.secret, endpoint_override=endpoint.netloc,
                           scheme=endpoint.scheme, region="france-only", allow_bucket_creation=True,
                           retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
                           **({"tls_ca_file_path": ca} if ca else {}))
    fs.create_dir("parquet-fr")
    assert location(mesh, "parquet-fr") == "france-only"

    n = 120_000
    rows = pa.table({
        "site": pa.array(["paris", "lyon", "toulouse"] * (n // 3)),
        "year": pa.array([2025, 2026] * (n // 2), pa.int64()),
        "id": pa.array(range(n), pa.int64()),
        "dose": pa.array([i % 997 / 7 for i in range(n)], pa.float64()),
        "note": pa.array([os.urandom(8).hex() for _ in range(n)]),   # incompressible: files span chunks
    })
    partitioning = ds.partitioning(pa.schema([("site", pa.string()), ("year", pa.int64())]), flavor="hive")
    ds.write_dataset(rows, "parquet-fr/doses", filesystem=fs, format="parquet", partitioning=partitioning)

    files = sorted(i.path for i in fs.get_file_info(pafs.FileSelector("parquet-fr/doses", recursive=True))
                   if i.type == pafs.FileType.File)
    assert files == [f"parquet-fr/doses/site={s}/year={y}/part-0.parquet"
                     for s in ("lyon", "paris", "toulouse") for y in (2025, 2026)], files
    assert min(fs.get_file_info(f).size for f in files) > CHUNK   # each file spans chunks

    dataset = ds.dataset("parquet-fr/doses", filesystem=fs, format="parquet", partitioning=partitioning)
    back = dataset.to_table().select(rows.column_names).sort_by("id")
    assert back.equals(rows), back.schema
    lyon = dataset.to_table(filter=(ds.field("site") == "lyon") & (ds.field("year") == 2026))
    assert lyon.num_rows == sum(1 for i in range(n) if i % 3 == 1 and i % 2 == 1)
    one = pq.read_table(files[0], filesystem=fs)   # a single file, read with ranged GETs of its footer
    assert one.num_rows == pq.ParquetFile(fs.open_input_file(files[0])).metadata.num_rows > 0

    # an output stream larger than pyarrow's part size is a multipart upload
    raw = os.urandom(11 * MIB + 3)
    with fs.open_output_stream("parquet-fr/raw/export.bin") as out:
        for i in range(0, len(raw), MIB):
            out.write(raw[i:i + MIB])
    with fs.open_input_stream("parquet-fr/raw/export.bin") as stream:
        assert stream.read() == raw
    etag = boto(mesh).head_object(Bucket="parquet-fr", Key="raw/export.bin")["ETag"]
    assert "-" in etag, etag   # S3's multipart ETag: MD5 of the parts' MD5s, dash, parts count

    assert_only_in_france(mesh, "parquet-fr")
