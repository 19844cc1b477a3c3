"""What the status says, from what the operator saw and decided: pure functions.

The conditions a look produces (``ChatServersReady``, ``Progressing``, ``Degraded``), the
``Ready`` summary, and the ``rollout`` / ``lastDisruption`` objects — written to the status
and read back next time (they carry the replacement in flight and the disruption being
tracked, so an operator restart carries on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tidings_operator.autoscale import ScaleDecision
from tidings_operator.disruption import Disruption
from tidings_operator.observe import PodView, ready_count
from tidings_operator.rollout import InFlight, RolloutStep
from tidings_operator.status import (
    Condition,
    Verdict,
    find,
    format_time,
    merge_conditions,
    parse_time,
    ready_verdict,
)

__all__ = [
    "Look",
    "conditions_after",
    "disruption_from_status",
    "disruption_status",
    "epoch",
    "in_flight_from_status",
    "iso",
    "look_verdicts",
    "rollout_status",
    "summary",
    "workload_part",
]


def iso(epoch: float) -> str:
    return format_time(datetime.fromtimestamp(epoch, UTC))


def epoch(value: Any) -> float | None:
    when = parse_time(value if isinstance(value, str) else None)
    return when.timestamp() if when is not None else None


def in_flight_from_status(rollout: Mapping[str, Any]) -> InFlight | None:
    """The replacement under way, as ``status.rollout`` keeps it."""
    pod, started = rollout.get("pod"), epoch(rollout.get("startedAt"))
    if not isinstance(pod, str) or not pod or started is None:
        return None
    before = rollout.get("connectionsBefore")
    return InFlight(pod, started, int(before) if isinstance(before, int) else None)


def rollout_status(
    step: RolloutStep | None,
    in_flight: InFlight | None,
    pods: Sequence[PodView],
    update_revision: str,
    previous: Mapping[str, Any],
) -> dict[str, Any] | None:
    """``status.rollout``; unchanged when there was no step (the StatefulSet is catching up)."""
    if step is None:
        return dict(previous) if previous else None
    outdated = [p.revision for p in pods if p.revision and p.revision != update_revision]
    current_revision = max(set(outdated), key=outdated.count) if outdated else update_revision
    return {
        "inProgress": step.in_progress,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "updatedReplicas": step.updated,
        "pod": in_flight.pod if in_flight else None,
        "startedAt": iso(in_flight.started) if in_flight else None,
        "connectionsBefore": in_flight.connections_before if in_flight else None,
        "reason": step.reason,
        "message": step.message,
    }


def disruption_from_status(raw: Any) -> Disruption | None:
    if not isinstance(raw, Mapping) or not raw.get("pod"):
        return None
    at = epoch(raw.get("at"))
    if at is None:
        return None
    recovered_at = epoch(raw.get("recoveredAt"))
    seconds = raw.get("recoverySeconds")
    if recovered_at is not None and isinstance(seconds, int | float):
        # Times in the status have whole seconds; the recovery time is kept as written.
        recovered_at = at + float(seconds)
    return Disruption(
        pod=str(raw["pod"]),
        at=at,
        clients=int(raw.get("clients") or 0),
        connections_before=int(raw.get("connectionsBefore") or 0),
        recovered_at=recovered_at,
        message=str(raw.get("message") or ""),
        cause=str(raw.get("cause") or "Lost"),
    )


def disruption_status(d: Disruption) -> dict[str, Any]:
    return {
        "pod": d.pod,
        "at": iso(d.at),
        "clients": d.clients,
        "connectionsBefore": d.connections_before,
        "recoveredAt": iso(d.recovered_at) if d.recovered_at is not None else None,
        "recoverySeconds": d.recovery_seconds,
        "message": d.message,
        "cause": d.cause,
    }


def workload_part(what: str, workload: Mapping[str, Any] | None, wired: bool) -> Verdict:
    """The api or push servers' part of the Ready summary (not a condition of its own)."""
    type_ = f"{what.capitalize()}Ready"
    if workload is None:
        return Verdict(
            type_,
            "False" if wired else "Unknown",
            "NotCreated",
            f"the {what} servers are not created yet",
        )
    ready, wanted = ready_count(workload)
    message = f"{ready}/{wanted} {what} servers ready"
    if ready >= wanted:
        return Verdict(type_, "True", "AllReady", message)
    return Verdict(type_, "False", "PodsNotReady", message)


