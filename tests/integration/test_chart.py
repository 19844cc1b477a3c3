"""The Helm chart (charts/tidings): lint, schema, rendering, and the API server's verdict.

- `helm lint --strict` with the default values and with ci/full-values.yaml (everything on);
- values.schema.json: bad values (wrong type, unknown key, enum, bounds, pattern) rejected
  by helm with the path at fault;
- the CRD in the chart is in `helm template --include-crds` and in the packaged chart;
- the rendered objects agree with the operator they run: its command-line flags (parsed by
  the operator's own parser), the liveness port and path, the API resources it touches
  (tidings_operator.kube.KINDS and its builders' output), the labels and port names of the
  Services and pods the monitors select;
- against the test environment's kube-apiserver: every manifest rendered with the default
  and the full values passes `kubectl apply --dry-run=server --validate=strict` (the
  ServiceMonitor and PodMonitor against stand-in monitoring.coreos.com CRDs), the example
  ChatCluster and its Secrets are accepted and broken ChatClusters refused, and a real
  `helm install` runs the operator's Deployment on the kwok node with RBAC that allows what
  the operator needs and no more (`kubectl auth can-i` as its ServiceAccount).

What only reads the chart's files (metadata, the schema closed and documented, the CRD a
link to crds/'s file, the examples the operator accepts) is in test_chart_files.py, which
needs no `helm` binary.

Each kube test has namespaces of its own (removed after); every wait is bounded. The
ChatCluster CRD is applied from crds/ (server-side, the same file) and left installed,
as are the stand-in monitoring CRDs when this test made them: other tests share the cluster.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.helm, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tidings"
CRD_SOURCE = REPO / "crds" / "chatclusters.tidings.dev.yaml"
CRD_IN_CHART = CHART / "crds" / "chatclusters.tidings.dev.yaml"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
EXAMPLE = REPO / "examples" / "chatcluster.yaml"
# One worked example per exposure mode (spec.chat.expose), besides the main example.
EXPOSE_EXAMPLES = sorted((REPO / "examples" / "expose").glob("*.yaml"))
CRD_NAME = "chatclusters.tidings.dev"

COMMAND_TIMEOUT = 120  # seconds, for any one helm or kubectl run
FIELD_MANAGER = "tidings-chart-tests"

Run = Callable[..., subprocess.CompletedProcess[str]]


# --------------------------------------------------------------------------------------
# helm and kubectl
# --------------------------------------------------------------------------------------


def _runner(binary: Path, base_args: Sequence[str], env: Mapping[str, str]) -> Run:
    def run(
        *args: str, input: str | None = None, check: bool = True, timeout: int = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(binary), *base_args, *args],
            input=input,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert proc.returncode == 0, (
                f"{binary.name} {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture(scope="session")
def bin_dir(testenv) -> Path:  # type: ignore[no-untyped-def]
    path = Path(testenv["TIDINGS_TEST_BIN_DIR"])
    for name in ("helm", "kubectl"):
        assert (path / name).is_file(), f"no {name} binary in {path}"
    return path


@pytest.fixture(scope="session")
def helm(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    home = tmp_path_factory.mktemp("helm")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return _runner(bin_dir / "helm", [], env)


@pytest.fixture(scope="session")
def kubeconfig(testenv) -> str:  # type: ignore[no-untyped-def]
    path = testenv["TIDINGS_TEST_KUBECONFIG"]
    assert Path(path).is_file(), f"no kubeconfig at {path}"
    return str(path)


@pytest.fixture
def kubectl(bin_dir: Path, kubeconfig: str, tmp_path: Path) -> Run:
    # A discovery cache of the test's own: CRDs made moments ago must be known.
    return _runner(
        bin_dir / "kubectl",
        [
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={tmp_path / 'kube-cache'}",
            "--request-timeout=30s",
        ],
        os.environ,
    )


def render(
    helm: Run, *args: str, release: str = "demo", namespace: str = "tidings"
) -> list[dict[str, Any]]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs).get(kind, [])
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


# --------------------------------------------------------------------------------------
# lint, metadata, values and schema
# --------------------------------------------------------------------------------------


def test_lint_strict_default_values(helm: Run) -> None:
    out = helm("lint", "--strict", str(CHART)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_lint_strict_full_values(helm: Run) -> None:
    out = helm("lint", "--strict", str(CHART), "--values", str(FULL_VALUES)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


BAD_VALUES = [
    pytest.param(
        ["--set", "operator.healthPort=http"],
        "/operator/healthPort",
        "want integer",
        id="type-port",
    ),
    pytest.param(
        ["--set-json", 'operator.watchNamespaces="chat"'],
        "/operator/watchNamespaces",
        "want array",
        id="type-list",
    ),
    pytest.param(["--set", "rbac.create=maybe"], "/rbac/create", "want boolean", id="type-bool"),
    pytest.param(
        ["--set", "replicaCount=2"], "at ''", "'replicaCount' not allowed", id="unknown-top"
    ),
    pytest.param(
        ["--set", "operator.replicaCount=2"],
        "/operator",
        "'replicaCount' not allowed",
        id="unknown-nested",
    ),
    pytest.param(
        ["--set", "networkPolicy.kafka.hosts={a}"],
        "/networkPolicy/kafka",
        "'hosts' not allowed",
        id="unknown-deep",
    ),
    pytest.param(
        ["--set", "image.pullPolicy=Sometimes"],
        "/image/pullPolicy",
        "must be one of",
        id="enum-pull",
    ),
    pytest.param(
        ["--set", "operator.logFormat=xml"], "/operator/logFormat", "must be one of", id="enum-log"
    ),
    pytest.param(
        ["--set", "operator.tickSeconds=0"], "/operator/tickSeconds", "minimum", id="bound-tick"
    ),
    pytest.param(
        ["--set", "operator.healthPort=70000"], "/operator/healthPort", "maximum", id="bound-port"
    ),
    pytest.param(
        ["--set", "operator.watchNamespaces={Not_A_Namespace}"],
        "/operator/watchNamespaces/0",
        "does not match pattern",
        id="pattern-namespace",
    ),
    pytest.param(
        ["--set", "operator.resources.requests.cpu=lots"],
        "/operator/resources/requests/cpu",
        "does not match pattern",
        id="pattern-cpu",
    ),
]


@pytest.mark.parametrize(("args", "where", "why"), BAD_VALUES)
def test_schema_rejects_bad_values(helm: Run, args: list[str], where: str, why: str) -> None:
    for command in (["template", "demo", str(CHART)], ["lint", "--strict", str(CHART)]):
        proc = helm(*command, *args, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"helm {command[0]} accepted {args}:\n{out}"
        assert "values don't meet the specifications of the schema" in out, out
        line = next((x for x in out.splitlines() if f"at '{where}" in x or where in x), None)
        assert line is not None and why in line, f"no '{where}: ... {why}' in:\n{out}"


# --------------------------------------------------------------------------------------
# the CRD: one source of truth
# --------------------------------------------------------------------------------------


def test_template_include_crds_renders_the_crds_file(helm: Run) -> None:
    docs = render(helm, "--include-crds")
    crds = by_kind(docs)["CustomResourceDefinition"]
    assert crds == [yaml.safe_load(CRD_SOURCE.read_text())]
    # Without --include-crds the CRD is not among the templates (Helm installs it itself).
    assert "CustomResourceDefinition" not in by_kind(render(helm))


def test_packaged_chart_holds_the_crds_contents(helm: Run, tmp_path: Path) -> None:
    helm("package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("tidings-0.1.0.tgz")
    with tarfile.open(package) as tar:
        member = tar.getmember(f"tidings/crds/{CRD_SOURCE.name}")
        assert member.isfile(), "the package must hold the file, not a link"
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read() == CRD_SOURCE.read_bytes()
        names = tar.getnames()
    assert not [n for n in names if "/ci/" in n], "ci/ values stay out of the package"
    assert "tidings/dashboards/tidings.json" in names


# --------------------------------------------------------------------------------------
# rendering, pinned to the operator it runs
# --------------------------------------------------------------------------------------


def test_default_render_objects(helm: Run) -> None:
    kinds = {k: len(v) for k, v in by_kind(render(helm)).items()}
    assert kinds == {
        "ServiceAccount": 1,
        "ClusterRole": 1,
        "ClusterRoleBinding": 1,
        "Role": 1,  # the leader Lease
        "RoleBinding": 1,
        "Deployment": 1,
        "Lease": 1,  # made by the chart, so that uninstall removes it
    }, kinds


def test_full_render_objects(helm: Run) -> None:
    kinds = {k: len(v) for k, v in by_kind(render(helm, "--values", str(FULL_VALUES))).items()}
    assert kinds == {
        "ServiceAccount": 1,
        "ClusterRole": 1,
        "ClusterRoleBinding": 1,
        "Role": 3,  # chat-a, chat-b, the leader Lease
        "RoleBinding": 3,
        "Deployment": 1,
        "Lease": 1,
        "ServiceMonitor": 1,
        "PodMonitor": 2,  # the push workers, the operator
        "ConfigMap": 1,
        "NetworkPolicy": 1,
    }, kinds


def test_deployment_is_hardened_and_rolls_onto_a_standby(helm: Run) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # The new pod starts first and stands by until the old one releases the leader Lease.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert one(render(helm, "--set", "operator.replicas=2"), "Deployment")["spec"]["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(docs)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # The read-only root filesystem gets a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    selector = spec["selector"]["matchLabels"]
    labels = spec["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert selector["app.kubernetes.io/component"] == "operator"
    for key in ("name", "instance", "version", "managed-by"):
        assert f"app.kubernetes.io/{key}" in deployment["metadata"]["labels"], key


def _parse_operator_args(container: Mapping[str, Any]) -> Any:
    from tidings_operator.__main__ import build_parser

    assert container["command"] == ["python", "-m", "tidings_operator"]
    return build_parser().parse_args(container["args"])


@pytest.mark.parametrize(
    ("args", "namespaces"),
    [
        pytest.param([], [], id="all-namespaces"),
        pytest.param(
            ["--set", "operator.watchNamespaces={chat,chat-staging}"],
            ["chat", "chat-staging"],
            id="listed",
        ),
    ],
)
def test_operator_args_parse_with_the_operators_own_parser(
    helm: Run, args: list[str], namespaces: list[str]
) -> None:
    container = operator_container(render(helm, *args, "--set", "operator.healthPort=8099"))
    parsed = _parse_operator_args(container)
    assert parsed.namespace == namespaces
    assert parsed.all_namespaces is (not namespaces)
    assert parsed.tick_seconds == 2 and parsed.resync_seconds == 60
    assert parsed.log_json is True and parsed.verbose is False
    # The liveness probe asks kopf's liveness endpoint where the operator serves it.
    url = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S*)", parsed.liveness)
    assert url is not None, parsed.liveness
    port, metrics_port = container["ports"]
    assert port == {"name": "health", "containerPort": int(url.group(1)), "protocol": "TCP"}
    assert port["containerPort"] == 8099
    assert metrics_port == {"name": "metrics", "containerPort": 9100, "protocol": "TCP"}
    assert parsed.metrics_port == 9100
    # Leader election: the Lease is named like the Deployment, in the release's namespace.
    deployment = one(render(helm, *args), "Deployment")
    assert parsed.leader_election is True
    assert parsed.lease_name == deployment["metadata"]["name"]
    assert parsed.lease_namespace == deployment["metadata"]["namespace"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    probe = container["livenessProbe"]["httpGet"]
    assert probe == {"path": url.group(2), "port": "health"}


def test_full_values_args_parse(helm: Run) -> None:
    parsed = _parse_operator_args(operator_container(render(helm, "--values", str(FULL_VALUES))))
    assert parsed.namespace == ["chat-a", "chat-b"]
    assert parsed.verbose is True and parsed.log_json is False
    assert parsed.tick_seconds == 2.5
    assert parsed.resync_seconds == 90  # extraArgs come last and win
    assert parsed.metrics_port == 9188


def test_operator_metrics_port_can_be_off_and_is_scraped(helm: Run) -> None:
    off = operator_container(render(helm, "--set", "operator.metricsPort=0"))
    assert _parse_operator_args(off).metrics_port == 0
    assert [p["name"] for p in off["ports"]] == ["health"]
    docs = render(helm, "--values", str(FULL_VALUES))
    monitor = next(
        m for m in by_kind(docs)["PodMonitor"] if m["metadata"]["name"].endswith("-operator")
    )
    pod = one(docs, "Deployment")["spec"]["template"]
    assert _selects(monitor["spec"]["selector"], pod["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {
        "matchNames": [one(docs, "Deployment")["metadata"]["namespace"]]
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    ports = {p["name"]: p["containerPort"] for p in operator_container(docs)["ports"]}
    assert ports["metrics"] == 9188


def _granted(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        for rule in rules
    )


def _operator_needs() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) the operator uses in a watched namespace."""
    from tidings_operator.builders import Owner, build_all
    from tidings_operator.expose import PRUNED_KINDS
    from tidings_operator.kube import KINDS
    from tidings_operator.spec import parse_spec

    needs: set[tuple[str, str, str]] = set()
    for kind in KINDS.values():
        group = kind.api_version.rpartition("/")[0]
        needs.add((group, kind.plural, "get"))
    owner: Owner = {"name": "chat", "namespace": "chat", "uid": "0"}
    for example in (EXAMPLE, *EXPOSE_EXAMPLES):
        chat_cluster = next(
            d for d in yaml.safe_load_all(example.read_text()) if d["kind"] == "ChatCluster"
        )
        for manifest in build_all(
            owner, parse_spec(chat_cluster["spec"]), chat_replicas=2, inbox_partitions=64
        ):
            group = manifest["apiVersion"].rpartition("/")[0]
            plural = KINDS[manifest["kind"]].plural
            needs |= {(group, plural, verb) for verb in ("create", "patch")}
    # The exposure children no longer wanted are found by label and deleted.
    for kind_name in PRUNED_KINDS:
        kind = KINDS[kind_name]
        group = kind.api_version.rpartition("/")[0]
        needs |= {(group, kind.plural, verb) for verb in ("list", "delete")}
    needs |= {
        ("tidings.dev", "chatclusters", "list"),
        ("tidings.dev", "chatclusters", "watch"),
        ("tidings.dev", "chatclusters", "patch"),  # kopf's annotations
        ("tidings.dev", "chatclusters/status", "patch"),
        ("tidings.dev", "chatclusters/finalizers", "update"),  # blockOwnerDeletion
        ("apps", "statefulsets/scale", "patch"),
        ("", "pods/eviction", "create"),
        ("", "events", "create"),
    }
    # The children kopf watches into its indexes (children.py): list and watch.
    needs |= {
        (group, resource, verb)
        for group, resource in (("", "pods"), ("apps", "statefulsets"), ("apps", "deployments"))
        for verb in ("list", "watch")
    }
    return needs


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


