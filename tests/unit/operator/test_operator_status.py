"""Conditions in the Kubernetes shape, the Ready summary, and status patches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tidings_operator.status import (
    Verdict,
    find,
    format_time,
    merge_conditions,
    merge_patch,
    parse_time,
    ready_verdict,
    set_condition,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_a_new_condition_has_every_field() -> None:
    (c,) = set_condition(
        [], Verdict("KafkaReady", "True", "TopicsReady", "ok"), generation=3, now=T0
    )
    assert c == {
        "type": "KafkaReady",
        "status": "True",
        "reason": "TopicsReady",
        "message": "ok",
        "observedGeneration": 3,
        "lastTransitionTime": "2026-01-02T03:04:05Z",
    }


def test_transition_time_is_kept_while_the_status_does_not_change() -> None:
    first = set_condition([], Verdict("Degraded", "False", "AsExpected"), generation=1, now=T0)
    again = set_condition(
        first, Verdict("Degraded", "False", "StillFine", "m"), generation=2, now=T1
    )
    (c,) = again
    assert c["lastTransitionTime"] == format_time(T0)
    assert (c["reason"], c["message"], c["observedGeneration"]) == ("StillFine", "m", 2)
    flipped = set_condition(again, Verdict("Degraded", "True", "PodsFailing"), generation=2, now=T1)
    assert flipped[0]["lastTransitionTime"] == format_time(T1)


def test_conditions_are_kept_in_a_stable_order_and_others_untouched() -> None:
    conditions = merge_conditions(
        [{"type": "Custom", "status": "True", "reason": "X"}],
        [
            Verdict("Degraded", "False", "AsExpected"),
            Verdict("Ready", "True", "AllReady"),
            Verdict("KafkaReady", "True", "TopicsReady"),
        ],
        generation=1,
        now=T0,
    )
    assert [c["type"] for c in conditions] == ["Ready", "KafkaReady", "Degraded", "Custom"]
    assert find(conditions, "Custom") is not None
    assert find(conditions, "Nope") is None


def test_ready_summarises_the_first_failing_part() -> None:
    fine = Verdict("Degraded", "False", "AsExpected")
    parts = [
        Verdict("KafkaReady", "True", "TopicsReady"),
        Verdict("CassandraReady", "False", "CassandraUnavailable", "cannot reach 10.0.0.1"),
        Verdict("ChatServersReady", "False", "PodsNotReady", "1/3"),
    ]
    ready = ready_verdict(parts, fine)
    assert (ready.status, ready.reason) == ("False", "CassandraUnavailable")
    assert "cannot reach 10.0.0.1" in ready.message
    assert ready_verdict([Verdict("KafkaReady", "Unknown", "Pending")], fine).status == "Unknown"
    assert ready_verdict([parts[0]], fine) == Verdict(
        "Ready", "True", "AllReady", "the chat deployment is serving"
    )
    degraded = Verdict("Degraded", "True", "InvalidSpec", "minReplicas > maxReplicas")
    assert ready_verdict([parts[0]], degraded).reason == "InvalidSpec"


def test_reasons_are_camel_case() -> None:
    for reason in ("TopicsReady", "KafkaUnavailable", "InvalidSpec", "RolloutStalled"):
        assert reason[0].isupper() and " " not in reason


def test_merge_patch_removes_changes_and_keeps() -> None:
    old = {"a": 1, "b": {"x": 1, "y": 2}, "c": [1], "d": "same"}
    new = {
        "a": None,
        "b": {"x": 1, "y": None, "z": 3},
        "c": [1, 2],
        "d": "same",
        "e": {"p": None, "q": 1},
    }
    assert merge_patch(old, new) == {
        "a": None,
        "b": {"y": None, "z": 3},
        "c": [1, 2],
        "e": {"q": 1},
    }
    assert merge_patch(old, {"d": "same", "b": {"x": 1}}) == {}


def test_times_round_trip() -> None:
    assert parse_time(format_time(T0)) == T0
    assert parse_time("nonsense") is None
    assert parse_time(None) is None
