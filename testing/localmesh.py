"""Start a mesh of real node processes on loopback: for the demo, the tests and the benchmarks.

Each node is its own `maillage node run` process with its own data directory, labelled with the
site and location the layout gives it. The mesh keeps the pid of every process it started and ends
only those (SIGTERM, then SIGKILL after a grace period), also when the caller fails.

The mesh is a real cluster with its own trust, made as an admin would (`maillage cluster init`):
``base_dir/cluster`` (CA, layout-signing key pair, client certificate, the master access document),
one trust dir per node in ``base_dir/trust/<node id>`` (its certificate and the nodes' signed access
document: derived keys, no secret), the signed first
layout ``base_dir/layout.signed`` (pinning each node's certificate key, recorded in the cluster dir as
`maillage cluster node-cert` records it), and an access document with tenant "admin" (an admin key) and
tenant "demo" (a read-write key). ``base_dir/maillage.conf`` holds both as profiles (``[default]``
is demo, ``[profile admin]``); `profile` and `admin_profile` are the same as objects, `new_key`
adds a tenant's key on the running mesh.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maillage.client import Credentials, Profile, write_profile
from maillage.client.admin import (
    ACCESS_FILE,
    AdminError,
    ClusterAdmin,
    init_cluster,
    load_signer,
    node_trust_dir,
    pin_layout,
    read_access_file,
    read_node_keys,
    write_access_file,
    write_signed_layout,
)
from maillage.placement import EDGE, Layout, Node, Policy, Site, parse_location
from maillage.proto.trust.access import AccessDoc, AccessKey, Role, add_tenant, create_key, for_policies
from maillage.proto.trust.signing import LayoutSigner
from maillage.testing.clock import skew_env
from maillage.testing.ports import free_port, free_ports

__all__ = ["READY_TIMEOUT", "START_WINDOW", "SiteSpec", "DEMO_SITES", "DEMO_POLICIES", "DEMO_TENANT",
           "ADMIN_PROFILE", "LocalMesh", "make_layout", "free_port", "free_ports", "node_env", "start_timeout"]

READY_TIMEOUT = 30.0  # seconds one node may take from its launch to listening
# ... plus this much per node launched before it: the hundredth node of a mesh starts on two cores
# next to 99 running ones (gossip, their first TLS connections) and took 30-60 s to listen where
# the first took one; a fixed 30 s failed one 100-site start in two.
RUNNING_SLACK = 0.25
SETTLE_TIMEOUT = 10.0  # seconds `with LocalMesh(...)` waits at most for every node to see every other up
# Nodes launched at once: each spends its first second importing and opening its stores, so
# launching a hundred together on two cores made every one of them late (53.9 s for 100 sites);
# a bounded window keeps the cores busy and each node's own timeout meaningful.
START_WINDOW = max(4, 4 * (os.cpu_count() or 1))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _s3_ports(layout: Layout) -> dict[str, int]:
    """A reserved free port per node for S3 (the registry keeps them apart from the gRPC ports)."""
    return dict(zip((n.id for n in layout.nodes), free_ports(len(layout.nodes)), strict=True))


_ops_ports = _s3_ports  # the ops port (metrics, probes): one more reserved port per node


def _write_secret(path: Path, text: str) -> None:
    """A new file readable by its owner only from its creation (a scrape token)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(text)


@dataclass(frozen=True)
class SiteSpec:
    name: str
    location: str
    nodes: int = 1
    capacity: int = 1 << 40
    tier: str = EDGE


DEMO_SITES = (
    SiteSpec("paris-1", "eu/fr/idf"), SiteSpec("paris-2", "eu/fr/idf"),
    SiteSpec("toulouse-1", "eu/fr/occitanie"), SiteSpec("montpellier-1", "eu/fr/occitanie"),
    SiteSpec("munich-1", "eu/de/bayern"), SiteSpec("nuremberg-1", "eu/de/bayern"),
)
DEMO_POLICIES = (
    Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
    Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2),
)


