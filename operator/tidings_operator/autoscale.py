"""Autoscaling the chat servers on the connection counts they report: a pure decision.

``desired = ceil(total / targetConnectionsPerPod)`` within ``[minReplicas, maxReplicas]``.

- Up is immediate: a crowd arriving needs sockets now.
- Down waits: every recommendation of the last ``scaleDownStabilizationSeconds`` is kept
  and the cluster shrinks only to the highest of them (as the HorizontalPodAutoscaler's
  stabilisation window does), so a dip does not cost a drain. It then shrinks one pod at
  a time, and only when no chat pod is terminating: each pod removed drains its clients
  (SIGTERM -> reconnect in paced batches) before the next one goes.
- No metrics (the membership records cannot be read): hold.

Times are seconds on any monotonic clock; the caller keeps the history between calls and
seeds it with the current size when it starts, so a restarted operator never shrinks the
cluster before a full window has passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Recommendation",
    "ScaleDecision",
    "clients_back",
    "decide",
    "desired_for",
    "manual_replicas",
]

# After a scale-down step, the next waits until the reported connections are back to this
# share of what they were before it (the drained server's clients found the others).
CLIENTS_BACK_FRACTION = 0.99


@dataclass(frozen=True, slots=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    replicas: int  # what the StatefulSet should have now
    desired: int  # what the connection count asks for, within bounds
    reason: str  # ScaleUp, ScaleDown, Stabilizing, WaitingForDrain, Stable, NoMetrics, ...
    message: str
    history: tuple[Recommendation, ...]

    @property
    def changes(self) -> bool:
        return self.reason in ("ScaleUp", "ScaleDown", "BelowMinimum", "AboveMaximum")


def desired_for(total: int, target: int, min_replicas: int, max_replicas: int) -> int:
    wanted = math.ceil(max(total, 0) / max(target, 1))
    return max(min_replicas, min(max_replicas, wanted))


def clients_back(
    shrink: tuple[int, float] | None, total: int | None, now: float, wait_s: float
) -> bool:
    """Whether the next scale-down step may go: no step before (``shrink`` is None), or
    the clients of the server the last step drained are back — the reported connections
    at :data:`CLIENTS_BACK_FRACTION` of ``shrink``'s total — or ``wait_s`` has passed since
    it (clients that do not come back, people closing the app, must not hold the size)."""
    if shrink is None:
        return True
    before, at = shrink
    if now - at >= wait_s:
        return True
    return total is not None and total >= CLIENTS_BACK_FRACTION * before


def manual_replicas(
    spec_replicas: int | None,
    min_replicas: int,
    *,
    current: int | None = None,
    can_scale_down: bool = True,
) -> int:
    """With autoscaling off, the size for now: towards ``spec.chat.replicas`` (set through
    ``/scale`` by ``kubectl scale``, an HPA or KEDA), else the size it has (the minimum for
    a new cluster: turning autoscaling off keeps the size it reached).

    Growing is at once; shrinking is one chat server at a time, and only while none is
    terminating and no rollout step is in flight (``can_scale_down``), so that no two
    servers drain together: every size change goes through the one-at-a-time drain path.
    Not clamped to ``[min, max]``: those bound the built-in autoscaler; an HPA or KEDA
    driving ``/scale`` has bounds of its own (and may scale to zero).
    """
    if current is None:
        return spec_replicas if spec_replicas is not None else min_replicas
    wanted = spec_replicas if spec_replicas is not None else current
    if wanted >= current:
        return wanted
    return current - 1 if can_scale_down else current


def decide(
    *,
    current: int,
    total: int | None,
    target: int,
    min_replicas: int,
    max_replicas: int,
    window_s: float,
    history: tuple[Recommendation, ...],
    now: float,
    can_scale_down: bool,
) -> ScaleDecision:
    """The size the chat StatefulSet should have now, and the history to keep."""
    kept = tuple(r for r in history if now - r.at <= window_s)
    if current < min_replicas:
        return ScaleDecision(
            min_replicas,
            min_replicas,
            "BelowMinimum",
            f"{current} chat servers is below minReplicas {min_replicas}",
            (*kept, Recommendation(now, min_replicas)),
        )
    if current > max_replicas:
        step = current - 1 if can_scale_down else current
        return ScaleDecision(
            step,
            max_replicas,
            "AboveMaximum" if can_scale_down else "WaitingForDrain",
            f"{current} chat servers is above maxReplicas {max_replicas}; removing one at a time",
            (*kept, Recommendation(now, max_replicas)),
        )
    if total is None:
        return ScaleDecision(
            current,
            current,
            "NoMetrics",
            "the chat servers' connection counts cannot be read; holding the size",
            kept,
        )
    desired = desired_for(total, target, min_replicas, max_replicas)
    kept = (*kept, Recommendation(now, desired))
    counts = f"{total} connections at {target} per pod ask for {desired}"
    if desired > current:
        return ScaleDecision(desired, desired, "ScaleUp", f"{counts}: scaling up", kept)
    stabilized = max(r.replicas for r in kept)
    if stabilized < current:
        if not can_scale_down:
            return ScaleDecision(
                current,
                desired,
                "WaitingForDrain",
                f"{counts}: waiting for a chat server to finish leaving before the next",
                kept,
            )
        return ScaleDecision(
            current - 1,
            desired,
            "ScaleDown",
            f"{counts}: removing one chat server (it drains first)",
            kept,
        )
    if desired < current:
        newest_high = max(r.at for r in kept if r.replicas >= current)
        wait = max(0.0, window_s - (now - newest_high))
        return ScaleDecision(
            current,
            desired,
            "Stabilizing",
            f"{counts}: scaling down if that holds for {wait:.0f}s more",
            kept,
        )
    return ScaleDecision(current, desired, "Stable", counts, kept)