# Exactly what the operator is granted in a watched namespace (docs/operator.md, RBAC):
# what it does (_operator_needs), plus chatclusters/status get.
GRANTED = {
    ("tidings.dev", "chatclusters", "get"),
    ("tidings.dev", "chatclusters", "list"),
    ("tidings.dev", "chatclusters", "watch"),
    ("tidings.dev", "chatclusters", "patch"),
    ("tidings.dev", "chatclusters/status", "get"),
    ("tidings.dev", "chatclusters/status", "patch"),
    ("tidings.dev", "chatclusters/finalizers", "update"),
    *{
        (group, resource, verb)
        for group, resource in [
            ("apps", "statefulsets"),
            ("apps", "deployments"),
            ("", "services"),
            ("", "configmaps"),
            ("policy", "poddisruptionbudgets"),
            ("networking.k8s.io", "ingresses"),
            ("gateway.networking.k8s.io", "httproutes"),
            ("gateway.networking.k8s.io", "tlsroutes"),
            ("cert-manager.io", "certificates"),
        ]
        for verb in ("get", "create", "patch")
    },
    # The exposure children (per-pod Services, Ingress, routes, Certificate) are listed by
    # label and those no longer wanted deleted.
    *{
        (group, resource, verb)
        for group, resource in [
            ("", "services"),
            ("networking.k8s.io", "ingresses"),
            ("gateway.networking.k8s.io", "httproutes"),
            ("gateway.networking.k8s.io", "tlsroutes"),
            ("cert-manager.io", "certificates"),
        ]
        for verb in ("list", "delete")
    },
    ("apps", "statefulsets/scale", "patch"),
    # The workloads and chat pods are watched (children.py), by label.
    *{
        (group, resource, verb)
        for group, resource in (("", "pods"), ("apps", "statefulsets"), ("apps", "deployments"))
        for verb in ("list", "watch")
    },
    ("", "pods", "get"),
    ("", "pods/eviction", "create"),
    ("", "secrets", "get"),
    ("", "events", "create"),
}


