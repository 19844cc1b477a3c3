"""The pure builders: the children's manifests from a spec, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tidings_operator import names
from tidings_operator.builders import (
    DRAIN_MARGIN_S,
    JWT_PREVIOUS_SECRETS_KEY,
    PRESTOP_PAUSE_S,
    Owner,
    build_all,
    build_api_service,
    build_api_statefulset,
    build_chat_service,
    build_chat_statefulset,
    build_config_map,
    build_push_deployment,
    config_hash,
)
from tidings_operator.spec import ClusterSpec, SpecError, parse_spec

OWNER: Owner = {"name": "demo", "namespace": "chat", "uid": "0000-1111"}


def spec(**overrides: Any) -> ClusterSpec:
    raw: dict[str, Any] = {
        "image": "registry.example/tidings:1.2.3",
        "kafka": {"bootstrapServers": "kafka:9092", "topicPrefix": "demo", "inboxPartitions": 32},
        "cassandra": {"contactPoints": ["cass-0", "cass-1"], "keyspace": "demo"},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
    }
    raw.update(overrides)
    return parse_spec(raw)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_every_child_is_owned_by_the_chat_cluster_and_labelled() -> None:
    children = build_all(OWNER, spec(), chat_replicas=3, inbox_partitions=32)
    kinds = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert kinds == [
        ("ConfigMap", "demo-config"),
        ("Service", "demo-chat"),
        ("StatefulSet", "demo-chat"),
        ("PodDisruptionBudget", "demo-chat"),
        ("Service", "demo-api"),
        ("StatefulSet", "demo-api"),
        ("PodDisruptionBudget", "demo-api"),
        ("Deployment", "demo-push"),
    ]
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "chat"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "tidings.dev/v1alpha1",
                "kind": "ChatCluster",
                "name": "demo",
                "uid": "0000-1111",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"][names.LABEL_MANAGED_BY] == "tidings-operator"
        assert meta["labels"][names.LABEL_INSTANCE] == "demo"


def test_builders_are_deterministic() -> None:
    one = build_all(OWNER, spec(), chat_replicas=3, inbox_partitions=32)
    two = build_all(OWNER, spec(), chat_replicas=3, inbox_partitions=32)
    assert one == two


def test_chat_statefulset_is_on_delete_with_drain_hook_and_readiness() -> None:
    s = spec(chat={"drainBudgetSeconds": 45, "port": 9000})
    sts = build_chat_statefulset(OWNER, s, 4, "cafe")
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert sts["spec"]["replicas"] == 4
    assert sts["spec"]["serviceName"] == "demo-chat"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    pod = sts["spec"]["template"]
    assert pod["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH] == "cafe"
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["terminationGracePeriodSeconds"] == 45 + PRESTOP_PAUSE_S + DRAIN_MARGIN_S
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["tidings", "chat"]
    assert container["image"] == "registry.example/tidings:1.2.3"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": PRESTOP_PAUSE_S}}
    assert container["ports"] == [
        {"name": "http", "containerPort": 9000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9464, "protocol": "TCP"},
    ]
    env = env_of(container)
    assert env["TIDINGS_SERVER_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["TIDINGS_WORKER_ID"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["TIDINGS_PORT"] == "9000"
    assert env["TIDINGS_PUBLIC_CHAT_URL"] == (
        "ws://$(TIDINGS_SERVER_ID).demo-chat.chat.svc:9000/v1/ws"
    )
    assert env["TIDINGS_POSTGRES_URL"] == {"secretKeyRef": {"name": "pg", "key": "url"}}
    assert env["TIDINGS_JWT_SECRET"] == {"secretKeyRef": {"name": "jwt", "key": "secret"}}
    assert env["TIDINGS_JWT_PREVIOUS_SECRETS"] == PREVIOUS_SECRETS
    # $(TIDINGS_SERVER_ID) expands only if it is defined before the URL.
    order = [e["name"] for e in container["env"]]
    assert order.index("TIDINGS_SERVER_ID") < order.index("TIDINGS_PUBLIC_CHAT_URL")
    assert container["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]


def test_chat_service_is_headless() -> None:
    svc = build_chat_service(OWNER, spec())
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == names.selector_labels("demo", names.CHAT)


def test_metrics_are_served_on_a_port_of_their_own_in_every_pod() -> None:
    """The public port (http) serves no metrics: every workload container has a port named
    metrics (TIDINGS_METRICS_PORT from the ConfigMap), and the Services carry it for a
    ServiceMonitor."""
    s = spec(chat={"port": 9000}, api={"port": 9001})
    metrics_port = {"name": "metrics", "containerPort": 9464, "protocol": "TCP"}
    children = build_all(OWNER, s, chat_replicas=1, inbox_partitions=32)
    containers = {
        c["metadata"]["name"]: c["spec"]["template"]["spec"]["containers"][0]
        for c in children
        if c["kind"] in ("StatefulSet", "Deployment")
    }
    assert set(containers) == {"demo-chat", "demo-api", "demo-push"}
    for container in containers.values():
        assert metrics_port in container["ports"]
        assert "TIDINGS_METRICS_PORT" not in env_of(container)  # one place: the ConfigMap
    assert containers["demo-api"]["ports"][0] == {
        "name": "http",
        "containerPort": 9001,
        "protocol": "TCP",
    }
    push = containers["demo-push"]
    assert push["ports"] == [metrics_port]
    assert "TIDINGS_PORT" not in env_of(push)
    assert push["readinessProbe"]["tcpSocket"] == {"port": "metrics"}
    assert push["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
    for service, http_port in (
        (build_chat_service(OWNER, s), 9000),
        (build_api_service(OWNER, s), 9001),
    ):
        assert service["spec"]["ports"] == [
            {"name": "http", "port": http_port, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"},
        ]


@pytest.mark.parametrize("component", ["chat", "api"])
def test_the_metrics_port_is_not_a_public_port(component: str) -> None:
    with pytest.raises(SpecError, match=f"spec.{component}.port 9464 is the port"):
        spec(**{component: {"port": names.METRICS_PORT}})


# Signing keys rotate by editing the jwtSecretRef's Secret: the previous keys come from it
# too, and a Secret without them is fine.
PREVIOUS_SECRETS = {
    "secretKeyRef": {"name": "jwt", "key": JWT_PREVIOUS_SECRETS_KEY, "optional": True}
}


def test_api_pods_sign_and_verify_with_the_same_keys_as_chat_servers() -> None:
    s = spec()
    chat = env_of(
        build_chat_statefulset(OWNER, s, 1, "cafe")["spec"]["template"]["spec"]["containers"][0]
    )
    api = env_of(
        build_api_statefulset(OWNER, s, "cafe")["spec"]["template"]["spec"]["containers"][0]
    )
    for name in ("TIDINGS_JWT_SECRET", "TIDINGS_JWT_PREVIOUS_SECRETS"):
        assert api[name] == chat[name]
    assert api["TIDINGS_JWT_PREVIOUS_SECRETS"] == PREVIOUS_SECRETS
    assert JWT_PREVIOUS_SECRETS_KEY == "jwt-previous-secrets"


def test_api_pods_get_worker_ids_after_the_chat_range() -> None:
    sts = build_api_statefulset(OWNER, spec(api={"replicas": 3}), "cafe")
    assert sts["spec"]["ordinals"] == {"start": 896}
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    env = env_of(sts["spec"]["template"]["spec"]["containers"][0])
    assert env["TIDINGS_WORKER_ID"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert names.API_ORDINAL_START + names.MAX_API_REPLICAS - 1 == 1023  # 10-bit worker ids
    assert names.MAX_CHAT_REPLICAS == names.API_ORDINAL_START


def test_api_pods_migrate_postgres_before_they_start() -> None:
    pod = build_api_statefulset(OWNER, spec(), "cafe")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["tidings", "migrate", "--only", "postgres"]
    assert init["image"] == pod["containers"][0]["image"]
    assert (
        env_of(init)["TIDINGS_POSTGRES_URL"] == env_of(pod["containers"][0])["TIDINGS_POSTGRES_URL"]
    )
    assert init["securityContext"]["readOnlyRootFilesystem"] is True


def test_config_map_carries_the_real_partition_count_and_settings() -> None:
    s = spec(presence={"heartbeatSeconds": 4, "offlineAfterSeconds": 20})
    data = build_config_map(OWNER, s, inbox_partitions=48)["data"]
    assert data["TIDINGS_KAFKA_INBOX_PARTITIONS"] == "48"
    assert data["TIDINGS_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert data["TIDINGS_KAFKA_TOPIC_PREFIX"] == "demo"
    assert data["TIDINGS_CASSANDRA_CONTACT_POINTS"] == '["cass-0", "cass-1"]'
    assert data["TIDINGS_CASSANDRA_KEYSPACE"] == "demo"
    assert data["TIDINGS_CASSANDRA_REPLICATION"] == (
        "{'class': 'SimpleStrategy', 'replication_factor': 3}"
    )
    assert data["TIDINGS_HEARTBEAT_S"] == "4"
    assert data["TIDINGS_PRESENCE_OFFLINE_AFTER_S"] == "20"
    assert data["TIDINGS_HOST"] == "0.0.0.0"
    assert data["TIDINGS_METRICS_HOST"] == "0.0.0.0"
    assert data["TIDINGS_METRICS_PORT"] == "9464"
    assert all(isinstance(v, str) for v in data.values())


def test_config_map_data_parses_as_the_workloads_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tidings.settings import Settings

    data = build_config_map(OWNER, spec(), inbox_partitions=32)["data"]
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.cassandra_contact_points == ["cass-0", "cass-1"]
    assert settings.kafka_inbox_partitions == 32
    assert settings.drain_budget_s == 30
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", names.METRICS_PORT)


def test_a_config_change_changes_the_pod_templates() -> None:
    before = build_all(OWNER, spec(), chat_replicas=2, inbox_partitions=32)
    after = build_all(OWNER, spec(), chat_replicas=2, inbox_partitions=64)
    assert before[2]["spec"]["template"] != after[2]["spec"]["template"]
    assert config_hash({"a": "1"}) == config_hash({"a": "1"})
    assert config_hash({"a": "1"}) != config_hash({"a": "2"})
    # The replica count is not in the template: scaling never rolls pods.
    scaled = build_all(OWNER, spec(), chat_replicas=7, inbox_partitions=32)
    assert before[2]["spec"]["template"] == scaled[2]["spec"]["template"]


def test_auth_secrets_and_push_credentials_reach_the_pods() -> None:
    s = spec(
        kafka={"bootstrapServers": "k:9093", "authSecretRef": {"name": "kafka-auth"}},
        cassandra={"contactPoints": ["c"], "authSecretRef": {"name": "cass-auth"}},
        push={"credentialsSecretRef": {"name": "push-creds"}, "replicas": 2},
    )
    chat = build_chat_statefulset(OWNER, s, 1, "x")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "kafka-auth"}} in chat["envFrom"]
    assert {"secretRef": {"name": "push-creds"}} not in chat["envFrom"]
    env = env_of(chat)
    assert env["TIDINGS_CASSANDRA_USERNAME"] == {
        "secretKeyRef": {"name": "cass-auth", "key": "username"}
    }
    push = build_push_deployment(OWNER, s, "x")
    assert push["spec"]["replicas"] == 2
    container = push["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "push-creds"}} in container["envFrom"]
    assert container["command"] == ["tidings", "push"]


def test_resources_default_from_the_target_unless_given() -> None:
    plain = build_chat_statefulset(OWNER, spec(chat={"targetConnectionsPerPod": 50_000}), 1, "x")
    # 256 MiB + 16 KiB and 250m + 10 us/s per connection (docs/operator.md), no CPU limit.
    assert plain["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "750m", "memory": "1038Mi"},
        "limits": {"memory": "2076Mi"},
    }
    sized = build_chat_statefulset(
        OWNER, spec(chat={"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}), 1, "x"
    )
    assert sized["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"}
    }


@pytest.mark.parametrize("component", [names.CHAT, names.API])
def test_disruption_budgets_allow_one_pod_at_a_time(component: str) -> None:
    children = build_all(OWNER, spec(), chat_replicas=3, inbox_partitions=32)
    (pdb,) = [
        c
        for c in children
        if c["kind"] == "PodDisruptionBudget"
        and c["metadata"]["labels"][names.LABEL_COMPONENT] == component
    ]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == names.selector_labels("demo", component)
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_pods_run_hardened() -> None:
    for child in build_all(OWNER, spec(), chat_replicas=1, inbox_partitions=32):
        template = child.get("spec", {}).get("template")
        if template is None:
            continue
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in template["spec"]["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
