"""``helm test`` on a real Kubernetes node (``e2e/env/node.sh``): the chart's smoke test
(templates/tests/smoke-pod.yaml) against a running ChatCluster, the way the chart's NOTES
tell a user to run it.

``helm install`` the chart, ``kubectl apply`` a ChatCluster and wait for Ready, then
``helm upgrade --reuse-values --set test.chatCluster...`` and ``helm test``: its pod signs
two users up, logs them in and sends a message from one to the other through the API and a
chat server. The same test pointed at an address where no API answers must fail.

The node has no cluster DNS, so the test names the API by its Service's ClusterIP
(``test.apiUrl``) and the ChatCluster publishes its chat servers on node ports
(``spec.chat.expose.mode: nodePort``, ``ws://<node>:<port>``), which pods reach too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from ._drills import Installed, installation, wait_ready
from ._node import CHART, Platform, example_for_node

pytestmark = [pytest.mark.node, pytest.mark.timeout(420)]

HELM_TEST_TIMEOUT = "150s"  # helm test waits this long for the pod to finish


@pytest.fixture(scope="module")
def installed(platform: Platform) -> Iterator[Installed]:
    """The chart and a one-server ChatCluster on node ports, Ready."""
    manifests = example_for_node(platform.env, tag=platform.env.tags[0], target_connections=50)
    # One node port, above the range test_node_expose.py draws its ports from (to 31609).
    base_port = random.randrange(31700, 32700)
    for doc in manifests:
        if doc["kind"] == "ChatCluster":
            doc["spec"]["chat"].update(
                autoscaling=False,
                replicas=1,
                minReplicas=1,
                maxReplicas=1,
                expose={"mode": "nodePort", "nodePort": {"basePort": base_port}},
            )
            doc["spec"]["api"]["replicas"] = 1
    with installation(platform, manifests) as installed:
        wait_ready(installed, 1)
        yield installed


def helm_test(installed: Installed, api_url: str) -> tuple[int, str]:
    """What NOTES.txt tells the user: name the ChatCluster the test talks to (an upgrade
    with the values so far), then ``helm test``; its exit status and output."""
    platform = installed.platform
    platform.helm(
        "upgrade",
        installed.release,
        str(CHART),
        "--namespace",
        installed.operator_namespace,
        "--reuse-values",
        "--set",
        f"test.chatCluster.name={installed.name}",
        "--set",
        f"test.chatCluster.namespace={installed.namespace}",
        "--set",
        f"test.apiUrl={api_url}",
        "--wait",
        "--timeout",
        "120s",
    )
    result = platform.run(
        "helm",
        "test",
        installed.release,
        "--namespace",
        installed.operator_namespace,
        "--logs",
        "--timeout",
        HELM_TEST_TIMEOUT,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def smoke_pod(installed: Installed) -> dict[str, Any]:
    (pod,) = installed.platform.items(
        "pods", "-n", installed.operator_namespace, "-l", "app.kubernetes.io/component=test"
    )
    return pod


def api_cluster_ip_url(installed: Installed) -> str:
    svc = installed.platform.get("service", "-n", installed.namespace, f"{installed.name}-api")
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


# --- tests -------------------------------------------------------------------------------


def test_helm_test_chats_through_the_api_and_a_chat_server(installed: Installed) -> None:
    code, output = helm_test(installed, api_cluster_ip_url(installed))
    assert code == 0, output
    assert "Phase:          Succeeded" in output, output
    pod = smoke_pod(installed)
    assert pod["status"]["phase"] == "Succeeded"
    assert "received helmtest_a_" in output, output
    # The message went through a chat server, at the address login gave (a node port).
    node_ip = pod["status"]["hostIP"]
    assert f"through ws://{node_ip}:" in output, output
    image = pod["spec"]["containers"][0]["image"]
    env = installed.platform.env
    assert image == f"{env.image}:{env.tags[0]}", image


def test_helm_test_fails_when_the_api_does_not_answer(installed: Installed) -> None:
    # Port 9 of the pod's own loopback: nothing listens, every call is refused.
    code, output = helm_test(installed, "http://127.0.0.1:9")
    assert code != 0, output
    assert "Phase:          Failed" in output, output
    assert smoke_pod(installed)["status"]["phase"] == "Failed"
