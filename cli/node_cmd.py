"""`maillage node run`: start one node daemon."""

from __future__ import annotations

import argparse
from pathlib import Path

from maillage.node.energy.signal import GREEN_CARBON
from maillage.node.rpc.deadlines import KEEPALIVE_TIMEOUT, GrpcLimits
from maillage.node.s3.door import DoorLimits
from maillage.proto.limits import DEFAULT_CHUNK_SIZE, MAX_CHUNK_PLAIN, check_chunk_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    node = sub.add_parser("node", help="run a node daemon, or rotate its data key")
    node_sub = node.add_subparsers(dest="node_command", required=True)
    rotate = node_sub.add_parser(
        "rotate-data-key", help="re-wrap a stopped node's data keys under a new node key",
        description="Node key rotation: every data key of the node's data dir is re-wrapped by a new "
                    "node key (written to --new-data-key, 0600, never over an existing file), in one "
                    "durable write; chunk files and manifests are not rewritten. Stop the node first. "
                    "Then start it with --data-key NEW, and delete the old key file once it runs.")
    rotate.add_argument("--data-dir", required=True, type=Path, help="the stopped node's data dir")
    rotate.add_argument("--data-key", required=True, type=Path, metavar="OLD",
                        help="the node key file in use (default place: <trust dir>/data.key)")
    rotate.add_argument("--new-data-key", required=True, type=Path, metavar="NEW",
                        help="where to write the new node key (outside the data dir)")
    rotate.set_defaults(func=rotate_command)
    run = node_sub.add_parser(
        "run", help="serve one node until SIGTERM",
        description="Start a node daemon. Its site and location come from the layout (the admin's "
                    "truth), never from this command line: the node id must be in the layout. The "
                    "node's port is mutual TLS with the node certificate of --trust-dir (made by "
                    "`maillage cluster node-cert`), its S3 port (--s3-listen) HTTPS with that same "
                    "certificate unless told otherwise, and layouts and access documents are accepted "
                    "only when signed by the cluster's admin. First start: give --layout (a file "
                    "`maillage layout sign` wrote) or --seed; later starts use the stored layout.")
    run.add_argument("--id", required=True, help="this node's id in the layout")
    run.add_argument("--data-dir", required=True, type=Path, help="where chunks and metadata live")
    run.add_argument("--trust-dir", required=True, type=Path, metavar="DIR",
                     help="this node's trust dir from `maillage cluster node-cert`: node.pem, node.key, "
                          "ca.pem, layout-signing.pub, and access.signed (the first access document)")
    run.add_argument("--data-key", type=Path, metavar="FILE",
                     help="the node key that wraps the data-encryption keys (made 0600 on first start if "
                          "missing; default: <trust-dir>/data.key); never inside --data-dir")
    run.add_argument("--layout", type=Path, metavar="SIGNED_LAYOUT",
                     help="signed layout file from `maillage layout sign` (else the stored one, else --seed)")
    run.add_argument("--seed", action="append", default=[], metavar="HOST:PORT",
                     help="a peer to fetch the layout from (repeatable)")
    run.add_argument("--listen", help="listen address (default: this node's address in the layout)")
    s3 = run.add_argument_group(
        "S3 front door", "Every request is authenticated with the tenants' access keys (AWS Signature V4, "
                         "presigned URLs included); TLS protects the bodies and the URLs.")
    s3.add_argument("--s3-listen", metavar="HOST:PORT",
                    help="also serve the S3 API on this address, over HTTPS with this node's certificate "
                         "from --trust-dir (clients trust the cluster CA, ca.pem, and connect by a name "
                         "the certificate holds: see `maillage cluster node-cert --san`)")
    s3.add_argument("--s3-tls-cert", type=Path, metavar="PEM",
                    help="serve S3 with this certificate (chain, PEM) instead of the node's, e.g. one from "
                         "a public CA, so clients need no cluster CA; needs --s3-tls-key")
    s3.add_argument("--s3-tls-key", type=Path, metavar="PEM", help="the private key of --s3-tls-cert (PEM)")
    s3.add_argument("--s3-plain-http", action="store_true",
                    help="serve S3 over plain HTTP, without TLS: only behind a TLS-terminating reverse proxy "
                         "(on this host or a trusted network), as request bodies and presigned URLs would "
                         "otherwise cross the network in clear")
    s3.add_argument("--s3-domain", default="", metavar="DOMAIN",
                    help="also accept virtual-host-style requests, <bucket>.DOMAIN/<key> (path-style "
                         "DOMAIN/<bucket>/<key> always works); the certificate then needs *.DOMAIN")
    s3.add_argument("--s3-access-log", type=Path, default=None, metavar="FILE",
                    help="append one JSON line per S3 request to FILE (time, request id, key id, method, "
                         "status, bytes, ms; bucket and key names only for buckets whose policy "
                         "reaches this node)")
    s3.add_argument("--s3-default-policy", default="", metavar="POLICY",
                    help="residency policy of an S3 bucket created without a LocationConstraint")
    s3.add_argument("--s3-upload-expiry", type=float, default=7 * 24 * 3600.0, metavar="SECONDS",
                    help="abort an unfinished multipart upload this long after it was started, freeing its "
                         "parts (default 604800: 7 days)")
    door = DoorLimits()
    s3.add_argument("--s3-max-connections", type=int, default=door.max_connections, metavar="N",
                    help="S3 connections open at once; more are closed as they arrive, so a flood of "
                         f"connections cannot take the node's file descriptors (default {door.max_connections}; "
                         "never more than the open files limit leaves once gRPC's reserve is kept)")
    s3.add_argument("--s3-max-connections-per-address", type=int, default=door.max_per_address, metavar="N",
                    help="S3 connections open at once from one source address (default "
                         f"{door.max_per_address}; raise it for many clients behind one NAT or proxy)")
    s3.add_argument("--s3-max-requests", type=int, default=door.max_requests, metavar="N",
                    help=f"S3 requests handled at once; more are answered 503 SlowDown (default {door.max_requests})")
    ops = run.add_argument_group(
        "ops port", "Prometheus metrics and the probes of an orchestrator, over HTTPS with this node's certificate.")
    ops.add_argument("--ops-listen", metavar="HOST:PORT",
                     help="serve /metrics (bearer scrape token), /livez and /readyz (no credential, a word "
                          "only) on this address; see deploy/prometheus/scrape.yml")
    ops.add_argument("--ops-token-file", type=Path, metavar="FILE",
                     help="the scrape token /metrics asks for, at least 32 characters (default: "
                          "<trust-dir>/metrics.token; make one with `openssl rand -hex 32`)")
    port = GrpcLimits()
    grpc_port = run.add_argument_group(
        "gRPC port", "What one caller (client or node) can make the node hold, and for how long; seconds "
                     "unless said otherwise. The SDK's and the peers' own deadlines are shorter.")
    grpc_port.add_argument("--grpc-max-connections", type=int, default=port.max_connections, metavar="N",
                           help="gRPC connections open at once, from clients and peers (each peer may hold three); "
                                "more are closed as they arrive (default "
                                f"{port.max_connections}; never more than the open files limit leaves once the S3 "
                                "port's and the stores' are kept). Per source address, use the host's firewall")
    grpc_port.add_argument("--grpc-max-streams", type=int, default=port.max_streams, metavar="N",
                           help="calls at once on one connection; more wait for one to end "
                                f"(default {port.max_streams})")
    grpc_port.add_argument("--grpc-handshake-timeout", type=float, default=port.handshake_timeout,
                           metavar="SECONDS", help="a connection not through its TLS handshake within this is "
                                                   f"closed (default {port.handshake_timeout:g})")
    grpc_port.add_argument("--grpc-idle-timeout", type=float, default=port.idle_timeout, metavar="SECONDS",
                           help="a connection that carries no call for this long is closed (GOAWAY; clients "
                                f"reconnect when they call again) (default {port.idle_timeout:g})")
    grpc_port.add_argument("--grpc-keepalive", type=float, default=port.keepalive_time, metavar="SECONDS",
                           help="the node pings each connection this often and drops one whose peer does not "
                                f"answer within {KEEPALIVE_TIMEOUT:g} s (default {port.keepalive_time:g})")
    grpc_port.add_argument("--grpc-max-connection-age", type=float, default=port.max_connection_age,
                           metavar="SECONDS", help="a connection this old is asked to go (its calls get "
                                                   "--grpc-bulk-timeout to finish; clients reconnect) "
                                                   f"(default {port.max_connection_age:g})")
    grpc_port.add_argument("--grpc-message-timeout", type=float, default=port.message_timeout, metavar="SECONDS",
                           help="a call whose caller sends nothing for this long while the node waits for its "
                                "request or its next message (a chunk at most) is ended DEADLINE_EXCEEDED "
                                f"(default {port.message_timeout:g})")
    grpc_port.add_argument("--grpc-call-timeout", type=float, default=port.call_timeout, metavar="SECONDS",
                           help="ceiling of a control call (every method but the bulk ones), whatever the "
                                f"caller's deadline (default {port.call_timeout:g})")
    grpc_port.add_argument("--grpc-bulk-timeout", type=float, default=port.bulk_timeout, metavar="SECONDS",
                           help="ceiling of a bulk call (PutObject, PutSmallObject, PutChunk, GetChunk, "
                                "CopyObject): an upload through the SDK must end within it "
                                f"(default {port.bulk_timeout:g})")
    run.add_argument("--chunk-size", type=_chunk_size, default=DEFAULT_CHUNK_SIZE, metavar="BYTES",
                     help=f"chunk size in bytes (default {DEFAULT_CHUNK_SIZE}; at most {MAX_CHUNK_PLAIN}, the "
                          "largest chunk any node reads)")
    run.add_argument("--no-fsync", action="store_true",
                     help="skip fsync (unsafe: for throwaway benchmarks only)")
    timing = run.add_argument_group("cluster life (seconds unless said otherwise)")
    timing.add_argument("--heartbeat-interval", type=float, default=1.0,
                        help="membership protocol period: one peer probed per period (default 1)")
    timing.add_argument("--suspect-after", type=float, default=5.0,
                        help="floor of the suspicion timeout (x log10 of the node count); a probe "
                             "without ack suspects a peer and routes around it at once (default 5)")
    timing.add_argument("--down-after", type=float, default=300.0,
                        help="mark-out grace: suspicion after which a peer's data is re-replicated "
                             "elsewhere (default 300)")
    timing.add_argument("--repair-interval", type=float, default=30.0,
                        help="pause between anti-entropy rounds (default 30)")
    timing.add_argument("--repair-rate", type=float, default=100.0,
                        help="repair/rebalance bandwidth cap of this node in MB/s (default 100)")
    timing.add_argument("--scrub-rate", type=float, default=8.0,
                        help="background re-read and re-hash rate in MB/s; 0 disables (default 8)")
    timing.add_argument("--scrub-interval", type=float, default=3600.0,
                        help="pause between two scrub passes over every stored frame (default 3600)")
    timing.add_argument("--lifecycle-interval", type=float, default=3600.0, metavar="SECONDS",
                        help="pause between two sweeps applying the lifecycle rules of the buckets this "
                             "node leads (S3 PutBucketLifecycleConfiguration; default 3600)")
    timing.add_argument("--gc-grace", type=float, default=3600.0,
                        help="age before tombstones and unreferenced chunks may be removed (default 3600)")
    timing.add_argument("--gc-interval", type=float, default=None,
                        help="pause between chunk GC passes (default: the smaller of 600 and --gc-grace)")
    timing.add_argument("--max-clock-drift", type=float, default=300.0, metavar="SECONDS",
                        help="refuse object versions further ahead of this node's clock (default 300)")
    timing.add_argument("--green-carbon", type=_green_carbon, default=GREEN_CARBON, metavar="GCO2_PER_KWH",
                        help="grid carbon intensity at or under which this site's power counts as green: "
                             "deferrable background work (scrub, GC, rebalance, hand-back) waits for "
                             f"green power or a local surplus until its deadline nears (default {GREEN_CARBON:g})")
    run.add_argument("--upload-budget", type=int, default=256, metavar="MIB",
                     help="memory for upload bytes in flight on this node; past it uploads wait, then "
                          "fail with Overloaded (default 256)")
    run.add_argument("--no-membership-datagrams", action="store_true",
                     help="probe peers over gRPC only; by default membership probes are sealed UDP "
                          "datagrams on the UDP port of the same number as the gRPC port (open both), "
                          "with gRPC whenever a datagram is not answered")
    run.add_argument("--insecure-plaintext", action="store_true",
                     help="BENCHMARKS ONLY: serve without TLS and without authentication (every caller "
                          "is trusted), to measure what they cost; never on a real mesh")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-format", default="text", choices=["text", "json"],
                     help="text lines, or one JSON object per line (time, level, logger, node, request_id, "
                          "message) for a log pipeline; both carry the request id shared across nodes")
    run.set_defaults(func=run_command)


