"""What the operator's integration tests share: the operator as a subprocess, a stand-in
fleet of chat servers, bounded waits.

kwok runs no containers: chat pods become Running and Ready, but nothing in them publishes
membership records. :class:`Fleet` does what the chat servers would: every second, each
ready chat pod "publishes" ``{server_id, url, partitions, connections, draining, ts}`` to
``<prefix>.members`` (the workloads' own ``MemberRecord`` encoding), and a tombstone when
its pod goes. Clients are modelled as a total that is spread over the live pods; the
clients of a pod that goes come back after ``reconnect_delay_s``, spread over the pods
that are left — which is what a failover looks like from the connection counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaProducer

from tidings.cluster.membership import MemberRecord
from tidings_operator import names
from tidings_operator.kube import KINDS, Kube
from tidings_operator.observe import pod_view

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "chatclusters.tidings.dev.yaml"

T = TypeVar("T")


async def eventually(
    what: str,
    check: Callable[[], Awaitable[T | None]],
    within: float,
    interval: float = 0.5,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


class OperatorProcess:
    """``python -m tidings_operator --namespace <ns>`` with the test cluster's kubeconfig."""

    def __init__(
        self,
        namespace: str,
        kubeconfig: str,
        log_path: Path,
        *,
        metrics_port: int = 0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.metrics_port = metrics_port
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidings_operator",
                "--namespace",
                self.namespace,
                "--tick-seconds",
                "1",
                "--resync-seconds",
                "10",
                "--metrics-port",
                str(self.metrics_port),
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: no cleanup, nothing handed over."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Fleet:
    """Publishes membership records for the ready chat pods of one ChatCluster."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        cluster: str,
        bootstrap: str,
        prefix: str,
        *,
        reconnect_delay_s: float = 2.0,
        startup_s: float = 1.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.cluster = cluster
        self.bootstrap = bootstrap
        self.topic = names.members_topic(prefix)
        self.reconnect_delay_s = reconnect_delay_s
        # A new pod's server takes this long to start and publish its first record (kwok
        # marks a recreated pod ready at once; a real server takes seconds).
        self.startup_s = startup_s
        self._born: dict[str, float] = {}  # pod uid -> when this fleet first saw it
        self.clients = 0  # how many clients want to be connected
        self.connected: dict[str, int] = {}
        self.uids: dict[str, str] = {}  # the pod each name's connections are on
        self.away = 0  # clients of a lost pod, not back yet
        self.away_since = 0.0
        # A pod for which this says True does not publish (a server that never joins).
        self.silent: Callable[[dict[str, Any]], bool] = lambda pod: False
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._published: set[str] = set()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
        await self._producer.start()
        self._task = asyncio.create_task(self._run(), name="fleet")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                for server_id in sorted(self._published):
                    await self._producer.send_and_wait(self.topic, None, key=server_id.encode())
            await self._producer.stop()
            self._producer = None

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep publishing; the test's waits will tell
                print(f"fleet step failed: {exc!r}")
            await asyncio.sleep(1.0)

    @staticmethod
    def _spread(amount: int, pods: list[str]) -> dict[str, int]:
        share, extra = divmod(amount, len(pods))
        return {pod: share + (1 if i < extra else 0) for i, pod in enumerate(sorted(pods))}

    async def step(self) -> None:
        raw = await self.kube.list(
            "Pod", self.namespace, names.selector_string(self.cluster, names.CHAT)
        )
        views = [(pod_view(p), p) for p in raw]
        live = {v.name: p for v, p in views if v.ready and not v.terminating}
        uids = {v.name: v.uid for v, _ in views}
        now = time.time()
        # A pod deleted and recreated under the same name between two steps is a new server:
        # its clients were dropped with the old one, so they count as lost too.
        replaced = [p for p in self.connected if p in live and uids.get(p) != self.uids.get(p)]
        for pod in [p for p in self.connected if p not in live] + replaced:
            lost = self.connected.pop(pod)
            self.uids.pop(pod, None)
            if lost:
                self.away += lost
                self.away_since = now
        for pod in live:
            self.connected.setdefault(pod, 0)
            self.uids[pod] = uids[pod]
        for uid in uids.values():
            self._born.setdefault(uid, now)
        starting = {p for p in live if now - self._born[uids[p]] < self.startup_s}
        serving = [p for p in live if p not in starting and not self.silent(live[p])]
        if serving and self.away and now - self.away_since >= self.reconnect_delay_s:
            for pod, n in self._spread(self.away, serving).items():
                self.connected[pod] += n
            self.away = 0
        have = sum(self.connected.values()) + self.away
        if serving and have < self.clients:
            for pod, n in self._spread(self.clients - have, serving).items():
                self.connected[pod] += n
        elif have > self.clients:
            surplus = have - self.clients
            for pod in sorted(self.connected, reverse=True):
                take = min(surplus, self.connected[pod])
                self.connected[pod] -= take
                surplus -= take
        # A server that went (or whose pod was replaced: the new one is still starting)
        # leaves the membership, as a chat server's drain on SIGTERM does.
        gone = self._published - set(serving)
        for server_id in sorted(gone):
            await self._producer.send_and_wait(self.topic, None, key=server_id.encode())
            self._published.discard(server_id)
        for pod in sorted(serving):
            record = MemberRecord(
                server_id=pod,
                url=f"ws://{pod}.{names.chat_name(self.cluster)}.{self.namespace}.svc:8080/v1/ws",
                connections=self.connected.get(pod, 0),
                ts=int(time.time() * 1000),
                partition_count=6,
                pod_uid=self.uids[pod],
            )
            await self._producer.send_and_wait(self.topic, record.encode(), key=pod.encode())
            self._published.add(pod)


async def get_cluster(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return await kube.get(names.KIND, namespace, name)


async def patch_spec(kube: Kube, namespace: str, name: str, spec: dict[str, Any]) -> None:
    await kube.request(
        "PATCH",
        KINDS[names.KIND].path(namespace, name),
        {"spec": spec},
        content_type="application/merge-patch+json",
    )