@pytest.mark.parametrize("listed", [False, True], ids=["clusterrole", "roles"])
def test_rbac_covers_what_the_operator_does(helm: Run, listed: bool) -> None:
    args = ["--set", "operator.watchNamespaces={chat}"] if listed else []
    kinds = by_kind(render(helm, *args))
    cluster_rules = kinds["ClusterRole"][0]["rules"]
    roles = {
        r["metadata"]["namespace"]: r for r in kinds["Role"] if "lease" not in r["metadata"]["name"]
    }
    namespaced_rules = roles["chat"]["rules"] if listed else cluster_rules
    missing = sorted(n for n in _operator_needs() if not _granted(namespaced_rules, *n))
    assert not missing, f"the operator needs {missing}"
    # Nothing more: no updates, no /scale; deletes only of the exposure children; watches
    # only on the ChatClusters, the workloads and the pods.
    granted = _grants(namespaced_rules) - _grants(kinds["ClusterRole"][0]["rules"][:2])
    assert granted == GRANTED, (sorted(granted - GRANTED), sorted(GRANTED - granted))
    assert _operator_needs() <= GRANTED
    assert _grants(cluster_rules[:2]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    }
    for verb in ("get", "list", "watch"):
        assert _granted(cluster_rules, "apiextensions.k8s.io", "customresourcedefinitions", verb)
    # Read-only where it should be, and no kopf peering objects (the operator is standalone).
    assert not any(
        _granted(namespaced_rules, "", "secrets", v)
        for v in ("list", "watch", "create", "patch", "delete")
    )
    groups = {g for rule in cluster_rules + namespaced_rules for g in rule["apiGroups"]}
    assert not {g for g in groups if "kopf" in g or "zalando" in g}, groups
    if listed:
        assert not _granted(cluster_rules, "tidings.dev", "chatclusters", "list"), (
            "listed: no cluster-wide access"
        )
        (binding,) = [b for b in kinds["RoleBinding"] if b["metadata"]["namespace"] == "chat"]
        assert binding["roleRef"]["name"] == roles["chat"]["metadata"]["name"]
    # The leader Lease, in the release's namespace, and nothing else there.
    (lease_role,) = [r for r in kinds["Role"] if "lease" in r["metadata"]["name"]]
    assert lease_role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]


