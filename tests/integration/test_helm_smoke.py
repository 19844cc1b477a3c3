"""Smoke test: the test environment's helm binary lints and renders a chart."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.helm, pytest.mark.timeout(120)]

CHART_YAML = """\
apiVersion: v2
name: smoke
description: Tiny chart for the helm smoke test.
type: application
version: 0.1.0
appVersion: "1.2.3"
"""

VALUES_YAML = """\
replicaCount: 1
greeting: hello
image:
  repository: registry.invalid/tidings/smoke
  tag: ""
"""

DEPLOYMENT_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      containers:
        - name: app
          {{- $tag := .Values.image.tag | default .Chart.AppVersion }}
          image: "{{ .Values.image.repository }}:{{ $tag }}"
          env:
            - name: GREETING
              value: {{ .Values.greeting | quote }}
"""

CONFIGMAP_YAML = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
  namespace: {{ .Release.Namespace }}
data:
  greeting: {{ .Values.greeting | upper | quote }}
"""


@pytest.fixture
def helm(testenv, tmp_path: Path):  # type: ignore[no-untyped-def]
    binary = Path(testenv["TIDINGS_TEST_BIN_DIR"]) / "helm"
    assert binary.is_file(), f"no helm binary at {binary}"
    env = {
        **os.environ,
        # Keep helm's config, cache and data inside the test's tmp dir.
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }

    def run(*args: str) -> str:
        proc = subprocess.run(
            [str(binary), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    return run


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    root = tmp_path / "smoke"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(CHART_YAML)
    (root / "values.yaml").write_text(VALUES_YAML)
    (root / "templates" / "deployment.yaml").write_text(DEPLOYMENT_YAML)
    (root / "templates" / "configmap.yaml").write_text(CONFIGMAP_YAML)
    return root


def test_helm_version(helm) -> None:  # type: ignore[no-untyped-def]
    assert helm("version", "--short").startswith("v3.")


def test_helm_lint(helm, chart: Path) -> None:  # type: ignore[no-untyped-def]
    out = helm("lint", "--strict", str(chart))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_helm_template_renders_values(helm, chart: Path) -> None:  # type: ignore[no-untyped-def]
    out = helm(
        "template",
        "demo",
        str(chart),
        "--namespace",
        "chat",
        "--set",
        "replicaCount=3",
        "--set",
        "greeting=hi there",
    )
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(out) if doc}
    assert set(docs) == {"Deployment", "ConfigMap"}

    deployment = docs["Deployment"]
    assert deployment["metadata"]["name"] == "demo-smoke"
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.invalid/tidings/smoke:1.2.3"
    assert container["env"] == [{"name": "GREETING", "value": "hi there"}]

    configmap = docs["ConfigMap"]
    assert configmap["metadata"] == {"name": "demo-config", "namespace": "chat"}
    assert configmap["data"] == {"greeting": "HI THERE"}
