"""The children as the watch indexes hold them, and when a deleted pod began to go."""

from __future__ import annotations

from typing import Any

from tidings_operator import names
from tidings_operator.children import (
    Departures,
    Indexes,
    index_chat_pods,
    index_workloads,
    slim,
)
from tidings_operator.observe import lost_at, pod_view


def chat_pod(name: str, uid: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": uid,
            "labels": {names.LABEL_COMPONENT: names.CHAT, names.LABEL_INSTANCE: "demo"},
            "managedFields": [{"manager": "kubelet"}] * 50,
            "creationTimestamp": "2026-12-07T10:00:00Z",
            **meta,
        },
        "status": {"phase": "Running"},
    }


def test_pods_are_indexed_by_cluster_and_kept_slim() -> None:
    pod = chat_pod("demo-chat-0", "u0")
    memo: dict[str, Any] = {}
    indexed = index_chat_pods("ns", pod["metadata"]["labels"], pod, memo)
    assert indexed is not None
    (key, value), = indexed.items()  # fmt: skip
    assert key == ("ns", "demo")
    assert "managedFields" not in value["metadata"] and value["status"] == pod["status"]
    assert "managedFields" in pod["metadata"]  # the body itself is left alone
    api_labels = {names.LABEL_COMPONENT: names.API, names.LABEL_INSTANCE: "demo"}
    assert index_chat_pods("ns", api_labels, pod, memo) is None
    assert index_workloads("ns", "demo-chat", {"metadata": {"name": "demo-chat"}}) == {
        ("ns", "demo-chat"): {"metadata": {"name": "demo-chat"}}
    }
    indexes = Indexes(
        chat_pods={("ns", "demo"): [value]},
        statefulsets={("ns", "demo-chat"): [slim({"metadata": {"name": "demo-chat"}})]},
        deployments={},
    )
    assert [p["metadata"]["name"] for p in indexes.pods("ns", "demo")] == ["demo-chat-0"]
    assert indexes.pods("ns", "other") == []
    assert indexes.workload("StatefulSet", "ns", "demo-chat") == {"metadata": {"name": "demo-chat"}}
    assert indexes.workload("Deployment", "ns", "demo-push") is None


def test_a_deleted_pod_is_dated_from_its_deletion_after_it_is_gone() -> None:
    """kubectl delete at 10:05:00 with a 30 s grace: the deletionTimestamp says 10:05:30.
    The pod is gone before the next tick (at 10:05:04): the loss is dated 10:05:00."""
    departures = Departures(clock=lambda: 1_000.0)
    deleting = chat_pod(
        "demo-chat-1",
        "u1",
        deletionTimestamp="2026-12-07T10:05:30Z",
        deletionGracePeriodSeconds=30,
    )
    index_chat_pods("ns", deleting["metadata"]["labels"], deleting, {"departures": departures})
    began = departures.began("u1")
    assert began == pod_view(deleting).terminating_since
    tick = began + 4.0
    assert lost_at(None, "u1", tick, deletion_began=began) == began
    assert lost_at(None, "u1", tick) == tick  # not seen by the watch: when the tick saw it
    assert departures.began("unknown") is None