def test_exposure_grants_can_be_left_out(helm: Run) -> None:
    """rbac.expose: a site without an ingress controller, the Gateway API or cert-manager
    grants the operator nothing on them (Services stay: every mode but none uses them)."""
    kinds = by_kind(
        render(
            helm,
            "--set",
            "rbac.expose.ingresses=false",
            "--set",
            "rbac.expose.gatewayRoutes=false",
            "--set",
            "rbac.expose.certificates=false",
        )
    )
    groups = {g for rule in kinds["ClusterRole"][0]["rules"] for g in rule["apiGroups"]}
    assert not groups & {"networking.k8s.io", "gateway.networking.k8s.io", "cert-manager.io"}
    assert _granted(kinds["ClusterRole"][0]["rules"], "", "services", "delete")


def test_rbac_and_service_account_can_be_left_out(helm: Run) -> None:
    docs = render(
        helm,
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=ops",
    )
    assert set(by_kind(docs)) == {"Deployment", "Lease"}  # the Lease is not RBAC
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions") or []:
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_monitors_select_the_operators_workloads(helm: Run) -> None:
    """The ServiceMonitor finds the chat and api Services the operator builds, the
    PodMonitor the push pods - each on the port named metrics, where the pods serve
    TIDINGS_METRICS_PORT (never the public port http) - with the labels the dashboard
    filters on."""
    from tidings_operator.builders import Owner, build_all
    from tidings_operator.names import LABEL_COMPONENT
    from tidings_operator.spec import parse_spec

    kinds = by_kind(render(helm, "--values", str(FULL_VALUES)))
    service_monitor, pod_monitor = (
        kinds["ServiceMonitor"][0]["spec"],
        kinds["PodMonitor"][0]["spec"],
    )
    assert service_monitor["namespaceSelector"] == {"matchNames": ["chat-a", "chat-b"]}

    chat_cluster = next(
        d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "ChatCluster"
    )
    owner: Owner = {"name": "chat", "namespace": "chat-a", "uid": "0"}
    built = build_all(owner, parse_spec(chat_cluster["spec"]), chat_replicas=2, inbox_partitions=64)

    services = [m for m in built if m["kind"] == "Service"]
    selected = [
        s for s in services if _selects(service_monitor["selector"], s["metadata"]["labels"])
    ]
    components = sorted(s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected)
    assert components == ["api", "chat"]
    (config_map,) = [m for m in built if m["kind"] == "ConfigMap"]
    metrics_port = int(config_map["data"]["TIDINGS_METRICS_PORT"])
    assert config_map["data"]["TIDINGS_METRICS_HOST"] == "0.0.0.0"
    pods = [m["spec"]["template"] for m in built if m["kind"] in ("Deployment", "StatefulSet")]

    def container_ports(component: str) -> dict[str, int]:
        (pod,) = [p for p in pods if p["metadata"]["labels"][LABEL_COMPONENT] == component]
        return {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}

    (endpoint,) = service_monitor["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    for service in selected:
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        served = container_ports(service["metadata"]["labels"][LABEL_COMPONENT])
        assert served[port["targetPort"]] == metrics_port != served["http"]

    selected_pods = [p for p in pods if _selects(pod_monitor["selector"], p["metadata"]["labels"])]
    assert [p["metadata"]["labels"]["app.kubernetes.io/component"] for p in selected_pods] == [
        "push"
    ]
    (pod_endpoint,) = pod_monitor["podMetricsEndpoints"]
    assert container_ports("push")[pod_endpoint["port"]] == metrics_port

    # The dashboard's variables come from these labels (app.kubernetes.io/instance is the
    # ChatCluster's name on every child).
    assert "app.kubernetes.io/instance" in service_monitor["targetLabels"]
    assert "app.kubernetes.io/instance" in pod_monitor["podTargetLabels"]


def _workload_series() -> set[str]:
    """Every series name the workloads export (tidings.metrics, through the registry)."""
    from prometheus_client import REGISTRY

    import tidings.metrics  # noqa: F401  (registers the metrics)

    series: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("tidings_"):
            continue
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "gauge": [""],
        }.get(family.type, [""])
        series |= {family.name + s for s in suffixes}
    return series


