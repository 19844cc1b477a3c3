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
