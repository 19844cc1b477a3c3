"""One ChatCluster at fleet scale on kwok nodes: scale up, steady counts, a full paced roll.

The run (:func:`run`), against the test environment (``make testenv-up``):

1. ``nodes`` kwok nodes of its own (tainted and labelled with the run's id, so no other
   test's pods land on them and the ChatCluster's pods land nowhere else), a namespace,
   a topic prefix and a keyspace; the operator (``fleet_operator.py``: the real operator,
   counting its API calls) with one-second ticks; a ChatCluster with autoscaling on from
   ``start_replicas`` to ``replicas`` at 50,000 connections per pod.
2. **Scale-up**: the stand-in fleet reports ``replicas`` x 50,000 connections; timed until
   every chat pod is ready and the status says so.
3. **Steady**: ``steady_s`` seconds of membership records from every pod every
   ``interval_s``; the connection total moves every ``change_every_s`` seconds and each
   change is timed until the status shows it. Measured: sync (tick) duration, API calls per
   tick, operator CPU and memory.
4. **Roll**: a new image; timed until every chat pod runs the new revision and the rollout
   is complete. Watched every second: how many chat pods were out at once.

Everything it made is removed at the end, also on failure. The figures come back as a
dict (``run.py`` prints and saves them as JSON).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from fleet_stand_in import StandIn
from kubernetes import config as kube_config
from prometheus_client.parser import text_string_to_metric_families

from tidings_operator import names
from tidings_operator.builders import PRESTOP_PAUSE_S
from tidings_operator.kube import KINDS, Kube
from tidings_operator.observe import pod_view

__all__ = ["FleetConfig", "FleetError", "read_testenv", "run"]

REPO = Path(__file__).resolve().parents[2]
NAME = "chat"
TARGET = 50_000
T = TypeVar("T")


class FleetError(Exception):
    """A phase did not finish in time (the message says which and what was seen)."""


@dataclass
class FleetConfig:
    replicas: int = 200
    nodes: int = 50
    start_replicas: int = 10
    drain_budget_s: int = 5
    drain_s: float | None = None  # simulated drain; None: preStop pause + drain budget
    interval_s: float = 1.0  # membership records every ...
    steady_s: float = 60.0
    change_every_s: float = 10.0
    scale_timeout_s: float = 900.0
    roll_timeout_s: float = 7200.0
    log_dir: Path = field(default_factory=lambda: REPO / ".testenv" / "logs")

    @property
    def simulated_drain_s(self) -> float:
        if self.drain_s is not None:
            return self.drain_s
        return float(PRESTOP_PAUSE_S + self.drain_budget_s)


def read_testenv() -> dict[str, str]:
    """The test environment's addresses (``.testenv/*.env``; the environment wins)."""
    state = Path(os.environ.get("TIDINGS_TESTENV_STATE", REPO / ".testenv"))
    values: dict[str, str] = {}
    for env_file in sorted(state.glob("*.env")):
        for line in env_file.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    values.update({k: v for k, v in os.environ.items() if k.startswith("TIDINGS_TEST_")})
    for key in ("TIDINGS_TEST_KUBECONFIG", "TIDINGS_TEST_KAFKA_BOOTSTRAP"):
        if key not in values:
            raise FleetError(f"{key} is not set: start the test environment (make testenv-up)")
    return values


async def _until(what: str, check: Callable[[], Awaitable[T | None]], within: float) -> T:
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise FleetError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


