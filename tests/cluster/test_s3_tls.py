"""The S3 front door over TLS on real node processes: HTTPS with the node certificates (which name
127.0.0.1 and localhost, `maillage cluster node-cert --san`), verified with the cluster CA.

boto3 runs with its DEFAULT configuration: over HTTPS it sends PutObject bodies aws-chunked, unsigned
(STREAMING-UNSIGNED-PAYLOAD-TRAILER), with a trailing x-amz-checksum-*; the front door decodes and
verifies them. Also: presigned URLs fetched with plain urllib, a client that does not trust the
cluster CA, and a signed aws-chunked stream (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) whose tampered chunk
leaves nothing written.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import ssl
import urllib.error
import urllib.request
from unittest import mock
from urllib.parse import urlsplit

import pytest

from maillage.placement import Policy
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout

boto3 = pytest.importorskip("boto3")
import botocore.utils  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, SSLError  # noqa: E402

CHUNK = 256 * 1024
SITES = (SiteSpec("paris-1", "eu/fr/idf"), SiteSpec("munich-1", "eu/de/bayern"))
POLICIES = (Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2),)
REGION = "us-east-1"
BUCKET = "tls-bucket"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("s3tls"),
                  extra_args=("--chunk-size", str(CHUNK)), s3=True, s3_default_policy="eu-wide", s3_tls=True)
    with m:
        yield m


def client(mesh: LocalMesh, node: int = 0, **kwargs):
    """boto3 with its default configuration (checksums, signing), verifying with the cluster CA."""
    creds = mesh.profile.credentials
    return boto3.client("s3", **mesh.s3_client_kwargs(node), aws_access_key_id=creds.key_id,
                        aws_secret_access_key=creds.secret, region_name=REGION, **kwargs)


def no_retry(mesh: LocalMesh):
    return client(mesh, config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def s3(mesh):
    c = client(mesh)
    c.create_bucket(Bucket=BUCKET)
    return c


def trusting(mesh: LocalMesh) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(mesh.s3_ca_file))


def code(err: pytest.ExceptionInfo) -> str:
    return err.value.response["Error"]["Code"]


def test_endpoints_are_https_with_the_cluster_ca(mesh):
    assert all(e.startswith("https://127.0.0.1:") for e in mesh.s3_endpoints)
    for endpoint in mesh.s3_endpoints:
        netloc = urlsplit(endpoint).netloc
        for host in ("127.0.0.1", "localhost"):
            port = int(netloc.rsplit(":", 1)[1])
            conn = http.client.HTTPSConnection(host, port, context=trusting(mesh), timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 403 and b"AccessDenied" in response.read()  # anonymous, over TLS
            assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
            conn.close()


def test_boto3_default_put_get_round_trip_is_aws_chunked_with_a_trailing_checksum(mesh, s3):
    seen: list[dict[str, str]] = []
    s3.meta.events.register("before-send.s3.PutObject", lambda request, **_: seen.append(dict(request.headers)))
    body = bytes(range(256)) * (3 * 1024 * 1024 // 256) + b"tail"  # 3 MiB: several aws-chunked and store chunks
    put = s3.put_object(Bucket=BUCKET, Key="big/object.bin", Body=body)
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in seen[-1].items()}
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "aws-chunked" in headers["content-encoding"] and headers["x-amz-trailer"].startswith("x-amz-checksum-")
    got = s3.get_object(Bucket=BUCKET, Key="big/object.bin")
    assert got["Body"].read() == body and got["ETag"] == put["ETag"]
    assert got["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert "ContentEncoding" not in got or "aws-chunked" not in got["ContentEncoding"]
    ranged = s3.get_object(Bucket=BUCKET, Key="big/object.bin", Range=f"bytes={CHUNK - 3}-{CHUNK + 3}")
    assert ranged["Body"].read() == body[CHUNK - 3:CHUNK + 4]
    # an empty object, and one of a single byte, through another node's front door
    other = client(mesh, node=1)
    other.put_object(Bucket=BUCKET, Key="empty", Body=b"")
    other.put_object(Bucket=BUCKET, Key="one", Body=b"1")
    assert s3.get_object(Bucket=BUCKET, Key="empty")["Body"].read() == b""
    assert s3.get_object(Bucket=BUCKET, Key="one")["Body"].read() == b"1"


@pytest.mark.parametrize("algorithm", ["CRC32C", "SHA256", "CRC64NVME"])
def test_checksum_algorithms_are_verified(mesh, s3, algorithm):
    body = b"checked over TLS " * 70_000
    s3.put_object(Bucket=BUCKET, Key=f"sum-{algorithm}", Body=body, ChecksumAlgorithm=algorithm)
    assert s3.get_object(Bucket=BUCKET, Key=f"sum-{algorithm}")["Body"].read() == body
    wrong = {"CRC32C": "AAAAAA==", "SHA256": "A" * 43 + "=", "CRC64NVME": "AAAAAAAAAAA="}[algorithm]
    with pytest.raises(ClientError) as err:  # (botocore would retry a BadDigest 4 times)
        no_retry(mesh).put_object(Bucket=BUCKET, Key=f"bad-{algorithm}", Body=body, **{f"Checksum{algorithm}": wrong})
    assert code(err) == "BadDigest"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=BUCKET, Key=f"bad-{algorithm}")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_presigned_urls_work_with_plain_urllib(mesh, s3):
    s3.put_object(Bucket=BUCKET, Key="shared/report.txt", Body=b"presigned over https\n" * 1000)
    # boto3 presigns with Signature V2 in us-east-1 unless told: refused, saying what to do
    v2 = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "shared/report.txt"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(v2, context=trusting(mesh), timeout=10)
    assert err.value.code == 400 and b"AWS4-HMAC-SHA256" in err.value.read()
    s3 = client(mesh, config=Config(signature_version="s3v4"))
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "shared/report.txt"},
                                    ExpiresIn=300)
    assert url.startswith("https://") and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, context=trusting(mesh), timeout=10) as response:
        assert response.read() == b"presigned over https\n" * 1000
    put = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "shared/upload.bin"},
                                    ExpiresIn=300)
    request = urllib.request.Request(put, data=b"uploaded with urllib", method="PUT")
    with urllib.request.urlopen(request, context=trusting(mesh), timeout=10) as response:
        assert response.status == 200
    assert s3.get_object(Bucket=BUCKET, Key="shared/upload.bin")["Body"].read() == b"uploaded with urllib"
    # tampered (another key under the same signature): refused with an S3 error document
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url.replace("report.txt", "upload.bin"), context=trusting(mesh), timeout=10)
    assert err.value.code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in err.value.read()
    # expired: signed for one second, an hour ago (botocore's signers, its own and the CRT's, on a
    # clock an hour late)
    real_now = botocore.utils.get_current_datetime

    def hour_late(*args, **kwargs):
        return real_now(*args, **kwargs) - datetime.timedelta(hours=1)

    with mock.patch("botocore.auth.get_current_datetime", hour_late), \
            mock.patch("botocore.crt.auth.get_current_datetime", hour_late):
        old = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "shared/report.txt"},
                                        ExpiresIn=1)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(old, context=trusting(mesh), timeout=10)
    document = err.value.read()
    assert err.value.code == 403 and b"<Code>AccessDenied</Code>" in document
    assert b"Request has expired" in document


def test_a_client_that_does_not_trust_the_cluster_ca_is_refused(mesh):
    url = mesh.s3_endpoints[0] + "/"
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=10)  # the system's CAs
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    creds = mesh.profile.credentials
    stranger = boto3.client("s3", endpoint_url=mesh.s3_endpoints[0], aws_access_key_id=creds.key_id,
                            aws_secret_access_key=creds.secret, region_name=REGION,
                            config=Config(retries={"max_attempts": 1}))
    with pytest.raises(SSLError):
        stranger.list_buckets()
    # and plain HTTP on the TLS port gets no S3 answer
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.request("GET", "/")
        conn.getresponse().read()
    conn.close()


# ----- a signed aws-chunked stream, signed here independently of the node's code ---------------------

def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_chunked_put(mesh: LocalMesh, key: str, chunks: list[bytes], *,
                       tamper: int | None = None) -> tuple[int, bytes]:
    """PUT /BUCKET/key with STREAMING-AWS4-HMAC-SHA256-PAYLOAD over HTTPS; chunk `tamper` gets one byte
    changed after it was signed. Returns (status, body)."""
    creds = mesh.profile.credentials
    netloc = urlsplit(mesh.s3_endpoints[0]).netloc
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    signing = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret).encode(), day), REGION), "s3"), "aws4_request")
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    decoded = sum(len(c) for c in chunks)
    headers = {"content-encoding": "aws-chunked", "host": netloc, "x-amz-content-sha256": mode,
               "x-amz-date": stamp, "x-amz-decoded-content-length": str(decoded)}
    names = sorted(headers)
    canonical = "\n".join(["PUT", f"/{BUCKET}/{key}", "", *(f"{n}:{headers[n]}" for n in names), "",
                           ";".join(names), mode])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    seed = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    body, previous = b"", seed
    empty = hashlib.sha256(b"").hexdigest()
    for i, data in enumerate([*chunks, b""]):
        text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, previous, empty, hashlib.sha256(data).hexdigest()])
        previous = hmac.new(signing, text.encode(), hashlib.sha256).hexdigest()
        if i == tamper:
            data = bytes([data[0] ^ 1]) + data[1:]
        body += f"{len(data):x};chunk-signature={previous}\r\n".encode() + data + (b"\r\n" if data else b"")
    body += b"\r\n"
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.key_id}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={seed}")
    host, port = netloc.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=trusting(mesh), timeout=30)
    try:
        conn.request("PUT", f"/{BUCKET}/{key}", body=body, headers={**headers, "content-length": str(len(body))})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_signed_chunked_uploads_verify_every_chunk(mesh, s3):
    chunks = [b"A" * (64 * 1024), b"B" * (300 * 1024), b"C" * 1000]
    status, answer = signed_chunked_put(mesh, "signed/good", chunks)
    assert status == 200, answer
    assert s3.get_object(Bucket=BUCKET, Key="signed/good")["Body"].read() == b"".join(chunks)
    status, answer = signed_chunked_put(mesh, "signed/tampered", chunks, tamper=1)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in answer
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=BUCKET, Key="signed/tampered")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_node_certificates_take_extra_names_for_s3(mesh, tmp_path):
    """`maillage cluster node-cert --san` adds DNS names and IP addresses; names under .maillage,
    which would let a node pass the TLS host check as another node, are refused."""
    import argparse

    from cryptography import x509

    from maillage.cli import cluster_cmd
    from maillage.cli.common import CommandError
    from maillage.proto.trust.identity import TlsIdentity

    parser = argparse.ArgumentParser()
    cluster_cmd.add_parser(parser.add_subparsers())

    def node_cert(out, *sans: str) -> None:
        args = parser.parse_args(["cluster", "node-cert", "paris-1", "--out", str(out), "--cluster-dir",
                                  str(mesh.cluster_dir), *(f"--san={name}" for name in sans)])
        args.func(args)

    node_cert(tmp_path / "trust", "s3.example.com,*.S3.example.com", "192.0.2.10", "[2001:db8::5]")
    cert = x509.load_pem_x509_certificate((tmp_path / "trust" / "node.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "paris-1.node.maillage", "node.maillage", "s3.example.com", "*.s3.example.com"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.10", "2001:db8::5"]
    peer = TlsIdentity.load_node(tmp_path / "trust").peer()
    assert (peer.role, peer.node_id) == ("node", "paris-1")  # still that node only
    for bad in ("munich-1.node.maillage", "*.node.maillage", "maillage", "bad_name", "a..b", "-a.example",
                "s3.*.example.com", "x" * 300):
        with pytest.raises(CommandError):
            node_cert(tmp_path / "refused", bad)
