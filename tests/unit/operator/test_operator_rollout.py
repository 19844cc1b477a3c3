"""The rollout decision: which chat server to replace next, or wait, or stop."""

from __future__ import annotations

from typing import Any

from tidings_operator.rollout import InFlight, PodState, RolloutStep, next_step

OLD, NEW = "demo-chat-old", "demo-chat-new"
NOW = 10_000.0


def pod(ordinal: int, revision: str = OLD, **kw: Any) -> PodState:
    values: dict[str, Any] = {
        "name": f"demo-chat-{ordinal}",
        "ordinal": ordinal,
        "revision": revision,
        "ready": True,
        "terminating": False,
        "ready_since": NOW - 600,
    }
    values.update(kw)
    return PodState(**values)


def step(pods: list[PodState], **kw: Any) -> RolloutStep:
    args: dict[str, Any] = {
        "pods": pods,
        "replicas": len(pods),
        "update_revision": NEW,
        "in_flight": None,
        "members": {p.name: 100 for p in pods if p.ready},
        "total": 100 * len(pods),
        "now": NOW,
        "drain_budget_s": 30.0,
        "grace_s": 43.0,
        "progress_deadline_s": 600.0,
    }
    args.update(kw)
    return next_step(**args)


def test_nothing_to_do_when_every_pod_runs_the_update_revision() -> None:
    result = step([pod(0, NEW), pod(1, NEW)])
    assert (result.action, result.reason, result.updated) == ("done", "RolloutComplete", 2)
    assert not result.in_progress


def test_replaces_the_highest_ordinal_first() -> None:
    result = step([pod(0), pod(1), pod(2)])
    assert (result.action, result.pod) == ("replace", "demo-chat-2")
    result = step([pod(0), pod(1), pod(2, NEW)])
    assert (result.action, result.pod, result.updated) == ("replace", "demo-chat-1", 1)


def test_one_at_a_time_while_the_replaced_pod_drains_and_restarts() -> None:
    flight = InFlight("demo-chat-2", NOW - 5, 300)
    draining = step([pod(0), pod(1), pod(2, terminating=True, ready=False)], in_flight=flight)
    assert (draining.action, draining.reason) == ("wait", "Draining")
    assert draining.in_flight == flight
    gone = step([pod(0), pod(1)], replicas=3, in_flight=flight)
    assert (gone.action, gone.reason) == ("wait", "Draining")
    starting = step([pod(0), pod(1), pod(2, NEW, ready=False, ready_since=None)], in_flight=flight)
    assert (starting.action, starting.reason) == ("wait", "WaitingForReady")


def test_waits_for_the_new_pod_to_join_then_for_connections_to_settle() -> None:
    flight = InFlight("demo-chat-2", NOW - 20, 300)
    pods = [pod(0), pod(1), pod(2, NEW, ready_since=NOW - 2)]
    joining = step(pods, in_flight=flight, members={"demo-chat-0": 150, "demo-chat-1": 150})
    assert (joining.action, joining.reason) == ("wait", "WaitingForMembership")
    settling = step(
        pods,
        in_flight=flight,
        members={"demo-chat-0": 100, "demo-chat-1": 100, "demo-chat-2": 0},
        total=200,
    )
    assert (settling.action, settling.reason) == ("wait", "Settling")
    settled = step(
        pods,
        in_flight=flight,
        members={"demo-chat-0": 150, "demo-chat-1": 150, "demo-chat-2": 0},
        total=290,
    )
    assert (settled.action, settled.pod) == ("replace", "demo-chat-1")
    assert settled.in_flight is None


def test_settling_ends_after_the_drain_budget_even_if_clients_did_not_come_back() -> None:
    flight = InFlight("demo-chat-2", NOW - 60, 300)
    pods = [pod(0), pod(1), pod(2, NEW, ready_since=NOW - 31)]
    result = step(pods, in_flight=flight, total=150)
    assert (result.action, result.pod) == ("replace", "demo-chat-1")


def test_a_failing_new_pod_stops_the_rollout() -> None:
    flight = InFlight("demo-chat-2", NOW - 20, 300)
    pods = [pod(0), pod(1), pod(2, NEW, ready=False, failing="CrashLoopBackOff")]
    result = step(pods, in_flight=flight)
    assert (result.action, result.reason) == ("halt", "PodFailing")
    assert "CrashLoopBackOff" in result.message
    # and without a replacement in flight, nothing more is replaced either
    result = step(pods)
    assert (result.action, result.reason) == ("halt", "PodsFailing")


def test_a_pod_that_never_becomes_ready_stops_the_rollout_after_the_deadline() -> None:
    pods = [pod(0), pod(1), pod(2, NEW, ready=False, ready_since=None)]
    before = step(pods, in_flight=InFlight("demo-chat-2", NOW - 600, 300))
    assert before.action == "wait"
    after = step(pods, in_flight=InFlight("demo-chat-2", NOW - 644, 300))
    assert (after.action, after.reason) == ("halt", "RolloutStalled")
    assert after.in_flight is not None  # still the pod to watch


def test_a_pod_that_never_joins_stops_the_rollout_after_the_deadline() -> None:
    pods = [pod(0), pod(1), pod(2, NEW, ready_since=NOW - 601)]
    result = step(
        pods,
        in_flight=InFlight("demo-chat-2", NOW - 700, 300),
        members={"demo-chat-0": 1, "demo-chat-1": 1},
    )
    assert (result.action, result.reason) == ("halt", "RolloutStalled")


def test_broken_pods_on_the_old_revision_go_first_without_waiting() -> None:
    # a rollback: the update revision is good again, pod 1 is stuck on the bad one
    pods = [pod(0, NEW), pod(1, OLD, ready=False, failing="ImagePullBackOff"), pod(2, NEW)]
    result = step(pods)
    assert (result.action, result.reason, result.pod) == (
        "replace",
        "ReplacingBrokenPod",
        "demo-chat-1",
    )


def test_waits_for_a_healthy_cluster_before_replacing_a_serving_pod() -> None:
    result = step([pod(0), pod(1, NEW, ready=False), pod(2)])
    assert (result.action, result.reason) == ("wait", "WaitingForHealthyCluster")
    missing = step([pod(0), pod(1)], replicas=3)
    assert (missing.action, missing.reason) == ("wait", "WaitingForHealthyCluster")


def test_pods_being_scaled_away_are_not_replaced() -> None:
    result = step([pod(0, NEW), pod(1, NEW), pod(2, OLD, terminating=True)], replicas=2)
    assert result.action == "done"
    # an in-flight replacement of a pod scaled away is over
    result = step(
        [pod(0, NEW), pod(1, NEW)], replicas=2, in_flight=InFlight("demo-chat-2", NOW, 10)
    )
    assert result.action == "done"