def summary(
    conditions: Sequence[Mapping[str, Any]], extra: Sequence[Verdict], spec_error: str | None
) -> list[Verdict]:
    """``Degraded`` (a spec error wins) and ``Ready``, from the conditions as they stand
    plus ``extra`` parts (api and push servers, a missing Secret)."""

    def part(type_: str) -> Verdict:
        c = find(conditions, type_)
        if c is None:
            return Verdict(type_, "Unknown", "Pending", "not checked yet")
        return Verdict(type_, c["status"], c["reason"], c["message"])

    degraded = part("Degraded")
    if spec_error:
        degraded = Verdict("Degraded", "True", "InvalidSpec", spec_error)
    elif degraded.status == "Unknown":
        degraded = Verdict("Degraded", "False", "AsExpected", "")
    parts = [*extra, part("KafkaReady"), part("CassandraReady")]
    if find(conditions, "MediaReady") is not None:  # written by operators since issue #18
        parts.append(part("MediaReady"))
    parts.append(part("ChatServersReady"))
    return [degraded, ready_verdict(parts, degraded)]


def conditions_after(
    conditions: Sequence[Mapping[str, Any]],
    verdicts: Sequence[Verdict],
    *,
    generation: int,
    now: datetime,
    parts: Sequence[Verdict] | None = None,
    spec_error: str | None = None,
) -> list[Condition]:
    """The conditions with ``verdicts`` merged in, then (unless ``parts`` is None) the
    ``Degraded`` and ``Ready`` summary of them and ``parts`` (:func:`summary`): the one
    way every status write of the reconciler puts its conditions together."""
    out = merge_conditions(conditions, verdicts, generation=generation, now=now)
    if parts is None:
        return out
    return merge_conditions(out, summary(out, parts, spec_error), generation=generation, now=now)


@dataclass(frozen=True, slots=True)
class Look:
    """What one look at a ChatCluster found and decided."""

    wired: bool  # Kafka and Cassandra are wired for the current spec
    spec_error: str | None
    chat_exists: bool  # the chat StatefulSet
    pods: Sequence[PodView]  # the chat pods
    current: int | None  # the chat StatefulSet's replicas before this look
    desired: int
    step: RolloutStep | None
    decision: ScaleDecision | None
    failing: Sequence[str]  # "pod (reason)" for pods that will not get better by waiting
    # spec.chat.replicas while autoscaling is on (a `kubectl scale` that does nothing)
    ignored_replicas: int | None = None

    @property
    def ready(self) -> int:
        return sum(1 for p in self.pods if p.ready and p.ordinal < self.desired)


def scale_ignored_message(replicas: int) -> str:
    return (
        f"spec.chat.replicas is {replicas} (set through /scale, e.g. kubectl scale) but "
        "spec.chat.autoscaling is true, so the operator sizes the chat servers from their "
        "connections and ignores it; set spec.chat.autoscaling to false to size them by hand"
    )


def look_verdicts(look: Look) -> list[Verdict]:
    """``ChatServersReady``, ``Progressing``, ``Degraded`` and ``ScaleIgnored``."""
    desired, ready, step, decision = look.desired, look.ready, look.step, look.decision
    if not look.chat_exists:
        why = (
            "the chat StatefulSet is being created"
            if look.wired
            else "the chat servers are created once Kafka and Cassandra are wired"
        )
        chat = Verdict("ChatServersReady", "False", "NotCreated", why)
    elif desired == 0:
        chat = Verdict("ChatServersReady", "True", "ScaledToZero", "no chat servers wanted")
    elif ready >= desired:
        chat = Verdict(
            "ChatServersReady", "True", "AllReady", f"{ready}/{desired} chat servers ready"
        )
    else:
        chat = Verdict(
            "ChatServersReady", "False", "PodsNotReady", f"{ready}/{desired} chat servers ready"
        )

    alive = sum(1 for p in look.pods if not p.terminating)
    scaling = look.current is not None and (look.current != desired or alive != desired)
    if step is not None and step.action in ("replace", "wait"):
        progressing = Verdict("Progressing", "True", "RollingOut", step.message)
    elif step is not None and step.action == "halt":
        progressing = Verdict("Progressing", "False", "RolloutHalted", step.message)
    elif scaling:
        message = decision.message if decision is not None else f"scaling to {desired}"
        progressing = Verdict("Progressing", "True", "Scaling", message)
    elif not look.wired and not look.spec_error:
        progressing = Verdict("Progressing", "True", "Reconciling", "wiring Kafka and Cassandra")
    else:
        message = decision.message if decision is not None else f"{desired} chat servers"
        progressing = Verdict("Progressing", "False", "Stable", message)

    if look.spec_error:
        degraded = Verdict("Degraded", "True", "InvalidSpec", look.spec_error)
    elif step is not None and step.action == "halt":
        degraded = Verdict("Degraded", "True", step.reason, step.message)
    elif look.failing:
        degraded = Verdict(
            "Degraded", "True", "PodsFailing", f"chat servers failing: {', '.join(look.failing)}"
        )
    else:
        degraded = Verdict("Degraded", "False", "AsExpected", "")
    if look.ignored_replicas is not None:
        ignored = Verdict(
            "ScaleIgnored", "True", "AutoscalingOn", scale_ignored_message(look.ignored_replicas)
        )
    else:
        ignored = Verdict("ScaleIgnored", "False", "AsRequested", "")
    return [chat, progressing, degraded, ignored]