def test_dashboard_uses_only_metrics_the_workloads_export(helm: Run) -> None:
    dashboard = json.loads((CHART / "dashboards" / "tidings.json").read_text())
    assert dashboard["uid"] == "tidings" and dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    # The operator's series (tidings_operator_*): tests/integration/test_chart_observability.py
    used = {
        name for expr in exprs for name in re.findall(r"\btidings_(?!operator_)[a-z_]+\b", expr)
    }
    exported = _workload_series()
    assert used and used <= exported, f"not exported by the workloads: {sorted(used - exported)}"
    for wanted in (
        "tidings_connections",
        "tidings_messages_sent_total",
        "tidings_send_to_deliver_seconds_bucket",
    ):
        assert wanted in used, wanted
    assert any(name.startswith("tidings_push_") for name in used)
    # The ConfigMap carries the file as is.
    configmap = one(render(helm, "--set", "grafanaDashboard.enabled=true"), "ConfigMap")
    assert json.loads(configmap["data"]["tidings.json"]) == dashboard
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"


# --------------------------------------------------------------------------------------
# against the API server
# --------------------------------------------------------------------------------------

_DURATION = (
    "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_SELECTOR = {
    "type": "object",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"type": "string"},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "scheme": {"type": "string", "enum": ["http", "https", "HTTP", "HTTPS"]},
        "interval": {"type": "string", "pattern": _DURATION},
        "scrapeTimeout": {"type": "string", "pattern": _DURATION},
        "honorLabels": {"type": "boolean"},
    },
}


