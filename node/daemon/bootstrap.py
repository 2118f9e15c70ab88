"""Bootstrap: what a node needs before anything is wired: its identity, stores, layout and keys.

The trust dir (`maillage cluster node-cert`) holds the node's certificate and key, the cluster CA
and the admin's public layout-signing key, and may bring the first access document. The layout
comes from the data directory (the last one applied) or the operator's signed file, whichever is
newer, else from a seed peer; every one must verify with the public key. A node that is not in its
layout refuses to start.

Encryption at rest: the node key that wraps the data keys is a file outside the data directory,
``<trust dir>/data.key`` unless ``--data-key`` names another (never inside the data directory:
stealing the data directory alone must yield ciphertext). It is made (0600, ``O_EXCL``) on the
first start of a data directory; a data directory whose keys exist refuses to start without the
key that wrapped them. See ``maillage.storage.keys``.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from maillage.node.daemon.wiring import Timings
from maillage.node.rpc import convert
from maillage.node.rpc.deadlines import GrpcLimits
from maillage.node.s3.door import DoorLimits
from maillage.node.trust.access_state import ACCESS_FILE, AccessState
from maillage.node.trust.documents import LayoutAuthError, LayoutDoc, SignedLayouts, discard_unverified_staged
from maillage.node.trust.layout_state import LayoutState, pin_warnings
from maillage.placement import Layout, PlacementError, parse_layout
from maillage.proto import pb, rpc
from maillage.proto.channels import open_channel
from maillage.proto.trust.identity import IdentityError, NodeFiles, TlsIdentity, target_name
from maillage.proto.trust.signing import LayoutVerifier, read_signed
from maillage.storage import NODE_KEY_FILE, ChunkStore, DataKeys, MetaStore, NodeKey, StorageError

__all__ = ["NodeConfig", "Stores", "Trust", "data_key_path", "fetch_layout", "load_access", "load_layout",
           "load_s3_tls", "load_trust", "open_stores"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    data_dir: Path
    trust_dir: Path                       # node.pem, node.key, ca.pem, layout-signing.pub[, access.signed]
    layout_file: Path | None = None       # a signed layout (`maillage layout sign`); else stored or seeds
    seeds: tuple[str, ...] = ()
    listen: str | None = None             # default: this node's address in the layout
    fsync: bool = True
    chunk_size: int = 4 * 1024 * 1024
    workers: int = 8
    # Benchmarks only: no TLS and no authentication, every caller trusted (the wave-1 behaviour),
    # so the throughput benchmark can report what TLS and request signatures cost.
    insecure_plaintext: bool = False
    data_key: Path | None = None          # the node key wrapping the data keys; default <trust dir>/data.key
    s3_listen: str | None = None          # HOST:PORT of the S3 front door (node/s3), None: no S3
    s3_default_policy: str = ""           # the policy of an S3 bucket created without LocationConstraint
    # The S3 port is HTTPS with the node's own certificate (node.pem, node.key of the trust dir)
    # unless another PEM pair is named (e.g. from a public CA), or plain HTTP is asked for
    # explicitly (behind a TLS-terminating proxy).
    s3_tls_cert: Path | None = None
    s3_tls_key: Path | None = None
    s3_plain_http: bool = False
    s3_domain: str = ""                   # virtual-host-style addressing: <bucket>.<domain>
    s3_access_log: Path | None = None     # one JSON line per S3 request (node/s3/access_log.py)
    s3_limits: DoorLimits = DoorLimits()  # connections, requests and deadlines of the S3 port
    grpc_limits: GrpcLimits = GrpcLimits()  # connections, streams and deadlines of the gRPC port
    ops_listen: str | None = None         # HOST:PORT of the ops port (/metrics, /livez, /readyz), None: none
    ops_token_file: Path | None = None    # the scrape token /metrics asks for; default <trust dir>/metrics.token
    # SWIM's probes as sealed UDP datagrams on the gRPC port's number (node/rpc/datagrams.py), gRPC
    # when a datagram is not answered; False: gRPC alone (a network that drops UDP).
    membership_datagrams: bool = True
    timings: Timings = Timings()


@dataclass(frozen=True)
class Trust:
    """What the node trusts and presents: its TLS identity and the admin's public key."""

    tls: TlsIdentity
    verifier: LayoutVerifier


def load_trust(cfg: NodeConfig) -> Trust:
    files = NodeFiles.at(cfg.trust_dir)
    tls = TlsIdentity.load_node(cfg.trust_dir)
    if tls.peer().node_id != cfg.node_id:
        raise IdentityError(f"{files.cert} is the certificate of node {tls.peer().node_id!r}, not of "
                            f"{cfg.node_id!r}: issue one with `maillage cluster node-cert {cfg.node_id}`")
    return Trust(tls, LayoutVerifier.from_file(files.signing_pub))


