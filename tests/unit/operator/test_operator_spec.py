"""The typed spec: the CRD's defaults, and the specs that cannot work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tidings_operator.spec import SpecError, check_name, parse_spec

CRD = Path(__file__).resolve().parents[3] / "crds" / "chatclusters.tidings.dev.yaml"


def minimal(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "image": "tidings:1",
        "kafka": {"bootstrapServers": "kafka:9092"},
        "cassandra": {"contactPoints": ["cassandra"]},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
    }
    raw.update(overrides)
    return raw


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    # The stored version; the others share its schema (test_operator_crd.py).
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_defaults_are_the_crds() -> None:
    props = crd_spec_schema()["properties"]
    spec = parse_spec(minimal())

    def default(*path: str) -> Any:
        node = props
        for part in path[:-1]:
            node = node[part]["properties"]
        return node[path[-1]]["default"]

    assert spec.image_pull_policy == default("imagePullPolicy")
    chat = spec.chat
    assert chat.min_replicas == default("chat", "minReplicas")
    assert chat.max_replicas == default("chat", "maxReplicas")
    assert chat.autoscaling == default("chat", "autoscaling")
    assert chat.target_connections_per_pod == default("chat", "targetConnectionsPerPod")
    assert chat.scale_down_stabilization_s == default("chat", "scaleDownStabilizationSeconds")
    assert chat.drain_budget_s == default("chat", "drainBudgetSeconds")
    assert chat.progress_deadline_s == default("chat", "progressDeadlineSeconds")
    assert chat.port == default("chat", "port")
    assert chat.replicas is None
    assert spec.api.replicas == default("api", "replicas")
    assert spec.api.port == default("api", "port")
    assert spec.push.replicas == default("push", "replicas")
    assert spec.heartbeat_s == default("presence", "heartbeatSeconds")
    assert chat.expose.mode == default("chat", "expose", "mode")
    assert chat.expose.route_kind == default("chat", "expose", "gateway", "routeKind")
    assert spec.tls is None
    assert spec.offline_after_s == default("presence", "offlineAfterSeconds")
    kafka = spec.kafka
    # No CRD default: unset, they come from the ChatCluster's namespace and name.
    assert "default" not in props["kafka"]["properties"]["topicPrefix"]
    assert "default" not in props["cassandra"]["properties"]["keyspace"]
    named = parse_spec(minimal(), cluster=("chat", "demo"))
    assert (named.kafka.topic_prefix, named.cassandra.keyspace) == ("chat.demo", "chat_demo")
    assert kafka.inbox_partitions == default("kafka", "inboxPartitions")
    assert kafka.replication_factor == default("kafka", "replicationFactor")
    assert kafka.retention_hours == default("kafka", "retentionHours")
    cassandra = spec.cassandra
    assert cassandra.port == default("cassandra", "port")
    assert cassandra.replication_factor == default("cassandra", "replicationFactor")
    assert cassandra.consistency == default("cassandra", "consistency")


def test_bounds_are_the_crds() -> None:
    props = crd_spec_schema()["properties"]
    chat = props["chat"]["properties"]
    assert chat["maxReplicas"]["maximum"] == 896
    assert chat["replicas"]["maximum"] == 896
    assert props["api"]["properties"]["replicas"]["maximum"] == 128
    with pytest.raises(SpecError, match=r"spec.chat.maxReplicas must be within 1..896"):
        parse_spec(minimal(chat={"maxReplicas": 897}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chat": {"minReplicas": 5, "maxReplicas": 3}}, "minReplicas"),
        ({"presence": {"heartbeatSeconds": 30, "offlineAfterSeconds": 30}}, "offlineAfterSeconds"),
        ({"image": ""}, "spec.image is required"),
        ({"kafka": {"bootstrapServers": "k", "topicPrefix": "bad prefix"}}, "topicPrefix"),
        ({"cassandra": {"contactPoints": []}}, "contactPoints"),
        ({"cassandra": {"contactPoints": ["c"], "keyspace": "1bad"}}, "keyspace"),
        ({"jwtSecretRef": None}, "jwtSecretRef"),
        ({"chat": {"replicas": -1}}, "replicas"),
        ({"chat": {"autoscaling": "yes"}}, "autoscaling"),
    ],
)
def test_specs_that_cannot_work(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(minimal(**overrides))


def test_names() -> None:
    check_name("chat-eu-1")
    for bad in ("1chat", "Chat", "chat_eu", "x" * 41, "chat-"):
        with pytest.raises(SpecError):
            check_name(bad)


def test_replication_literal() -> None:
    simple = parse_spec(minimal(cassandra={"contactPoints": ["c"], "replicationFactor": 2}))
    assert simple.cassandra.replication() == "{'class': 'SimpleStrategy', 'replication_factor': 2}"
    dc = parse_spec(
        minimal(
            cassandra={"contactPoints": ["c"], "localDatacenter": "eu1", "replicationFactor": 3}
        )
    )
    assert dc.cassandra.replication() == "{'class': 'NetworkTopologyStrategy', 'eu1': 3}"


def test_secret_names() -> None:
    spec = parse_spec(
        minimal(
            kafka={"bootstrapServers": "k", "authSecretRef": {"name": "kafka"}},
            push={"credentialsSecretRef": {"name": "push"}},
        )
    )
    assert spec.secret_names() == ["jwt", "kafka", "pg", "push"]
