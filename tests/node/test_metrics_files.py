"""The shipped alert rules and dashboard: valid (promtool, JSON), and naming only metrics a node
exports (a renamed metric would otherwise leave an alert that can never fire)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from maillage.node.metrics.registry import exported_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
SCRAPE = ROOT / "deploy" / "prometheus" / "scrape.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "maillage.json"
# Series names in PromQL: identifiers followed by a selector, a range or the end of a term, that
# are neither functions nor keywords.
_NAME = re.compile(r"\b((?:maillage|process)_[a-z_]+)\b")
PROMETHEUS_OWN = {"up"}


def expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"]]
    return exprs


def test_rules_and_dashboard_name_only_exported_metrics():
    exprs = expressions()
    assert len(exprs) > 20
    named = {m for e in exprs for m in _NAME.findall(e)}
    assert named, "no metric found: the pattern is wrong"
    assert named <= exported_names(), sorted(named - exported_names())
    assert 'up{job="maillage"}' in RULES.read_text()  # Prometheus's own series, of the job of scrape.yml
    assert yaml.safe_load(SCRAPE.read_text())["scrape_configs"][0]["job_name"] == "maillage"


def test_the_dashboard_is_grafana_json_with_unique_panel_ids():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["title"]
    assert all(p["targets"] and p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"])


def test_promtool_checks_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: .ci/run installs it (apt-get install -y prometheus)")
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
