"""Rolling the chat servers to a new revision, one pod at a time: a pure decision.

The chat StatefulSet uses ``OnDelete``: the StatefulSet controller recreates a pod from
the newest revision only once the pod is gone. The operator picks which pod goes next:

1. A replacement in flight comes first: wait while the old pod drains and the new one
   starts; then until the new one is ready *and* has joined (its membership record is
   fresh: it owns partitions and takes clients); then until connections settle (the
   reported total is back to ``SETTLE_FRACTION`` of what it was before, or the drain
   budget has passed since the pod became ready: clients are told to come back within
   it, so whoever is not back by then is not coming back because of us).
2. Outdated pods that are not ready serve nobody: they go first, without waiting (this is
   how a bad image is rolled back: fix the spec, and the broken pods are replaced).
3. Otherwise only a healthy cluster moves on: every pod ready, none terminating, none
   missing; then the outdated pod with the highest ordinal goes.

Trouble stops the rollout (``halt``): the new pod fails (crash loop, image pull, bad
config) or does not become ready and join within ``progressDeadlineSeconds``. Halting
replaces nothing more; the rollout resumes by itself if the trouble clears, and a spec
change (say, the previous image) is the way back.

Times are seconds since the epoch (they are kept in the status between calls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FAILING_REASONS",
    "SETTLE_FRACTION",
    "InFlight",
    "PodState",
    "RolloutStep",
    "next_step",
]

SETTLE_FRACTION = 0.95

# Container waiting reasons that mean the pod will not get better by waiting.
FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)

Action = Literal["replace", "wait", "halt", "done"]


@dataclass(frozen=True, slots=True)
class PodState:
    name: str
    ordinal: int
    revision: str
    ready: bool
    terminating: bool
    ready_since: float | None = None  # when it last became ready
    failing: str | None = None  # a waiting reason from FAILING_REASONS


@dataclass(frozen=True, slots=True)
class InFlight:
    """The replacement under way (the operator evicted ``pod`` at ``started``)."""

    pod: str
    started: float
    connections_before: int | None


@dataclass(frozen=True, slots=True)
class RolloutStep:
    action: Action
    reason: str
    message: str
    pod: str | None = None  # the pod to replace (replace), or being replaced
    in_flight: InFlight | None = None  # what to keep for the next call
    updated: int = 0  # pods on the update revision

    @property
    def in_progress(self) -> bool:
        return self.action != "done"


def _halt_or_wait(
    overdue: bool, reason: str, message: str, pod: str, in_flight: InFlight, updated: int
) -> RolloutStep:
    if overdue:
        return RolloutStep(
            "halt",
            "RolloutStalled",
            f"{message} for longer than the progress deadline; the rollout stopped",
            pod,
            in_flight,
            updated,
        )
    return RolloutStep("wait", reason, message, pod, in_flight, updated)


def next_step(
    *,
    pods: Sequence[PodState],
    replicas: int,
    update_revision: str,
    in_flight: InFlight | None,
    members: Mapping[str, int] | None,
    total: int | None,
    now: float,
    drain_budget_s: float,
    grace_s: float,
    progress_deadline_s: float,
) -> RolloutStep:
    """What to do now; see the module docstring.

    ``pods`` are the chat pods that exist; ``replicas`` how many the StatefulSet should
    have (pods at or above that ordinal are being scaled away and never replaced);
    ``members`` the fresh membership records (server id -> connections), ``None`` when
    they cannot be read; ``grace_s`` the pods' termination grace period.
    """
    kept = [p for p in pods if p.ordinal < replicas]
    updated = sum(1 for p in kept if p.revision == update_revision and not p.terminating)
    by_name = {p.name: p for p in kept}

    if in_flight is not None:
        step = _in_flight_step(
            by_name.get(in_flight.pod),
            in_flight,
            update_revision=update_revision,
            members=members,
            total=total,
            now=now,
            drain_budget_s=drain_budget_s,
            grace_s=grace_s,
            progress_deadline_s=progress_deadline_s,
            updated=updated,
            scaled_away=_ordinal(in_flight.pod) >= replicas,
        )
        if step is not None:
            return step

    outdated = sorted(
        (p for p in kept if p.revision != update_revision and not p.terminating),
        key=lambda p: -p.ordinal,
    )
    if not outdated:
        return RolloutStep(
            "done",
            "RolloutComplete",
            f"all {len(kept)} chat servers run revision {update_revision}",
            updated=updated,
        )
    failing = [p for p in kept if p.failing and p.revision == update_revision]
    if failing:
        names = ", ".join(f"{p.name} ({p.failing})" for p in failing)
        return RolloutStep(
            "halt",
            "PodsFailing",
            f"chat servers on the new revision are failing: {names}; the rollout stopped",
            updated=updated,
        )
    broken = [p for p in outdated if not p.ready]
    if broken:
        pod = broken[0]
        return RolloutStep(
            "replace",
            "ReplacingBrokenPod",
            f"replacing {pod.name}: on an old revision and not ready, it serves nobody",
            pod.name,
            updated=updated,
        )
    unhealthy = sorted(p.name for p in kept if p.terminating or not p.ready)
    if unhealthy or len(kept) < replicas:
        missing = replicas - len(kept)
        detail = ", ".join(unhealthy) if unhealthy else f"{missing} missing"
        return RolloutStep(
            "wait",
            "WaitingForHealthyCluster",
            f"{len(outdated)} chat servers to replace; waiting for every chat server to be "
            f"ready first ({detail})",
            updated=updated,
        )
    pod = outdated[0]
    return RolloutStep(
        "replace",
        "ReplacingPod",
        f"replacing {pod.name} ({updated}/{replicas} on revision {update_revision})",
        pod.name,
        updated=updated,
    )


def _ordinal(name: str) -> int:
    _, _, tail = name.rpartition("-")
    return int(tail) if tail.isdigit() else -1


def _in_flight_step(
    pod: PodState | None,
    in_flight: InFlight,
    *,
    update_revision: str,
    members: Mapping[str, int] | None,
    total: int | None,
    now: float,
    drain_budget_s: float,
    grace_s: float,
    progress_deadline_s: float,
    updated: int,
    scaled_away: bool,
) -> RolloutStep | None:
    """The step while a replacement is under way, or None when it is finished."""
    if scaled_away:
        return None  # the StatefulSet shrank past it: nothing to wait for
    name = in_flight.pod
    elapsed = now - in_flight.started
    if pod is None or pod.terminating or pod.revision != update_revision:
        return _halt_or_wait(
            elapsed > grace_s + progress_deadline_s,
            "Draining",
            f"{name} is draining and being recreated",
            name,
            in_flight,
            updated,
        )
    if not pod.ready:
        if pod.failing:
            return RolloutStep(
                "halt",
                "PodFailing",
                f"the new {name} is failing ({pod.failing}); the rollout stopped",
                name,
                in_flight,
                updated,
            )
        return _halt_or_wait(
            elapsed > grace_s + progress_deadline_s,
            "WaitingForReady",
            f"waiting for the new {name} to be ready",
            name,
            in_flight,
            updated,
        )
    ready_since = pod.ready_since if pod.ready_since is not None else now
    if members is None or name not in members:
        return _halt_or_wait(
            now - ready_since > progress_deadline_s,
            "WaitingForMembership",
            f"the new {name} is ready; waiting for it to join (its membership record)",
            name,
            in_flight,
            updated,
        )
    before = in_flight.connections_before
    if (
        before
        and (total is None or total < SETTLE_FRACTION * before)
        and now - ready_since < drain_budget_s
    ):
        return RolloutStep(
            "wait",
            "Settling",
            f"waiting for connections to settle after replacing {name} "
            f"({total if total is not None else '?'} of {before})",
            name,
            in_flight,
            updated,
        )
    return None
