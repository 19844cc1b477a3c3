"""Reading raw Kubernetes objects into the small views the pure decisions take."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tidings_operator import names
from tidings_operator.rollout import FAILING_REASONS, PodState
from tidings_operator.status import parse_time

__all__ = ["PodView", "epoch", "failing_reason", "lost_at", "pod_view", "ready_count"]


@dataclass(frozen=True, slots=True)
class PodView:
    name: str
    uid: str
    ordinal: int
    revision: str
    ready: bool
    terminating: bool
    ready_since: float | None
    failing: str | None
    created: float | None
    # When it was asked to terminate (its deletionTimestamp minus the grace period).
    terminating_since: float | None
    not_ready_since: float | None

    def state(self) -> PodState:
        return PodState(
            name=self.name,
            ordinal=self.ordinal,
            revision=self.revision,
            ready=self.ready,
            terminating=self.terminating,
            ready_since=self.ready_since,
            failing=self.failing,
        )


def epoch(value: Any) -> float | None:
    when = parse_time(value if isinstance(value, str) else None)
    return when.timestamp() if when is not None else None


def failing_reason(pod: Mapping[str, Any]) -> str | None:
    """A container waiting reason that waiting will not fix (crash loop, image pull, ...)."""
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in FAILING_REASONS:
                return str(reason)
    return None


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    labels = meta.get("labels") or {}
    name = str(meta.get("name", ""))
    index = labels.get(names.LABEL_POD_INDEX)
    ordinal = int(index) if isinstance(index, str) and index.isdigit() else names.pod_ordinal(name)
    ready_cond: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    terminating = meta.get("deletionTimestamp") is not None
    ready = (
        ready_cond.get("status") == "True" and not terminating and status.get("phase") == "Running"
    )
    transition = epoch(ready_cond.get("lastTransitionTime"))
    deletion = epoch(meta.get("deletionTimestamp"))
    grace = meta.get("deletionGracePeriodSeconds")
    terminating_since = (
        deletion - float(grace) if deletion is not None and isinstance(grace, int) else deletion
    )
    return PodView(
        name=name,
        uid=str(meta.get("uid", "")),
        ordinal=ordinal if ordinal is not None else -1,
        revision=str(labels.get(names.LABEL_REVISION, "")),
        ready=ready,
        terminating=terminating,
        ready_since=transition if ready else None,
        failing=failing_reason(pod),
        created=epoch(meta.get("creationTimestamp")),
        terminating_since=terminating_since,
        not_ready_since=transition if not ready and not terminating else None,
    )


def ready_count(workload: Mapping[str, Any] | None) -> tuple[int, int]:
    """``(ready, wanted)`` replicas of a StatefulSet or Deployment (0, 0 when missing)."""
    if not workload:
        return 0, 0
    wanted = int((workload.get("spec") or {}).get("replicas", 1))
    ready = int((workload.get("status") or {}).get("readyReplicas") or 0)
    return ready, wanted


def lost_at(
    pod: PodView | None, lost_uid: str, now: float, *, deletion_began: float | None = None
) -> float:
    """When a pod (uid ``lost_uid``) was lost, as precisely as what is left of it says.

    ``pod`` is what has that name now: nothing (gone), a new pod (replaced once the old one
    was gone, so no later than its creation), or the same pod terminating or not ready.
    ``deletion_began``: when the lost pod's deletion began, if the watch saw it.
    """
    if pod is None or pod.uid != lost_uid:
        bound = now if pod is None else min(now, pod.created or now)
        return min(bound, deletion_began) if deletion_began is not None else bound
    if pod.terminating and pod.terminating_since is not None:
        return min(now, pod.terminating_since)
    if pod.not_ready_since is not None:
        return min(now, pod.not_ready_since)
    return now
