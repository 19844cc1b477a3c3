"""What the node drills share: an installation (the chart and a ChatCluster), waits,
users spread over the chat servers, a steady load of clients on the host, and the
figures a drill reports (tests/e2e/test_node_*.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import yaml

from behaviour._harness import Account, Clients, new_account
from behaviour._load import Device, Load, peers_elsewhere, percentile

from ._node import CHART, Platform, api_base_url, condition, pod_ready

BACK_WITHIN_S = 10.0  # a drained or deleted chat server's clients are welcomed elsewhere
SEND_EVERY_S = 1.0
LOAD_BOUNDS = {"answer_within": 25.0, "reconnect_within": 60.0, "delivered_within": 30.0}
READY_WITHIN_S = 240.0  # image on the node: pods start, Kafka topics and keyspace made


@dataclass
class Installed:
    platform: Platform
    release: str
    operator_namespace: str
    namespace: str  # of the ChatCluster
    name: str  # of the ChatCluster
    manifests: list[dict[str, Any]]

    def chatcluster(self) -> dict[str, Any]:
        found: dict[str, Any] = self.platform.get("chatcluster", "-n", self.namespace, self.name)
        return found

    def chat_pods(self) -> list[dict[str, Any]]:
        return self.platform.items(
            "pods",
            "-n",
            self.namespace,
            "-l",
            f"app.kubernetes.io/component=chat,tidings.dev/chatcluster={self.name}",
        )

    def api_url(self) -> str:
        return api_base_url(self.platform, self.namespace, f"{self.name}-api")

    def ready(self, replicas: int | None = None) -> dict[str, Any] | None:
        """The ChatCluster when Ready with all chat servers Ready (and ``replicas`` of them)."""
        cc = self.chatcluster()
        status = cc.get("status", {})
        if condition(cc, "Ready").get("status") != "True":
            return None
        if status.get("observedGeneration") != cc["metadata"]["generation"]:
            return None
        if status.get("rollout", {}).get("inProgress"):
            return None
        want = replicas if replicas is not None else status.get("desiredReplicas")
        pods = [p for p in self.chat_pods() if pod_ready(p)]
        if status.get("readyReplicas") != want or len(pods) != want:
            return None
        return cc


def wait_ready(installed: Installed, replicas: int | None = None) -> dict[str, Any]:
    return installed.platform.wait_for(
        f"ChatCluster {installed.namespace}/{installed.name} Ready"
        + (f" with {replicas} chat servers" if replicas else ""),
        lambda: installed.ready(replicas),
        READY_WITHIN_S,
        every=2.0,
    )


async def api_client(installed: Installed) -> httpx.AsyncClient:
    """An HTTP client of the API through its Service, once it answers there."""
    return httpx.AsyncClient(base_url=await asyncio.to_thread(installed.api_url), timeout=20)


async def users_on_each_server(
    http: httpx.AsyncClient, servers: int, count: int, prefix: str
) -> list[Account]:
    """``count`` new users, at least one on each of ``servers`` chat servers."""
    accounts = list(await asyncio.gather(*(new_account(http, prefix) for _ in range(count))))
    for _ in range(40):
        if len({a.chat_url for a in accounts}) >= servers:
            break
        accounts[-1 - len(accounts) // 2] = await new_account(http, prefix)
    assert len({a.chat_url for a in accounts}) >= servers, "users all hash to one server"
    return accounts


async def start_load(http: httpx.AsyncClient, clients: Clients, accounts: list[Account]) -> Load:
    load = Load([http], clients, SEND_EVERY_S, **LOAD_BOUNDS)
    conns = await asyncio.gather(*(clients.connect(a) for a in accounts))
    for account, conn, target in zip(accounts, conns, peers_elsewhere(accounts), strict=True):
        load.devices.append(Device(account, conn, target))
    load.start()
    return load


def outage_report(devices: list[Device]) -> dict[str, Any]:
    outages = [o for d in devices for o in d.outages()]
    result: dict[str, Any] = {"outages": len(outages)}
    if outages:
        result |= {
            "back_p50_s": round(percentile(outages, 50), 3),
            "back_p99_s": round(percentile(outages, 99), 3),
            "back_max_s": round(max(outages), 3),
        }
    return result


def answers(load: Load) -> dict[str, int]:
    return dict(Counter(s.answer for d in load.devices for s in d.sends))


def assert_only_acks(load: Load, report: str) -> None:
    bad = {k: v for k, v in answers(load).items() if k not in ("ack", "closed")}
    assert not bad, f"sends answered other than ack (or cut by a move): {report}"


class PodWatch:
    """Samples the chat pods in a thread: the most that were not Ready at one time, and
    every image they ran."""

    def __init__(self, installed: Installed, replicas: int) -> None:
        self.installed, self.replicas = installed, replicas
        self.most_unready = 0
        self.images: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.installed.chat_pods()
            except AssertionError:
                continue
            ready = sum(1 for p in pods if pod_ready(p))
            self.most_unready = max(self.most_unready, self.replicas - ready)
            for pod in pods:
                self.images |= {c["image"] for c in pod["spec"]["containers"]}
            self._stop.wait(0.5)


@contextlib.contextmanager
def installation(platform: Platform, manifests: list[dict[str, Any]]) -> Iterator[Installed]:
    """``helm install`` the chart in a namespace of its own and apply ``manifests`` (a
    ChatCluster named ``chat`` and its Secrets) in another; both removed at the end."""
    suffix = uuid.uuid4().hex[:6]
    env = platform.env
    release, operator_ns, namespace = "tidings", f"tidings-system-{suffix}", f"chat-{suffix}"
    platform.helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        operator_ns,
        "--create-namespace",
        "--set",
        f"image.repository={env.image}",
        "--set",
        f"image.tag={env.tags[0]}",
        "--set",
        "image.pullPolicy=Never",
        "--wait",
        "--timeout",
        "180s",
    )
    platform.kubectl("create", "namespace", namespace)
    installed = Installed(platform, release, operator_ns, namespace, "chat", manifests)
    try:
        platform.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(manifests))
        yield installed
    finally:
        platform.run("kubectl", "delete", "namespace", namespace, "--wait=false", check=False)
        if platform.run("helm", "status", release, "-n", operator_ns, check=False).returncode == 0:
            platform.run("helm", "uninstall", release, "-n", operator_ns, "--wait", check=False)
        platform.run("kubectl", "delete", "namespace", operator_ns, "--wait=false", check=False)
