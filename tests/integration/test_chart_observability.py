"""The chart's observability pieces: the dashboard's operator panels and the PrometheusRule.

- the dashboard's tidings_operator_* queries name series the operator exports (its own
  registry, ``tidings_operator.metrics.REGISTRY``), the per-ChatCluster ones follow the
  dashboard's ChatCluster variable, and no two panels overlap;
- ``prometheusRule.enabled`` (off by default) renders one PrometheusRule whose every alert
  expression names series the operator or the workloads export, with balanced brackets
  (no promtool here: the names, the functions and the brackets are what is checked), a
  ``for``, a severity and a summary; the API server accepts it (dry-run, strict) against a
  stand-in of the Prometheus Operator's CRD with the fields the rule uses.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from test_chart import _DURATION, CHART, FIELD_MANAGER, Run, _runner, render

# The dashboard tests read its JSON and need no helm; the PrometheusRule's are marked helm.
pytestmark = [pytest.mark.timeout(300)]

DASHBOARD = CHART / "dashboards" / "tidings.json"
METRIC = re.compile(r"\btidings_[a-z_]+\b")
# The PromQL functions and aggregations the chart's queries may use.
FUNCTIONS = {
    "absent",
    "rate",
    "increase",
    "sum",
    "max",
    "histogram_quantile",
    "by",
    "count",
    "deriv",
}


def _series(registry: CollectorRegistry, prefix: str) -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    out: set[str] = set()
    for family in registry.collect():
        if family.name.startswith(prefix):
            out |= {family.name + s for s in suffixes.get(family.type, [""])}
    return out


def operator_series() -> set[str]:
    from tidings_operator.metrics import REGISTRY

    return _series(REGISTRY, "tidings_operator_")


def workload_series() -> set[str]:
    from prometheus_client import REGISTRY

    import tidings.metrics  # noqa: F401  (registers the metrics)

    return _series(REGISTRY, "tidings_")


def _check_promql(expr: str) -> None:
    """What can be checked without a PromQL parser: brackets, functions, no template left."""
    assert "{{" not in expr and "}}" not in expr, f"template text left in {expr!r}"
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for ch in re.sub(r'"[^"]*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            assert stack and stack.pop() == pairs[ch], f"unbalanced brackets in {expr!r}"
    assert not stack, f"unbalanced brackets in {expr!r}"
    calls = set(re.findall(r"\b([a-z_]+)\s*\(", expr)) - {"le", "step", "reason", "name"}
    assert calls <= FUNCTIONS, f"unexpected functions {sorted(calls - FUNCTIONS)} in {expr!r}"


# --- the dashboard -------------------------------------------------------------------------


def test_dashboard_operator_panels_use_series_the_operator_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in METRIC.findall(e) if m.startswith("tidings_operator_")}
    exported = operator_series()
    assert used <= exported, f"not exported by the operator: {sorted(used - exported)}"
    # Reconcile duration and errors, rollout progress, autoscale decisions, the leader.
    for wanted in (
        "tidings_operator_reconcile_duration_seconds_bucket",
        "tidings_operator_reconcile_errors_total",
        "tidings_operator_rollout_replacements_total",
        "tidings_operator_chat_replicas_desired",
        "tidings_operator_chat_replicas_actual",
        "tidings_operator_active",
    ):
        assert wanted in used, wanted
    for expr in exprs:
        _check_promql(expr.replace("$__rate_interval", "5m"))
    # A ChatCluster's own series follow the ChatCluster picked at the top (its name label;
    # its namespace label is the operator's once scraped).
    from tidings_operator.metrics import _PER_CLUSTER

    per_cluster = {m._name for m in _PER_CLUSTER}
    for expr in exprs:
        for name in METRIC.findall(expr):
            if any(name.startswith(base) for base in per_cluster):
                assert re.search(rf'{name}\{{name=~"\$cluster"\}}', expr), expr


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


# --- the PrometheusRule --------------------------------------------------------------------


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


@pytest.mark.helm
def test_prometheus_rule_is_off_by_default(helm: Run) -> None:
    assert not [d for d in render(helm) if d["kind"] == "PrometheusRule"]


@pytest.mark.helm
def test_prometheus_rule_alerts_on_series_that_exist(helm: Run) -> None:
    docs = render(
        helm,
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "prometheusRule.connectionsPerServer=1000000",
    )
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "tidings"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = _rules(docs)
    alerts = {r["alert"]: r for r in rules}
    assert set(alerts) == {
        "TidingsOperatorNotActive",
        "TidingsOperatorReconcileFailing",
        "TidingsChatServersMissing",
        "TidingsRolloutHalted",
        "TidingsChatServersNotReady",
        "TidingsChatConnectionsNearTarget",
        "TidingsInboxLagGrowing",
    }
    exported = operator_series() | workload_series()
    for name, alert in alerts.items():
        expr = str(alert["expr"])
        used = set(METRIC.findall(expr))
        assert used, f"{name} reads no tidings series"
        assert used <= exported, f"{name}: not exported: {sorted(used - exported)}"
        _check_promql(expr)
        assert re.fullmatch(r"[0-9]+[smh]", alert["for"]), name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
    # The threshold is written as an integer PromQL reads (not 1e+06).
    assert str(alerts["TidingsChatConnectionsNearTarget"]["expr"]).rstrip().endswith("> 1000000")


@pytest.mark.helm
def test_prometheus_rule_refuses_a_bad_threshold(helm: Run) -> None:
    proc = helm(
        "template",
        "demo",
        str(CHART),
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.connectionsPerServer=0",
        check=False,
    )
    assert proc.returncode != 0
    assert "/prometheusRule/connectionsPerServer" in proc.stderr, proc.stderr


_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
# The Prometheus Operator's own types for the fields the chart sets.
_RULE = {
    "type": "object",
    "required": ["expr"],
    "properties": {
        "alert": {"type": "string"},
        "expr": {"x-kubernetes-int-or-string": True},
        "for": {"type": "string", "pattern": _DURATION},
        "labels": _STRINGS,
        "annotations": _STRINGS,
    },
}
_GROUP = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "rules": {"type": "array", "items": _RULE},
    },
}
_RULE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "prometheusrules.monitoring.coreos.com",
        "labels": {"tidings.dev/test-fixture": "test_chart_observability"},
    },
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "PrometheusRule",
            "listKind": "PrometheusRuleList",
            "plural": "prometheusrules",
            "singular": "prometheusrule",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"groups": {"type": "array", "items": _GROUP}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def helm(testenv: Any, tmp_path_factory: pytest.TempPathFactory) -> Run:
    home = tmp_path_factory.mktemp("helm")
    env = {
        "PATH": "/usr/bin:/bin",
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return _runner(Path(testenv["TIDINGS_TEST_BIN_DIR"]) / "helm", [], env)


@pytest.fixture
def kubectl(testenv: Any, tmp_path: Path) -> Run:
    return _runner(
        Path(testenv["TIDINGS_TEST_BIN_DIR"]) / "kubectl",
        [
            f"--kubeconfig={testenv['TIDINGS_TEST_KUBECONFIG']}",
            f"--cache-dir={tmp_path / 'kube-cache'}",
            "--request-timeout=30s",
        ],
        {"PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def namespace(kubectl: Run) -> Iterator[str]:
    name = f"rule-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")


@pytest.mark.helm
@pytest.mark.kube
def test_prometheus_rule_is_accepted_by_the_api_server(
    helm: Run, kubectl: Run, namespace: str
) -> None:
    """Left installed, as test_chart's monitor stand-ins: other tests share the cluster.
    Where the real Prometheus Operator CRD is installed, that one judges."""
    name = _RULE_CRD["metadata"]["name"]
    if not kubectl("get", "crd", name, "--ignore-not-found", "-o", "name").stdout.strip():
        created = kubectl("create", "-f", "-", input=json.dumps(_RULE_CRD), check=False)
        assert created.returncode == 0 or "AlreadyExists" in created.stderr, created.stderr
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}", timeout=90)
    docs = [
        d
        for d in render(helm, "--set", "prometheusRule.enabled=true", namespace=namespace)
        if d["kind"] == "PrometheusRule"
    ]
    assert len(docs) == 1
    proc: subprocess.CompletedProcess[str] = kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=yaml.safe_dump(docs[0], sort_keys=False),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(server dry run)" in proc.stdout and "Warning" not in proc.stderr, proc.stderr
