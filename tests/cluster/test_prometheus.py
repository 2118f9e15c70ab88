"""A real Prometheus server (the Debian package) scrapes a local mesh's ops ports over TLS with the
scrape token; PromQL then sees the workload's requests and bytes, a killed node down as its peers
see it, partitions short of R rising and falling once repair replaced the node, and the shipped
rule (with short `for:` durations) firing for the killed node. Nothing scraped names a bucket or a
key, and /metrics without the right token gets 401 and nothing else."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config

from maillage.client import Client
from maillage.placement import Policy
from maillage.testing.localmesh import LocalMesh, SiteSpec, make_layout
from maillage.testing.ports import free_port
from maillage.testing.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SITES = tuple(SiteSpec(name, location) for name, location in (
    ("paris-1", "eu/fr/idf"), ("lyon-1", "eu/fr/ara"), ("lille-1", "eu/fr/hdf"), ("munich-1", "eu/de/bayern")))
POLICIES = (Policy(name="france-only", allow=(("eu", "fr"),), replicas=2),)
FAST = ("--heartbeat-interval", "0.3", "--suspect-after", "1.5", "--down-after", "4", "--repair-interval", "1",
        "--chunk-size", str(64 * 1024))
VICTIM = "lyon-1"
# Names only the workload uses: no scraped line may carry them.
BUCKET_GRPC, BUCKET_S3 = "zq-confidentiel-dossiers", "zq-confidentiel-s3"
KEYS = ("patients/zq-dupont-jean.pdf", "zq-clef-secrete/a.bin")
S3_BODY = b"s" * 150_000


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed: .ci/run installs it (apt-get install -y prometheus)")
    return path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """One mesh for the module (a start costs seconds): the token test leaves it as it found it."""
    with LocalMesh(make_layout(SITES, POLICIES), tmp_path_factory.mktemp("mesh"), extra_args=FAST, s3=True,
                   ops=True) as m:
        yield m


class Prometheus:
    """A Prometheus server of this test: its own dir, config and port, ended by its pid."""

    def __init__(self, mesh: LocalMesh, root: Path) -> None:
        root.mkdir()
        rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:  # the shipped rules, waiting seconds instead of minutes
                    rule["for"] = "2s"
        (root / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(root / "rules.yml")],
            "scrape_configs": [{
                "job_name": "maillage", "scheme": "https",
                "authorization": {"type": "Bearer", "credentials_file": str(mesh.metrics_token_file)},
                "tls_config": {"ca_file": str(mesh.s3_ca_file)},
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in mesh.ops_ports.values()]}],
            }],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        check = subprocess.run([_need("promtool"), "check", "config", str(root / "prometheus.yml")],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(root / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [_need("prometheus"), f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.root = root

    def api(self, path: str, **params: str) -> object:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query's vector, by its labels (sorted)."""
        data = self.api("query", query=promql)
        assert isinstance(data, dict)
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in data["result"]}

    def value(self, promql: str) -> float | None:
        vector = self.query(promql)
        return next(iter(vector.values())) if vector else None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def tail(self) -> str:
        return (self.root / "prometheus.log").read_text(errors="replace")[-3000:]


@pytest.fixture()
def prometheus(mesh, tmp_path):
    server = Prometheus(mesh, tmp_path / "prometheus")
    try:
        yield server
    finally:
        server.close()


