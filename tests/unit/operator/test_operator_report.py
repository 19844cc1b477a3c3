"""What the status says: conditions from a look, the Ready summary, status round trips."""

from __future__ import annotations

from typing import Any

from tidings_operator.autoscale import ScaleDecision
from tidings_operator.disruption import Disruption
from tidings_operator.observe import PodView, lost_at
from tidings_operator.report import (
    Look,
    disruption_from_status,
    disruption_status,
    in_flight_from_status,
    look_verdicts,
    rollout_status,
    summary,
    workload_part,
)
from tidings_operator.rollout import InFlight, RolloutStep

T = 1_800_000_000.0


def pod(ordinal: int, **kw: Any) -> PodView:
    values: dict[str, Any] = {
        "name": f"c-chat-{ordinal}",
        "uid": f"u{ordinal}",
        "ordinal": ordinal,
        "revision": "rev-1",
        "ready": True,
        "terminating": False,
        "ready_since": T - 100,
        "failing": None,
        "created": T - 200,
        "terminating_since": None,
        "not_ready_since": None,
    }
    values.update(kw)
    return PodView(**values)


def look(**kw: Any) -> Look:
    values: dict[str, Any] = {
        "wired": True,
        "spec_error": None,
        "chat_exists": True,
        "pods": [pod(0), pod(1)],
        "current": 2,
        "desired": 2,
        "step": RolloutStep("done", "RolloutComplete", "all 2 on rev-1", updated=2),
        "decision": None,
        "failing": [],
    }
    values.update(kw)
    return Look(**values)


def by_type(verdicts: list[Any]) -> dict[str, tuple[str, str]]:
    return {v.type: (v.status, v.reason) for v in verdicts}


def test_a_healthy_look() -> None:
    assert by_type(look_verdicts(look())) == {
        "ChatServersReady": ("True", "AllReady"),
        "Progressing": ("False", "Stable"),
        "Degraded": ("False", "AsExpected"),
        "ScaleIgnored": ("False", "AsRequested"),
    }


def test_before_the_chat_servers_exist() -> None:
    verdicts = look_verdicts(look(chat_exists=False, wired=False, pods=[], current=None, step=None))
    assert by_type(verdicts) == {
        "ChatServersReady": ("False", "NotCreated"),
        "Progressing": ("True", "Reconciling"),
        "Degraded": ("False", "AsExpected"),
        "ScaleIgnored": ("False", "AsRequested"),
    }
    assert "Kafka and Cassandra" in verdicts[0].message


def test_a_scale_while_autoscaling_is_on_is_said_to_be_ignored() -> None:
    ignored = look_verdicts(look(ignored_replicas=5))
    assert by_type(ignored)["ScaleIgnored"] == ("True", "AutoscalingOn")
    message = next(v.message for v in ignored if v.type == "ScaleIgnored")
    assert "spec.chat.replicas is 5" in message and "autoscaling to false" in message


def test_scaling_and_rolling() -> None:
    decision = ScaleDecision(4, 4, "ScaleUp", "210000 connections ask for 4", ())
    scaling = look_verdicts(look(desired=4, decision=decision))
    assert by_type(scaling)["Progressing"] == ("True", "Scaling")
    assert by_type(scaling)["ChatServersReady"] == ("False", "PodsNotReady")
    rolling = look_verdicts(look(step=RolloutStep("wait", "Settling", "settling", "c-chat-1")))
    assert by_type(rolling)["Progressing"] == ("True", "RollingOut")


def test_trouble_is_degraded() -> None:
    halted = look_verdicts(look(step=RolloutStep("halt", "RolloutStalled", "stalled")))
    assert by_type(halted)["Degraded"] == ("True", "RolloutStalled")
    assert by_type(halted)["Progressing"] == ("False", "RolloutHalted")
    failing = look_verdicts(look(failing=["c-chat-1 (CrashLoopBackOff)"]))
    assert by_type(failing)["Degraded"] == ("True", "PodsFailing")
    invalid = look_verdicts(look(spec_error="minReplicas is more than maxReplicas"))
    assert by_type(invalid)["Degraded"] == ("True", "InvalidSpec")


def test_scaled_to_zero_is_ready() -> None:
    verdicts = look_verdicts(look(desired=0, current=0, pods=[]))
    assert by_type(verdicts)["ChatServersReady"] == ("True", "ScaledToZero")


def test_summary_takes_every_part() -> None:
    conditions = [
        {"type": "KafkaReady", "status": "True", "reason": "TopicsReady"},
        {"type": "CassandraReady", "status": "True", "reason": "SchemaReady"},
        {"type": "ChatServersReady", "status": "True", "reason": "AllReady"},
        {"type": "Degraded", "status": "False", "reason": "AsExpected"},
    ]
    api = workload_part("api", {"spec": {"replicas": 2}, "status": {"readyReplicas": 2}}, True)
    push = workload_part("push", {"spec": {"replicas": 1}, "status": {}}, True)
    degraded, ready = summary(conditions, [api], None)
    assert (degraded.status, ready.status, ready.reason) == ("False", "True", "AllReady")
    _, ready = summary(conditions, [api, push], None)
    assert (ready.status, ready.reason) == ("False", "PodsNotReady")
    assert "push" in ready.message
    degraded, ready = summary(conditions, [], "kafka.replicationFactor is 3 ...")
    assert (degraded.status, degraded.reason, ready.reason) == (
        "True",
        "InvalidSpec",
        "InvalidSpec",
    )
    _, ready = summary([], [], None)
    assert ready.status == "Unknown"


def test_rollout_status_round_trips_the_replacement_in_flight() -> None:
    flight = InFlight("c-chat-2", T, 300)
    step = RolloutStep("wait", "Draining", "draining", "c-chat-2", flight, updated=1)
    pods = [pod(0, revision="rev-1"), pod(1, revision="rev-1"), pod(2, revision="rev-2")]
    status = rollout_status(step, flight, pods, "rev-2", {})
    assert status is not None
    assert status["inProgress"] is True
    assert (status["currentRevision"], status["updateRevision"]) == ("rev-1", "rev-2")
    assert in_flight_from_status(status) == flight
    done = rollout_status(
        RolloutStep("done", "RolloutComplete", "ok", updated=3), None, [], "rev-2", status
    )
    assert done is not None
    assert done["pod"] is None and done["currentRevision"] == "rev-2"
    assert in_flight_from_status(done) is None
    assert rollout_status(None, None, [], "", {"reason": "x"}) == {"reason": "x"}


def test_disruption_status_round_trips() -> None:
    d = Disruption("c-chat-1", T + 0.3, 70_000, 210_000, T + 4.8, "back")
    raw = disruption_status(d)
    assert raw["recoverySeconds"] == 4.5
    assert raw["at"].endswith("Z")
    again = disruption_from_status(raw)
    assert again is not None
    # Read back and written again, it says the same (times in the status are whole seconds).
    assert disruption_status(again) == raw
    assert disruption_from_status({"pod": ""}) is None


def test_when_a_pod_was_lost() -> None:
    assert lost_at(None, "u1", T) == T
    assert lost_at(pod(1, uid="u9", created=T - 3), "u1", T) == T - 3  # replaced
    assert lost_at(pod(1, terminating=True, terminating_since=T - 2), "u1", T) == T - 2
    assert lost_at(pod(1, ready=False, not_ready_since=T - 7), "u1", T) == T - 7
