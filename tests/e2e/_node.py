"""The real single-node Kubernetes of the test environment (``e2e/env/node.sh``), driven
the way a platform team drives one: ``helm`` and ``kubectl`` as subprocesses, and chat
clients on the host.

The node has no cluster DNS: the chat servers publish ``ws://<pod>.<service>.<namespace>
.svc:<port>/v1/ws`` as their address, which only resolves inside a cluster with DNS. The
host's clients (:class:`NodeClients`) resolve such a name to the pod's IP through the API
server instead, at every connect, so a pod that came back with a new IP is found again.
Everything else a client does — the API through its Service's ClusterIP (kube-proxy), the
chat servers on their pod IPs — goes over the node's real network.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

from behaviour._harness import Clients, WsClient

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tidings"
EXAMPLE = REPO / "examples" / "chatcluster.yaml"
COMMAND_TIMEOUT = 180  # seconds, for any one helm or kubectl run


@dataclass(frozen=True)
class NodeEnv:
    """What ``node.sh`` and the host services wrote into the test environment."""

    kubeconfig: str
    bin_dir: Path
    image: str  # repository, imported into the node's containerd
    tags: tuple[str, ...]  # its tags there: the drills roll from the first to the second
    kafka: str  # bootstrap servers, as pods reach them
    cassandra_host: str
    cassandra_port: int
    postgres_url: str

    @classmethod
    def from_testenv(cls, testenv: Mapping[str, str]) -> NodeEnv:
        return cls(
            kubeconfig=testenv["TIDINGS_TEST_NODE_KUBECONFIG"],
            bin_dir=Path(testenv["TIDINGS_TEST_NODE_BIN_DIR"]),
            image=testenv["TIDINGS_TEST_NODE_IMAGE"],
            tags=tuple(testenv["TIDINGS_TEST_NODE_IMAGE_TAGS"].split(",")),
            kafka=testenv["TIDINGS_TEST_KAFKA_POD_BOOTSTRAP"],
            cassandra_host=testenv["TIDINGS_TEST_CASSANDRA_POD_HOST"],
            cassandra_port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
            postgres_url=testenv["TIDINGS_TEST_POSTGRES_POD_URL"],
        )


class Platform:
    """helm and kubectl against the node's cluster, plus bounded waits."""

    def __init__(self, env: NodeEnv) -> None:
        self.env = env
        self._env = {"KUBECONFIG": env.kubeconfig, "PATH": "/usr/bin:/bin", "HOME": "/tmp"}

    def run(
        self, tool: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.env.bin_dir / tool), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self._env,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.run("kubectl", *args, stdin=stdin).stdout

    def helm(self, *args: str) -> str:
        return self.run("helm", *args).stdout

    def get(self, *args: str) -> Any:
        """``kubectl get ... -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def items(self, *args: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get(*args)["items"]
        return found

    def wait_for(
        self, what: str, check: Callable[[], T | None], timeout: float, every: float = 1.0
    ) -> T:
        """Until ``check()`` returns something truthy (returned), at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = check()
            except AssertionError as exc:  # a kubectl that failed: try again until the end
                last = exc
            if last and not isinstance(last, AssertionError):
                return last
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")
            time.sleep(every)

    def pod_ips(self, namespace: str) -> dict[str, str]:
        return {
            pod["metadata"]["name"]: pod["status"]["podIP"]
            for pod in self.items("pods", "-n", namespace)
            if pod.get("status", {}).get("podIP")
        }


def pod_ready(pod: Mapping[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


# --- the example ChatCluster, made to fit the test node ----------------------------------


def example_documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(EXAMPLE.read_text()) if doc]


def example_for_node(env: NodeEnv, *, tag: str, target_connections: int) -> list[dict[str, Any]]:
    """examples/chatcluster.yaml with what a site changes in it: where its Kafka, Cassandra
    and PostgreSQL are (the host's, reached over the pod bridge, without auth), the image
    (the one imported into the node), sizes that fit a 2-core node, and an autoscaling
    target small enough for a test's load. The push workers are off: their example
    provider settings point at a webhook on the internet."""
    docs = []
    for doc in example_documents():
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "Secret" and name == "tidings-postgres":
            doc["stringData"] = {"url": env.postgres_url}
        elif kind == "Secret" and name == "tidings-jwt":
            doc["stringData"] = {"secret": uuid.uuid4().hex + uuid.uuid4().hex[:16]}
        elif kind == "Secret":
            continue  # Kafka/Cassandra auth and push credentials: not used here
        elif kind == "ChatCluster":
            spec = doc["spec"]
            spec["image"] = f"{env.image}:{tag}"
            spec["imagePullPolicy"] = "Never"
            small = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "768Mi"}}
            spec["chat"].update(
                minReplicas=2,
                maxReplicas=3,
                targetConnectionsPerPod=target_connections,
                scaleDownStabilizationSeconds=15,
                drainBudgetSeconds=5,
                resources=small,
            )
            spec["api"].update(replicas=2, resources=small)
            spec["push"] = {"replicas": 0}
            spec["kafka"] = {
                "bootstrapServers": env.kafka,
                "topicPrefix": f"e2e{uuid.uuid4().hex[:8]}",
                "inboxPartitions": 6,
                "replicationFactor": 1,
                "retentionHours": 24,
            }
            spec["cassandra"] = {
                "contactPoints": [env.cassandra_host],
                "port": env.cassandra_port,
                "keyspace": f"e2e_{uuid.uuid4().hex[:8]}",
                "replicationFactor": 1,
                "consistency": "ONE",
            }
        docs.append(doc)
    return docs


# --- clients on the host ----------------------------------------------------------------


class NodeClients(Clients):
    """Clients whose chat URLs (cluster DNS names) resolve to pod IPs through the API."""

    def __init__(self, platform: Platform, ssl: SSLContext | None = None) -> None:
        super().__init__(ssl)
        self.platform = platform
        self._lock = asyncio.Lock()

    async def resolve(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        labels = host.split(".")
        if len(labels) < 4 or labels[3] != "svc":
            return url
        pod, namespace = labels[0], labels[2]
        async with self._lock:
            ips = await asyncio.to_thread(self.platform.pod_ips, namespace)
        ip = ips.get(pod)
        if ip is None:
            raise OSError(f"pod {namespace}/{pod} has no IP (yet)")
        return urlunsplit(parts._replace(netloc=f"{ip}:{parts.port or 80}"))

    async def open(self, url: str, *, ssl: SSLContext | None = None) -> WsClient:
        client = await WsClient.open(await self.resolve(url), ssl=ssl or self.ssl)
        self.opened.append(client)
        return client


def api_base_url(platform: Platform, namespace: str, service: str) -> str:
    """The API's Service, at its ClusterIP (kube-proxy routes it from the host too), once
    it answers ``/readyz`` there (kube-proxy programs a new Service within seconds)."""
    svc = platform.get("service", "-n", namespace, service)
    port = svc["spec"]["ports"][0]["port"]
    url = f"http://{svc['spec']['clusterIP']}:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=3, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    platform.wait_for(f"the API through Service {namespace}/{service}", answers, 60, 1.0)
    return url
