"""Incident controls (controls.py): when a ChatCluster is paused and what its status says."""

from __future__ import annotations

from typing import Any

from tidings_operator.controls import newly_paused, pause_verdicts, paused
from tidings_operator.names import ANNOTATION_PAUSE


def cluster(annotation: str | None, condition: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "chat"}
    if annotation is not None:
        meta["annotations"] = {ANNOTATION_PAUSE: annotation}
    status: dict[str, Any] = {}
    if condition is not None:
        status["conditions"] = [
            {"type": "ReconciliationPaused", "status": condition, "reason": "x", "message": ""}
        ]
    return {"metadata": meta, "status": status}


def test_only_true_pauses() -> None:
    assert paused(cluster("true")) and paused(cluster(" True "))
    for value in (None, "", "false", "yes", "1"):
        assert not paused(cluster(value))


def test_the_condition_says_paused_then_resumed_and_never_appears_uninvited() -> None:
    (held,) = pause_verdicts(cluster("true"))
    assert (held.type, held.status, held.reason) == (
        "ReconciliationPaused",
        "True",
        "PausedByAnnotation",
    )
    assert ANNOTATION_PAUSE in held.message
    (resumed,) = pause_verdicts(cluster(None, condition="True"))
    assert (resumed.status, resumed.reason) == ("False", "Reconciling")
    assert pause_verdicts(cluster(None)) == []  # never paused: no condition at all


def test_an_event_only_when_the_pause_begins() -> None:
    assert newly_paused(cluster("true"))
    assert newly_paused(cluster("true", condition="False"))
    assert not newly_paused(cluster("true", condition="True"))
    assert not newly_paused(cluster(None, condition="True"))


def test_a_restart_value_is_a_new_chat_template_and_only_the_chat_one() -> None:
    from tidings_operator.builders import build_all
    from tidings_operator.controls import restart_requested
    from tidings_operator.names import ANNOTATION_RESTART
    from tidings_operator.spec import parse_spec

    raw = {
        "image": "registry.invalid/tidings:1",
        "kafka": {"bootstrapServers": "k:9092"},
        "cassandra": {"contactPoints": ["c"]},
        "postgres": {"urlSecretRef": {"name": "db", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
    }
    owner = {"name": "chat", "namespace": "ns", "uid": "u-1"}

    def templates(restart: str | None) -> dict[str, dict[str, str]]:
        out = {}
        for m in build_all(
            owner, parse_spec(raw), chat_replicas=2, inbox_partitions=6, restart=restart
        ):
            if m["kind"] in ("StatefulSet", "Deployment"):
                out[m["metadata"]["name"]] = m["spec"]["template"]["metadata"]["annotations"]
        return out

    plain, restarted = templates(None), templates("2026-12-07T21:00:00Z")
    assert all(ANNOTATION_RESTART not in a for a in plain.values())
    assert restarted["chat-chat"][ANNOTATION_RESTART] == "2026-12-07T21:00:00Z"
    # api and push are not rolled by it: their templates stay the same.
    assert {k: v for k, v in restarted.items() if k != "chat-chat"} == {
        k: v for k, v in plain.items() if k != "chat-chat"
    }
    assert restart_requested({"metadata": {"annotations": {ANNOTATION_RESTART: " now "}}}) == (
        "now"
    )
    assert restart_requested({"metadata": {"annotations": {ANNOTATION_RESTART: " "}}}) is None
    assert restart_requested({"metadata": {}}) is None


def test_a_requested_drain_is_a_disruption_of_its_own_cause_through_the_status() -> None:
    from tidings_operator.controls import drain_requested
    from tidings_operator.disruption import progress, start
    from tidings_operator.names import ANNOTATION_DRAIN
    from tidings_operator.report import disruption_from_status, disruption_status

    assert drain_requested({"metadata": {"annotations": {ANNOTATION_DRAIN: " chat-chat-1 "}}}) == (
        "chat-chat-1"
    )
    assert drain_requested({"metadata": {"annotations": {}}}) is None
    drained = start(
        "chat-chat-1",
        at=1000.0,
        clients=70,
        connections_before=210,
        ongoing=None,
        now=1000.0,
        drain_budget_s=30,
        cause="DrainRequested",
    )
    assert drained.message.startswith("chat-chat-1 drained on request with 70 clients")
    back = progress(drained, total=210, now=1004.0, drain_budget_s=30)
    assert back.recovery_seconds == 4.0 and "drained on request" in back.message
    # Written to the status and read back (an operator restart), the cause stays.
    again = disruption_from_status(disruption_status(back))
    assert again is not None and again.cause == "DrainRequested"
    lost = start(
        "chat-chat-2",
        at=1.0,
        clients=1,
        connections_before=2,
        ongoing=None,
        now=1.0,
        drain_budget_s=30,
    )
    assert lost.cause == "Lost" and "chat-chat-2 lost with 1 clients" in lost.message
