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
from tidings_operator.disruption import Disruption, PodSeen, lost_pods, progress, start
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


@dataclass(frozen=True, slots=True)
class _Seen:
    """What every part of a look reads: the observation, and what it says once read."""

    obs: Observation
    spec: ClusterSpec
    pods: Sequence[PodView]
    by_name: Mapping[str, PodView]
    current: int | None  # the chat StatefulSet's replicas (None: not there)
    in_flight: InFlight | None  # the replacement under way, as the status keeps it
    last_connections: Mapping[str, int]  # each chat server's last count (not draining)

    @property
    def total(self) -> int | None:
        return self.obs.readings.total

    def before(self, clients: int) -> int:
        """The connections before a loss: the last total seen, else now plus its clients."""
        last = self.obs.memory.last_total
        return last if last is not None else (self.total or 0) + clients


@dataclass(frozen=True, slots=True)
class _Steps:
    """What a part of the look decided: the disruption tracked, the pods whose loss is
    no surprise (told, planned or asked for), the Events to post."""

    disruption: Disruption | None
    reported: frozenset[str] = frozenset()
    events: tuple[Event, ...] = ()


def _look(obs: Observation, spec: ClusterSpec) -> Plan:
    """The full look: disruptions, a drain, the size, the rollout, the apply, the status."""
    memory, status = obs.memory, obs.status
    last_connections = dict(memory.last_connections)
    for sid, member in (obs.readings.members or {}).items():
        if not member.draining:
            last_connections[sid] = member.connections
    sts = obs.chat
    seen = _Seen(
        obs=obs,
        spec=spec,
        pods=obs.pods,
        by_name={p.name: p for p in obs.pods},
        current=int(sts["spec"].get("replicas", 1)) if sts else None,
        in_flight=in_flight_from_status(status.get("rollout") or {}),
        last_connections=last_connections,
    )
    lost, lost_steps = _lost(seen)
    drain = _drain(seen, lost_steps.disruption)
    if isinstance(drain, Evict):
        so_far = replace(
            memory,
            reported_uids=memory.reported_uids | lost_steps.reported,
            last_connections=last_connections,
        )
        return Plan(ask=drain, memory=so_far, lost=len(lost))
    disruption = _progress(seen, drain.disruption)
    size = _size(seen)
    rollout = _rollout(seen)
    seen_now = {p.name: PodSeen(p.uid, p.ready, p.terminating) for p in seen.pods}
    reported = memory.reported_uids | lost_steps.reported | drain.reported
    decided = replace(
        memory,
        history=size.history,
        pods_seen=seen_now,
        reported_uids=reported,
        last_connections=last_connections,
        shrink=size.shrink,
    )
    if isinstance(rollout, Evict):
        return Plan(ask=rollout, memory=decided, lost=len(lost))
    decided = replace(decided, reported_uids=reported | rollout.reported)
    apply = _apply(seen, size.desired, decided)
    if isinstance(apply, Apply):
        return Plan(ask=apply, memory=decided, lost=len(lost))
    events = [
        *obs.wire_events,
        *lost_steps.events,
        *drain.events,
        *disruption.events,
        *size.events,
        *rollout.events,
        *apply.events,
    ]
    desired = size.desired
    last_scale = status.get("lastScale")
    current = seen.current
    if current is not None and current != desired:
        decision = size.decision
        why = decision.reason if decision is not None else "ScaleSubresource"
        last_scale = {"from": current, "to": desired, "at": iso(obs.now), "reason": why}
        message = decision.message if decision is not None else "spec.chat.replicas changed"
        events.append(("Normal", "Scaled", f"chat servers {current} -> {desired}: {message}"))
    memory = apply.memory
    if current is not None and desired < current:
        last = obs.readings.total
        memory = replace(
            memory, shrink=(last if last is not None else memory.last_total or 0, obs.mono)
        )
    if obs.readings.total is not None:
        memory = replace(memory, last_total=obs.readings.total)
    parts = (workload_part("api", obs.api, obs.wired), workload_part("push", obs.push, obs.wired))
    memory = replace(memory, parts=parts)
    look = Look(
        wired=obs.wired,
        spec_error=obs.spec_error,
        chat_exists=sts is not None,
        pods=seen.pods,
        current=current,
        desired=desired,
        step=rollout.step,
        decision=size.decision,
        ignored_replicas=size.ignored,
        failing=sorted(
            f"{p['metadata']['name']} ({reason})"
            for p in obs.raw_pods
            if (reason := failing_reason(p)) is not None
        ),
    )
    new_status = _status(
        seen,
        look,
        rollout,
        claims=[*apply.claims, *parts],
        applied_generation=memory.applied_generation,
        last_scale=last_scale,
        disruption=disruption.disruption,
    )
    halted = rollout.step is not None and rollout.step.action == "halt"
    return Plan(
        scale_to=apply.scale_to,
        remove_drain=drain.remove_drain,
        status_patch=merge_patch(status, new_status),
        events=tuple(events),
        memory=memory,
        lost=len(lost),
        gauges={
            "desired": desired,
            "replicas": new_status["replicas"],
            "ready": look.ready,
            "halted": 1 if halted else 0,
            "total": obs.readings.total,
        },
    )