def make_layout(sites: tuple[SiteSpec, ...] = DEMO_SITES, policies: tuple[Policy, ...] = DEMO_POLICIES,
                *, partition_bits: int = 8, version: int = 1) -> Layout:
    """A layout of loopback nodes, one per site unless a site asks for more, each on its own
    reserved port (`maillage.testing.ports`: never another node's, another mesh's or a connection's)."""
    nodes = []
    ports = iter(free_ports(sum(spec.nodes for spec in sites)))
    for spec in sites:
        for i in range(spec.nodes):
            node_id = spec.name if spec.nodes == 1 else f"{spec.name}-n{i + 1}"
            nodes.append(Node(id=node_id, address=f"127.0.0.1:{next(ports)}", site=spec.name,
                              capacity=spec.capacity))
    return Layout(version=version, partition_bits=partition_bits,
                  sites=tuple(Site(s.name, parse_location(s.location), tier=s.tier) for s in sites),
                  nodes=tuple(nodes), policies=tuple(policies))


def node_env() -> dict[str, str]:
    """The environment of a node process: this one's, except that bytecode is kept. Where
    PYTHONDONTWRITEBYTECODE is set (to keep source trees clean), every node compiled every module
    again at each start: half of its start's CPU, 15 s of a 100-node start on two cores. Its
    bytecode then goes under a cache prefix in the temp directory, never next to the sources."""
    env = dict(os.environ)
    if env.get("PYTHONDONTWRITEBYTECODE") and not env.get("PYTHONPYCACHEPREFIX"):
        del env["PYTHONDONTWRITEBYTECODE"]
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / f"maillage-pycache-{os.getuid()}")
    return env


