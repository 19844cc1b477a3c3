"""What a fleet of chat servers does, for kwok chat pods that run nothing.

Every ``interval_s`` each ready chat pod of one ChatCluster "publishes" its membership
record (the workloads' own ``MemberRecord`` encoding) to ``<prefix>.members``, as a chat
server does every second; a pod that goes gets a tombstone. The clients (``clients``, a
total) are spread evenly over the serving pods; when a pod drains, its clients are on
the others at its next step (at 200 servers one server's clients are 0.5% of the total).

Draining takes time on a real cluster: on SIGTERM a chat server waits out its ``preStop``
pause, tells its clients to come back in paced batches over the drain budget, and exits;
only then does the StatefulSet recreate the pod, and the new server starts and joins.
kwok deletes a pod at once, whatever its grace period and finalizers. With ``drain_s``
set, the stand-in keeps a *replaced* pod's new server from joining (publishing its first
record) until ``drain_s`` plus ``startup_s`` after its predecessor went: a rollout step,
which waits for the new server to join, takes as long as with a real drain. A pod name
seen for the first time (a scale-up) starts in ``startup_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from tidings.cluster.membership import MemberRecord
from tidings_operator import names
from tidings_operator.kube import Kube
from tidings_operator.observe import pod_view

__all__ = ["StandIn"]


class StandIn:
    """Membership records (and, optionally, drain times) for a ChatCluster's chat pods."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        cluster: str,
        bootstrap: str,
        prefix: str,
        *,
        interval_s: float = 1.0,
        startup_s: float = 1.0,
        drain_s: float = 0.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.cluster = cluster
        self.bootstrap = bootstrap
        self.topic = names.members_topic(prefix)
        self.interval_s = interval_s
        # A new pod's server takes this long to start and publish its first record.
        self.startup_s = startup_s
        self.drain_s = drain_s
        self.clients = 0
        self.steps = 0
        self.published_records = 0
        self.slowest_step_s = 0.0  # a step slower than the records' TTL (3 s) shows here
        self._joins_at: dict[str, float] = {}  # pod uid -> when its server joins
        self._uids: dict[str, str] = {}  # pod name -> the uid last seen under it
        self._gone: dict[str, float] = {}  # pod name -> when its last pod went
        self._published: set[str] = set()
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await self._producer.start()
        self._task = asyncio.create_task(self._run(), name="fleet-stand-in")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                for server_id in sorted(self._published):
                    await self._producer.send(self.topic, None, key=server_id.encode())
                await self._producer.flush()
            await self._producer.stop()
            self._producer = None

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep publishing; the driver's waits will tell
                print(f"fleet stand-in step failed: {exc!r}", flush=True)
            self.slowest_step_s = max(self.slowest_step_s, time.monotonic() - started)
            await asyncio.sleep(max(0.1, self.interval_s - (time.monotonic() - started)))

    async def _pods(self) -> list[dict[str, Any]]:
        return await self.kube.list(
            "Pod", self.namespace, names.selector_string(self.cluster, names.CHAT)
        )

    def _track(self, views: list[Any], now: float) -> None:
        """When each pod's server joins: a replacement after its predecessor's drain."""
        present = {v.name for v in views if not v.terminating}
        for name in set(self._uids) - present:
            self._gone.setdefault(name, now)
        for view in views:
            if view.terminating or view.uid in self._joins_at:
                continue
            previous = self._uids.get(view.name)
            if previous is not None and previous != view.uid:
                went = self._gone.pop(view.name, view.created or now)
                self._joins_at[view.uid] = max(now, went + self.drain_s) + self.startup_s
            else:
                self._joins_at[view.uid] = now + self.startup_s
            self._uids[view.name] = view.uid
            self._gone.pop(view.name, None)

    @staticmethod
    def _spread(amount: int, pods: list[str]) -> dict[str, int]:
        share, extra = divmod(amount, len(pods))
        return {pod: share + (1 if i < extra else 0) for i, pod in enumerate(sorted(pods))}

    async def step(self) -> None:
        raw = await self._pods()
        now = time.time()
        views = [pod_view(p) for p in raw]
        self._track(views, now)
        serving = {
            v.name: v.uid
            for v in views
            if v.ready and not v.terminating and now >= self._joins_at[v.uid]
        }
        for server_id in sorted(self._published - set(serving)):
            await self._producer.send(self.topic, None, key=server_id.encode())
            self._published.discard(server_id)
        counts = self._spread(self.clients, list(serving)) if serving else {}
        ts = int(time.time() * 1000)
        for pod, uid in sorted(serving.items()):
            record = MemberRecord(
                server_id=pod,
                url=f"ws://{pod}.{names.chat_name(self.cluster)}.{self.namespace}.svc:8080/v1/ws",
                connections=counts[pod],
                ts=ts,
                partition_count=6,
                pod_uid=uid,
            )
            await self._producer.send(self.topic, record.encode(), key=pod.encode())
            self._published.add(pod)
        await self._producer.flush()
        self.steps += 1
        self.published_records += len(serving)