def _status(
    seen: _Seen,
    look: Look,
    rollout: _Rollout,
    *,
    claims: Sequence[Verdict],
    applied_generation: int | None,
    last_scale: Any,
    disruption: Disruption | None,
) -> dict[str, Any]:
    """The status the look leads to (before the merge patch against the one read)."""
    obs, status = seen.obs, seen.obs.status
    conditions = conditions_after(
        status.get("conditions") or [],
        [*obs.wired_now, *pause_verdicts(obs.cluster), *look_verdicts(look)],
        parts=claims,
        spec_error=obs.spec_error,
        generation=obs.generation,
        now=obs.stamp_now,
    )
    applied = obs.wired and applied_generation == obs.generation
    return {
        "observedGeneration": (obs.generation if applied else None)
        or status.get("observedGeneration"),
        "replicas": sum(1 for p in seen.pods if not p.terminating),
        "readyReplicas": look.ready,
        "desiredReplicas": look.desired,
        "connections": obs.readings.total,
        "selector": names.selector_string(str(obs.meta["name"]), names.CHAT),
        "inboxPartitions": obs.inbox_partitions or status.get("inboxPartitions"),
        "conditions": conditions,
        "rollout": rollout_status(
            rollout.step,
            rollout.in_flight,
            seen.pods,
            rollout.update_revision,
            status.get("rollout") or {},
        ),
        "lastScale": last_scale,
        "lastDisruption": disruption_status(disruption) if disruption else None,
    }


def _lost(seen: _Seen) -> tuple[list[tuple[str, str]], _Steps]:
    """Ready pods lost without the operator asking for it (each a disruption), and the
    pods whose going was planned (the replacement in flight, those beyond the size)."""
    obs, memory = seen.obs, seen.obs.memory
    planned: set[str] = set()
    if seen.in_flight is not None:
        planned.add(seen.in_flight.pod)
    if seen.current is not None:
        planned |= {
            pod_name
            for pod_name in [*memory.pods_seen, *seen.by_name]
            if (names.pod_ordinal(pod_name) or 0) >= seen.current
        }
    seen_now = {p.name: PodSeen(p.uid, p.ready, p.terminating) for p in seen.pods}
    disruption = disruption_from_status(obs.status.get("lastDisruption"))
    lost = lost_pods(memory.pods_seen, seen_now, planned=planned, reported=memory.reported_uids)
    reported: set[str] = set()
    events: list[Event] = []
    for pod_name, pod_uid in lost:
        reported.add(pod_uid)
        clients = seen.last_connections.get(pod_name, 0)
        disruption = start(
            pod_name,
            at=lost_at(
                seen.by_name.get(pod_name),
                pod_uid,
                obs.now,
                deletion_began=obs.deletion_began.get(pod_uid),
            ),
            clients=clients,
            connections_before=seen.before(clients),
            ongoing=disruption,
            now=obs.now,
            drain_budget_s=seen.spec.chat.drain_budget_s,
        )
        events.append(("Warning", "ChatServerLost", disruption.message))
    for pod_name in planned:
        was = memory.pods_seen.get(pod_name)
        if was is not None:
            reported.add(was.uid)
    return lost, _Steps(disruption, frozenset(reported), tuple(events))


@dataclass(frozen=True, slots=True)
class _Drained(_Steps):
    remove_drain: bool = False  # refused: no such pod