def start_timeout(nodes: int, window: int = START_WINDOW, per_node: float = READY_TIMEOUT,
                  slack: float = RUNNING_SLACK) -> float:
    """The longest `LocalMesh.start` may take for `nodes` nodes: each launch slot is held at most
    `per_node` seconds plus `slack` per node launched before (at most `nodes`)."""
    return (per_node + slack * (nodes - 1)) * -(-nodes // window)


DEMO_TENANT = "demo"
ADMIN_PROFILE = "admin"
# Extra names of every node certificate: S3 clients reach a local node's HTTPS port by these.
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


class LocalMesh:
    """Real node processes for a layout, with their own cluster trust; use as a context manager."""

    def __init__(self, layout: Layout, base_dir: Path | None = None, *, log_dir: Path | None = None,
                 extra_args: tuple[str, ...] = (), insecure_plaintext: bool = False, s3: bool = False,
                 s3_default_policy: str = "", s3_tls: bool = True, ops: bool = False) -> None:
        self.layout = layout
        # ops: every node also serves its ops port (`--ops-listen`: /metrics, /livez, /readyz) on a
        # free port of its own, over TLS with its node certificate, /metrics with the mesh's scrape
        # token (`metrics_token_file`, copied into every trust dir).
        self.ops_ports = _ops_ports(layout) if ops else {}
        # s3: every node also serves the S3 API (`--s3-listen`) on a free port of its own, over
        # HTTPS with its node certificate when s3_tls (clients verify it with `s3_ca_file`; the
        # certificates name 127.0.0.1 and localhost), else over plain HTTP (`--s3-plain-http`).
        self.s3_ports = _s3_ports(layout) if s3 else {}
        self.s3_default_policy = s3_default_policy
        self.s3_tls = s3_tls
        self._own_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="maillage-mesh-")) if base_dir is None else base_dir
        self.log_dir = log_dir or self.base_dir / "logs"
        # Benchmarks only: nodes without TLS or authentication (clients then pass insecure_plaintext too).
        self.insecure_plaintext = insecure_plaintext
        self._extra = (*extra_args, "--insecure-plaintext") if insecure_plaintext else extra_args
        self.clock_skew = 0.0   # seconds every node started from now on runs ahead (libfaketime; `clock.py`)
        self.processes: dict[str, subprocess.Popen] = {}
        self.cluster_dir = self.base_dir / "cluster"
        self.trust_root = self.base_dir / "trust"
        self.layout_file = self.base_dir / "layout.signed"
        self.config_file = self.base_dir / "maillage.conf"
        self.metrics_token_file = self.cluster_dir / "metrics.token"
        self.profile: Profile
        self.admin_profile: Profile
        self.signer: LayoutSigner
        self._init_trust()

    # ----- trust -----------------------------------------------------------------------------

    def _init_trust(self) -> None:
        """Make the cluster (or reuse the one a previous mesh left in base_dir) and its profiles."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        endpoints = tuple(self.addresses)
        if (self.cluster_dir / "ca.pem").exists():
            self.signer = load_signer(self.cluster_dir)
            doc = read_access_file(self.cluster_dir / ACCESS_FILE, self.signer)
            admin = next(k for k in doc.keys if k.role == "admin" and not k.revoked)
            demo = next(k for k in doc.keys if k.tenant == DEMO_TENANT and not k.revoked)
        else:
            made = init_cluster(self.cluster_dir, "local mesh", endpoints=endpoints, extra_tenants=(DEMO_TENANT,))
            self.signer = load_signer(self.cluster_dir)
            admin = made.admin_key
            doc, demo = create_key(made.access, DEMO_TENANT, "read-write", now_ms=_now_ms())
            # published for the layout's policies (naming keys, S3 regions) from the nodes' first document
            doc = for_policies(doc, (p.name for p in self.layout.policies))
            write_access_file(self.cluster_dir / ACCESS_FILE, doc, self.signer)
        trust = self.cluster_dir.resolve()
        self.admin_profile = Profile(endpoints, Credentials(admin.key_id, admin.secret), trust, ADMIN_PROFILE)
        self.profile = Profile(endpoints, Credentials(demo.key_id, demo.secret), trust, "default")
        write_profile(self.config_file, self.profile)
        write_profile(self.config_file, self.admin_profile)
        if self.ops_ports and not self.metrics_token_file.exists():
            _write_secret(self.metrics_token_file, secrets.token_hex(32) + "\n")
        for node in self.layout.nodes:      # each certificate's key recorded in the cluster dir...
            self._node_trust(node.id)
        self.layout, _ = pin_layout(self.layout, read_node_keys(self.cluster_dir))   # ...and pinned
        write_signed_layout(self.layout_file, self.layout, self.signer)

    def _node_trust(self, node_id: str) -> Path:
        directory = self.trust_dir(node_id)
        if not (directory / "node.pem").exists():
            node_trust_dir(self.cluster_dir, node_id, directory, sans=LOOPBACK_NAMES)
        token = directory / "metrics.token"
        if self.ops_ports and not token.exists():
            _write_secret(token, self.metrics_token_file.read_text())
        return directory

    def trust_dir(self, node_id: str) -> Path:
        return self.trust_root / node_id

    def admin(self) -> ClusterAdmin:
        """The admin API on this mesh, with the admin key, the layout-signing key and the recorded
        certificate keys (every layout it stages or applies pins them)."""
        return ClusterAdmin(self.admin_profile, signer=self.signer, node_keys=read_node_keys(self.cluster_dir),
                            cluster_dir=self.cluster_dir)

    def issue_certificate(self, node_id: str) -> str:
        """Issue node `node_id` a new certificate (a new key) into its trust dir, as `maillage cluster
        node-cert` does, and return its key: recorded in the cluster dir, it is pinned by the next
        layout applied through `admin()`. For a node already running this is a rotation: that
        layout retires its old certificate, which it keeps using until restarted."""
        node_trust_dir(self.cluster_dir, node_id, self.trust_dir(node_id), sans=LOOPBACK_NAMES)
        return read_node_keys(self.cluster_dir)[node_id]

    def new_key(self, tenant: str, role: Role = "read-write", buckets: tuple[str, ...] = ()) -> Profile:
        """A new access key of `tenant` (created first if needed), pushed signed to every node: a
        profile to use it with."""
        made: list[AccessKey] = []

        def edit(doc: AccessDoc) -> AccessDoc:
            if doc.tenant(tenant) is None:
                doc = add_tenant(doc, tenant, now_ms=_now_ms())
            doc, key = create_key(doc, tenant, role, buckets, now_ms=_now_ms())
            made.append(key)
            return doc

        with self.admin() as admin:
            doc, _, problems = admin.edit_access(edit)
        if problems:
            raise RuntimeError(f"access document v{doc.version} not adopted everywhere: {'; '.join(problems)}")
        key = made[-1]
        return Profile(tuple(self.addresses), Credentials(key.key_id, key.secret), self.cluster_dir.resolve(),
                       f"{tenant}-{key.key_id}")

    # ----- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> LocalMesh:
        try:
            self.start()
            self.wait_all_up(timeout=SETTLE_TIMEOUT)  # a mesh used at once: no peer still suspected
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, *, window: int = START_WINDOW, timeout: float = READY_TIMEOUT) -> None:
        """Launch every node, at most `window` still starting at once; each must listen within
        `timeout` of its own launch plus `RUNNING_SLACK` per node launched before it (so the whole
        start is bounded by `start_timeout`)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        waiting = [n.id for n in self.layout.nodes]
        starting: dict[str, float] = {}   # node id -> its deadline
        allowed: dict[str, float] = {}    # node id -> seconds it may take
        while waiting or starting:
            while waiting and len(starting) < window:
                node_id = waiting.pop(0)
                launched = len(self.layout.nodes) - len(waiting) - 1
                self.start_node(node_id, wait=False)
                allowed[node_id] = timeout + RUNNING_SLACK * launched
                starting[node_id] = time.monotonic() + allowed[node_id]
            for node_id, deadline in list(starting.items()):
                if self._listening(node_id):
                    del starting[node_id]
                elif time.monotonic() > deadline:
                    raise TimeoutError(f"node {node_id} not listening {allowed[node_id]:.0f} s after its launch; "
                                       f"log: {self.log_dir / (node_id + '.log')}\n{self.tail_log(node_id)}")
            if starting:
                time.sleep(0.05)

    def _listening(self, node_id: str) -> bool:
        """Whether the node listens on every port it serves; raises if its process has ended."""
        proc = self.processes[node_id]
        if proc.poll() is not None:
            raise RuntimeError(f"node {node_id} exited with code {proc.returncode}; "
                               f"log: {self.log_dir / (node_id + '.log')}\n{self.tail_log(node_id)}")
        ports = [self.address(node_id)]
        if node_id in self.s3_ports:  # the node opens its S3 port after its gRPC port
            ports.append(f"127.0.0.1:{self.s3_ports[node_id]}")
        if node_id in self.ops_ports:  # and its ops port last
            ports.append(f"127.0.0.1:{self.ops_ports[node_id]}")
        for address in ports:
            host, port = address.rsplit(":", 1)
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    pass
            except OSError:
                return False
        return True

    def data_dir(self, node_id: str) -> Path:
        return self.base_dir / "nodes" / node_id

    def address(self, node_id: str) -> str:
        return self.layout.node(node_id).address

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.layout.nodes]

    def s3_endpoint(self, node_id: str) -> str:
        """The S3 endpoint URL of a node of a mesh made with s3=True (https:// when s3_tls)."""
        return f"{'https' if self.s3_tls else 'http'}://127.0.0.1:{self.s3_ports[node_id]}"

    @property
    def s3_endpoints(self) -> list[str]:
        return [self.s3_endpoint(n.id) for n in self.layout.nodes if n.id in self.s3_ports]

    @property
    def s3_ca_file(self) -> Path:
        """The CA file S3 clients verify the nodes' HTTPS endpoints with (the cluster CA, which
        issued the node certificates): boto3's `verify=`, aws-cli's --ca-bundle, AWS_CA_BUNDLE."""
        return self.cluster_dir / "ca.pem"

    def s3_client_kwargs(self, node: int | str = 0) -> dict[str, Any]:
        """`endpoint_url` and `verify` for boto3.client("s3", ...) against a node's front door (by
        index in the layout or id), right for HTTP and HTTPS meshes alike."""
        node_id = self.layout.nodes[node].id if isinstance(node, int) else node
        return {"endpoint_url": self.s3_endpoint(node_id),
                "verify": str(self.s3_ca_file) if self.s3_tls else True}

    def ops_url(self, node_id: str) -> str:
        """https://127.0.0.1:PORT of a node's ops port (a mesh made with ops=True)."""
        return f"{'http' if self.insecure_plaintext else 'https'}://127.0.0.1:{self.ops_ports[node_id]}"

    @property
    def metrics_token(self) -> str:
        return self.metrics_token_file.read_text().strip()

    def node_argv(self, node_id: str, extra_args: tuple[str, ...] = ()) -> list[str]:
        """`maillage node run` for a node: its trust dir and the signed first layout."""
        s3: tuple[str, ...] = ()
        if node_id in self.s3_ports:
            s3 = ("--s3-listen", f"127.0.0.1:{self.s3_ports[node_id]}")
            if not self.s3_tls:
                s3 += ("--s3-plain-http",)
            if self.s3_default_policy:
                s3 += ("--s3-default-policy", self.s3_default_policy)
            s3 += ("--s3-access-log", str(self.access_log(node_id)))
        ops = ("--ops-listen", f"127.0.0.1:{self.ops_ports[node_id]}") if node_id in self.ops_ports else ()
        return [sys.executable, "-m", "maillage.cli", "node", "run", "--id", node_id,
                "--data-dir", str(self.data_dir(node_id)), "--trust-dir", str(self._node_trust(node_id)),
                "--layout", str(self.layout_file), *s3, *ops, *self._extra, *extra_args]

    def access_log(self, node_id: str) -> Path:
        """The node's S3 access log (one JSON line per request; nodes with an S3 door only)."""
        return self.log_dir / f"{node_id}.s3.jsonl"

    def start_node(self, node_id: str, *, wait: bool = True, extra_args: tuple[str, ...] = ()) -> None:
        """Launch a node's process (`extra_args`: options for this start of this node only)."""
        running = self.processes.get(node_id)
        if running is not None and running.poll() is None:  # never two processes of one node (nor one lost)
            raise RuntimeError(f"node {node_id} is already running (pid {running.pid})")
        argv = self.node_argv(node_id, extra_args)
        log = open(self.log_dir / f"{node_id}.log", "ab")
        env = {**node_env(), **(skew_env(self.clock_skew) if self.clock_skew else {})}
        self.processes[node_id] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, env=env)
        log.close()
        if wait:
            self.wait_ready(node_id)

    def wait_ready(self, node_id: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._listening(node_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node_id} not listening on {self.address(node_id)} after {timeout} s")
            time.sleep(0.05)

    def wait_all_up(self, timeout: float) -> bool:
        """Wait until every node sees every other up, at most `timeout` seconds; whether they do.
        A node listens before it has probed its peers, and one that probed a peer not listening yet
        suspects it until a later probe: a bucket created in that second could find its owners
        suspected and be refused."""
        if self.insecure_plaintext:
            return False  # the admin speaks TLS only: nothing it can ask
        deadline = time.monotonic() + timeout
        try:
            with self.admin() as admin:
                while True:
                    answers = admin.statuses(timeout=min(5.0, max(timeout, 0.1)))
                    if all(isinstance(a, str) for a in answers.values()):
                        return False  # no node answers the admin (a mesh set up so): nothing to wait for
                    if all(not isinstance(a, str) and all(p.state == "up" for p in a.peers)
                           for a in answers.values()):
                        return True
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.2)
        except AdminError:  # the layout cannot be read through the admin's profile: nothing to wait for
            return False

    def tail_log(self, node_id: str, lines: int = 30) -> str:
        path = self.log_dir / f"{node_id}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a node this mesh started (SIGKILL by default) and reap it."""
        proc = self.processes.get(node_id)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_node(self, node_id: str) -> None:
        self.kill(node_id, signal.SIGTERM)

    def close(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_dir and not os.environ.get("MAILLAGE_KEEP_MESH"):
            shutil.rmtree(self.base_dir, ignore_errors=True)
