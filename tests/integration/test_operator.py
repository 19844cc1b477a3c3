"""The operator against the test environment's real kube-apiserver (kwok nodes: pods
become Running and Ready), real Kafka and real Cassandra.

Each test owns a namespace, a topic prefix and a keyspace (uuid suffixes), runs its own
operator (``python -m tidings_operator --namespace <ns>``, one-second ticks) and cleans
up. Connection counts come from membership records a stand-in fleet publishes for the
ready chat pods (``_operator_harness.Fleet``), which is what chat servers do. Every wait
is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _operator_harness import (
    CRD_PATH,
    Fleet,
    OperatorProcess,
    condition,
    eventually,
    get_cluster,
    patch_spec,
)
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from kubernetes import config as kube_config

from tidings_operator import names
from tidings_operator.builders import termination_grace_seconds
from tidings_operator.kube import KINDS, Kube, KubeError
from tidings_operator.observe import pod_view
from tidings_operator.spec import parse_spec

pytestmark = [
    pytest.mark.kube,
    pytest.mark.kafka,
    pytest.mark.cassandra,
    pytest.mark.timeout(300),
]

NAME = "chat"
CONDITIONS = (
    "Ready",
    "KafkaReady",
    "CassandraReady",
    "ChatServersReady",
    "Progressing",
    "Degraded",
)


# --- fixtures -----------------------------------------------------------------------------


def _kubectl(testenv: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{testenv['TIDINGS_TEST_BIN_DIR']}/kubectl", *args],
        env={"KUBECONFIG": testenv["TIDINGS_TEST_KUBECONFIG"], "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@pytest.fixture(scope="module")
def crd(testenv: Any) -> None:
    """The platform team's first step: apply the CRD (server-side, idempotent)."""
    _kubectl(testenv, "apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))
    _kubectl(
        testenv,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/chatclusters.tidings.dev",
    )


@pytest.fixture
async def kube(testenv: Any) -> AsyncIterator[Kube]:
    client = Kube(
        kube_config.new_client_from_config(config_file=testenv["TIDINGS_TEST_KUBECONFIG"])
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def namespace(kube: Kube, crd: None) -> AsyncIterator[str]:
    name = await _new_namespace(kube)
    yield name
    await _delete_namespace(kube, name)


@pytest.fixture
async def other_namespace(kube: Kube, crd: None) -> AsyncIterator[str]:
    name = await _new_namespace(kube)
    yield name
    await _delete_namespace(kube, name)


async def _new_namespace(kube: Kube) -> str:
    """A namespace of the test's own with the Secrets every test ChatCluster names."""
    name = f"op-{uuid.uuid4().hex[:10]}"
    await kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    for secret, key, value in (
        ("tidings-db", "url", "postgresql+asyncpg://tidings:secret@postgres/tidings"),
        ("tidings-jwt", "secret", "not-a-real-secret"),
    ):
        await kube.request(
            "POST",
            KINDS["Secret"].path(name),
            {
                "metadata": {"name": secret},
                "data": {key: base64.b64encode(value.encode()).decode()},
            },
        )
    return name


async def _delete_namespace(kube: Kube, name: str) -> None:
    # kwok pods keep their grace period; the test's pods need none, and the namespace
    # controller waits for every pod to be gone.
    await kube.request(
        "DELETE",
        KINDS["Pod"].path(name),
        {"gracePeriodSeconds": 0},
        query=[("gracePeriodSeconds", "0")],
        missing_ok=True,
    )
    await kube.request("DELETE", f"/api/v1/namespaces/{name}", missing_ok=True)

    async def gone() -> bool:
        return await kube.request("GET", f"/api/v1/namespaces/{name}", missing_ok=True) is None

    # The namespace controller empties it (garbage collection takes the children).
    for _ in range(60):
        if await gone():
            break
        await asyncio.sleep(1)


@pytest.fixture
def operator(namespace: str, testenv: Any, tmp_path: Path) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(namespace, testenv["TIDINGS_TEST_KUBECONFIG"], tmp_path / "operator.log")
    proc.start()
    yield proc
    proc.stop()
    # Shown by pytest when the test failed.
    print("---- operator log (tail) ----")
    print("\n".join(proc.log().splitlines()[-150:]))


@pytest.fixture
def quick_operator(namespace: str, testenv: Any, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator re-applying every 2 s and re-wiring every 3 s (Secrets, drift)."""
    proc = OperatorProcess(
        namespace,
        testenv["TIDINGS_TEST_KUBECONFIG"],
        tmp_path / "operator.log",
        extra_args=("--resync-seconds", "2", "--rewire-seconds", "3"),
    )
    proc.start()
    yield proc
    proc.stop()
    print("---- operator log (tail) ----")
    print("\n".join(proc.log().splitlines()[-150:]))


@pytest.fixture
async def fleet(kube: Kube, namespace: str, prefix: str, testenv: Any) -> AsyncIterator[Fleet]:
    stand_in = Fleet(kube, namespace, NAME, testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"], prefix)
    # The operator creates the topics; wait for them before publishing (no auto-create).
    yield stand_in
    await stand_in.stop()


def _cassandra_hosts(testenv: Any) -> list[str]:
    return [h.strip() for h in testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",") if h.strip()]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def chat_cluster(testenv: Any, prefix: str, keyspace: str, **spec: Any) -> dict[str, Any]:
    base = {
        "image": "registry.invalid/tidings:1",
        "chat": {
            "minReplicas": 2,
            "maxReplicas": 4,
            "targetConnectionsPerPod": 50_000,
            "scaleDownStabilizationSeconds": 4,
            "drainBudgetSeconds": 1,
        },
        "api": {"replicas": 1},
        "push": {"replicas": 1},
        "kafka": {
            "bootstrapServers": testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"],
            "topicPrefix": prefix,
            "inboxPartitions": 6,
            "replicationFactor": 1,
            "retentionHours": 24,
        },
        "cassandra": {
            "contactPoints": _cassandra_hosts(testenv),
            "port": int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
            "keyspace": keyspace,
            "replicationFactor": 1,
            "consistency": "LOCAL_ONE",
        },
        "postgres": {"urlSecretRef": {"name": "tidings-db", "key": "url"}},
        "jwtSecretRef": {"name": "tidings-jwt", "key": "secret"},
    }
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": NAME},
        "spec": _merge(base, spec),
    }


BodyOf = Callable[..., dict[str, Any]]


@pytest.fixture
def body_of(testenv: Any, prefix: str, keyspace: str) -> BodyOf:
    """The ChatCluster of this test's topic prefix and keyspace, its spec merged with the
    keyword arguments (``body_of(chat={"replicas": 3})``)."""
    return functools.partial(chat_cluster, testenv, prefix, keyspace)


async def create(kube: Kube, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = await kube.request("POST", KINDS[names.KIND].path(namespace), body)
    return created


async def ready(kube: Kube, namespace: str, within: float = 120) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        return obj if condition(obj, "Ready").get("status") == "True" else None

    return await eventually("the ChatCluster to be Ready", check, within)


async def chat_pods(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return await kube.list("Pod", namespace, names.selector_string(NAME, names.CHAT))


async def pod_uids(kube: Kube, namespace: str) -> dict[str, str]:
    """The chat pods now, name: uid (a replaced pod keeps its name, not its uid)."""
    return {(v := pod_view(p)).name: v.uid for p in await chat_pods(kube, namespace)}


def event_reasons(testenv: Any, namespace: str) -> list[str]:
    """The reasons of the Events posted about the ChatCluster, oldest first."""
    return _kubectl(
        testenv,
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={NAME}",
        "-o",
        "jsonpath={.items[*].reason}",
    ).stdout.split()


async def sts_replicas(kube: Kube, namespace: str) -> int | None:
    sts = await kube.get("StatefulSet", namespace, names.chat_name(NAME))
    return int(sts["spec"]["replicas"]) if sts else None


async def topics_ready(fleet: Fleet, kube: Kube, namespace: str) -> None:
    async def kafka_ready() -> bool:
        obj = await get_cluster(kube, namespace, NAME)
        return condition(obj, "KafkaReady").get("status") == "True"

    await eventually("KafkaReady", kafka_ready, 60)
    await fleet.start()


async def running(kube: Kube, namespace: str, body: dict[str, Any], fleet: Fleet) -> None:
    """Create the ChatCluster, wait for Ready and its topics, start the stand-in fleet."""
    await create(kube, namespace, body)
    await ready(kube, namespace)
    await topics_ready(fleet, kube, namespace)


async def three_servers_with_clients(
    kube: Kube, namespace: str, fleet: Fleet, body_of: BodyOf
) -> None:
    """3 chat servers (autoscaling off) whose 210,000 clients the operator has counted
    for a couple of ticks: the baseline of a disruption."""
    spec = {"chat": {"autoscaling": False, "replicas": 3}}
    await running(kube, namespace, body_of(**spec), fleet)
    fleet.clients = 210_000

    async def counted() -> bool:
        obj = await get_cluster(kube, namespace, NAME)
        return ((obj or {}).get("status") or {}).get("connections") == 210_000

    await eventually("210,000 connections counted", counted, 30)
    await asyncio.sleep(2)  # a couple of ticks at the full count


# --- tests --------------------------------------------------------------------------------


async def test_children_topics_keyspace_and_status(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    prefix: str,
    keyspace: str,
    operator: OperatorProcess,
    testenv: Any,
) -> None:
    body = body_of()
    created = await create(kube, namespace, body)
    uid = created["metadata"]["uid"]
    obj = await ready(kube, namespace)

    # Status in the Kubernetes API conventions' shape.
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    for type_ in CONDITIONS:
        c = condition(obj, type_)
        assert c, f"no {type_} condition in {status['conditions']}"
        assert c["status"] in ("True", "False", "Unknown")
        assert c["reason"][:1].isupper() and " " not in c["reason"], c
        assert c["lastTransitionTime"].endswith("Z")
        assert c["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "KafkaReady")["status"] == "True"
    assert condition(obj, "CassandraReady")["status"] == "True"
    assert condition(obj, "ChatServersReady")["status"] == "True"
    assert condition(obj, "Degraded")["status"] == "False"
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"]) == (2, 2, 2)
    assert status["selector"] == names.selector_string(NAME, names.CHAT)
    assert status["inboxPartitions"] == 6

    # Children, each owned by the ChatCluster.
    children = [
        ("ConfigMap", names.config_name(NAME)),
        ("Service", names.chat_name(NAME)),
        ("StatefulSet", names.chat_name(NAME)),
        ("PodDisruptionBudget", names.chat_name(NAME)),
        ("Service", names.api_name(NAME)),
        ("StatefulSet", names.api_name(NAME)),
        ("PodDisruptionBudget", names.api_name(NAME)),
        ("Deployment", names.push_name(NAME)),
    ]
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, child in children:
        got = await kube.get(kind, namespace, child)
        assert got is not None, f"{kind} {child} missing"
        (ref,) = got["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "ChatCluster",
            NAME,
            uid,
            True,
        )
        found[kind, child] = got
    sts = found["StatefulSet", names.chat_name(NAME)]
    assert sts["spec"]["updateStrategy"]["type"] == "OnDelete"
    assert found["Service", names.chat_name(NAME)]["spec"]["clusterIP"] == "None"
    pod_spec = sts["spec"]["template"]["spec"]
    assert pod_spec["terminationGracePeriodSeconds"] == termination_grace_seconds(
        parse_spec(obj["spec"])
    )
    assert pod_spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert pod_spec["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    api_pods = await kube.list("Pod", namespace, names.selector_string(NAME, names.API))
    assert [p["metadata"]["name"] for p in api_pods] == [f"{names.api_name(NAME)}-896"]

    # Kafka topics: partitions, compaction, retention.
    admin = AIOKafkaAdminClient(bootstrap_servers=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(None)}
        assert len(described[f"{prefix}.inbox"]["partitions"]) == 6
        assert len(described[f"{prefix}.push"]["partitions"]) == 6
        assert len(described[f"{prefix}.members"]["partitions"]) == 1
        configs = await _topic_configs(admin, f"{prefix}.inbox")
        assert configs["retention.ms"] == str(24 * 3600 * 1000)
        assert (await _topic_configs(admin, f"{prefix}.members"))["cleanup.policy"] == "compact"
    finally:
        await admin.close()

    # The keyspace, migrated by the workloads' own migrations.
    from tidings.storage.cassandra.schema import LATEST_VERSION

    assert await asyncio.to_thread(_applied_versions, testenv, keyspace) == list(
        range(1, LATEST_VERSION + 1)
    )

    # `kubectl get chatclusters` shows readiness, replicas and connections.
    table = _kubectl(testenv, "get", "chatclusters", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REPLICAS", "CONNECTIONS", "AGE"], table
    assert table[1].split()[:3] == [NAME, "True", "2"], table

    # Level-based and idempotent: a restarted operator changes nothing.
    versions = {k: v["metadata"]["resourceVersion"] for k, v in found.items()}
    operator.restart()
    await asyncio.sleep(6)
    assert operator.running
    for key, version in versions.items():
        again = await kube.get(key[0], namespace, key[1])
        assert again is not None
        assert again["metadata"]["resourceVersion"] == version, f"{key} was rewritten"

    # Drift is repaired: a deleted child comes back.
    await kube.delete("Service", namespace, names.api_name(NAME))

    async def service_back() -> bool:
        return await kube.get("Service", namespace, names.api_name(NAME)) is not None

    await eventually("the api Service to be recreated", service_back, 30)

    # Partitions never shrink...
    await patch_spec(kube, namespace, NAME, {"kafka": {"inboxPartitions": 3}})

    async def kept() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        message = condition(obj, "KafkaReady").get("message", "")
        return obj if "never shrink" in message else None

    await eventually("KafkaReady to say partitions never shrink", kept, 60)
    config_map = await kube.get("ConfigMap", namespace, names.config_name(NAME))
    assert config_map is not None
    assert config_map["data"]["TIDINGS_KAFKA_INBOX_PARTITIONS"] == "6"
    # ...but grow.
    await patch_spec(kube, namespace, NAME, {"kafka": {"inboxPartitions": 8}})

    async def grown() -> bool:
        cm = await kube.get("ConfigMap", namespace, names.config_name(NAME))
        return bool(cm and cm["data"]["TIDINGS_KAFKA_INBOX_PARTITIONS"] == "8")

    await eventually("the ConfigMap to carry 8 partitions", grown, 60)
    admin = AIOKafkaAdminClient(bootstrap_servers=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        (inbox,) = await admin.describe_topics([f"{prefix}.inbox"])
        assert len(inbox["partitions"]) == 8
    finally:
        await admin.close()


async def _topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    (response,) = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, None)]
    )
    (described,) = response.resources
    return {entry[0]: entry[1] for entry in described[4]}


def _applied_versions(testenv: Any, keyspace: str) -> list[int]:
    from cassandra.cluster import Cluster

    cluster = Cluster(_cassandra_hosts(testenv), port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]))
    try:
        session = cluster.connect()
        rows = session.execute(f"SELECT version FROM {keyspace}.schema_migrations")
        return sorted(int(r.version) for r in rows)
    finally:
        cluster.shutdown()


async def test_autoscales_on_reported_connections(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    operator: OperatorProcess,
    fleet: Fleet,
    testenv: Any,
) -> None:
    await running(kube, namespace, body_of(), fleet)
    assert await sts_replicas(kube, namespace) == 2

    # 3 x 70,000 clients at 50,000 per pod ask for 5 chat servers; maxReplicas is 4.
    fleet.clients = 210_000

    async def scaled_up() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        status = (obj or {}).get("status") or {}
        done = status.get("desiredReplicas") == 4 and status.get("readyReplicas") == 4
        return obj if done and status.get("connections") == 210_000 else None

    obj = await eventually("4 chat servers for 210,000 connections", scaled_up, 60)
    assert await sts_replicas(kube, namespace) == 4
    assert obj["status"]["lastScale"]["to"] == 4
    assert obj["status"]["lastScale"]["reason"] == "ScaleUp"

    # Down to 20,000: the minimum (2), after the 4 s stabilisation window, one at a time.
    fleet.clients = 20_000
    lowered = time.monotonic()
    sizes: list[int] = []
    first_step: float | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        size = await sts_replicas(kube, namespace)
        assert size is not None
        if not sizes or sizes[-1] != size:
            sizes.append(size)
            if size < 4 and first_step is None:
                first_step = time.monotonic()
        if size == 2:
            break
        await asyncio.sleep(0.2)
    assert sizes == [4, 3, 2], sizes
    assert first_step is not None
    assert first_step - lowered >= 3.0, "scaled down before the stabilisation window"

    async def settled() -> bool:
        obj = await get_cluster(kube, namespace, NAME)
        status = (obj or {}).get("status") or {}
        pods = [p for p in await chat_pods(kube, namespace) if not pod_view(p).terminating]
        return status.get("replicas") == 2 and len(pods) == 2

    await eventually("2 chat servers left", settled, 30)

    # With autoscaling off, /scale drives the size (an HPA or KEDA would do the same).
    await patch_spec(kube, namespace, NAME, {"chat": {"autoscaling": False}})
    _kubectl(testenv, "scale", "chatcluster", NAME, "-n", namespace, "--replicas=3")

    async def scaled_by_hand() -> bool:
        obj = await get_cluster(kube, namespace, NAME)
        status = (obj or {}).get("status") or {}
        return await sts_replicas(kube, namespace) == 3 and status.get("readyReplicas") == 3

    await eventually("/scale to set 3 chat servers", scaled_by_hand, 60)
    scale = _kubectl(
        testenv,
        "get",
        "chatcluster",
        NAME,
        "-n",
        namespace,
        "--subresource=scale",
        "-o",
        "jsonpath={.spec.replicas} {.status.replicas} {.status.selector}",
    ).stdout.split()
    assert scale[:2] == ["3", "3"]
    assert scale[2] == names.selector_string(NAME, names.CHAT)


async def test_kubectl_scale_is_said_ignored_while_autoscaling_and_shrinks_one_at_a_time(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    operator: OperatorProcess,
    fleet: Fleet,
    testenv: Any,
) -> None:
    await running(kube, namespace, body_of(), fleet)
    assert await sts_replicas(kube, namespace) == 2

    # Autoscaling on (the default): `kubectl scale` is accepted by the API but changes
    # nothing, and the operator says so, as a condition and an Event.
    _kubectl(testenv, "scale", "chatcluster", NAME, "-n", namespace, "--replicas=5")

    async def said_ignored() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        return obj if condition(obj, "ScaleIgnored").get("status") == "True" else None

    obj = await eventually("the ScaleIgnored condition", said_ignored, 30)
    assert "spec.chat.replicas is 5" in condition(obj, "ScaleIgnored")["message"]

    async def warned() -> bool:
        listed = await kube.request("GET", f"/api/v1/namespaces/{namespace}/events")
        return any(
            e.get("reason") == "ScaleIgnored" and e.get("type") == "Warning"
            for e in listed.get("items") or []
        )

    await eventually("a ScaleIgnored Event", warned, 15)
    assert await sts_replicas(kube, namespace) == 2

    # Autoscaling off: /scale sizes the servers; 3 at once, then down to 1 one at a time.
    await patch_spec(kube, namespace, NAME, {"chat": {"autoscaling": False, "replicas": 3}})

    async def three() -> bool:
        obj = await get_cluster(kube, namespace, NAME)
        status = (obj or {}).get("status") or {}
        return status.get("readyReplicas") == 3 and await sts_replicas(kube, namespace) == 3

    await eventually("3 chat servers", three, 60)
    obj = await get_cluster(kube, namespace, NAME)
    assert condition(obj, "ScaleIgnored")["status"] == "False"
    fleet.clients = 30_000

    async def counted() -> bool:
        obj = await get_cluster(kube, namespace, NAME)
        spread = len(fleet.connected) == 3 and all(fleet.connected.values())
        return spread and ((obj or {}).get("status") or {}).get("connections") == 30_000

    await eventually("30,000 connections on the 3 servers, counted", counted, 30)
    _kubectl(testenv, "scale", "chatcluster", NAME, "-n", namespace, "--replicas=1")
    sizes: list[int] = []
    most_terminating = 0
    last_away = 0.0  # when some drained clients were last still away
    second_step = 0.0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        size = await sts_replicas(kube, namespace)
        assert size is not None
        if not sizes or sizes[-1] != size:
            sizes.append(size)
            if size == 1:
                second_step = time.monotonic()
        if fleet.away and size == 2:
            last_away = time.monotonic()
        pods = [pod_view(p) for p in await chat_pods(kube, namespace)]
        most_terminating = max(most_terminating, sum(1 for p in pods if p.terminating))
        if size == 1 and len(pods) == 1:
            break
        await asyncio.sleep(0.1)
    assert sizes == [3, 2, 1], sizes
    assert most_terminating <= 1, "two chat servers drained at once"
    # The first drained server's clients (the fleet brings them back 2 s after) were
    # back before the second server went.
    assert last_away > 0, "the first step drained nobody"
    assert second_step > last_away, "the next server drained before the clients were back"


async def test_rollout_replaces_chat_servers_one_at_a_time(
    kube: Kube, namespace: str, body_of: BodyOf, operator: OperatorProcess, fleet: Fleet
) -> None:
    spec = {"chat": {"autoscaling": False, "replicas": 3, "progressDeadlineSeconds": 10}}
    await running(kube, namespace, body_of(**spec), fleet)
    fleet.clients = 90_000

    async def counted() -> bool:
        obj = await get_cluster(kube, namespace, NAME)
        return ((obj or {}).get("status") or {}).get("connections") == 90_000

    await eventually("the fleet's connections to be counted", counted, 30)

    async def revisions() -> tuple[str, dict[str, tuple[str, str]]]:
        sts = await kube.get("StatefulSet", namespace, names.chat_name(NAME))
        assert sts is not None
        pods = {
            (v := pod_view(p)).name: (v.uid, v.revision) for p in await chat_pods(kube, namespace)
        }
        return str(sts["status"].get("updateRevision")), pods

    first_revision, before = await revisions()
    await patch_spec(kube, namespace, NAME, {"image": "registry.invalid/tidings:2"})

    # Watch closely: never more than one chat server out of service; the order of
    # replacement is the highest ordinal first; the status shows the rollout.
    replaced: list[str] = []
    uids = {name: uid for name, (uid, _) in before.items()}
    saw_in_progress = False
    deadline = time.monotonic() + 120
    obj: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        pods = [pod_view(p) for p in await chat_pods(kube, namespace)]
        out = {p.name for p in pods if p.terminating or not p.ready}
        out |= {n for n in uids if n not in {p.name for p in pods}}
        assert len(out) <= 1, f"more than one chat server out at once: {sorted(out)}"
        for p in pods:
            if uids.get(p.name) != p.uid and p.name not in replaced:
                replaced.append(p.name)
        obj = await get_cluster(kube, namespace, NAME)
        rollout = ((obj or {}).get("status") or {}).get("rollout") or {}
        saw_in_progress |= bool(rollout.get("inProgress") and rollout.get("pod"))
        update_revision = rollout.get("updateRevision")
        if (
            update_revision
            and update_revision != first_revision
            and not rollout.get("inProgress")
            and len(pods) == 3
            and all(p.revision == update_revision and p.ready for p in pods)
        ):
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail(f"the rollout did not finish; replaced so far: {replaced}")
    assert replaced == [f"{NAME}-chat-2", f"{NAME}-chat-1", f"{NAME}-chat-0"]
    assert saw_in_progress
    assert obj is not None
    rollout = obj["status"]["rollout"]
    assert rollout["updatedReplicas"] == 3
    assert rollout["currentRevision"] == rollout["updateRevision"]
    assert condition(obj, "Progressing")["status"] == "False"

    # Trouble stops it: the new chat servers never join (no membership record).
    _, before = await revisions()
    uids = {name: uid for name, (uid, _) in before.items()}
    old_revisions = {r for _, r in before.values()}

    def on_new_revision(pod: dict[str, Any]) -> bool:
        # Any revision but the old ones: silent from the new pod's first look, whenever
        # the test itself learns the new revision's name.
        return pod_view(pod).revision not in old_revisions

    fleet.silent = on_new_revision
    await patch_spec(kube, namespace, NAME, {"image": "registry.invalid/tidings:3"})

    async def update_revision_known() -> str | None:
        sts = await kube.get("StatefulSet", namespace, names.chat_name(NAME))
        revision = str(((sts or {}).get("status") or {}).get("updateRevision") or "")
        return revision if revision and revision not in {r for _, r in before.values()} else None

    new_revision = await eventually("a new revision", update_revision_known, 30)

    async def halted() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        degraded = condition(obj, "Degraded")
        return obj if degraded.get("status") == "True" else None

    obj = await eventually("Degraded after the progress deadline", halted, 60)
    assert condition(obj, "Degraded")["reason"] == "RolloutStalled"
    assert condition(obj, "Ready")["status"] == "False"
    await asyncio.sleep(3)
    pods = [pod_view(p) for p in await chat_pods(kube, namespace)]
    changed = sorted(p.name for p in pods if uids.get(p.name) != p.uid)
    assert changed == [f"{NAME}-chat-2"], "the rollout went on despite the trouble"

    # The trouble clears (the new server joins): the rollout resumes and completes.
    fleet.silent = lambda pod: False

    async def completed() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        rollout = ((obj or {}).get("status") or {}).get("rollout") or {}
        pods = [pod_view(p) for p in await chat_pods(kube, namespace)]
        done = (
            rollout.get("updateRevision") == new_revision
            and not rollout.get("inProgress")
            and len(pods) == 3
            and all(p.revision == new_revision for p in pods)
        )
        return obj if done and condition(obj, "Degraded").get("status") == "False" else None

    await eventually("the rollout to resume and complete", completed, 90)


async def test_a_deleted_chat_pod_is_reported_as_a_disruption(
    kube: Kube, namespace: str, body_of: BodyOf, operator: OperatorProcess, fleet: Fleet
) -> None:
    await three_servers_with_clients(kube, namespace, fleet, body_of)
    victim = f"{NAME}-chat-1"
    deleted_at = time.time()
    assert await kube.delete("Pod", namespace, victim)

    async def reported() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        d = ((obj or {}).get("status") or {}).get("lastDisruption") or {}
        return d if d.get("pod") == victim else None

    disruption = await eventually("the disruption in the status", reported, 30)
    assert disruption["clients"] == 70_000
    assert disruption["connectionsBefore"] == 210_000

    async def recovered() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        d = ((obj or {}).get("status") or {}).get("lastDisruption") or {}
        return d if d.get("recoveredAt") else None

    disruption = await eventually("the clients to be back", recovered, 60)
    at = disruption["at"]
    assert abs(_epoch(at) - deleted_at) <= 5, (at, deleted_at)
    # The fleet brings the lost clients back 2 s after the deletion; records and ticks add
    # a few. The operator counts from when it saw the pod gone (`at`), which a loaded
    # machine may make a second or more after the deletion: judge the recovery's moment
    # (`at` is written to the second, so it reads up to 1 s early: hence 2 s - 1.1).
    back_after = _epoch(at) + disruption["recoverySeconds"] - deleted_at
    assert 0.9 <= back_after <= 30, (disruption, deleted_at)
    assert "back" in disruption["message"]
    await ready(kube, namespace, within=30)

    # ...and as Events on the ChatCluster (kubectl describe chatcluster).
    async def events() -> set[str] | None:
        listed = await kube.request("GET", f"/api/v1/namespaces/{namespace}/events")
        reasons = {
            e.get("reason", "")
            for e in listed.get("items") or []
            if (e.get("involvedObject") or {}).get("kind") == names.KIND
        }
        return reasons if {"ChatServerLost", "ClientsRecovered"} <= reasons else None

    await eventually("ChatServerLost and ClientsRecovered events", events, 15)


def _epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_engine_down_is_a_temporary_error_with_a_condition(
    kube: Kube, namespace: str, body_of: BodyOf, operator: OperatorProcess, testenv: Any
) -> None:
    body = body_of(kafka={"bootstrapServers": "127.0.0.1:1"})
    await create(kube, namespace, body)

    async def kafka_down() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        c = condition(obj, "KafkaReady")
        return obj if c.get("reason") == "KafkaUnavailable" else None

    obj = await eventually("KafkaReady=False (KafkaUnavailable)", kafka_down, 60)
    message = condition(obj, "KafkaReady")["message"]
    assert "127.0.0.1:1" in message and "retrying in" in message, message
    assert condition(obj, "KafkaReady")["status"] == "False"
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Degraded")["status"] == "False"  # not the spec's fault
    assert await kube.get("StatefulSet", namespace, names.chat_name(NAME)) is None

    # It is retried, with backoff.
    async def retried() -> bool:
        return "TemporaryError" in operator.log() or "retrying in 10s" in condition(
            await get_cluster(kube, namespace, NAME), "KafkaReady"
        ).get("message", "")

    await eventually("a retry", retried, 30)

    # Kafka back (the right address), Cassandra down: its own condition says so.
    await patch_spec(
        kube,
        namespace,
        NAME,
        {
            "kafka": {"bootstrapServers": testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"]},
            "cassandra": {"port": 1},
        },
    )

    async def cassandra_down() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        ok = condition(obj, "KafkaReady").get("status") == "True"
        c = condition(obj, "CassandraReady")
        return obj if ok and c.get("reason") == "CassandraUnavailable" else None

    obj = await eventually("CassandraReady=False (CassandraUnavailable)", cassandra_down, 90)
    assert "127.0.0.1" in condition(obj, "CassandraReady")["message"]

    # Both back: ready.
    await patch_spec(
        kube, namespace, NAME, {"cassandra": {"port": int(testenv["TIDINGS_TEST_CASSANDRA_PORT"])}}
    )
    await ready(kube, namespace, within=120)


async def test_a_spec_that_cannot_work_is_a_permanent_error_with_a_condition(
    kube: Kube, namespace: str, body_of: BodyOf, operator: OperatorProcess
) -> None:
    # The schema refuses what it can see (CEL): the API server answers 422.
    bad = body_of(chat={"minReplicas": 5, "maxReplicas": 3})
    with pytest.raises(KubeError) as refused:
        await create(kube, namespace, bad)
    assert refused.value.status == 422
    assert "minReplicas must not be more than maxReplicas" in refused.value.message

    # Kafka refuses what only it can see: 3 replicas on a 1-broker cluster.
    body = body_of(kafka={"replicationFactor": 3})
    await create(kube, namespace, body)

    async def refused_by_kafka() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        return obj if condition(obj, "Degraded").get("status") == "True" else None

    obj = await eventually("Degraded=True", refused_by_kafka, 60)
    kafka = condition(obj, "KafkaReady")
    assert (kafka["status"], kafka["reason"]) == ("False", "InvalidSpec")
    assert "replicationFactor is 3" in kafka["message"] and "1 broker" in kafka["message"]
    degraded = condition(obj, "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Ready")["reason"] == "InvalidSpec"

    # Permanent: kopf does not retry it.
    async def gave_up() -> bool:
        return "failed permanently" in operator.log()

    await eventually("kopf to give up on the handler", gave_up, 30)
    attempts = operator.log().count("replicationFactor is 3")
    await asyncio.sleep(8)
    assert operator.log().count("replicationFactor is 3") == attempts, "it was retried"
    assert await kube.get("StatefulSet", namespace, names.chat_name(NAME)) is None

    # A fixed spec is picked up.
    await patch_spec(kube, namespace, NAME, {"kafka": {"replicationFactor": 1}})
    obj = await ready(kube, namespace)
    assert condition(obj, "Degraded")["status"] == "False"


async def test_deleting_the_chat_cluster_collects_the_children_and_keeps_the_data(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    prefix: str,
    keyspace: str,
    operator: OperatorProcess,
    testenv: Any,
) -> None:
    """The children go with their owner references (the controller-manager's garbage
    collector, not the operator); the topics and the keyspace stay."""
    await create(kube, namespace, body_of())
    obj = await ready(kube, namespace)
    assert not obj["metadata"].get("finalizers"), "a ChatCluster needs no finalizer"
    children = [
        ("ConfigMap", names.config_name(NAME)),
        ("Service", names.chat_name(NAME)),
        ("StatefulSet", names.chat_name(NAME)),
        ("PodDisruptionBudget", names.chat_name(NAME)),
        ("Service", names.api_name(NAME)),
        ("StatefulSet", names.api_name(NAME)),
        ("PodDisruptionBudget", names.api_name(NAME)),
        ("Deployment", names.push_name(NAME)),
    ]
    for kind, child in children:
        assert await kube.get(kind, namespace, child) is not None, f"{kind} {child}"

    await kube.request("DELETE", KINDS[names.KIND].path(namespace, NAME))

    async def cluster_gone() -> bool:
        return await get_cluster(kube, namespace, NAME) is None

    await eventually("the ChatCluster to be gone (no finalizer)", cluster_gone, 15)

    async def children_gone() -> bool:
        left = [c for c in children if await kube.get(c[0], namespace, c[1]) is not None]
        return not left

    await eventually("the garbage collector to delete the children", children_gone, 90)

    async def pods_gone() -> bool:
        owned = await kube.list("Pod", namespace, f"{names.LABEL_INSTANCE}={NAME}")
        # kwok keeps a deleted pod's grace period; terminating ones are on their way out.
        return all(p["metadata"].get("deletionTimestamp") for p in owned)

    await eventually("the chat pods to be deleted", pods_gone, 90)

    # Nothing is re-created: the operator forgot it.
    await asyncio.sleep(4)
    for kind, child in children:
        assert await kube.get(kind, namespace, child) is None, f"{kind} {child} came back"
    assert operator.running

    # The data is kept: the topics and the keyspace with its tables.
    admin = AIOKafkaAdminClient(bootstrap_servers=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert {f"{prefix}.inbox", f"{prefix}.push", f"{prefix}.members"} <= topics, topics
    from tidings.storage.cassandra.schema import LATEST_VERSION

    assert await asyncio.to_thread(_applied_versions, testenv, keyspace) == list(
        range(1, LATEST_VERSION + 1)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> dict[str, float] | None:
    """The operator's metrics as {series: value}; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def _reconciles(sample: dict[str, float]) -> float:
    return sum(
        v
        for k, v in sample.items()
        if k.startswith("tidings_operator_reconcile_duration_seconds_count")
    )


async def test_of_two_operators_one_is_active_and_the_other_takes_over(
    kube: Kube, namespace: str, body_of: BodyOf, testenv: Any, tmp_path: Path
) -> None:
    lease_s = 6.0
    ports = [_free_port(), _free_port()]
    operators = [
        OperatorProcess(
            namespace,
            testenv["TIDINGS_TEST_KUBECONFIG"],
            tmp_path / f"operator-{i}.log",
            metrics_port=port,
            extra_args=("--lease-seconds", str(lease_s)),
        )
        for i, port in enumerate(ports)
    ]
    try:
        for op in operators:
            op.start()

        async def both_up() -> list[dict[str, float]] | None:
            samples = [await asyncio.to_thread(_scrape, p) for p in ports]
            return [s for s in samples if s is not None] if all(samples) else None

        await eventually("both operators to serve metrics", both_up, 30)
        await create(kube, namespace, body_of())
        await ready(kube, namespace)
        await asyncio.sleep(3)  # a few ticks

        samples = [await asyncio.to_thread(_scrape, p) for p in ports]
        assert all(s is not None for s in samples)
        active = [i for i, s in enumerate(samples) if s and s["tidings_operator_active"] == 1]
        assert len(active) == 1, samples
        (leader,) = active
        standby = 1 - leader
        standby_sample = samples[standby]
        assert standby_sample is not None and samples[leader] is not None
        assert _reconciles(samples[leader]) > 0
        assert _reconciles(standby_sample) == 0, "the standby reconciled"
        assert standby_sample.get("tidings_operator_clusters_managed", 0) == 0
        lease = await kube.request(
            "GET",
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/tidings-operator",
        )
        assert lease["spec"]["holderIdentity"]

        # The active one dies without a word; the standby takes over within the lease.
        operators[leader].kill()
        killed_at = time.monotonic()

        async def took_over() -> bool:
            sample = await asyncio.to_thread(_scrape, ports[standby])
            return bool(sample and sample["tidings_operator_active"] == 1 and _reconciles(sample))

        await eventually("the standby to take over", took_over, lease_s + 20)
        assert time.monotonic() - killed_at <= lease_s + 20

        # And it acts: a spec change is applied.
        await patch_spec(kube, namespace, NAME, {"api": {"replicas": 2}})

        async def applied() -> bool:
            sts = await kube.get("StatefulSet", namespace, names.api_name(NAME))
            return bool(sts and sts["spec"]["replicas"] == 2)

        await eventually("the new operator to apply the spec", applied, 30)
        assert operators[standby].running
    finally:
        for i, op in enumerate(operators):
            op.stop()
            print(f"---- operator {i} log (tail) ----")
            print("\n".join(op.log().splitlines()[-60:]))


# --- spec.chat.expose and spec.tls: accepted by the real API server, pruned when dropped --


def _contains(expected: Any, actual: Any, path: str = "") -> None:
    """``actual`` has every field ``expected`` has, equal (the API server adds defaults)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing in {actual!r}"
            _contains(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _contains(e, a, f"{path}[{i}]")
    else:
        assert expected == actual, f"{path}: {actual!r} != {expected!r}"


async def _exposed(kube: Kube, namespace: str) -> set[tuple[str, str]]:
    found = set()
    for kind in ("Service", "Ingress", "HTTPRoute", "TLSRoute", "Certificate"):
        for obj in await kube.list(kind, namespace, f"{names.LABEL_INSTANCE}={NAME}"):
            if obj["metadata"]["labels"].get("tidings.dev/role") == "expose":
                found.add((kind, obj["metadata"]["name"]))
    return found


async def _wait_exposed(kube: Kube, namespace: str, want: set[tuple[str, str]]) -> None:
    async def exactly() -> bool:
        return await _exposed(kube, namespace) == want

    try:
        await eventually(f"exactly {sorted(want)}", exactly, 60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; found {sorted(await _exposed(kube, namespace))}") from None


async def test_every_exposure_mode_is_accepted_and_what_is_dropped_is_pruned(
    kube: Kube, namespace: str, body_of: BodyOf, operator: OperatorProcess
) -> None:
    """Each mode's objects as the real API server stored them (Gateway API and
    cert-manager CRDs installed from their modules, e2e/env/certmanager.sh), field by
    field; a mode change deletes the last mode's objects."""
    hosts = "chat-{ordinal}.example.test"
    parent = {"name": "edge", "namespace": "gateways", "sectionName": "wss"}
    tls = {"issuerRef": {"name": "ca", "kind": "ClusterIssuer"}, "secretName": "chat-cert"}
    ingress = {
        "mode": "ingress",
        "hostTemplate": hosts,
        "ingress": {"className": "nginx"},
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
        "api": {"host": "api.example.test"},
    }
    body = body_of(chat={"expose": ingress}, tls=tls)
    await create(kube, namespace, body)
    await ready(kube, namespace)
    pods = {("Service", f"{NAME}-chat-{i}") for i in range(2)}
    await _wait_exposed(kube, namespace, {*pods, ("Ingress", NAME), ("Certificate", f"{NAME}-tls")})
    got = await kube.get("Ingress", namespace, NAME)
    assert got is not None
    _contains(
        {
            "metadata": {"annotations": ingress["annotations"]},
            "spec": {
                "ingressClassName": "nginx",
                "tls": [
                    {
                        "hosts": ["api.example.test", "chat-0.example.test", "chat-1.example.test"],
                        "secretName": "chat-cert",
                    }
                ],
                "rules": [
                    {
                        "host": host,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {"name": service, "port": {"number": 8080}}
                                    },
                                }
                            ]
                        },
                    }
                    for host, service in (
                        ("api.example.test", f"{NAME}-api"),
                        ("chat-0.example.test", f"{NAME}-chat-0"),
                        ("chat-1.example.test", f"{NAME}-chat-1"),
                    )
                ],
            },
        },
        got,
    )
    cert = await kube.get("Certificate", namespace, f"{NAME}-tls")
    assert cert is not None
    _contains(
        {
            "spec": {
                "secretName": "chat-cert",
                "issuerRef": {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
                "dnsNames": [*(f"chat-{i}.example.test" for i in range(4)), "api.example.test"],
            }
        },
        cert,
    )
    svc = await kube.get("Service", namespace, f"{NAME}-chat-1")
    assert svc is not None
    _contains(
        {
            "spec": {
                "type": "ClusterIP",
                "selector": {"statefulset.kubernetes.io/pod-name": f"{NAME}-chat-1"},
                "ports": [{"name": "http", "port": 8080, "targetPort": "http"}],
            }
        },
        svc,
    )
    # The controller ends TLS: the chat servers serve plain WebSockets behind it.
    sts = await kube.get("StatefulSet", namespace, names.chat_name(NAME))
    assert sts is not None
    env = {
        e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TIDINGS_PUBLIC_CHAT_URL"] == "wss://chat-{ordinal}.example.test/v1/ws"
    assert "TIDINGS_TLS_CERT_FILE" not in env

    # Gateway API, TLS passthrough: a TLSRoute per pod and the API's; the Ingress goes.
    gateway = {
        "mode": "gateway",
        "gateway": {"parentRefs": [parent], "routeKind": "TLSRoute"},
    }
    await patch_spec(kube, namespace, NAME, {"chat": {"expose": gateway}})
    routes = {("TLSRoute", f"{NAME}-chat-{i}") for i in range(2)} | {("TLSRoute", f"{NAME}-api")}
    await _wait_exposed(kube, namespace, {*pods, *routes, ("Certificate", f"{NAME}-tls")})
    route = await kube.get("TLSRoute", namespace, f"{NAME}-chat-0")
    assert route is not None
    _contains(
        {
            "spec": {
                "parentRefs": [parent],
                "hostnames": ["chat-0.example.test"],
                "rules": [{"backendRefs": [{"name": f"{NAME}-chat-0", "port": 8080}]}],
            }
        },
        route,
    )

    # Passthrough: the pods end TLS with the Secret cert-manager writes.
    async def pods_end_tls() -> bool:
        sts = await kube.get("StatefulSet", namespace, names.chat_name(NAME))
        assert sts is not None
        pod = sts["spec"]["template"]["spec"]
        return {"name": "tls", "secret": {"secretName": "chat-cert"}} in [
            {"name": v["name"], "secret": {"secretName": v["secret"]["secretName"]}}
            for v in pod["volumes"]
            if "secret" in v
        ]

    await eventually("the chat pods to mount the TLS Secret", pods_end_tls, 30)

    # HTTPRoutes: TLS at the Gateway.
    await patch_spec(
        kube, namespace, NAME, {"chat": {"expose": {"gateway": {"routeKind": "HTTPRoute"}}}}
    )
    http_routes = {("HTTPRoute", n) for _, n in routes}
    await _wait_exposed(kube, namespace, {*pods, *http_routes, ("Certificate", f"{NAME}-tls")})
    route = await kube.get("HTTPRoute", namespace, f"{NAME}-api")
    assert route is not None
    _contains(
        {
            "spec": {
                "parentRefs": [parent],
                "hostnames": ["api.example.test"],
                "rules": [{"backendRefs": [{"name": f"{NAME}-api", "port": 8080}]}],
            }
        },
        route,
    )

    # A load balancer per pod and one for the API; no cert-manager (a Secret of our own).
    lb = {
        "mode": "loadBalancer",
        "annotations": {"external-dns.alpha.kubernetes.io/hostname": hosts},
        "loadBalancer": {"sourceRanges": ["192.0.2.0/24"]},
        "gateway": None,
        "ingress": None,
    }
    await patch_spec(kube, namespace, NAME, {"chat": {"expose": lb}, "tls": {"issuerRef": None}})
    await _wait_exposed(kube, namespace, {*pods, ("Service", f"{NAME}-api-external")})
    svc = await kube.get("Service", namespace, f"{NAME}-chat-0")
    assert svc is not None
    _contains(
        {
            "metadata": {
                "annotations": {"external-dns.alpha.kubernetes.io/hostname": "chat-0.example.test"}
            },
            "spec": {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Local",
                "loadBalancerSourceRanges": ["192.0.2.0/24"],
                "ports": [{"name": "http", "port": 443, "targetPort": "http"}],
            },
        },
        svc,
    )

    # NodePorts: chat pod N on basePort+N, the API on its own; then none removes them all.
    node_port = {
        "mode": "nodePort",
        "nodePort": {"basePort": 31700},
        "api": {"nodePort": 31699, "host": None},
        "annotations": None,
        "loadBalancer": None,
    }
    await patch_spec(kube, namespace, NAME, {"chat": {"expose": node_port}})

    async def node_ports() -> dict[str, int] | None:
        found = {}
        for svc_name in (f"{NAME}-chat-0", f"{NAME}-chat-1", f"{NAME}-api-external"):
            svc = await kube.get("Service", namespace, svc_name)
            if svc is None or svc["spec"]["type"] != "NodePort":
                return None
            found[svc_name] = svc["spec"]["ports"][0]["nodePort"]
        return found

    assert await eventually("NodePort Services", node_ports, 60) == {
        f"{NAME}-chat-0": 31700,
        f"{NAME}-chat-1": 31701,
        f"{NAME}-api-external": 31699,
    }
    await patch_spec(kube, namespace, NAME, {"chat": {"expose": {"mode": "none"}}, "tls": None})
    await _wait_exposed(kube, namespace, set())
    # The cluster-internal Services stay.
    assert await kube.get("Service", namespace, names.chat_name(NAME)) is not None
    assert await kube.get("Service", namespace, names.api_name(NAME)) is not None


async def rolled_one_at_a_time(
    kube: Kube, namespace: str, before: dict[str, str], what: str, within: float = 120
) -> list[str]:
    """Watch every chat pod in ``before`` (name: uid) be replaced, never two out at once;
    the names in the order they came back."""
    replaced: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pods = [pod_view(p) for p in await chat_pods(kube, namespace)]
        out = {p.name for p in pods if p.terminating or not p.ready}
        out |= {n for n in before if n not in {p.name for p in pods}}
        assert len(out) <= 1, f"more than one chat server out at once: {sorted(out)}"
        for p in pods:
            if before.get(p.name) != p.uid and p.name not in replaced and p.ready:
                replaced.append(p.name)
        if len(replaced) == len(before) and not out:
            return replaced
        await asyncio.sleep(0.25)
    pytest.fail(f"{what} did not finish; replaced so far: {replaced}")


async def _annotate(kube: Kube, namespace: str, annotations: dict[str, str | None]) -> None:
    await kube.request(
        "PATCH",
        KINDS[names.KIND].path(namespace, NAME),
        {"metadata": {"annotations": annotations}},
        content_type="application/merge-patch+json",
    )


async def test_a_paused_cluster_is_left_alone_until_resumed(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    operator: OperatorProcess,
    fleet: Fleet,
    testenv: Any,
) -> None:
    """tidings.dev/pause-reconciliation (issue #19, incident controls): while it is
    "true" a spec change is not applied and a deleted child is not put back; the
    condition says so; once removed, both happen."""
    spec = {"chat": {"autoscaling": False, "replicas": 2}}
    await running(kube, namespace, body_of(**spec), fleet)
    assert await sts_replicas(kube, namespace) == 2

    await _annotate(kube, namespace, {names.ANNOTATION_PAUSE: "true"})

    async def paused() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        return obj if condition(obj, "ReconciliationPaused").get("status") == "True" else None

    obj = await eventually("the ReconciliationPaused condition", paused, 30)
    assert condition(obj, "ReconciliationPaused")["reason"] == "PausedByAnnotation"
    await patch_spec(kube, namespace, NAME, {"chat": {"replicas": 3}})
    assert await kube.delete("Deployment", namespace, names.push_name(NAME))
    await asyncio.sleep(5)  # five ticks, and kopf's handler for the spec change
    assert await sts_replicas(kube, namespace) == 2
    assert await kube.get("Deployment", namespace, names.push_name(NAME)) is None
    reasons = event_reasons(testenv, namespace)
    assert "ReconciliationPaused" in reasons

    await _annotate(kube, namespace, {names.ANNOTATION_PAUSE: None})

    async def resumed() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        push = await kube.get("Deployment", namespace, names.push_name(NAME))
        if push is None or await sts_replicas(kube, namespace) != 3:
            return None
        return obj if condition(obj, "ReconciliationPaused").get("status") == "False" else None

    obj = await eventually("the held change applied after the pause", resumed, 60)
    assert condition(obj, "ReconciliationPaused")["reason"] == "Reconciling"


async def test_a_restart_annotation_rolls_every_chat_server_one_at_a_time(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    operator: OperatorProcess,
    fleet: Fleet,
    testenv: Any,
) -> None:
    """tidings.dev/restart: <timestamp> (issue #19, incident controls): every chat pod is
    replaced through the paced rollout, one at a time; the same value again does nothing."""
    spec = {"chat": {"autoscaling": False, "replicas": 3}}
    await running(kube, namespace, body_of(**spec), fleet)
    before = await pod_uids(kube, namespace)
    assert len(before) == 3

    stamp = "2026-12-07T21:00:00Z"
    await _annotate(kube, namespace, {names.ANNOTATION_RESTART: stamp})
    replaced = await rolled_one_at_a_time(kube, namespace, before, "the restart")
    assert replaced == [f"{NAME}-chat-2", f"{NAME}-chat-1", f"{NAME}-chat-0"]
    sts = await kube.get("StatefulSet", namespace, names.chat_name(NAME))
    assert sts is not None
    assert sts["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_RESTART] == stamp
    reasons = event_reasons(testenv, namespace)
    assert "RestartRequested" in reasons

    # The same value again (a re-applied manifest) restarts nothing.
    after = await pod_uids(kube, namespace)
    await _annotate(kube, namespace, {names.ANNOTATION_RESTART: stamp, "unrelated": "x"})
    await asyncio.sleep(4)
    again = await pod_uids(kube, namespace)
    assert again == after


async def test_a_drain_annotation_drains_one_chat_server_and_reports_it(
    kube: Kube, namespace: str, body_of: BodyOf, operator: OperatorProcess, fleet: Fleet
) -> None:
    """tidings.dev/drain: <pod> (issue #19, incident controls): that pod alone is drained
    once, status.lastDisruption says so (cause DrainRequested, its clients, when they
    were back), and the annotation is removed; a name that is no chat pod is refused."""
    await three_servers_with_clients(kube, namespace, fleet, body_of)
    before = await pod_uids(kube, namespace)
    victim = f"{NAME}-chat-1"
    asked_at = time.time()
    await _annotate(kube, namespace, {names.ANNOTATION_DRAIN: victim})

    async def reported() -> dict[str, Any] | None:
        obj = await get_cluster(kube, namespace, NAME)
        d = ((obj or {}).get("status") or {}).get("lastDisruption") or {}
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        done = d.get("pod") == victim and d.get("recoveredAt")
        return d if done and names.ANNOTATION_DRAIN not in annotations else None

    disruption = await eventually("the drain in the status, clients back", reported, 60)
    assert disruption["cause"] == "DrainRequested"
    assert disruption["clients"] == 70_000
    assert disruption["connectionsBefore"] == 210_000
    assert abs(_epoch(disruption["at"]) - asked_at) <= 5
    assert "drained on request" in disruption["message"]

    async def replaced() -> dict[str, str] | None:
        pods = [pod_view(p) for p in await chat_pods(kube, namespace)]
        now = {p.name: p.uid for p in pods if p.ready and not p.terminating}
        return now if len(now) == 3 and now[victim] != before[victim] else None

    after = await eventually(f"{victim} made again", replaced, 60)
    changed = sorted(n for n in before if after.get(n) != before[n])
    assert changed == [victim], changed  # that pod alone, once

    await _annotate(kube, namespace, {names.ANNOTATION_DRAIN: "nobody-7"})

    async def refused() -> bool:
        obj = await get_cluster(kube, namespace, NAME)
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        listed = await kube.request("GET", f"/api/v1/namespaces/{namespace}/events")
        reasons = {e.get("reason") for e in listed.get("items") or []}
        return names.ANNOTATION_DRAIN not in annotations and "DrainRefused" in reasons

    await eventually("a drain of no chat pod refused", refused, 30)
    again = await pod_uids(kube, namespace)
    assert again == after


async def _patch_secret(kube: Kube, namespace: str, name: str, values: dict[str, str]) -> None:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    await kube.request(
        "PATCH",
        KINDS["Secret"].path(namespace, name),
        {"data": data},
        content_type="application/merge-patch+json",
    )


async def _secrets_hashes(kube: Kube, namespace: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for kind, name in (
        ("StatefulSet", names.chat_name(NAME)),
        ("StatefulSet", names.api_name(NAME)),
        ("Deployment", names.push_name(NAME)),
    ):
        obj = await kube.get(kind, namespace, name)
        template = ((obj or {}).get("spec") or {}).get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        out[name] = annotations.get(names.ANNOTATION_SECRETS_HASH)
    return out


async def _event_reasons(kube: Kube, namespace: str) -> list[str]:
    listed = await kube.request("GET", f"/api/v1/namespaces/{namespace}/events")
    return [str(e.get("reason")) for e in listed.get("items") or []]


async def test_a_rotated_secret_rolls_the_pods_that_read_it_and_an_unread_key_nothing(
    kube: Kube, namespace: str, body_of: BodyOf, quick_operator: OperatorProcess, fleet: Fleet
) -> None:
    """Secrets are hashed into the pod templates (issue #19, rotation): a new JWT signing
    key (with the old one kept as previous) rolls the chat servers through the paced
    rollout and the api pods; the push workers, which read no JWT key, stay; a key no pod
    reads changes nothing."""
    spec = {"chat": {"autoscaling": False, "replicas": 2}}
    await running(kube, namespace, body_of(**spec), fleet)

    async def stamped() -> dict[str, str | None] | None:
        found = await _secrets_hashes(kube, namespace)
        return found if all(found.values()) else None

    first = await eventually("the secrets hash on every pod template", stamped, 30)
    before = await pod_uids(kube, namespace)
    await _patch_secret(kube, namespace, "tidings-jwt", {"note": "read by no pod"})
    await asyncio.sleep(6)  # three re-applies
    assert await _secrets_hashes(kube, namespace) == first
    still = await pod_uids(kube, namespace)
    assert still == before

    await _patch_secret(
        kube,
        namespace,
        "tidings-jwt",
        {"secret": "a-new-signing-key", "jwt-previous-secrets": "not-a-real-secret"},
    )

    readers = (names.chat_name(NAME), names.api_name(NAME))  # the JWT key's readers

    async def rehashed() -> dict[str, str | None] | None:
        found = await _secrets_hashes(kube, namespace)  # (one apply writes them in turn)
        return found if all(found[w] != first[w] for w in readers) else None

    second = await eventually("a new secrets hash on chat and api", rehashed, 30)
    assert second[names.push_name(NAME)] == first[names.push_name(NAME)]
    replaced = await rolled_one_at_a_time(kube, namespace, before, "the roll after the rotation")
    assert replaced == [f"{NAME}-chat-1", f"{NAME}-chat-0"]


async def test_a_topic_deleted_or_changed_out_of_band_is_put_back_and_told(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    prefix: str,
    quick_operator: OperatorProcess,
    fleet: Fleet,
    testenv: Any,
) -> None:
    """The periodic re-wire (issue #19, drift): a topic deleted by hand is made again and a
    topic config changed by hand is set back, each with a Warning Event; KafkaReady stays
    true to what Kafka has."""
    spec = {"chat": {"autoscaling": False, "replicas": 1}}
    await running(kube, namespace, body_of(**spec), fleet)
    push_topic, inbox_topic = f"{prefix}.push", f"{prefix}.inbox"
    admin = AIOKafkaAdminClient(bootstrap_servers=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        await admin.delete_topics([push_topic])
        resource = ConfigResource(ConfigResourceType.TOPIC, inbox_topic, {"retention.ms": "1000"})
        await admin.alter_configs([resource])

        async def back() -> dict[str, Any] | None:
            # Every topic: naming one would make the broker create it (auto-create is on).
            topics = {t["topic"]: t for t in await admin.describe_topics()}
            found = topics.get(push_topic)
            if not found or found["error_code"] or len(found["partitions"]) != 6:
                return None
            (described,) = (await admin.describe_configs([ConfigResource(
                ConfigResourceType.TOPIC, inbox_topic)]))[0].resources  # fmt: skip
            retention = {e[0]: e[1] for e in described[4]}.get("retention.ms")
            return found if retention == str(24 * 3600 * 1000) else None

        await eventually("the push topic made again and the retention set back", back, 90)
    finally:
        await admin.close()

    async def told() -> list[str] | None:
        reasons = await _event_reasons(kube, namespace)
        return reasons if {"TopicsRecreated", "KafkaDrift"} <= set(reasons) else None

    await eventually("Warning Events for the recreated topic and the drift", told, 30)
    obj = await get_cluster(kube, namespace, NAME)
    assert condition(obj, "KafkaReady")["status"] == "True"


async def test_tls_to_kafka_and_cassandra_with_a_ca_from_a_secret(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    keyspace: str,
    operator: OperatorProcess,
    fleet: Fleet,
    testenv: Any,
) -> None:
    """spec.kafka.tls and spec.cassandra.tls (issue #19, a private CA as Strimzi's): the
    operator wires through the engines' TLS ports trusting the CA from the Secret, reads
    the membership records over TLS, and every server pod gets the CA and the settings."""
    ca = await asyncio.to_thread(Path(testenv["TIDINGS_TEST_TLS_CA_FILE"]).read_text)
    await kube.request(
        "POST",
        KINDS["Secret"].path(namespace),
        {
            "metadata": {"name": "engines-cluster-ca-cert"},
            "data": {"ca.crt": base64.b64encode(ca.encode()).decode()},
        },
    )
    ca_ref = {"caSecretRef": {"name": "engines-cluster-ca-cert"}}
    spec = {
        "chat": {"autoscaling": False, "replicas": 1},
        "kafka": {"bootstrapServers": testenv["TIDINGS_TEST_KAFKA_SSL_BOOTSTRAP"], "tls": ca_ref},
        "cassandra": {"tls": ca_ref},
    }
    await create(kube, namespace, body_of(**spec))
    obj = await ready(kube, namespace)
    assert "topics ready" in condition(obj, "KafkaReady")["message"]
    assert f"keyspace {keyspace}" in condition(obj, "CassandraReady")["message"]
    await fleet.start()  # publishes on the plaintext listener; the operator reads over TLS
    fleet.clients = 1_234

    async def counted() -> bool:
        found = await get_cluster(kube, namespace, NAME)
        return ((found or {}).get("status") or {}).get("connections") == 1_234

    await eventually("connections read over TLS", counted, 30)
    for kind, name in (
        ("StatefulSet", names.chat_name(NAME)),
        ("StatefulSet", names.api_name(NAME)),
        ("Deployment", names.push_name(NAME)),
    ):
        workload = await kube.get(kind, namespace, name)
        assert workload is not None
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TIDINGS_KAFKA_SECURITY_PROTOCOL"] == "SSL"
        assert env["TIDINGS_KAFKA_SSL_CAFILE"] == "/etc/tidings/kafka-ca/ca.crt"
        assert env["TIDINGS_CASSANDRA_SSL"] == "true"
        assert env["TIDINGS_CASSANDRA_SSL_CAFILE"] == "/etc/tidings/cassandra-ca/ca.crt"


async def test_a_second_cluster_on_the_same_topics_and_keyspace_waits_for_the_first(
    kube: Kube,
    namespace: str,
    body_of: BodyOf,
    other_namespace: str,
    prefix: str,
    keyspace: str,
    testenv: Any,
    tmp_path: Path,
) -> None:
    """ResourceConflict (issue #19, identity): a ChatCluster whose topics and keyspace a
    ChatCluster created earlier owns is refused before anything is wired or applied, and
    says whose they are; once the owner is deleted it goes ahead."""
    proc = OperatorProcess(
        namespace,
        testenv["TIDINGS_TEST_KUBECONFIG"],
        tmp_path / "operator.log",
        extra_args=("--namespace", other_namespace),
    )
    proc.start()
    try:
        body = body_of(chat={"autoscaling": False, "replicas": 1})
        await create(kube, namespace, body)
        await ready(kube, namespace)
        await create(kube, other_namespace, body)

        async def refused() -> dict[str, Any] | None:
            obj = await get_cluster(kube, other_namespace, NAME)
            return obj if condition(obj, "Ready").get("reason") == "ResourceConflict" else None

        obj = await eventually("the second ChatCluster refused", refused, 60)
        message = condition(obj, "Ready")["message"]
        assert f"topics {prefix}.* on Kafka" in message
        assert f"keyspace {keyspace} on Cassandra" in message
        assert "PostgreSQL database tidings on postgres:5432" in message  # the same Secret URL
        assert f"ChatCluster {namespace}/{NAME} (created earlier)" in message
        assert await kube.get("StatefulSet", other_namespace, names.chat_name(NAME)) is None

        async def told() -> bool:
            return "ResourceConflict" in await _event_reasons(kube, other_namespace)

        await eventually("a ResourceConflict Event", told, 15)

        await kube.delete(names.KIND, namespace, NAME)
        await ready(kube, other_namespace, within=90)  # the topics and keyspace are its now
    finally:
        proc.stop()
        print("---- operator log (tail) ----")
        print("\n".join(proc.log().splitlines()[-100:]))


async def test_the_postgresql_database_is_fixed_at_creation(
    kube: Kube, namespace: str, body_of: BodyOf, quick_operator: OperatorProcess, fleet: Fleet
) -> None:
    """The database the operator first wired is kept in an annotation (issue #19, identity);
    a Secret naming another database later is refused, and no pod rolls onto it; pointed
    back, the ChatCluster is Ready again."""
    spec = {"chat": {"autoscaling": False, "replicas": 1}}
    await running(kube, namespace, body_of(**spec), fleet)
    obj = await get_cluster(kube, namespace, NAME)
    annotations = (obj or {})["metadata"].get("annotations") or {}
    assert annotations[names.ANNOTATION_POSTGRES] == "postgres:5432/tidings"
    hashes = await _secrets_hashes(kube, namespace)
    original = "postgresql+asyncpg://tidings:secret@postgres/tidings"
    await _patch_secret(kube, namespace, "tidings-db", {"url": original + "_other"})

    async def refused() -> dict[str, Any] | None:
        found = await get_cluster(kube, namespace, NAME)
        return found if condition(found, "Ready").get("reason") == "DatabaseChanged" else None

    obj = await eventually("the changed database refused", refused, 30)
    message = condition(obj, "Ready")["message"]
    assert "now names the database postgres:5432/tidings_other" in message
    assert "was made on postgres:5432/tidings" in message
    await asyncio.sleep(5)  # re-applies would have rolled the pods by now
    assert await _secrets_hashes(kube, namespace) == hashes

    await _patch_secret(kube, namespace, "tidings-db", {"url": original})
    await ready(kube, namespace, within=60)