def _drain(seen: _Seen, disruption: Disruption | None) -> Evict | _Drained:
    """``tidings.dev/drain: <pod>`` (controls.py): evict that chat pod once (asked first),
    tracked as a disruption; one chat server out at a time, so it waits while a rollout
    step or another pod is on its way out."""
    obs = seen.obs
    wanted = drain_requested(obs.cluster)
    if wanted is None:
        return _Drained(disruption)
    target = seen.by_name.get(wanted)
    if target is None:
        message = f"{ANNOTATION_DRAIN}={wanted}: no such chat pod"
        return _Drained(
            disruption, events=(("Warning", "DrainRefused", message),), remove_drain=True
        )
    if seen.in_flight is not None or any(p.terminating for p in seen.pods) or not target.ready:
        return _Drained(disruption)  # the next tick looks again
    went = obs.answers.evicted.get(("drain", target.uid))
    if went is None:
        return Evict("drain", target.name, target.uid)
    if not went:
        return _Drained(disruption)  # the disruption budget says not now
    last = obs.memory.last_total
    drained = start(
        target.name,
        at=obs.now,
        clients=seen.last_connections.get(target.name, 0),
        connections_before=last if last is not None else (seen.total or 0),
        ongoing=disruption,
        now=obs.now,
        drain_budget_s=seen.spec.chat.drain_budget_s,
        cause="DrainRequested",
    )
    return _Drained(
        drained,
        reported=frozenset({target.uid}),  # not a loss: a drain asked for
        events=(("Normal", "DrainRequested", drained.message),),
    )


def _progress(seen: _Seen, disruption: Disruption | None) -> _Steps:
    """The disruption tracked, with the clients that are back counted."""
    if disruption is None:
        return _Steps(None)
    readings = seen.obs.readings
    advanced = progress(
        disruption,
        total=readings.total,
        now=seen.obs.now,
        drain_budget_s=seen.spec.chat.drain_budget_s,
        reached_at=functools.partial(_reached, readings, since=disruption.at),
    )
    if advanced.recovered_at is not None and disruption.recovered_at is None:
        return _Steps(advanced, events=(("Normal", "ClientsRecovered", advanced.message),))
    return _Steps(advanced)


@dataclass(frozen=True, slots=True)
class _Size:
    desired: int
    decision: ScaleDecision | None  # None: sized by hand (spec.chat.replicas)
    history: tuple[Recommendation, ...] | None
    shrink: tuple[int, float] | None
    ignored: int | None  # spec.chat.replicas, set while autoscaling
    events: tuple[Event, ...]


def _size(seen: _Seen) -> _Size:
    """How many chat servers: the autoscaler's or spec.chat.replicas, never two draining
    together."""
    obs, spec, pods, current = seen.obs, seen.spec, seen.pods, seen.current
    members, total, mono = obs.readings.members, obs.readings.total, obs.mono
    terminating = any(p.terminating for p in pods)
    # The last resize carried out: no pod beyond the size left (the StatefulSet
    # controller deletes it a moment after the size changes).
    settled = current is None or sum(1 for p in pods if not p.terminating) <= current
    # Back means on the servers that remain: a gone pod's last record (until its
    # tombstone) must not count its clients as back.
    on_pods = (
        sum(m.connections for sid, m in members.items() if sid in seen.by_name)
        if members is not None and total is not None
        else None
    )
    shrink = obs.memory.shrink
    if settled and clients_back(shrink, on_pods, mono, 2 * spec.chat.drain_budget_s):
        shrink = None
    # No two chat servers drain together, and the next goes only when the clients of
    # the last one are back (or it waited two drain budgets).
    can_scale_down = settled and not terminating and seen.in_flight is None and shrink is None
    decision: ScaleDecision | None = None
    history: tuple[Recommendation, ...] | None = None
    if spec.chat.autoscaling:
        base = current if current is not None else spec.chat.min_replicas
        decision = decide(
            current=base,
            total=total,
            target=spec.chat.target_connections_per_pod,
            min_replicas=spec.chat.min_replicas,
            max_replicas=spec.chat.max_replicas,
            window_s=spec.chat.scale_down_stabilization_s,
            history=(
                obs.memory.history
                if obs.memory.history is not None
                else (Recommendation(mono, base),)
            ),
            now=mono,
            can_scale_down=can_scale_down,
        )
        history, desired = decision.history, decision.replicas
    else:
        desired = manual_replicas(
            spec.chat.replicas,
            spec.chat.min_replicas,
            current=current,
            can_scale_down=can_scale_down,
        )
    ignored = spec.chat.replicas if spec.chat.autoscaling else None
    was_ignored = find(obs.status.get("conditions") or [], "ScaleIgnored")
    events: tuple[Event, ...] = ()
    if ignored is not None and (was_ignored is None or was_ignored["status"] != "True"):
        events = (("Warning", "ScaleIgnored", scale_ignored_message(ignored)),)
    return _Size(desired, decision, history, shrink, ignored, events)


@dataclass(frozen=True, slots=True)
class _Rollout:
    step: RolloutStep | None  # None: the StatefulSet is catching up (status unchanged)
    in_flight: InFlight | None
    update_revision: str
    reported: frozenset[str] = frozenset()
    events: tuple[Event, ...] = ()


