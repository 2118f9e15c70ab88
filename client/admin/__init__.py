"""The admin API of the SDK: layout changes, status, repair, audit, signed residency reports and
residency proofs.

What `maillage layout|status|repair|audit|where` and the demo print is computed here, so tests,
benchmarks and the fault harness use the same code as the command line (which only parses
arguments and renders). Calls are blocking (admin work runs outside an event loop) and fan out to
every node of the layout in parallel; a node that does not answer is reported, never hidden.

    from maillage.client import resolve_profile
    from maillage.client.admin import ClusterAdmin, collect_audit
    admin_profile = resolve_profile(profile="admin")        # an admin access key
    report = collect_audit(admin_profile)
    with ClusterAdmin(admin_profile) as admin:
        print(admin.statuses())
"""

from maillage.client.admin._audit import (
    AuditReport,
    Finding,
    Inventory,
    PolicyTally,
    collect_audit,
    evaluate,
    fetch_inventories,
    reconcile,
    record_findings,
)
from maillage.client.admin._bootstrap import (
    ACCESS_FILE,
    ADMIN_PROFILE_FILE,
    NODE_KEYS_FILE,
    NewCluster,
    client_trust_dir,
    init_cluster,
    load_signer,
    node_trust_dir,
    pin_certificate,
    pin_layout,
    read_access_file,
    read_node_keys,
    record_node_key,
    signed_node_access,
    write_access_file,
    write_node_access_file,
    write_signed_layout,
)
from maillage.client.admin._cluster import ClusterAdmin, NodeAnswers, Staged
from maillage.client.admin._connect import AdminError, AuditError, check_admin_key, fetch_layout
from maillage.client.admin._report import (
    ReportError,
    VerifiedReport,
    report_body,
    sign_report,
    verify_report,
)
from maillage.client.admin._residency import (
    Holding,
    ObjectResidency,
    bucket_violations,
    fetch_manifest,
    sites_of,
    survey,
)
from maillage.client.admin._status import mesh_views, repair_fields, status_rows

__all__ = [
    "ACCESS_FILE", "ADMIN_PROFILE_FILE", "NODE_KEYS_FILE", "NewCluster", "client_trust_dir", "init_cluster",
    "load_signer", "node_trust_dir", "pin_certificate", "pin_layout", "read_access_file", "read_node_keys",
    "record_node_key", "signed_node_access", "write_access_file", "write_node_access_file", "write_signed_layout",
    "AdminError", "AuditError", "AuditReport", "check_admin_key", "ClusterAdmin", "Holding", "Inventory", "NodeAnswers",
    "ObjectResidency", "Staged", "bucket_violations", "collect_audit", "evaluate", "fetch_inventories",
    "fetch_layout", "fetch_manifest", "reconcile", "mesh_views", "Finding", "PolicyTally", "record_findings",
    "ReportError", "VerifiedReport", "report_body", "sign_report", "verify_report", "repair_fields", "sites_of",
    "status_rows", "survey",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "maillage.client.admin"
