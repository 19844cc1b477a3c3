"""The operator's metrics: after a sync and a failed reconcile, the registry holds them."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tidings_operator import metrics
from tidings_operator.kube import Kube
from tidings_operator.reconciler import Options, Reconciler

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "chatcluster.yaml"


def _spec() -> dict[str, Any]:
    doc = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "ChatCluster")
    return dict(doc["spec"])


class FakeKube:
    """A ChatCluster with no children yet; records the status patches."""

    def __init__(self, obj: dict[str, Any], secrets: bool = True) -> None:
        self.obj = obj
        self.secrets = secrets
        self.status_patches: list[dict[str, Any]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == "ChatCluster" and name == self.obj["metadata"]["name"]:
            return self.obj
        return None

    async def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Any]:
        return []

    async def request(self, method: str, path: str, *_: Any, **__: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "/apis/tidings.dev/v1alpha1/chatclusters")
        return {"items": [self.obj]}  # every ChatCluster (the conflict check)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.status_patches.append(status)

    async def post_event(self, obj: Any, **_: Any) -> None:
        return None


def _value(name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels or {})


def test_a_sync_sets_the_cluster_series_and_forget_removes_them() -> None:
    obj = {
        "metadata": {"name": "metrics-demo", "namespace": "ns-m", "uid": "u-1", "generation": 1},
        "spec": _spec(),
    }
    kube = FakeKube(obj)
    reconciler = Reconciler(cast(Kube, kube), Options())
    before = _value(
        "tidings_operator_reconcile_duration_seconds_count", {"step": "sync", "outcome": "ok"}
    )

    async def run() -> None:
        reconciler.track(name="metrics-demo", namespace="ns-m", uid="u-1")
        assert _value("tidings_operator_clusters_managed") == 1
        await reconciler.sync(name="metrics-demo", namespace="ns-m", uid="u-1")
        labels = {"namespace": "ns-m", "name": "metrics-demo"}
        assert _value("tidings_operator_chat_replicas_desired", labels) == 2
        assert _value("tidings_operator_chat_replicas_actual", labels) == 0
        assert _value("tidings_operator_chat_replicas_ready", labels) == 0
        assert _value("tidings_operator_rollout_halted", labels) == 0
        # Nothing reads the membership records yet: no connections series.
        assert _value("tidings_operator_connections", labels) is None
        after = _value(
            "tidings_operator_reconcile_duration_seconds_count", {"step": "sync", "outcome": "ok"}
        )
        assert after == (before or 0) + 1
        await reconciler.forget("u-1")
        assert _value("tidings_operator_clusters_managed") == 0
        assert _value("tidings_operator_chat_replicas_desired", labels) is None
        assert _value("tidings_operator_rollout_halted", labels) is None

    asyncio.run(run())
    assert kube.status_patches, "the sync wrote a status"


def test_a_missing_secret_counts_as_an_error_by_reason() -> None:
    import kopf

    spec = _spec()
    obj = {
        "metadata": {"name": "blocked", "namespace": "ns-m", "uid": "u-2", "generation": 1},
        "spec": spec,
    }
    reconciler = Reconciler(cast(Kube, FakeKube(obj)), Options())
    labels = {"step": "reconcile", "reason": "SecretNotFound"}
    before = _value("tidings_operator_reconcile_errors_total", labels) or 0

    async def run() -> None:
        with pytest.raises(kopf.TemporaryError):
            await reconciler.reconcile(name="blocked", namespace="ns-m", uid="u-2", retry=0)
        await reconciler.close()

    asyncio.run(run())
    assert _value("tidings_operator_reconcile_errors_total", labels) == before + 1
    assert (
        _value(
            "tidings_operator_reconcile_duration_seconds_count",
            {"step": "reconcile", "outcome": "retry"},
        )
        or 0
    ) >= 1


def test_every_metric_is_served(unused_tcp_port: int) -> None:
    metrics.serve(unused_tcp_port, "127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/metrics") as reply:
        text = reply.read().decode()
    for name in (
        "tidings_operator_reconcile_duration_seconds",
        "tidings_operator_reconcile_errors_total",
        "tidings_operator_clusters_managed",
        "tidings_operator_chat_replicas_desired",
        "tidings_operator_chat_replicas_actual",
        "tidings_operator_connections",
        "tidings_operator_rollout_replacements_total",
        "tidings_operator_disruptions_total",
        "tidings_operator_active",
    ):
        assert f"# HELP {name} " in text, name
