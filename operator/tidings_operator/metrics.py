"""The operator's own Prometheus metrics (``--metrics-port``, GET /metrics).

One registry (:data:`REGISTRY`), not the process-wide default: what is served is exactly
what is listed here. Per-ChatCluster series carry ``namespace`` and ``name`` and are
removed when the ChatCluster goes (:func:`forget_cluster`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tidings_operator.kube import KubeError
from tidings_operator.spec import SpecError

__all__ = [
    "ACTIVE",
    "CHAT_REPLICAS_ACTUAL",
    "CHAT_REPLICAS_DESIRED",
    "CHAT_REPLICAS_READY",
    "CLUSTERS",
    "CONNECTIONS",
    "DISRUPTIONS",
    "RECONCILE_DURATION",
    "RECONCILE_ERRORS",
    "REGISTRY",
    "ROLLOUT_HALTED",
    "ROLLOUT_REPLACEMENTS",
    "forget_cluster",
    "serve",
    "timed",
]

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_DURATION = Histogram(
    "tidings_operator_reconcile_duration_seconds",
    "Time of one reconcile (create/update/resume: spec, Secrets, wiring, sync) or one "
    "sync (a tick), by outcome",
    ["step", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "tidings_operator_reconcile_errors_total",
    "Failed reconciles and syncs, by reason (InvalidSpec, SecretNotFound, KafkaUnavailable, "
    "CassandraUnavailable, Kube<reason>, or the exception's class)",
    ["step", "reason"],
    registry=REGISTRY,
)
CLUSTERS = Gauge(
    "tidings_operator_clusters_managed",
    "ChatClusters the operator currently tracks",
    registry=REGISTRY,
)
CHAT_REPLICAS_DESIRED = Gauge(
    "tidings_operator_chat_replicas_desired",
    "Chat servers the operator wants for a ChatCluster (autoscaler or spec)",
    ["namespace", "name"],
    registry=REGISTRY,
)
CHAT_REPLICAS_ACTUAL = Gauge(
    "tidings_operator_chat_replicas_actual",
    "Chat server pods that are not terminating",
    ["namespace", "name"],
    registry=REGISTRY,
)
CONNECTIONS = Gauge(
    "tidings_operator_connections",
    "WebSocket connections reported by a ChatCluster's chat servers (absent when unknown)",
    ["namespace", "name"],
    registry=REGISTRY,
)
CHAT_REPLICAS_READY = Gauge(
    "tidings_operator_chat_replicas_ready",
    "Chat server pods that are ready (not terminating)",
    ["namespace", "name"],
    registry=REGISTRY,
)
ROLLOUT_HALTED = Gauge(
    "tidings_operator_rollout_halted",
    "1 while a ChatCluster's rollout is halted (a replaced chat server did not come back "
    "ready within progressDeadlineSeconds), else 0",
    ["namespace", "name"],
    registry=REGISTRY,
)
ROLLOUT_REPLACEMENTS = Counter(
    "tidings_operator_rollout_replacements_total",
    "Chat servers evicted by the operator to roll them onto a new revision",
    ["namespace", "name"],
    registry=REGISTRY,
)
DISRUPTIONS = Counter(
    "tidings_operator_disruptions_total",
    "Ready chat servers lost without the operator asking (ChatServerLost)",
    ["namespace", "name"],
    registry=REGISTRY,
)
ACTIVE = Gauge(
    "tidings_operator_active",
    "1 while this operator process holds the leader Lease and reconciles, else 0",
    registry=REGISTRY,
)

_PER_CLUSTER = (
    CHAT_REPLICAS_DESIRED,
    CHAT_REPLICAS_ACTUAL,
    CHAT_REPLICAS_READY,
    ROLLOUT_HALTED,
    CONNECTIONS,
    ROLLOUT_REPLACEMENTS,
    DISRUPTIONS,
)


def error_reason(exc: BaseException) -> str:
    if isinstance(exc, KubeError):
        return f"Kube{exc.reason or exc.status}"
    if isinstance(exc, SpecError):
        return "InvalidSpec"
    reason = getattr(exc, "metrics_reason", None)
    if isinstance(reason, str):
        return reason
    return type(exc).__name__


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Observe the duration of ``step`` by outcome (ok, retry, permanent, error)."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except kopf.TemporaryError as exc:
        outcome = "retry"
        RECONCILE_ERRORS.labels(step, error_reason(exc.__cause__ or exc)).inc()
        raise
    except kopf.PermanentError as exc:
        outcome = "permanent"
        RECONCILE_ERRORS.labels(step, error_reason(exc.__cause__ or exc)).inc()
        raise
    except Exception as exc:
        outcome = "error"
        RECONCILE_ERRORS.labels(step, error_reason(exc)).inc()
        raise
    finally:
        RECONCILE_DURATION.labels(step, outcome).observe(time.perf_counter() - started)


def forget_cluster(namespace: str, name: str) -> None:
    for metric in _PER_CLUSTER:
        with suppress(KeyError):
            metric.remove(namespace, name)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve :data:`REGISTRY` on ``http://<address>:<port>/metrics`` (a daemon thread)."""
    start_http_server(port, addr=address, registry=REGISTRY)
