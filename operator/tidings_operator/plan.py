"""One tick's decisions for a ChatCluster: a pure function of what the tick observed.

:func:`plan` takes an :class:`Observation` (the ChatCluster, its children, the membership
records, what the operator remembers from earlier ticks, the times) and returns a
:class:`Plan`: what to do, what to write into the status, which Events to post and what
to remember. No I/O: the reconciler observes, plans and acts (reconciler.py).

Two decisions depend on what the API server says when asked: whether an eviction goes
through (the disruption budget may refuse it) and whether the children could be applied
(the PostgreSQL database may have changed under the cluster). For those the plan asks
first: its :attr:`Plan.ask` is an :class:`Evict` or an :class:`Apply`, and the reconciler
carries it out, records the answer in :attr:`Observation.answers` and plans again. A
tick asks at most three questions (a requested drain, a rollout step, an apply).

The decisions themselves are the pure modules': the size (autoscale.py), the rollout step
(rollout.py), the disruptions (disruption.py), the incident controls (controls.py), the
conditions (report.py); this module puts them in order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from tidings_operator import names
from tidings_operator.autoscale import (
    Recommendation,
    ScaleDecision,
    clients_back,
    decide,
    manual_replicas,
)
from tidings_operator.builders import Owner, build_all, termination_grace_seconds
from tidings_operator.controls import (
    drain_requested,
    newly_paused,
    pause_verdicts,
    paused,
    restart_requested,
)
from tidings_operator.disruption import PodSeen, lost_pods, progress, start
from tidings_operator.members import Member, first_reached
from tidings_operator.names import ANNOTATION_DRAIN, ANNOTATION_RESTART
from tidings_operator.observe import PodView, failing_reason, lost_at
from tidings_operator.report import (
    Look,
    conditions_after,
    disruption_from_status,
    disruption_status,
    in_flight_from_status,
    iso,
    look_verdicts,
    rollout_status,
    scale_ignored_message,
    workload_part,
)
from tidings_operator.rollout import InFlight, RolloutStep, next_step
from tidings_operator.spec import ClusterSpec
from tidings_operator.status import Verdict, find, merge_patch

__all__ = [
    "Answers",
    "Applied",
    "Apply",
    "Event",
    "Evict",
    "Memory",
    "Observation",
    "Plan",
    "Readings",
    "plan",
    "rewire_due",
    "wiring_due",
]

Event = tuple[str, str, str]  # (type, reason, message) of a Kubernetes Event
Child = Mapping[str, Any] | None  # a child workload as the API server has it, or none


@dataclass(frozen=True, slots=True)
class Memory:
    """What the operator carries from one tick to the next for one ChatCluster (in memory;
    what must survive a restart is in the status)."""

    history: tuple[Recommendation, ...] | None = None  # the autoscaler's recommendations
    pods_seen: Mapping[str, PodSeen] = field(default_factory=dict)
    reported_uids: frozenset[str] = frozenset()  # pods whose loss is told (or planned)
    last_connections: Mapping[str, int] = field(default_factory=dict)  # per chat server
    last_total: int | None = None
    # The last scale-down step: (reported connections before it, monotonic time).
    shrink: tuple[int, float] | None = None
    applied_generation: int | None = None
    # The tidings.dev/restart value the children were last applied with ("" before any
    # apply: a first apply with a value set is no new restart).
    applied_restart: str | None = ""
    last_apply: float = -math.inf  # monotonic
    secrets_kept: tuple[str, ...] = ()  # workloads whose Secrets could not be read
    parts: tuple[Verdict, ...] = ()  # api and push, for the Ready summary


@dataclass(frozen=True, slots=True)
class Evict:
    """Evict a chat pod (through the disruption budget), for a drain the annotation asked
    for (the annotation is removed once it went through) or a rollout step."""

    why: Literal["drain", "rollout"]
    pod: str
    uid: str


@dataclass(frozen=True, slots=True)
class Apply:
    """Server-side apply the children (after checking the PostgreSQL database the pods'
    Secret names, and stamping the Secrets' hash), then prune the exposure children the
    spec no longer asks for."""

    manifests: tuple[dict[str, Any], ...]
    current: Mapping[tuple[str, str], Child]  # (kind, name): the child as it is now


@dataclass(frozen=True, slots=True)
class Applied:
    """How an :class:`Apply` went."""

    applied: bool  # False: refused (DatabaseChanged), nothing applied
    secrets_kept: tuple[str, ...] = ()  # workloads left on their environment
    claims: tuple[Verdict, ...] = ()  # the Secrets/Claims parts of Ready after the check


@dataclass(frozen=True, slots=True)
class Answers:
    """What the API server said to the plan's earlier questions this tick."""

    evicted: Mapping[tuple[str, str], bool] = field(default_factory=dict)  # (why, uid)
    applied: Applied | None = None


@dataclass(frozen=True, slots=True)
class Readings:
    """The chat servers' membership records as the tick found them (None: unreadable)."""

    members: Mapping[str, Member] | None = None
    total: int | None = None
    history: Mapping[str, Sequence[Member]] | None = None  # recent records, by server


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything one tick read, in one immutable value."""

    cluster: Mapping[str, Any]  # the ChatCluster as read this tick
    spec: ClusterSpec | None  # None: the spec does not parse (spec_error says why)
    spec_error: str | None
    # Wiring: done for the current spec; the inbox topic's partitions; the conditions
    # wiring just produced; the Secrets/Claims parts of the Ready summary.
    wired: bool
    inbox_partitions: int | None
    wired_now: tuple[Verdict, ...]  # KafkaReady, CassandraReady, MediaReady
    claims: tuple[Verdict, ...]
    wire_events: tuple[Event, ...]
    chat: Child  # the chat StatefulSet
    api: Child
    push: Child
    raw_pods: tuple[Mapping[str, Any], ...]  # the chat pods as the API server has them
    pods: tuple[PodView, ...]  # the same, read (observe.py), by ordinal
    readings: Readings
    memory: Memory
    deletion_began: Mapping[str, float]  # pod uid: when its deletion began (the watch)
    now: float  # epoch seconds
    mono: float  # monotonic seconds
    stamp_now: datetime  # the conditions' transition time
    force_apply: bool = False
    resync_s: float = 60.0
    answers: Answers = field(default_factory=Answers)

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.cluster.get("metadata") or {}

    @property
    def status(self) -> Mapping[str, Any]:
        return self.cluster.get("status") or {}

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation") or 0)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do. With :attr:`ask` set, only that (then plan again with the answer), and
    :attr:`memory` is what the tick has decided so far (kept should the ask fail);
    otherwise the rest of the tick, in this order: the scale subresource, the drain
    annotation, the status patch, the Events."""

    ask: Evict | Apply | None = None
    scale_to: int | None = None  # PATCH the chat StatefulSet's /scale
    remove_drain: bool = False  # remove tidings.dev/drain (refused: no such pod)
    status_patch: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    memory: Memory | None = None  # what to remember (None: unchanged)
    # For the metrics: the pods lost (each a disruption), the gauges.
    lost: int = 0
    gauges: Mapping[str, int | None] | None = None  # desired, replicas, ready, halted, total


def wiring_due(
    *,
    wired_key: str | None,
    key: str,
    last_attempt_key: str | None,
    skipped_while_paused: bool,
    conflict: str | None,
    conflict_check_at: float,
    mono: float,
    wiring: bool,
) -> bool:
    """Whether a tick wires the spec itself rather than leaving it to kopf's reconcile.

    kopf retries a failed reconcile after its backoff even when the spec changed
    meanwhile; a fix (say, a new address) should not wait for that. A spec that failed as
    it is keeps kopf's backoff (a down engine is not hammered every tick). After a pause
    kopf's reconcile was skipped and will not run again: the ticks wire. A conflict is
    looked at again every CONFLICT_RECHECK_S (the owner may have been deleted).
    """
    if wired_key == key or wiring:
        return False
    conflict_due = conflict is not None and mono >= conflict_check_at
    return not (last_attempt_key in (None, key) and not skipped_while_paused and not conflict_due)


def rewire_due(*, rewire_s: float, wired: bool, since_wired: float, rewiring: bool) -> bool:
    """Whether the periodic re-wire (drift repair) of the same spec is due."""
    return rewire_s > 0 and wired and since_wired >= rewire_s and not rewiring


def plan(obs: Observation) -> Plan:
    """This tick's plan: a pause, a spec that does not parse, or a full look."""
    if paused(obj := obs.cluster):
        # Hands off: the condition (an Event when the pause begins), nothing else.
        conditions = conditions_after(
            obs.status.get("conditions") or [],
            pause_verdicts(obj),
            generation=obs.generation,
            now=obs.stamp_now,
        )
        events: tuple[Event, ...] = ()
        if newly_paused(obj):
            (verdict,) = pause_verdicts(obj)
            events = (("Normal", "ReconciliationPaused", verdict.message),)
        return Plan(status_patch=merge_patch(obs.status, {"conditions": conditions}), events=events)
    if obs.spec is None:
        conditions = conditions_after(
            obs.status.get("conditions") or [],
            [],
            parts=[],
            spec_error=obs.spec_error,
            generation=obs.generation,
            now=obs.stamp_now,
        )
        return Plan(status_patch=merge_patch(obs.status, {"conditions": conditions}))
    return _look(obs, obs.spec)


def _look(obs: Observation, spec: ClusterSpec) -> Plan:
    memory, answers, readings = obs.memory, obs.answers, obs.readings
    meta, status = obs.meta, obs.status
    name, namespace = str(meta["name"]), str(meta["namespace"])
    now, mono = obs.now, obs.mono
    members, total = readings.members, readings.total
    pods = list(obs.pods)
    by_name = {p.name: p for p in pods}
    sts = obs.chat
    events: list[Event] = list(obs.wire_events)
    reported = set(memory.reported_uids)
    last_connections = dict(memory.last_connections)
    for sid, member in (members or {}).items():
        if not member.draining:
            last_connections[sid] = member.connections

    previous_rollout: Mapping[str, Any] = status.get("rollout") or {}
    in_flight = in_flight_from_status(previous_rollout)
    current = int(sts["spec"].get("replicas", 1)) if sts else None

    # --- disruptions: ready pods lost without the operator asking for it ---------------
    planned: set[str] = set()
    if in_flight is not None:
        planned.add(in_flight.pod)
    if current is not None:
        planned |= {
            pod_name
            for pod_name in [*memory.pods_seen, *by_name]
            if (names.pod_ordinal(pod_name) or 0) >= current
        }
    seen_now = {p.name: PodSeen(p.uid, p.ready, p.terminating) for p in pods}
    disruption = disruption_from_status(status.get("lastDisruption"))
    lost = lost_pods(memory.pods_seen, seen_now, planned=planned, reported=frozenset(reported))
    for pod_name, pod_uid in lost:
        reported.add(pod_uid)
        clients = last_connections.get(pod_name, 0)
        before = memory.last_total if memory.last_total is not None else (total or 0) + clients
        disruption = start(
            pod_name,
            at=lost_at(
                by_name.get(pod_name),
                pod_uid,
                now,
                deletion_began=obs.deletion_began.get(pod_uid),
            ),
            clients=clients,
            connections_before=before,
            ongoing=disruption,
            now=now,
            drain_budget_s=spec.chat.drain_budget_s,
        )
        events.append(("Warning", "ChatServerLost", disruption.message))
    for pod_name in planned:
        seen = memory.pods_seen.get(pod_name)
        if seen is not None:
            reported.add(seen.uid)

    # --- a drain asked for (tidings.dev/drain) -------------------------------------------
    remove_drain = False
    wanted = drain_requested(obs.cluster)
    if wanted is not None:
        target = by_name.get(wanted)
        if target is None:
            events.append(
                ("Warning", "DrainRefused", f"{ANNOTATION_DRAIN}={wanted}: no such chat pod")
            )
            remove_drain = True
        elif (
            in_flight is None
            and not any(p.terminating for p in pods)  # one chat server out at a time
            and target.ready
        ):
            went = answers.evicted.get(("drain", target.uid))
            if went is None:
                so_far = replace(
                    memory, reported_uids=frozenset(reported), last_connections=last_connections
                )
                return Plan(
                    ask=Evict("drain", target.name, target.uid), memory=so_far, lost=len(lost)
                )
            if went:  # else the disruption budget says not now: the next tick looks again
                reported.add(target.uid)  # not a loss: a drain asked for
                before = memory.last_total if memory.last_total is not None else (total or 0)
                disruption = start(
                    target.name,
                    at=now,
                    clients=last_connections.get(target.name, 0),
                    connections_before=before,
                    ongoing=disruption,
                    now=now,
                    drain_budget_s=spec.chat.drain_budget_s,
                    cause="DrainRequested",
                )
                events.append(("Normal", "DrainRequested", disruption.message))
    if disruption is not None:
        advanced = progress(
            disruption,
            total=total,
            now=now,
            drain_budget_s=spec.chat.drain_budget_s,
            reached_at=functools.partial(_reached, readings, since=disruption.at),
        )
        if advanced.recovered_at is not None and disruption.recovered_at is None:
            events.append(("Normal", "ClientsRecovered", advanced.message))
        disruption = advanced

    # --- size -------------------------------------------------------------------------
    terminating = any(p.terminating for p in pods)
    # The last resize carried out: no pod beyond the size left (the StatefulSet
    # controller deletes it a moment after the size changes).
    settled = current is None or sum(1 for p in pods if not p.terminating) <= current
    # Back means on the servers that remain: a gone pod's last record (until its
    # tombstone) must not count its clients as back.
    on_pods = (
        sum(m.connections for sid, m in members.items() if sid in by_name)
        if members is not None and total is not None
        else None
    )
    shrink = memory.shrink
    if settled and clients_back(shrink, on_pods, mono, 2 * spec.chat.drain_budget_s):
        shrink = None
    # No two chat servers drain together, and the next goes only when the clients of
    # the last one are back (or it waited two drain budgets).
    can_scale_down = settled and not terminating and in_flight is None and shrink is None
    decision: ScaleDecision | None = None
    history: tuple[Recommendation, ...] | None
    if spec.chat.autoscaling:
        base = current if current is not None else spec.chat.min_replicas
        decision = decide(
            current=base,
            total=total,
            target=spec.chat.target_connections_per_pod,
            min_replicas=spec.chat.min_replicas,
            max_replicas=spec.chat.max_replicas,
            window_s=spec.chat.scale_down_stabilization_s,
            history=memory.history if memory.history is not None else (Recommendation(mono, base),),
            now=mono,
            can_scale_down=can_scale_down,
        )
        history, desired = decision.history, decision.replicas
    else:
        history = None
        desired = manual_replicas(
            spec.chat.replicas,
            spec.chat.min_replicas,
            current=current,
            can_scale_down=can_scale_down,
        )
    ignored = spec.chat.replicas if spec.chat.autoscaling else None
    was_ignored = find(status.get("conditions") or [], "ScaleIgnored")
    if ignored is not None and (was_ignored is None or was_ignored["status"] != "True"):
        events.append(("Warning", "ScaleIgnored", scale_ignored_message(ignored)))

    def decided() -> Memory:
        """What the tick has decided to remember before it applies anything."""
        return replace(
            memory,
            history=history,
            pods_seen=seen_now,
            reported_uids=frozenset(reported),
            last_connections=last_connections,
            shrink=shrink,
        )

    # --- rollout ----------------------------------------------------------------------
    step: RolloutStep | None = None
    sts_status = (sts or {}).get("status") or {}
    update_revision = str(sts_status.get("updateRevision") or "")
    fresh = sts is not None and int(sts_status.get("observedGeneration") or 0) >= int(
        sts["metadata"].get("generation") or 0
    )
    if sts is not None and fresh and update_revision and current is not None:
        step = next_step(
            pods=[p.state() for p in pods],
            replicas=current,
            update_revision=update_revision,
            in_flight=in_flight,
            members=(
                {sid: m.connections for sid, m in members.items() if not m.draining}
                if members is not None
                else None
            ),
            total=total,
            now=now,
            drain_budget_s=spec.chat.drain_budget_s,
            grace_s=termination_grace_seconds(spec),
            progress_deadline_s=spec.chat.progress_deadline_s,
        )
        in_flight = step.in_flight
        if step.action == "replace" and step.pod:
            target = by_name[step.pod]
            went = answers.evicted.get(("rollout", target.uid))
            if went is None:
                return Plan(
                    ask=Evict("rollout", target.name, target.uid),
                    memory=decided(),
                    lost=len(lost),
                )
            if went:
                in_flight = InFlight(target.name, now, total)
                reported.add(target.uid)
                events.append(("Normal", "ReplacingChatServer", step.message))
                step = RolloutStep(
                    "wait",
                    "Draining",
                    f"{step.message}: draining",
                    step.pod,
                    in_flight,
                    step.updated,
                )
            else:
                step = RolloutStep(
                    "wait",
                    "EvictionRefused",
                    f"the disruption budget does not allow evicting {step.pod} yet",
                    step.pod,
                    None,
                    step.updated,
                )
        elif step.action == "halt" and previous_rollout.get("reason") != step.reason:
            events.append(("Warning", "RolloutHalted", step.message))

    # --- apply ------------------------------------------------------------------------
    applied_generation, applied_restart = memory.applied_generation, memory.applied_restart
    last_apply, secrets_kept = memory.last_apply, memory.secrets_kept
    claims = obs.claims
    scale_to: int | None = None
    last_scale = status.get("lastScale")
    restart = restart_requested(obs.cluster)
    due = mono - memory.last_apply > obs.resync_s
    missing = sts is None or obs.api is None or obs.push is None
    if (
        obs.wired
        and obs.inbox_partitions is not None
        and (
            obs.force_apply
            or due
            or missing
            or memory.applied_generation != obs.generation
            or memory.applied_restart != restart
            or current != desired
        )
    ):
        outcome = answers.applied
        if outcome is None:
            owner: Owner = {"name": name, "namespace": namespace, "uid": str(meta["uid"])}
            # A shrinking server keeps its own address until its pod is gone.
            exposed = max(desired, current or 0, *(p.ordinal + 1 for p in pods))
            manifests = build_all(
                owner,
                spec,
                chat_replicas=desired,
                inbox_partitions=obs.inbox_partitions,
                exposed_ordinals=exposed,
                restart=restart,
            )
            children = {
                ("StatefulSet", names.chat_name(name)): sts,
                ("StatefulSet", names.api_name(name)): obs.api,
                ("Deployment", names.push_name(name)): obs.push,
            }
            return Plan(ask=Apply(tuple(manifests), children), memory=decided(), lost=len(lost))
        claims = outcome.claims
        if outcome.applied:  # else refused (DatabaseChanged): the status says why
            kept = outcome.secrets_kept
            if kept != memory.secrets_kept and kept:
                events.append(
                    (
                        "Warning",
                        "SecretsUnreadable",
                        f"a Secret or key the pods need is missing, so {', '.join(kept)} "
                        "keep their current environment (no roll until it is back)",
                    )
                )
            secrets_kept = kept
            if restart is not None and memory.applied_restart not in ("", restart):
                events.append(
                    (
                        "Normal",
                        "RestartRequested",
                        f"{ANNOTATION_RESTART}={restart}: rolling every chat server",
                    )
                )
            applied_generation, last_apply, applied_restart = obs.generation, mono, restart
    elif sts is not None and current != desired:
        scale_to = desired
    if current is not None and desired < current:
        shrink = (total if total is not None else memory.last_total or 0, mono)
    if current is not None and current != desired:
        why = decision.reason if decision is not None else "ScaleSubresource"
        last_scale = {"from": current, "to": desired, "at": iso(now), "reason": why}
        message = decision.message if decision is not None else "spec.chat.replicas changed"
        events.append(("Normal", "Scaled", f"chat servers {current} -> {desired}: {message}"))

    # --- status -----------------------------------------------------------------------
    look = Look(
        wired=obs.wired,
        spec_error=obs.spec_error,
        chat_exists=sts is not None,
        pods=pods,
        current=current,
        desired=desired,
        step=step,
        decision=decision,
        ignored_replicas=ignored,
        failing=sorted(
            f"{p['metadata']['name']} ({reason})"
            for p in obs.raw_pods
            if (reason := failing_reason(p)) is not None
        ),
    )
    parts = (workload_part("api", obs.api, obs.wired), workload_part("push", obs.push, obs.wired))
    conditions = conditions_after(
        status.get("conditions") or [],
        [*obs.wired_now, *pause_verdicts(obs.cluster), *look_verdicts(look)],
        parts=[*claims, *parts],
        spec_error=obs.spec_error,
        generation=obs.generation,
        now=obs.stamp_now,
    )
    replicas = sum(1 for p in pods if not p.terminating)
    new_status: dict[str, Any] = {
        "observedGeneration": (
            obs.generation if obs.wired and applied_generation == obs.generation else None
        )
        or status.get("observedGeneration"),
        "replicas": replicas,
        "readyReplicas": look.ready,
        "desiredReplicas": desired,
        "connections": total,
        "selector": names.selector_string(name, names.CHAT),
        "inboxPartitions": obs.inbox_partitions or status.get("inboxPartitions"),
        "conditions": conditions,
        "rollout": rollout_status(step, in_flight, pods, update_revision, previous_rollout),
        "lastScale": last_scale,
        "lastDisruption": disruption_status(disruption) if disruption else None,
    }
    halted = step is not None and step.action == "halt"
    return Plan(
        scale_to=scale_to,
        remove_drain=remove_drain,
        status_patch=merge_patch(status, new_status),
        events=tuple(events),
        memory=Memory(
            history=history,
            pods_seen=seen_now,
            reported_uids=frozenset(reported),
            last_connections=last_connections,
            last_total=total if total is not None else memory.last_total,
            shrink=shrink,
            applied_generation=applied_generation,
            applied_restart=applied_restart,
            last_apply=last_apply,
            secrets_kept=secrets_kept,
            parts=parts,
        ),
        lost=len(lost),
        gauges={
            "desired": desired,
            "replicas": replicas,
            "ready": look.ready,
            "halted": 1 if halted else 0,
            "total": total,
        },
    )


def _reached(readings: Readings, threshold: float, *, since: float) -> float | None:
    """When the chat servers' records first added up to ``threshold`` after ``since``."""
    if readings.history is None:
        return None
    return first_reached(readings.history, readings.members or {}, since=since, threshold=threshold)
