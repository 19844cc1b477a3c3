"""Smoke test: the test environment's Kubernetes control plane (kube-apiserver, controller-manager,
scheduler, kwok fake node) works with the Python `kubernetes` client.

Every wait is bounded; nothing here can hang past the test timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.kube, pytest.mark.timeout(240)]

T = TypeVar("T")

REQUEST_TIMEOUT = 15  # seconds, for every single API call


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Poll `check` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def api(testenv) -> Iterator[client.ApiClient]:  # type: ignore[no-untyped-def]
    api_client = config.new_client_from_config(config_file=testenv["TIDINGS_TEST_KUBECONFIG"])
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"smoke-{uuid.uuid4().hex[:10]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)),
        _request_timeout=REQUEST_TIMEOUT,
    )
    yield name
    try:
        core.delete_namespace(name, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status != 404:
            raise

    def gone() -> bool:
        try:
            core.read_namespace(name, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    # The namespace controller (kube-controller-manager) empties and removes it.
    wait_for(f"namespace {name} to be deleted", gone, timeout=90)


def test_server_version(api: client.ApiClient) -> None:
    info = client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT)
    assert (info.major, info.minor.rstrip("+")) == ("1", "34"), info
    assert info.git_version.startswith("v1.34."), info


def test_fake_node_is_ready(api: client.ApiClient, testenv) -> None:  # type: ignore[no-untyped-def]
    node = client.CoreV1Api(api).read_node(
        testenv["TIDINGS_TEST_KUBE_NODE"], _request_timeout=REQUEST_TIMEOUT
    )
    ready = {c.type: c.status for c in node.status.conditions or []}.get("Ready")
    assert ready == "True", node.status.conditions


def test_crd_established_and_custom_object(api: client.ApiClient, namespace: str) -> None:
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    group = f"smoke-{uuid.uuid4().hex[:10]}.tidings.test"
    crd_name = f"widgets.{group}"
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1},
                                        "color": {"type": "string"},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd, _request_timeout=REQUEST_TIMEOUT)
    try:

        def established() -> bool:
            got = ext.read_custom_resource_definition(crd_name, _request_timeout=REQUEST_TIMEOUT)
            conditions = {c.type: c.status for c in (got.status.conditions or [])}
            return conditions.get("Established") == "True"

        wait_for(f"CRD {crd_name} to be Established", established, timeout=60)

        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            # `unknown` is not in the structural schema, so the apiserver prunes it.
            "spec": {"size": 3, "color": "teal", "unknown": "dropped"},
        }

        # Discovery of a just-Established CRD can lag a moment behind the condition.
        def create() -> dict[str, Any] | None:
            try:
                created: dict[str, Any] = custom.create_namespaced_custom_object(
                    group, "v1", namespace, "widgets", body, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return created

        created = wait_for("the custom object to be created", create, timeout=30)
        assert created["spec"] == {"size": 3, "color": "teal"}

        got = custom.get_namespaced_custom_object(
            group, "v1", namespace, "widgets", "w1", _request_timeout=REQUEST_TIMEOUT
        )
        assert got["spec"] == {"size": 3, "color": "teal"}
        assert got["metadata"]["uid"] == created["metadata"]["uid"]

        # The schema is enforced.
        bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
        with pytest.raises(ApiException) as info:
            custom.create_namespaced_custom_object(
                group, "v1", namespace, "widgets", bad, _request_timeout=REQUEST_TIMEOUT
            )
        assert info.value.status == 422, info.value

        listed = custom.list_namespaced_custom_object(
            group, "v1", namespace, "widgets", _request_timeout=REQUEST_TIMEOUT
        )
        assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]
    finally:
        ext.delete_custom_resource_definition(crd_name, _request_timeout=REQUEST_TIMEOUT)


def test_statefulset_pods_run_on_fake_node(
    api: client.ApiClient,
    namespace: str,
    testenv,  # type: ignore[no-untyped-def]
) -> None:
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    node = testenv["TIDINGS_TEST_KUBE_NODE"]
    labels = {"app": "smoke"}

    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="smoke"),
            spec=client.V1ServiceSpec(
                cluster_ip="None",
                selector=labels,
                ports=[client.V1ServicePort(name="web", port=8080)],
            ),
        ),
        _request_timeout=REQUEST_TIMEOUT,
    )
    apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="smoke"),
            spec=client.V1StatefulSetSpec(
                service_name="smoke",
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[
                            client.V1Container(
                                name="web",
                                # kwok never pulls or runs it: the node and its pods are simulated.
                                image="registry.invalid/tidings/smoke:1",
                                ports=[client.V1ContainerPort(container_port=8080)],
                            )
                        ]
                    ),
                ),
            ),
        ),
        _request_timeout=REQUEST_TIMEOUT,
    )

    def running_pods() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector="app=smoke", _request_timeout=REQUEST_TIMEOUT
        ).items
        running = [p for p in pods if p.status.phase == "Running"]
        return running if len(running) == 2 else None

    pods = wait_for("2 StatefulSet pods to be Running", running_pods, timeout=120)
    assert sorted(p.metadata.name for p in pods) == ["smoke-0", "smoke-1"]
    assert {p.spec.node_name for p in pods} == {node}
    assert all(p.status.pod_ip for p in pods), [p.status for p in pods]

    def ready_replicas() -> bool:
        sts = apps.read_namespaced_stateful_set(
            "smoke", namespace, _request_timeout=REQUEST_TIMEOUT
        )
        return sts.status.ready_replicas == 2

    wait_for("StatefulSet readyReplicas == 2", ready_replicas, timeout=60)
