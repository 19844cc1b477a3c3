"""Failover drills: which pods were lost unplanned, and when their clients were back."""

from __future__ import annotations

from tidings_operator.disruption import (
    PodSeen,
    give_up_after,
    lost_pods,
    progress,
    start,
)

UP = PodSeen("u1", ready=True, terminating=False)


def test_a_deleted_replaced_terminating_or_unready_pod_is_lost() -> None:
    before = {"c-0": PodSeen("u0", True, False), "c-1": UP, "c-2": PodSeen("u2", True, False)}
    assert lost_pods(before, {}, planned=(), reported=()) == [
        ("c-0", "u0"),
        ("c-1", "u1"),
        ("c-2", "u2"),
    ]
    now = {
        "c-0": PodSeen("u0", True, False),  # fine
        "c-1": PodSeen("u1-new", False, False),  # replaced
        "c-2": PodSeen("u2", False, True),  # terminating
    }
    assert lost_pods(before, now, planned=(), reported=()) == [("c-1", "u1"), ("c-2", "u2")]
    unready = {"c-1": PodSeen("u1", False, False)}
    assert lost_pods({"c-1": UP}, unready, planned=(), reported=()) == [("c-1", "u1")]


def test_planned_reported_and_never_ready_pods_are_not_lost() -> None:
    before = {"c-1": UP, "c-2": PodSeen("u2", False, False)}
    assert lost_pods(before, {}, planned={"c-1"}, reported=()) == []
    assert lost_pods(before, {}, planned=(), reported={"u1"}) == []


def test_recovery_when_the_total_is_back() -> None:
    d = start(
        "c-1",
        at=100.0,
        clients=70_000,
        connections_before=210_000,
        ongoing=None,
        now=101.0,
        drain_budget_s=30,
    )
    assert (d.pod, d.clients, d.connections_before, d.recovered_at) == (
        "c-1",
        70_000,
        210_000,
        None,
    )
    d = progress(d, total=140_000, now=102.0, drain_budget_s=30)
    assert d.recovered_at is None
    d = progress(d, total=209_000, now=104.5, drain_budget_s=30)  # within 1%
    assert d.recovered_at == 104.5
    assert d.recovery_seconds == 4.5
    assert "back" in d.message
    # once recovered it stays so
    assert progress(d, total=0, now=200.0, drain_budget_s=30) == d


def test_giving_up_after_the_window() -> None:
    d = start(
        "c-1", at=0.0, clients=5, connections_before=100, ongoing=None, now=0.0, drain_budget_s=30
    )
    window = give_up_after(30)
    assert window == 300.0
    d = progress(d, total=10, now=window + 1, drain_budget_s=30)
    assert d.recovered_at is None
    assert "stopped waiting" in d.message


def test_a_second_loss_while_recovering_keeps_the_first_baseline() -> None:
    first = start(
        "c-1", at=0.0, clients=70, connections_before=210, ongoing=None, now=0.0, drain_budget_s=30
    )
    second = start(
        "c-0",
        at=2.0,
        clients=100,
        connections_before=150,
        ongoing=first,
        now=2.0,
        drain_budget_s=30,
    )
    assert (second.pod, second.connections_before) == ("c-0", 210)


def test_recovery_is_dated_when_the_servers_reported_it_not_when_a_look_saw_it() -> None:
    """The tick that notices comes up to a tick late: the records say when it happened."""
    d = start(
        "c-1", at=100.0, clients=70_000, connections_before=210_000, ongoing=None,
        now=101.0, drain_budget_s=30,
    )  # fmt: skip
    asked: list[float] = []

    def reached(threshold: float) -> float | None:
        asked.append(threshold)
        return 102.3

    d = progress(d, total=210_000, now=106.0, drain_budget_s=30, reached_at=reached)
    assert d.recovered_at == 102.3 and d.recovery_seconds == 2.3
    assert asked == [0.99 * 210_000]
    later = start(
        "c-2", at=100.0, clients=1, connections_before=10, ongoing=None, now=100.0,
        drain_budget_s=30,
    )  # fmt: skip
    # Records that do not show it (too old, another pod): the look's own time.
    assert progress(later, total=10, now=103.0, drain_budget_s=30, reached_at=lambda _: None
                    ).recovered_at == 103.0  # fmt: skip
