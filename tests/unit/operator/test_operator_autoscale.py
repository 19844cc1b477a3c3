"""The autoscaling decision: connections -> chat servers, up fast, down slowly."""

from __future__ import annotations

from typing import Any

from tidings_operator.autoscale import (
    Recommendation,
    ScaleDecision,
    clients_back,
    decide,
    desired_for,
    manual_replicas,
)

TARGET = 50_000


def run(current: int, total: int | None, *, now: float = 100.0, **kw: Any) -> ScaleDecision:
    args: dict[str, Any] = {
        "current": current,
        "total": total,
        "target": TARGET,
        "min_replicas": 1,
        "max_replicas": 10,
        "window_s": 60.0,
        "history": (),
        "now": now,
        "can_scale_down": True,
    }
    args.update(kw)
    return decide(**args)


def test_desired_is_ceil_total_over_target_within_bounds() -> None:
    assert desired_for(3 * 70_000, TARGET, 1, 10) == 5
    assert desired_for(3 * 70_000, TARGET, 1, 4) == 4  # capped by max
    assert desired_for(0, TARGET, 2, 10) == 2  # never below min
    assert desired_for(50_000, TARGET, 1, 10) == 1
    assert desired_for(50_001, TARGET, 1, 10) == 2


def test_scale_up_is_immediate() -> None:
    decision = run(3, 3 * 70_000, max_replicas=10)
    assert (decision.replicas, decision.desired, decision.reason) == (5, 5, "ScaleUp")
    capped = run(3, 3 * 70_000, max_replicas=4)
    assert (capped.replicas, capped.reason) == (4, "ScaleUp")


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    history = (Recommendation(0.0, 5),)
    early = run(5, 60_000, now=30.0, history=history)
    assert (early.replicas, early.desired, early.reason) == (5, 2, "Stabilizing")
    assert "30s" in early.message
    still = run(5, 60_000, now=59.0, history=early.history)
    assert still.reason == "Stabilizing"
    # the window has passed since the last recommendation for 5 (at t=0)
    late = run(5, 60_000, now=61.0, history=still.history)
    assert late.reason == "ScaleDown"
    assert late.replicas == 4  # one pod at a time


def test_a_dip_inside_the_window_does_not_scale_down() -> None:
    history: tuple[Recommendation, ...] = (Recommendation(0.0, 5),)
    for t, total in [(10.0, 240_000), (20.0, 60_000), (30.0, 240_000), (40.0, 60_000)]:
        decision = run(5, total, now=t, history=history)
        history = decision.history
        assert decision.replicas == 5
    # 60s after the last high recommendation (t=30), it may go
    assert run(5, 60_000, now=91.0, history=history).reason == "ScaleDown"


def test_scale_down_holds_while_a_pod_is_still_leaving() -> None:
    decision = run(4, 10_000, now=1000.0, history=(), can_scale_down=False)
    assert (decision.replicas, decision.reason) == (4, "WaitingForDrain")
    decision = run(4, 10_000, now=1000.0, history=(), can_scale_down=True)
    assert (decision.replicas, decision.reason) == (3, "ScaleDown")


def test_zero_window_scales_down_at_once_but_one_pod_at_a_time() -> None:
    decision = run(6, 0, window_s=0.0, history=(Recommendation(99.0, 6),))
    assert decision.replicas == 5


def test_no_metrics_holds_the_size() -> None:
    decision = run(4, None)
    assert (decision.replicas, decision.reason) == (4, "NoMetrics")


def test_bounds_win_over_metrics() -> None:
    assert run(0, None, min_replicas=2).replicas == 2
    assert run(0, None, min_replicas=2).reason == "BelowMinimum"
    above = run(8, 1_000_000, max_replicas=5)
    assert (above.replicas, above.reason) == (7, "AboveMaximum")
    assert run(8, 1_000_000, max_replicas=5, can_scale_down=False).replicas == 8


def test_stable_when_the_size_fits() -> None:
    decision = run(3, 120_000)
    assert (decision.replicas, decision.reason) == (3, "Stable")
    assert not decision.changes
    assert run(3, 200_000).changes


def test_history_keeps_only_the_window() -> None:
    history = tuple(Recommendation(float(t), 3) for t in range(0, 100, 10))
    decision = run(3, 120_000, now=100.0, history=history, window_s=25.0)
    assert [r.at for r in decision.history] == [80.0, 90.0, 100.0]


def test_manual_replicas_follow_the_scale_subresource() -> None:
    assert manual_replicas(7, 1) == 7  # a new cluster
    assert manual_replicas(0, 1) == 0  # an HPA or KEDA may scale to zero
    assert manual_replicas(None, 3) == 3
    assert manual_replicas(7, 1, current=2) == 7  # growing is at once


def test_manual_scale_down_is_one_server_at_a_time() -> None:
    """`kubectl scale --replicas=1` on 3: 3 -> 2, and 2 -> 1 only once nothing drains."""
    assert manual_replicas(1, 1, current=3) == 2
    assert manual_replicas(1, 1, current=2, can_scale_down=False) == 2  # one is draining
    assert manual_replicas(1, 1, current=2) == 1
    assert manual_replicas(0, 1, current=1) == 0


def test_turning_autoscaling_off_keeps_the_size_it_reached() -> None:
    assert manual_replicas(None, 1, current=4) == 4  # not minReplicas


def test_the_next_scale_down_waits_for_the_drained_clients() -> None:
    assert clients_back(None, 0, 0.0, 60)  # no step before
    shrink = (30_000, 100.0)
    assert not clients_back(shrink, 20_000, 101.0, 60)  # a third still away
    assert clients_back(shrink, 29_800, 103.0, 60)  # back (99%)
    assert not clients_back(shrink, None, 103.0, 60)  # no counts: wait
    assert clients_back(shrink, 10_000, 160.0, 60)  # gone for good: waited long enough