def load_s3_tls(cfg: NodeConfig) -> ssl.SSLContext | None:
    """The TLS context of the S3 port (None: plain HTTP, only when asked for). Default: the node's
    own certificate from the trust dir, which S3 clients verify with the cluster CA (ca.pem), by the
    names `maillage cluster node-cert --san` put in it."""
    from maillage.node.s3.server import tls_context  # the S3 stack (aiohttp, awscrt) only when S3 is on

    if cfg.s3_plain_http:
        if cfg.s3_tls_cert is not None or cfg.s3_tls_key is not None:
            raise IdentityError("S3: plain HTTP was asked for, and also a TLS certificate: choose one")
        log.warning("S3 front door on %s serves plain HTTP (--s3-plain-http): only behind a TLS-terminating "
                    "proxy", cfg.s3_listen)
        return None
    if (cfg.s3_tls_cert is None) != (cfg.s3_tls_key is None):
        raise IdentityError("S3: give both the TLS certificate and its key (--s3-tls-cert, --s3-tls-key)")
    files = NodeFiles.at(cfg.trust_dir)
    cert, key = (cfg.s3_tls_cert, cfg.s3_tls_key) if cfg.s3_tls_cert is not None else (files.cert, files.key)
    assert key is not None
    # Another certificate than the node's: peers forwarding S3 requests still get the node's by asking
    # for its name (SNI <id>.node.maillage), and check it with the cluster CA.
    node = (target_name(cfg.node_id), files.cert, files.key) if cfg.s3_tls_cert is not None else None
    try:
        context = tls_context(cert, key, node=node)
    except ValueError as err:
        raise IdentityError(str(err)) from None
    names = certificate_names(cert)
    log.info("S3 over TLS with %s (names: %s)", cert, ", ".join(names) or "none")
    return context


def certificate_names(cert: Path) -> list[str]:
    """The DNS and IP subject alternative names of the first certificate of a PEM file."""
    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return []
    return [*sans.get_values_for_type(x509.DNSName), *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))]


def load_access(cfg: NodeConfig, trust: Trust) -> AccessState:
    return AccessState(cfg.data_dir / ACCESS_FILE, trust.verifier, cfg.trust_dir / ACCESS_FILE)


@dataclass
class Stores:
    chunks: ChunkStore
    meta: MetaStore

    def close(self) -> None:
        self.meta.close()


async def fetch_layout(seeds: tuple[str, ...], signed: SignedLayouts,
                       tls: TlsIdentity | None) -> tuple[Layout, LayoutDoc]:
    """The newest correctly signed layout any seed answers with."""
    best: tuple[Layout, LayoutDoc] | None = None
    errors = []
    for address in seeds:
        try:
            async with open_channel(address, tls=tls) as channel:
                doc = convert.layout_doc_from_pb(
                    await rpc.ClusterStub(channel).GetLayout(pb.GetLayoutRequest(), timeout=5))
            layout = signed.verify(doc)
            if best is None or layout.version > best[0].version:
                best = (layout, doc)
        except grpc.RpcError as err:
            errors.append(f"{address}: {err.code().name}: {err.details()}")
        except (LayoutAuthError, PlacementError) as err:
            errors.append(f"{address}: {err}")
    if best is None:
        raise ConnectionError(f"no seed answered with a valid layout ({'; '.join(errors) or 'no seeds given'})")
    return best


async def load_layout(cfg: NodeConfig, signed: SignedLayouts, tls: TlsIdentity | None) -> LayoutState:
    """The node's layout (see the module's docstring); raises `UnknownNode` if it is not in it."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    layout_path = cfg.data_dir / "layout.toml"
    if cfg.layout_file is not None:  # the operator's signed file: adopted only if newer than the stored one
        text, signature = read_signed(cfg.layout_file)
        given = signed.verify(LayoutDoc(parse_layout(text).version, text, signature))
        layout = LayoutState(layout_path, given, signature, text)
    elif not layout_path.exists():
        fetched, doc = await fetch_layout(cfg.seeds, signed, tls)
        layout = LayoutState(layout_path, fetched, doc.signature, doc.text)
    else:
        layout = LayoutState(layout_path)
        signed.verify(LayoutDoc(layout.current.version, layout.text, layout.signature))
    layout.current.node(cfg.node_id)  # UnknownNode: refuse to start outside the layout
    discard_unverified_staged(layout, signed, log)
    for warning in pin_warnings(layout.current, cfg.node_id, tls.peer().key if tls is not None else None):
        log.warning("%s", warning)
    return layout


def data_key_path(cfg: NodeConfig) -> Path:
    """Where the node key of `cfg` lives."""
    return cfg.data_key if cfg.data_key is not None else cfg.trust_dir / NODE_KEY_FILE


def _node_key(cfg: NodeConfig, meta: MetaStore) -> NodeKey:
    path = data_key_path(cfg)
    data_dir = cfg.data_dir.resolve()
    if path.resolve() == data_dir or data_dir in path.resolve().parents:
        raise StorageError(f"the data key {path} must not rest inside the data directory {cfg.data_dir} "
                           f"(whoever has the directory would have the key): keep it in the trust dir")
    has_keys = bool(meta.key_records())
    if has_keys and not path.exists():
        raise StorageError(f"data key {path} is missing, and the data in {cfg.data_dir} is encrypted with "
                           f"keys it wrapped: restore that file (or name it with --data-key)")
    return NodeKey.load_or_create(path, create=not has_keys)


def open_stores(cfg: NodeConfig) -> Stores:
    """The chunk and metadata stores of `cfg.data_dir`, encrypting with the node's data keys."""
    meta = MetaStore(cfg.data_dir / "meta")
    try:
        keys = DataKeys(meta, _node_key(cfg, meta))
        meta.use_data_keys(keys)
        return Stores(ChunkStore(cfg.data_dir / "chunks", fsync=cfg.fsync, keys=keys), meta)
    except BaseException:
        meta.close()
        raise