def _monitor_crd(kind: str, plural: str, endpoints: str, target_labels: str) -> dict[str, Any]:
    """A stand-in for the Prometheus Operator's CRD: the fields this chart sets, with
    their types and patterns; strict field validation refuses every other field."""
    spec_props: dict[str, Any] = {
        "jobLabel": {"type": "string"},
        target_labels: {"type": "array", "items": {"type": "string"}},
        "selector": _SELECTOR,
        "namespaceSelector": {
            "type": "object",
            "properties": {
                "any": {"type": "boolean"},
                "matchNames": {"type": "array", "items": {"type": "string"}},
            },
        },
        endpoints: {"type": "array", "items": _ENDPOINT},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.monitoring.coreos.com",
            "labels": {"tidings.dev/test-fixture": "test_chart"},
        },
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
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
                                    "required": ["selector"],
                                    "properties": spec_props,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


MONITOR_CRDS = [
    _monitor_crd("ServiceMonitor", "servicemonitors", "endpoints", "targetLabels"),
    _monitor_crd("PodMonitor", "podmonitors", "podMetricsEndpoints", "podTargetLabels"),
]


@pytest.fixture
def crds(kubectl: Run) -> None:
    """The ChatCluster CRD from crds/ (server-side apply: the same file, idempotent), and
    monitoring.coreos.com stand-ins unless the real CRDs are there; all Established."""
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        str(CRD_SOURCE),
    )
    names = [CRD_NAME]
    for crd in MONITOR_CRDS:
        name = crd["metadata"]["name"]
        names.append(name)
        if kubectl("get", "crd", name, "--ignore-not-found", "-o", "name").stdout.strip():
            continue
        created = kubectl("create", "-f", "-", input=json.dumps(crd), check=False)
        assert created.returncode == 0 or "AlreadyExists" in created.stderr, created.stderr
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[f"crd/{n}" for n in names],
        timeout=90,
    )


def _namespace(kubectl: Run) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        # Bounded: the namespace controller empties it and removes it.
        kubectl(
            "delete",
            "namespace",
            name,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=90s",
            timeout=120,
        )


@pytest.fixture
def namespace(kubectl: Run) -> Iterator[str]:
    yield from _namespace(kubectl)


@pytest.fixture
def other_namespace(kubectl: Run) -> Iterator[str]:
    yield from _namespace(kubectl)


def _dry_run(
    kubectl: Run, namespace: str | None, docs: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    """Server-side dry-run; ``namespace`` for objects that do not name theirs."""
    stream = "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)
    args = ["--dry-run=server", "--validate=strict", f"--field-manager={FIELD_MANAGER}"]
    if namespace:
        args += ["-n", namespace]
    return kubectl("apply", *args, "-f", "-", input=stream, check=False)


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def _chart_dry_run(
    kubectl: Run, docs: list[dict[str, Any]], namespace: str
) -> subprocess.CompletedProcess[str]:
    """Every namespaced object of the chart names its namespace (the release's unless a
    value says otherwise), so no -n: the objects go where `helm install` would put them."""
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace"), f"{doc['kind']} without a namespace"
        else:
            assert "namespace" not in doc["metadata"], doc["kind"]
    in_release = [
        d
        for d in docs
        if d["kind"] not in CLUSTER_SCOPED and d["kind"] not in ("Role", "RoleBinding")
    ]
    assert {d["metadata"]["namespace"] for d in in_release} == {namespace}
    return _dry_run(kubectl, None, docs)


def _assert_all_accepted(
    proc: subprocess.CompletedProcess[str], docs: list[dict[str, Any]]
) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the API server refused:\n{out}"
    assert "Warning" not in proc.stderr, out
    accepted = [line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(docs), out


@pytest.mark.kube
def test_default_manifests_pass_server_side_dry_run(
    helm: Run, kubectl: Run, crds: None, namespace: str
) -> None:
    docs = render(helm, release=f"r{uuid.uuid4().hex[:8]}", namespace=namespace)
    _assert_all_accepted(_chart_dry_run(kubectl, docs, namespace), docs)


@pytest.mark.kube
def test_full_manifests_pass_server_side_dry_run(
    helm: Run, kubectl: Run, crds: None, namespace: str, other_namespace: str
) -> None:
    docs = render(
        helm,
        "--values",
        str(FULL_VALUES),
        "--set",
        f"operator.watchNamespaces={{{namespace},{other_namespace}}}",
        "--set",
        f"fullnameOverride=r{uuid.uuid4().hex[:8]}",
        namespace=namespace,
    )
    kinds = {d["kind"] for d in docs}
    assert {
        "ServiceMonitor",
        "PodMonitor",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "ConfigMap",
    } <= kinds
    _assert_all_accepted(_chart_dry_run(kubectl, docs, namespace), docs)


@pytest.mark.kube
def test_monitor_stand_ins_refuse_unknown_fields(kubectl: Run, crds: None, namespace: str) -> None:
    """The stand-in CRDs do check: a misspelt field is refused, so the dry-run means something."""
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "bad"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "30s"}]},
    }
    proc = _dry_run(kubectl, namespace, [bad])
    assert proc.returncode != 0 and "intervall" in proc.stderr, proc.stdout + proc.stderr