# --- the operator process -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """The operator (with its API calls counted) as a child process; its CPU and memory."""

    def __init__(self, namespace: str, kubeconfig: str, log_path: Path) -> None:
        self.port = _free_port()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("fleet_operator.py")),
                    "--namespace",
                    namespace,
                    "--tick-seconds",
                    "1",
                    "--resync-seconds",
                    "60",
                    "--metrics-port",
                    str(self.port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def cpu_s(self) -> float:
        """User + system CPU seconds so far (/proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample the operator serves, keyed by (name, sorted labels)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
        return out


Samples = Mapping[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Window:
    """What the operator did between two snapshots."""

    seconds: float
    ticks: int
    api_calls: dict[str, float]  # "client verb resource" -> calls
    cpu_percent: float
    rss_mib: float
    sync_mean_s: float
    sync_p99_le_s: float  # the upper bound of the bucket the 99th percentile falls in

    @property
    def calls_per_tick(self) -> float:
        return sum(self.api_calls.values()) / self.ticks if self.ticks else 0.0

    def kube_calls_per_tick(self) -> float:
        ours = sum(v for k, v in self.api_calls.items() if k.startswith("kube "))
        return ours / self.ticks if self.ticks else 0.0


def _delta(
    a: Samples, b: Samples, name: str, **match: str
) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for (n, labels), value in b.items():
        if n == name and all(dict(labels).get(k) == v for k, v in match.items()):
            out[labels] = value - a.get((n, labels), 0.0)
    return out


def window(op: Operator, a: Samples, b: Samples, cpu: float, seconds: float, rss: float) -> Window:
    count = sum(
        _delta(a, b, "tidings_operator_reconcile_duration_seconds_count", step="sync").values()
    )
    total = sum(
        _delta(a, b, "tidings_operator_reconcile_duration_seconds_sum", step="sync").values()
    )
    buckets: dict[float, float] = {}
    for labels, value in _delta(
        a, b, "tidings_operator_reconcile_duration_seconds_bucket", step="sync"
    ).items():
        le = float(dict(labels)["le"])
        buckets[le] = buckets.get(le, 0.0) + value
    p99 = next((le for le in sorted(buckets) if count and buckets[le] >= 0.99 * count), 0.0)
    calls = {
        " ".join(dict(labels)[k] for k in ("client", "verb", "resource")): value
        for labels, value in _delta(a, b, "tidings_fleet_api_requests_total").items()
        if value
    }
    return Window(
        seconds=round(seconds, 1),
        ticks=int(count),
        api_calls=dict(sorted(calls.items())),
        cpu_percent=round(100 * cpu / seconds, 1) if seconds else 0.0,
        rss_mib=round(rss, 1),
        sync_mean_s=round(total / count, 4) if count else 0.0,
        sync_p99_le_s=p99,
    )


class Watch:
    """Snapshots of the operator at the start of a phase, and its peak memory during it."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.samples = op.metrics()
        self.cpu = op.cpu_s()
        self.started = time.monotonic()
        self.peak_rss = op.rss_mib()

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.op.rss_mib())

    def end(self) -> Window:
        self.sample()
        return window(
            self.op,
            self.samples,
            self.op.metrics(),
            self.op.cpu_s() - self.cpu,
            time.monotonic() - self.started,
            self.peak_rss,
        )


# --- what the run makes ---------------------------------------------------------------------


