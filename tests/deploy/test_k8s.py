"""The Kubernetes manifests of deploy/k8s validate against the Kubernetes schemas (kubernetes-validate
ships them: no cluster, no network), and say what deploy/README.md and the node promise: the ops
port's probes over HTTPS, non-root read-only containers, sized resources, Services on named ports."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VERSION = "1.30.0"  # the oldest Kubernetes the manifests are checked against (fields they use exist there)


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def test_every_manifest_validates_strictly():
    docs = documents()
    assert {d["kind"] for _, d in docs} >= {"StatefulSet", "Service", "PodDisruptionBudget", "Namespace"}
    for name, doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)  # raises ValidationError with the path
        assert doc["metadata"]["name"], name


def test_the_validator_refuses_a_wrong_manifest():
    """The check has teeth: an unknown field and a wrong type are refused."""
    sts = by_kind("StatefulSet")[0]
    typo = copy.deepcopy(sts)
    typo["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, VERSION, strict=True)
    wrong = copy.deepcopy(sts)
    wrong["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, VERSION, strict=True)


def node_container(sts: dict) -> dict:
    return next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "node")


def test_probes_use_the_ops_port_over_https():
    node = node_container(by_kind("StatefulSet")[0])
    ops = next(p for p in node["ports"] if p["name"] == "ops")
    assert f"--ops-listen=0.0.0.0:{ops['containerPort']}" in node["args"]
    for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = node[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == (path, "ops", "HTTPS"), probe


def test_containers_run_as_non_root_on_a_read_only_root():
    pod = by_kind("StatefulSet")[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"] + pod["initContainers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_data_lives_on_a_claim_and_the_keys_in_memory():
    sts = by_kind("StatefulSet")[0]
    node = node_container(sts)
    mounts = {m["name"]: m["mountPath"] for m in node["volumeMounts"]}
    assert [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    assert f"--data-dir={mounts['data']}" in node["args"] and f"--trust-dir={mounts['trust']}" in node["args"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["trust"]["emptyDir"]["medium"] == "Memory"
    assert "secretName" in volumes["secrets"]["secret"]


def test_services_select_the_nodes_and_name_their_ports():
    sts = by_kind("StatefulSet")[0]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in node_container(sts)["ports"]}
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    assert sts["spec"]["serviceName"] in services
    assert services[sts["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    served = set()
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
            served.add(port["targetPort"])
    assert served == {"grpc", "membership", "s3", "ops"}
    # membership datagrams: UDP on the gRPC port's number, reachable by name on the headless service
    by_name = {p["name"]: p for p in node_container(sts)["ports"]}
    assert by_name["membership"]["protocol"] == "UDP"
    assert by_name["membership"]["containerPort"] == by_name["grpc"]["containerPort"]
    assert "membership" in {p["targetPort"] for p in services[sts["spec"]["serviceName"]]["spec"]["ports"]}