@pytest.mark.kube
def test_example_chatcluster_is_accepted(kubectl: Run, crds: None, namespace: str) -> None:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    assert sorted(d["kind"] for d in docs) == ["ChatCluster"] + ["Secret"] * 5
    _assert_all_accepted(_dry_run(kubectl, namespace, docs), docs)


@pytest.mark.kube
@pytest.mark.parametrize("example", EXPOSE_EXAMPLES, ids=lambda p: p.stem)
def test_each_exposure_example_is_accepted(
    kubectl: Run, crds: None, namespace: str, example: Path
) -> None:
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    _assert_all_accepted(_dry_run(kubectl, namespace, docs), docs)


def _example_cluster() -> dict[str, Any]:
    cluster: dict[str, Any] = next(
        d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "ChatCluster"
    )
    return cluster


def _without_kafka(spec: dict[str, Any]) -> None:
    del spec["kafka"]


def _bad_enum(spec: dict[str, Any]) -> None:
    spec["cassandra"]["consistency"] = "MOST"


def _no_partitions(spec: dict[str, Any]) -> None:
    spec["kafka"]["inboxPartitions"] = 0


def _bad_pull_policy(spec: dict[str, Any]) -> None:
    spec["imagePullPolicy"] = "Sometimes"


def _string_replicas(spec: dict[str, Any]) -> None:
    spec["api"]["replicas"] = "two"


def _unknown_field(spec: dict[str, Any]) -> None:
    spec["kafka"]["bootstrap"] = "kafka:9092"


@pytest.mark.kube
@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        pytest.param(_without_kafka, "spec.kafka: Required value", id="missing-kafka"),
        pytest.param(
            _bad_enum, 'spec.cassandra.consistency: Unsupported value: "MOST"', id="bad-enum"
        ),
        pytest.param(
            _no_partitions, "spec.kafka.inboxPartitions: Invalid value: 0", id="partitions-0"
        ),
        pytest.param(
            _bad_pull_policy, "spec.imagePullPolicy: Unsupported value", id="bad-pull-policy"
        ),
        pytest.param(_string_replicas, "spec.api.replicas: Invalid value", id="wrong-type"),
        pytest.param(_unknown_field, 'unknown field "spec.kafka.bootstrap"', id="unknown-field"),
    ],
)
def test_broken_chatcluster_is_refused(
    kubectl: Run,
    crds: None,
    namespace: str,
    breakage: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    cluster = _example_cluster()
    breakage(cluster["spec"])
    proc = _dry_run(kubectl, namespace, [cluster])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"the API server accepted a broken ChatCluster:\n{out}"
    assert expected in out, out


@pytest.mark.kube
def test_identity_fields_cannot_change_after_creation(
    kubectl: Run, crds: None, namespace: str
) -> None:
    """Issue #19: the topic prefix and the keyspace name a cluster's data; the API server
    refuses a change to either (CEL ``self == oldSelf``) with a message that says why,
    and takes any other change."""
    cluster = _example_cluster()
    stream = yaml.safe_dump(cluster, sort_keys=False)
    kubectl("apply", "-n", namespace, f"--field-manager={FIELD_MANAGER}", "-f", "-", input=stream)
    name = cluster["metadata"]["name"]
    for patch, said in (
        ({"kafka": {"topicPrefix": "elsewhere"}}, "kafka.topicPrefix cannot change"),
        ({"cassandra": {"keyspace": "elsewhere"}}, "cassandra.keyspace cannot change"),
    ):
        proc = kubectl(
            "patch",
            "chatcluster",
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": patch}),
            check=False,
        )
        assert proc.returncode != 0, f"the API server took {patch}"
        assert said in proc.stderr and "make a new ChatCluster" in proc.stderr, proc.stderr
    fine = kubectl(
        "patch",
        "chatcluster",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"api": {"replicas": 2}}}),
        check=False,
    )
    assert fine.returncode == 0, fine.stderr