def _node(name: str, run_id: str) -> dict[str, Any]:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "type": "kwok",
                "fleet.tidings.dev/run": run_id,
            },
        },
        "spec": {
            "taints": [{"key": "fleet.tidings.dev/run", "value": run_id, "effect": "NoSchedule"}]
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def _cluster(
    env: Mapping[str, str], cfg: FleetConfig, run_id: str, prefix: str, keyspace: str
) -> dict[str, Any]:
    placement = {
        "tolerations": [
            {
                "key": "fleet.tidings.dev/run",
                "operator": "Equal",
                "value": run_id,
                "effect": "NoSchedule",
            }
        ],
        "nodeSelector": {"fleet.tidings.dev/run": run_id},
    }
    hosts = [h.strip() for h in env["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",") if h.strip()]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": NAME},
        "spec": {
            "image": "registry.invalid/tidings:1",
            "chat": {
                "minReplicas": cfg.start_replicas,
                "maxReplicas": cfg.replicas,
                "targetConnectionsPerPod": TARGET,
                "scaleDownStabilizationSeconds": 600,
                "drainBudgetSeconds": cfg.drain_budget_s,
                "progressDeadlineSeconds": 300,
                "podTemplate": placement,
            },
            "api": {"replicas": 1, "podTemplate": placement},
            "push": {"replicas": 1, "podTemplate": placement},
            "kafka": {
                "bootstrapServers": env["TIDINGS_TEST_KAFKA_BOOTSTRAP"],
                "topicPrefix": prefix,
                "inboxPartitions": 6,
                "replicationFactor": 1,
                "retentionHours": 1,
            },
            "cassandra": {
                "contactPoints": hosts,
                "port": int(env["TIDINGS_TEST_CASSANDRA_PORT"]),
                "keyspace": keyspace,
                "replicationFactor": 1,
                "consistency": "LOCAL_ONE",
            },
            "postgres": {"urlSecretRef": {"name": "tidings-db", "key": "url"}},
            "jwtSecretRef": {"name": "tidings-jwt", "key": "secret"},
        },
    }


async def _setup(
    kube: Kube, env: Mapping[str, str], cfg: FleetConfig, ns: str, run_id: str
) -> None:
    await asyncio.to_thread(
        subprocess.run,
        [
            f"{env['TIDINGS_TEST_BIN_DIR']}/kubectl",
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(REPO / "crds" / "chatclusters.tidings.dev.yaml"),
        ],
        env={"KUBECONFIG": env["TIDINGS_TEST_KUBECONFIG"], "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=120,
    )
    for i in range(cfg.nodes):
        await kube.request("POST", "/api/v1/nodes", _node(f"fleet-{run_id}-{i}", run_id))
    await kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    for secret, key, value in (
        ("tidings-db", "url", "postgresql+asyncpg://tidings:secret@postgres/tidings"),
        ("tidings-jwt", "secret", "not-a-real-secret"),
    ):
        data = {key: base64.b64encode(value.encode()).decode()}
        await kube.request(
            "POST", KINDS["Secret"].path(ns), {"metadata": {"name": secret}, "data": data}
        )


async def _teardown(
    kube: Kube,
    env: Mapping[str, str],
    cfg: FleetConfig,
    ns: str,
    run_id: str,
    prefix: str,
    keyspace: str,
) -> None:
    with contextlib.suppress(Exception):
        await kube.request("DELETE", KINDS[names.KIND].path(ns, NAME), missing_ok=True)
    with contextlib.suppress(Exception):
        await kube.request(
            "DELETE",
            KINDS["Pod"].path(ns),
            {"gracePeriodSeconds": 0},
            query=[("gracePeriodSeconds", "0")],
            missing_ok=True,
        )
    with contextlib.suppress(Exception):
        await kube.request("DELETE", f"/api/v1/namespaces/{ns}", missing_ok=True)
    for _ in range(120):
        if await kube.request("GET", f"/api/v1/namespaces/{ns}", missing_ok=True) is None:
            break
        await asyncio.sleep(1)
    for i in range(cfg.nodes):
        with contextlib.suppress(Exception):
            await kube.request("DELETE", f"/api/v1/nodes/fleet-{run_id}-{i}", missing_ok=True)
    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=env["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
        await admin.start()
        try:
            ours = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
            if ours:
                await admin.delete_topics(ours)
        finally:
            await admin.close()
    with contextlib.suppress(Exception):
        await asyncio.to_thread(_drop_keyspace, env, keyspace)


def _drop_keyspace(env: Mapping[str, str], keyspace: str) -> None:
    from cassandra.cluster import Cluster

    hosts = [h.strip() for h in env["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",") if h.strip()]
    cluster = Cluster(hosts, port=int(env["TIDINGS_TEST_CASSANDRA_PORT"]))
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        cluster.shutdown()


# --- the phases -----------------------------------------------------------------------------


def _condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


class Run:
    def __init__(self, kube: Kube, ns: str, op: Operator, stand_in: StandIn) -> None:
        self.kube, self.ns, self.op, self.stand_in = kube, ns, op, stand_in

    async def cluster(self) -> dict[str, Any]:
        obj = await self.kube.get(names.KIND, self.ns, NAME)
        if obj is None:
            raise FleetError("the ChatCluster is gone")
        return obj

    async def status(self) -> dict[str, Any]:
        return dict((await self.cluster()).get("status") or {})

    async def pods(self) -> list[Any]:
        raw = await self.kube.list("Pod", self.ns, names.selector_string(NAME, names.CHAT))
        return [pod_view(p) for p in raw]

    async def scale_up(self, replicas: int, within: float) -> dict[str, Any]:
        watch = Watch(self.op)
        started = time.monotonic()
        self.stand_in.clients = replicas * TARGET
        decided: float | None = None

        async def all_ready() -> bool:
            nonlocal decided
            watch.sample()
            status = await self.status()
            if decided is None and status.get("desiredReplicas") == replicas:
                decided = time.monotonic() - started
            ready = [p for p in await self.pods() if p.ready and not p.terminating]
            return status.get("readyReplicas") == replicas and len(ready) == replicas

        await _until(f"{replicas} ready chat servers", all_ready, within)
        took = time.monotonic() - started
        return {
            "seconds": round(took, 1),
            "decided_after_s": round(decided or 0.0, 1),
            "operator": _window_dict(watch.end()),
        }

    async def steady(self, seconds: float, change_every_s: float, replicas: int) -> dict[str, Any]:
        """Counts that move while every server publishes; how long until the status shows."""
        watch = Watch(self.op)
        base = replicas * TARGET
        lags: list[float] = []
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            total = base - 1_000 * (1 + n % 3)  # stays above (replicas - 1) x target
            self.stand_in.clients = total
            changed = time.monotonic()

            async def shown(total: int = total) -> bool:
                watch.sample()
                return (await self.status()).get("connections") == total

            await _until(f"{total} connections in the status", shown, 60)
            lags.append(time.monotonic() - changed)
            await asyncio.sleep(max(0.0, change_every_s - (time.monotonic() - changed)))
        self.stand_in.clients = base
        lags.sort()
        return {
            "count_changes": len(lags),
            "count_to_status_s": {
                "min": round(lags[0], 2),
                "median": round(lags[len(lags) // 2], 2),
                "max": round(lags[-1], 2),
            },
            "operator": _window_dict(watch.end()),
        }

    async def roll(self, replicas: int, within: float) -> dict[str, Any]:
        watch = Watch(self.op)
        before = {p.name: p.uid for p in await self.pods()}
        started = time.monotonic()
        await self.kube.request(
            "PATCH",
            KINDS[names.KIND].path(self.ns, NAME),
            {"spec": {"image": "registry.invalid/tidings:2"}},
            content_type="application/merge-patch+json",
        )
        most_out = 0
        replaced: set[str] = set()
        first_replaced: float | None = None
        deadline = time.monotonic() + within
        while True:
            if time.monotonic() > deadline:
                raise FleetError(
                    f"the roll did not finish in {within:.0f}s ({len(replaced)} replaced)"
                )
            watch.sample()
            pods = await self.pods()
            present = {p.name for p in pods}
            out = {p.name for p in pods if p.terminating or not p.ready}
            out |= {n for n in before if n not in present}
            most_out = max(most_out, len(out))
            replaced |= {p.name for p in pods if before.get(p.name) != p.uid}
            if replaced and first_replaced is None:
                first_replaced = time.monotonic() - started
            obj = await self.cluster()
            rollout = (obj.get("status") or {}).get("rollout") or {}
            if _condition(obj, "Degraded").get("status") == "True":
                raise FleetError(f"the roll halted: {_condition(obj, 'Degraded')}")
            revision = rollout.get("updateRevision")
            if (
                len(replaced) == replicas
                and not rollout.get("inProgress")
                and len(pods) == replicas
                and all(p.revision == revision and p.ready for p in pods)
            ):
                break
            await asyncio.sleep(1.0)
        took = time.monotonic() - started
        metrics = self.op.metrics()
        evicted = sum(
            v for (n, _), v in metrics.items() if n == "tidings_operator_rollout_replacements_total"
        )
        return {
            "seconds": round(took, 1),
            "per_pod_s": round(took / replicas, 2),
            "first_replacement_after_s": round(first_replaced or 0.0, 1),
            "replaced": len(replaced),
            "evictions_counted": evicted,
            "most_out_at_once": most_out,
            "operator": _window_dict(watch.end()),
        }


def _window_dict(w: Window) -> dict[str, Any]:
    out = asdict(w)
    out["api_calls_per_tick"] = round(w.calls_per_tick, 2)
    out["kube_calls_per_tick"] = round(w.kube_calls_per_tick(), 2)
    return out


async def run(cfg: FleetConfig, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole run; its figures. Raises :class:`FleetError` when a phase does not finish."""
    env = read_testenv()
    run_id = uuid.uuid4().hex[:8]
    ns, prefix, keyspace = f"fleet-{run_id}", f"fleet{run_id}", f"fleet_{run_id}"
    kube = Kube(kube_config.new_client_from_config(config_file=env["TIDINGS_TEST_KUBECONFIG"]))
    op: Operator | None = None
    stand_in: StandIn | None = None
    result: dict[str, Any] = {
        "run_id": run_id,
        "namespace": ns,
        "config": {**asdict(cfg), "log_dir": str(cfg.log_dir)},
    }
    result["config"]["simulated_drain_s"] = cfg.simulated_drain_s
    try:
        say(f"fleet {run_id}: {cfg.nodes} kwok nodes, namespace {ns}")
        await _setup(kube, env, cfg, ns, run_id)
        op = Operator(
            ns, env["TIDINGS_TEST_KUBECONFIG"], cfg.log_dir / f"fleet-{run_id}-operator.log"
        )
        result["operator_log"] = str(op.log_path)
        await kube.request(
            "POST", KINDS[names.KIND].path(ns), _cluster(env, cfg, run_id, prefix, keyspace)
        )
        stand_in = StandIn(
            kube,
            ns,
            NAME,
            env["TIDINGS_TEST_KAFKA_BOOTSTRAP"],
            prefix,
            interval_s=cfg.interval_s,
            drain_s=cfg.simulated_drain_s,
        )
        fleet = Run(kube, ns, op, stand_in)

        async def started() -> bool:
            obj = await fleet.cluster()
            ready = _condition(obj, "Ready").get("status") == "True"
            return ready and (obj.get("status") or {}).get("readyReplicas") == cfg.start_replicas

        t0 = time.monotonic()
        await _until(f"the ChatCluster Ready with {cfg.start_replicas} chat servers", started, 300)
        result["create_s"] = round(time.monotonic() - t0, 1)
        await stand_in.start()
        say(f"ready with {cfg.start_replicas} in {result['create_s']}s; scaling to {cfg.replicas}")
        result["scale_up"] = await fleet.scale_up(cfg.replicas, cfg.scale_timeout_s)
        say(f"scale-up: {result['scale_up']['seconds']}s; steady for {cfg.steady_s:.0f}s")
        result["steady"] = await fleet.steady(cfg.steady_s, cfg.change_every_s, cfg.replicas)
        say(f"steady: {result['steady']['count_to_status_s']}; rolling {cfg.replicas} pods")
        result["roll"] = await fleet.roll(cfg.replicas, cfg.roll_timeout_s)
        say(f"roll: {result['roll']['seconds']}s ({result['roll']['per_pod_s']}s a pod)")
        result["stand_in"] = {
            "steps": stand_in.steps,
            "records": stand_in.published_records,
            "slowest_step_s": round(stand_in.slowest_step_s, 2),
        }
        return result
    finally:
        if stand_in is not None:
            with contextlib.suppress(Exception):
                await stand_in.stop()
        if op is not None:
            op.stop()
        await _teardown(kube, env, cfg, ns, run_id, prefix, keyspace)
        kube.close()