def scrape(mesh: LocalMesh, node_id: str, token: str | None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(mesh.s3_ca_file))
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(mesh.ops_url(node_id) + "/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def workload(mesh: LocalMesh) -> int:
    """Writes and reads through both doors, under names that must not leave as labels; returns the
    S3 bytes uploaded."""
    with Client(profile=mesh.profile) as client:
        client.create_bucket(BUCKET_GRPC, "france-only")
        for key in KEYS:
            client.put_object(BUCKET_GRPC, key, b"g" * 100_000)
            assert client.get_object(BUCKET_GRPC, key).read() == b"g" * 100_000
        with pytest.raises(Exception):  # noqa: B017 - any refusal: it is counted as an outcome
            client.get_object(BUCKET_GRPC, "zq-absent-key")
    creds = mesh.profile.credentials
    s3 = boto3.client("s3", **mesh.s3_client_kwargs("paris-1"), aws_access_key_id=creds.key_id,
                      aws_secret_access_key=creds.secret, region_name="us-east-1",
                      config=Config(retries={"max_attempts": 1}))
    s3.create_bucket(Bucket=BUCKET_S3, CreateBucketConfiguration={"LocationConstraint": "france-only"})
    for key in KEYS:
        s3.put_object(Bucket=BUCKET_S3, Key=key, Body=S3_BODY)
        assert s3.get_object(Bucket=BUCKET_S3, Key=key)["Body"].read() == S3_BODY
    return len(KEYS) * len(S3_BODY)


def test_metrics_without_the_right_token_gets_401_and_nothing_else(mesh):
    node_id = mesh.layout.nodes[0].id
    for token in (None, "", "wrong", mesh.metrics_token + "x", mesh.metrics_token[:-1]):
        status, body = scrape(mesh, node_id, token)
        assert status == 401 and body == b"unauthorized\n", token
    status, body = scrape(mesh, node_id, mesh.metrics_token)
    assert status == 200 and b"maillage_peer_up" in body
    context = ssl.create_default_context(cafile=str(mesh.s3_ca_file))
    for probe, word in (("/livez", b"ok\n"), ("/readyz", b"ready\n")):
        with urllib.request.urlopen(mesh.ops_url(node_id) + probe, context=context, timeout=5) as r:
            assert r.status == 200 and r.read() == word


def test_prometheus_scrapes_the_mesh_and_an_alert_fires_for_a_killed_node(mesh, prometheus):
    nodes = [n.id for n in mesh.layout.nodes]
    ready = lambda: prometheus.value('count(up{job="maillage"} == 1)') == len(nodes)  # noqa: E731
    eventually(ready, timeout=20, what="every node scraped", retry_on=(urllib.error.URLError, ConnectionError))

    uploaded = workload(mesh)
    # requests and bytes, by door and method, as Prometheus stored them (each node is scraped at its
    # own moment of the second: waited for together)
    expected = {
        'sum(maillage_requests_total{door="s3",method="PutObject",outcome="200"})': len(KEYS),
        'sum(maillage_request_bytes_received_total{door="s3",method="PutObject"})': uploaded,
        'sum(maillage_response_bytes_sent_total{door="s3",method="GetObject"})': uploaded,
        'sum(maillage_requests_total{door="grpc",method=~"Bulk/Put(Small)?Object",outcome="OK"})': len(KEYS),
        'sum(maillage_request_bytes_received_total{door="grpc",method="Bulk/PutChunk"})': 1,
        'sum(maillage_requests_total{door="grpc",outcome="NOT_FOUND"})': 1,
        'sum(rate(maillage_request_duration_seconds_count{door="grpc"}[30s]))': 0.001,
        'count(maillage_build_info{site="paris-1",region="eu/fr/idf"})': 1,
        "sum(maillage_partitions_owned)": 1,
        # membership probes travel as sealed UDP datagrams between the real processes
        'sum(maillage_membership_datagrams_total{event="acked"})': 1,
    }

    short: dict[str, float | None] = {}

    def all_there() -> bool:
        short.clear()
        short.update({q: v for q, want in expected.items() if (v := prometheus.value(q)) is None or v < want})
        return not short
    try:
        eventually(all_there, timeout=15, what="the workload's series")
    except AssertionError as err:
        raise AssertionError(f"{err}; still short: {short}") from None
    assert prometheus.value("sum(maillage_partitions_short_of_r)") == 0
    # the certificate's end (the cluster CA issues for years) and the clock against the scrape's
    assert prometheus.value("min(maillage_certificate_expiry_timestamp_seconds) - time()") > 300 * 86400
    assert prometheus.value("max(abs(maillage_clock_unix_seconds - timestamp(maillage_clock_unix_seconds)))") < 5

    # residency covers telemetry: no series names a bucket or a key, on any node
    for node_id in nodes:
        status, text = scrape(mesh, node_id, mesh.metrics_token)
        assert status == 200 and b"maillage_requests_total" in text
        assert b"zq-" not in text, [line for line in text.splitlines() if b"zq-" in line][:5]
    series = prometheus.api("label/__name__/values")
    labels = prometheus.api("labels")
    values = [v for name in labels for v in prometheus.api(f"label/{name}/values")]  # type: ignore[union-attr]
    assert not [v for v in [*series, *values] if "zq-" in v]  # type: ignore[misc]

    # a killed node: down as its peers see it, its partitions short of R, the rule firing
    mesh.kill(VICTIM)
    eventually(lambda: prometheus.value(f'count(maillage_peer_up{{peer="{VICTIM}"}} == 0)') == len(nodes) - 1,
               timeout=15, what=f"every peer seeing {VICTIM} down")
    eventually(lambda: (prometheus.value("sum(maillage_partitions_short_of_r)") or 0) > 0, timeout=10,
               what="partitions short of R")

    def firing(name: str) -> list[dict]:
        alerts = prometheus.api("alerts")["alerts"]  # type: ignore[index]
        return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]
    down = eventually(lambda: firing("MaillageNodeDown"), timeout=15, what="MaillageNodeDown firing")
    assert [a["labels"]["peer"] for a in down] == [VICTIM]
    assert not firing("MaillageResidencyViolation")
    # once marked down (--down-after 4) repair replaces it: no partition short of R any more
    eventually(lambda: prometheus.value("sum(maillage_partitions_short_of_r)") == 0, timeout=20,
               what="partitions short of R back to 0 after repair")
    unreachable = eventually(lambda: firing("MaillageNodeUnreachable"), timeout=10,
                             what="MaillageNodeUnreachable firing")
    assert [a["labels"]["instance"] for a in unreachable] == [f"127.0.0.1:{mesh.ops_ports[VICTIM]}"]