def _green_carbon(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 5000:   # nan fails too
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a carbon intensity in gCO2/kWh, 0 to 5000")
    return value


def _chunk_size(text: str) -> int:
    try:
        return check_chunk_size(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_s3_args(args: argparse.Namespace) -> None:
    from maillage.cli.common import CommandError

    given = [flag for flag, value in (("--s3-tls-cert", args.s3_tls_cert), ("--s3-tls-key", args.s3_tls_key),
                                      ("--s3-plain-http", args.s3_plain_http), ("--s3-domain", args.s3_domain),
                                      ("--s3-access-log", args.s3_access_log),
                                      ("--s3-default-policy", args.s3_default_policy)) if value]
    if given and not args.s3_listen:
        raise CommandError(f"{', '.join(given)}: only with --s3-listen HOST:PORT")
    if (args.s3_tls_cert is None) != (args.s3_tls_key is None):
        raise CommandError("--s3-tls-cert and --s3-tls-key go together: the certificate and its private key")
    if args.s3_plain_http and args.s3_tls_cert is not None:
        raise CommandError("--s3-plain-http serves without TLS: drop it, or --s3-tls-cert/--s3-tls-key")
    _require_positive([("--s3-upload-expiry", args.s3_upload_expiry)])
    for flag, value in (("--s3-max-connections", args.s3_max_connections),
                        ("--s3-max-connections-per-address", args.s3_max_connections_per_address),
                        ("--s3-max-requests", args.s3_max_requests)):
        if value < 1:
            raise CommandError(f"{flag} must be at least 1")


def _check_ops_args(args: argparse.Namespace) -> None:
    """A scrape token that cannot be used stops the node before it starts, in one line."""
    from maillage.cli.common import CommandError

    if args.ops_token_file is not None and not args.ops_listen:
        raise CommandError("--ops-token-file: only with --ops-listen HOST:PORT")
    if args.ops_listen:
        from maillage.node.metrics.ops import TOKEN_FILE, ScrapeToken

        try:
            ScrapeToken.from_file(args.ops_token_file or args.trust_dir / TOKEN_FILE)
        except ValueError as err:
            raise CommandError(f"--ops-listen: {err}") from None


def _check_grpc_args(args: argparse.Namespace) -> GrpcLimits:
    from maillage.cli.common import CommandError

    for flag, count in (("--grpc-max-connections", args.grpc_max_connections),
                        ("--grpc-max-streams", args.grpc_max_streams)):
        if count < 1:
            raise CommandError(f"{flag} must be at least 1")
    _require_positive([("--grpc-handshake-timeout", args.grpc_handshake_timeout),
                       ("--grpc-idle-timeout", args.grpc_idle_timeout),
                       ("--grpc-keepalive", args.grpc_keepalive),
                       ("--grpc-max-connection-age", args.grpc_max_connection_age),
                       ("--grpc-message-timeout", args.grpc_message_timeout),
                       ("--grpc-call-timeout", args.grpc_call_timeout),
                       ("--grpc-bulk-timeout", args.grpc_bulk_timeout)])
    return GrpcLimits(max_connections=args.grpc_max_connections, max_streams=args.grpc_max_streams,
                      handshake_timeout=args.grpc_handshake_timeout, idle_timeout=args.grpc_idle_timeout,
                      keepalive_time=args.grpc_keepalive, max_connection_age=args.grpc_max_connection_age,
                      message_timeout=args.grpc_message_timeout, call_timeout=args.grpc_call_timeout,
                      bulk_timeout=args.grpc_bulk_timeout)


def _require_positive(flags: list[tuple[str, float]]) -> None:
    """CommandError naming the first flag whose value is not above zero (nan included)."""
    from maillage.cli.common import CommandError

    for flag, value in flags:
        if not value > 0:
            raise CommandError(f"{flag} must be positive, not {value:g}")


def _check_timing_args(args: argparse.Namespace) -> None:
    """Refuse, in one line, the timings the node's parts would refuse with a traceback."""
    from maillage.cli.common import CommandError

    positive = [("--heartbeat-interval", args.heartbeat_interval), ("--suspect-after", args.suspect_after),
                ("--down-after", args.down_after), ("--repair-interval", args.repair_interval),
                ("--repair-rate", args.repair_rate), ("--scrub-rate", args.scrub_rate),
                ("--scrub-interval", args.scrub_interval), ("--lifecycle-interval", args.lifecycle_interval),
                ("--gc-grace", args.gc_grace), ("--max-clock-drift", args.max_clock_drift),
                ("--upload-budget", args.upload_budget)]
    if args.gc_interval is not None:
        positive.append(("--gc-interval", args.gc_interval))
    _require_positive(positive)
    if args.down_after < args.suspect_after:
        raise CommandError(f"--down-after ({args.down_after:g} s) must be at least --suspect-after "
                           f"({args.suspect_after:g} s): a peer is suspected before it is marked out")


def run_command(args: argparse.Namespace) -> int:
    from maillage.cli.common import CommandError
    from maillage.storage import DataFormatError

    _check_s3_args(args)
    _check_ops_args(args)
    grpc_limits = _check_grpc_args(args)
    _check_timing_args(args)
    from maillage.node.runtime.logs import configure

    configure(args.log_level, args.log_format, args.id)
    try:
        _run(args, grpc_limits)
    except DataFormatError as exc:  # a rollback onto a directory a newer release wrote: one line, exit 1
        raise CommandError(str(exc)) from None
    return 0


def _run(args: argparse.Namespace, grpc_limits: GrpcLimits) -> None:
    from maillage.node.daemon.server import NodeConfig, Timings, run_node

    run_node(NodeConfig(node_id=args.id, data_dir=args.data_dir, trust_dir=args.trust_dir,
                        layout_file=args.layout, seeds=tuple(args.seed),
                        listen=args.listen, fsync=not args.no_fsync, chunk_size=args.chunk_size,
                        insecure_plaintext=args.insecure_plaintext, data_key=args.data_key,
                        s3_listen=args.s3_listen, s3_default_policy=args.s3_default_policy,
                        s3_tls_cert=args.s3_tls_cert, s3_tls_key=args.s3_tls_key,
                        s3_plain_http=args.s3_plain_http, s3_domain=args.s3_domain,
                        s3_access_log=args.s3_access_log,
                        s3_limits=DoorLimits(max_connections=args.s3_max_connections,
                                             max_per_address=args.s3_max_connections_per_address,
                                             max_requests=args.s3_max_requests),
                        grpc_limits=grpc_limits, ops_listen=args.ops_listen, ops_token_file=args.ops_token_file,
                        membership_datagrams=not args.no_membership_datagrams,
                        timings=Timings(
                            heartbeat_interval=args.heartbeat_interval, suspect_after=args.suspect_after,
                            down_after=args.down_after, repair_interval=args.repair_interval,
                            repair_rate=args.repair_rate * 1e6, scrub_rate=args.scrub_rate * 1e6,
                            scrub_interval=args.scrub_interval,
                            gc_grace=args.gc_grace, gc_interval=args.gc_interval,
                            max_clock_drift=args.max_clock_drift,
                            upload_budget=args.upload_budget * 1024 * 1024,
                            upload_expiry=args.s3_upload_expiry, green_carbon=args.green_carbon,
                            lifecycle_interval=args.lifecycle_interval)))


def rotate_command(args: argparse.Namespace) -> int:
    from maillage.cli.common import CommandError
    from maillage.storage import DataKeys, MetaStore, NodeKey, StorageError, check_data_format

    if args.new_data_key.exists():
        raise CommandError(f"{args.new_data_key} exists: the new key never overwrites a file")
    try:
        check_data_format(args.data_dir, create=False)
        old = NodeKey.load(args.data_key)
        meta = MetaStore(args.data_dir / "meta")
    except StorageError as exc:
        raise CommandError(f"{exc} (is the node stopped?)") from None
    try:
        keys = DataKeys(meta, old)
        count = keys.rewrap(NodeKey.create(args.new_data_key))
    except StorageError as exc:
        raise CommandError(str(exc)) from None
    finally:
        meta.close()
    print(f"re-wrapped {count} data key{'s' if count != 1 else ''} under {args.new_data_key}; start the node "
          f"with --data-key {args.new_data_key}, then delete {args.data_key}")
    return 0