def _can(kubectl: Run, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i` as ``who``; ``resource`` may name a subresource (pods/eviction)."""
    resource, _, sub = resource.partition("/")
    args = ["-n", namespace] if namespace else []
    if sub:
        args.append(f"--subresource={sub}")
    proc = kubectl("auth", "can-i", verb, resource, f"--as={who}", *args, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stdout + proc.stderr
    return answer == "yes"


@pytest.mark.kube
@pytest.mark.timeout(420)
@pytest.mark.parametrize("listed", [False, True], ids=["all-namespaces", "listed-namespace"])
def test_helm_install_runs_the_operator_with_the_rbac_it_needs(
    helm: Run,
    kubectl: Run,
    kubeconfig: str,
    crds: None,
    namespace: str,
    other_namespace: str,
    listed: bool,
) -> None:
    release = f"t{uuid.uuid4().hex[:8]}"
    args = ["--set", f"operator.watchNamespaces={{{other_namespace}}}"] if listed else []
    common = ["--kubeconfig", kubeconfig, "--namespace", namespace]
    helm("install", release, str(CHART), *common, *args, "--wait", "--timeout", "150s", timeout=200)
    try:
        # kwok runs the pod on its simulated node: the Deployment becomes available.
        status = json.loads(kubectl("get", "deployment", "-n", namespace, "-o", "json").stdout)
        (deployment,) = status["items"]
        assert deployment["status"].get("availableReplicas") == 1, deployment["status"]
        sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        who = f"system:serviceaccount:{namespace}:{sa}"

        watched = other_namespace if listed else namespace
        unwatched = namespace if listed else None
        for verb, resource in [
            ("watch", "chatclusters.tidings.dev"),
            ("patch", "chatclusters.tidings.dev"),
            ("patch", "chatclusters.tidings.dev/status"),
            ("update", "chatclusters.tidings.dev/finalizers"),
            ("create", "statefulsets.apps"),
            ("patch", "statefulsets.apps/scale"),
            ("patch", "deployments.apps"),
            ("patch", "services"),
            ("patch", "configmaps"),
            ("patch", "poddisruptionbudgets.policy"),
            ("watch", "pods"),
            ("watch", "statefulsets.apps"),
            ("watch", "deployments.apps"),
            ("create", "pods/eviction"),
            ("get", "secrets"),
            ("create", "events"),
        ]:
            assert _can(kubectl, who, verb, resource, watched), (
                f"cannot {verb} {resource} in {watched}"
            )
        for verb, resource in [
            ("list", "secrets"),
            ("create", "secrets"),
            ("create", "pods"),
            ("delete", "pods"),
            ("create", "pods/exec"),
            ("delete", "namespaces"),
            ("update", "chatclusters.tidings.dev"),
            ("delete", "chatclusters.tidings.dev"),
            ("update", "chatclusters.tidings.dev/scale"),
            ("delete", "statefulsets.apps"),
            ("watch", "secrets"),
            ("list", "controllerrevisions.apps"),
            ("delete", "configmaps"),
            ("patch", "events"),
        ]:
            assert not _can(kubectl, who, verb, resource, watched), f"can {verb} {resource}"
        assert _can(kubectl, who, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)
        assert not _can(
            kubectl, who, "create", "customresourcedefinitions.apiextensions.k8s.io", None
        )
        if unwatched is not None:
            assert not _can(kubectl, who, "list", "chatclusters.tidings.dev", unwatched)
        # The leader Lease, in the release's namespace only.
        for verb in ("get", "create", "update"):
            assert _can(kubectl, who, verb, "leases.coordination.k8s.io", namespace), verb
        assert not _can(kubectl, who, "delete", "leases.coordination.k8s.io", namespace)
        assert not _can(kubectl, who, "create", "leases.coordination.k8s.io", other_namespace)
    finally:
        helm("uninstall", release, *common, "--wait", "--timeout", "90s", timeout=120)
    # Helm never deletes the CRD.
    assert kubectl("get", "crd", CRD_NAME, "-o", "name").stdout.strip()
    leftovers = kubectl(
        "get",
        "clusterrole,clusterrolebinding",
        "-o",
        "name",
        "-l",
        f"app.kubernetes.io/instance={release}",
    )
    assert not leftovers.stdout.strip(), leftovers.stdout
    # The leader Lease was the release's: nothing of the operator's stays behind.
    leases = kubectl("get", "leases", "-n", namespace, "-o", "name")
    assert not leases.stdout.strip(), leases.stdout