def _rollout(seen: _Seen) -> Evict | _Rollout:
    """The next rollout step (rollout.py); a replacement evicts its pod (asked first)."""
    obs, sts, current = seen.obs, seen.obs.chat, seen.current
    sts_status = (sts or {}).get("status") or {}
    update_revision = str(sts_status.get("updateRevision") or "")
    fresh = sts is not None and int(sts_status.get("observedGeneration") or 0) >= int(
        sts["metadata"].get("generation") or 0
    )
    if not (sts is not None and fresh and update_revision and current is not None):
        return _Rollout(None, seen.in_flight, update_revision)
    members, total = obs.readings.members, obs.readings.total
    step = next_step(
        pods=[p.state() for p in seen.pods],
        replicas=current,
        update_revision=update_revision,
        in_flight=seen.in_flight,
        members=(
            {sid: m.connections for sid, m in members.items() if not m.draining}
            if members is not None
            else None
        ),
        total=total,
        now=obs.now,
        drain_budget_s=seen.spec.chat.drain_budget_s,
        grace_s=termination_grace_seconds(seen.spec),
        progress_deadline_s=seen.spec.chat.progress_deadline_s,
    )
    if step.action == "halt":
        previous = obs.status.get("rollout") or {}
        if previous.get("reason") != step.reason:
            events = (("Warning", "RolloutHalted", step.message),)
            return _Rollout(step, step.in_flight, update_revision, events=events)
    if step.action != "replace" or not step.pod:
        return _Rollout(step, step.in_flight, update_revision)
    target = seen.by_name[step.pod]
    went = obs.answers.evicted.get(("rollout", target.uid))
    if went is None:
        return Evict("rollout", target.name, target.uid)
    if not went:
        message = f"the disruption budget does not allow evicting {step.pod} yet"
        refused = RolloutStep("wait", "EvictionRefused", message, step.pod, None, step.updated)
        return _Rollout(refused, step.in_flight, update_revision)
    in_flight = InFlight(target.name, obs.now, total)
    draining = RolloutStep(
        "wait", "Draining", f"{step.message}: draining", step.pod, in_flight, step.updated
    )
    return _Rollout(
        draining,
        in_flight,
        update_revision,
        reported=frozenset({target.uid}),
        events=(("Normal", "ReplacingChatServer", step.message),),
    )


@dataclass(frozen=True, slots=True)
class _Applied:
    memory: Memory  # applied_* and last_apply moved on when applied
    claims: tuple[Verdict, ...]
    scale_to: int | None = None
    events: tuple[Event, ...] = ()


def _apply(seen: _Seen, desired: int, memory: Memory) -> Apply | _Applied:
    """Apply the children when wired and something asks for it (the spec, a restart, the
    size, a child missing, the resync; asked first), else resize through ``/scale``."""
    obs, sts, current = seen.obs, seen.obs.chat, seen.current
    restart = restart_requested(obs.cluster)
    due = obs.mono - memory.last_apply > obs.resync_s
    missing = sts is None or obs.api is None or obs.push is None
    wanted = (
        obs.force_apply
        or due
        or missing
        or memory.applied_generation != obs.generation
        or memory.applied_restart != restart
        or current != desired
    )
    if not (obs.wired and obs.inbox_partitions is not None and wanted):
        scale_to = desired if sts is not None and current != desired else None
        return _Applied(memory, obs.claims, scale_to=scale_to)
    outcome = obs.answers.applied
    if outcome is None:
        meta = obs.meta
        name = str(meta["name"])
        owner: Owner = {"name": name, "namespace": str(meta["namespace"]), "uid": str(meta["uid"])}
        # A shrinking server keeps its own address until its pod is gone.
        exposed = max(desired, current or 0, *(p.ordinal + 1 for p in seen.pods))
        manifests = build_all(
            owner,
            seen.spec,
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
        return Apply(tuple(manifests), children)
    if not outcome.applied:  # refused (DatabaseChanged): the status says why
        return _Applied(memory, outcome.claims)
    events: list[Event] = []
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
    if restart is not None and memory.applied_restart not in ("", restart):
        message = f"{ANNOTATION_RESTART}={restart}: rolling every chat server"
        events.append(("Normal", "RestartRequested", message))
    applied = replace(
        memory,
        secrets_kept=kept,
        applied_generation=obs.generation,
        last_apply=obs.mono,
        applied_restart=restart,
    )
    return _Applied(applied, outcome.claims, events=tuple(events))


def _reached(readings: Readings, threshold: float, *, since: float) -> float | None:
    """When the chat servers' records first added up to ``threshold`` after ``since``."""
    if readings.history is None:
        return None
    return first_reached(readings.history, readings.members or {}, since=since, threshold=threshold)
