"""One tick's plan (plan.py): what the operator decides from what it observed, no I/O.

Each test builds an Observation the way a tick would find a ChatCluster and checks what
the plan does about it: the questions it asks first (an eviction, an apply), then the
scale, the status it writes, the Events and what it remembers.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tidings_operator import names
from tidings_operator.disruption import PodSeen
from tidings_operator.members import Member
from tidings_operator.observe import pod_view
from tidings_operator.plan import (
    Answers,
    Applied,
    Apply,
    Evict,
    Memory,
    Observation,
    Plan,
    Readings,
    plan,
    rewire_due,
    wiring_due,
)
from tidings_operator.spec import parse_spec
from tidings_operator.status import Verdict

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "chatcluster.yaml"
NAME, NS, UID = "demo", "ns-plan", "uid-demo"
NOW = 1_800_000_000.0
MONO = 50_000.0
OLD, NEW = "demo-chat-old", "demo-chat-new"
WIRED = (
    Verdict("KafkaReady", "True", "TopicsReady", "topics ready"),
    Verdict("CassandraReady", "True", "SchemaReady", "schema ready"),
)


def _spec(**chat: Any) -> dict[str, Any]:
    doc = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "ChatCluster")
    spec = dict(doc["spec"])
    spec["chat"] = {**spec["chat"], **chat}
    return spec


def cluster(
    *, annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None, **chat: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": UID,
            "generation": 3,
            "annotations": annotations or {},
        },
        "spec": _spec(**chat),
        "status": status or {},
    }


def pod(ordinal: int, revision: str = OLD, *, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"demo-chat-{ordinal}",
            "uid": f"uid-pod-{ordinal}-{revision}",
            "labels": {
                names.LABEL_POD_INDEX: str(ordinal),
                names.LABEL_REVISION: revision,
            },
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    }


def statefulset(replicas: int, update_revision: str = OLD) -> dict[str, Any]:
    return {
        "metadata": {"name": names.chat_name(NAME), "generation": 1},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 1, "updateRevision": update_revision},
    }


def workload(ready: int = 1) -> dict[str, Any]:
    return {"metadata": {}, "spec": {"replicas": 1}, "status": {"readyReplicas": ready}}


def members(connections: dict[int, int]) -> Readings:
    found = {
        f"demo-chat-{i}": Member(
            server_id=f"demo-chat-{i}",
            connections=n,
            draining=False,
            ts_ms=int(NOW * 1000),
            pod_uid=f"uid-pod-{i}-{OLD}",
        )
        for i, n in connections.items()
    }
    return Readings(found, sum(connections.values()), {sid: (m,) for sid, m in found.items()})


SIZED: Any = object()  # observe(): a chat StatefulSet sized to the pods


def observe(
    obj: dict[str, Any] | None = None,
    *,
    pods: list[dict[str, Any]] | None = None,
    chat: Any = SIZED,
    readings: Readings | None = None,
    memory: Memory | None = None,
    **kw: Any,
) -> Observation:
    obj = obj if obj is not None else cluster()
    raw = pods if pods is not None else [pod(0), pod(1)]
    views = sorted((pod_view(p) for p in raw), key=lambda p: p.ordinal)
    applied = Memory(
        applied_generation=3,
        applied_restart=None,
        last_apply=MONO - 1,
        pods_seen={p.name: PodSeen(p.uid, p.ready, p.terminating) for p in views},
    )
    values: dict[str, Any] = {
        "cluster": obj,
        "spec": parse_spec(obj["spec"], cluster=(NS, NAME)),
        "spec_error": None,
        "wired": True,
        "inbox_partitions": 12,
        "wired_now": (),
        "claims": (),
        "wire_events": (),
        "chat": statefulset(len(raw)) if chat is SIZED else chat,
        "api": workload(),
        "push": workload(),
        "raw_pods": tuple(raw),
        "pods": tuple(views),
        "readings": readings if readings is not None else members({0: 100, 1: 100}),
        "memory": memory if memory is not None else applied,
        "deletion_began": {},
        "now": NOW,
        "mono": MONO,
        "stamp_now": datetime.fromtimestamp(NOW, UTC),
    }
    values.update(kw)
    return Observation(**values)


def answer(obs: Observation, **kw: Any) -> Observation:
    return replace(obs, answers=replace(obs.answers, **kw))


def condition(p: Plan, type_: str) -> dict[str, Any]:
    for c in p.status_patch.get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    raise AssertionError(f"no {type_} condition in {p.status_patch}")


def reasons(p: Plan) -> list[str]:
    return [reason for _, reason, _ in p.events]


# --- steady state ---------------------------------------------------------------------


def test_a_steady_cluster_asks_nothing_and_reports_ready() -> None:
    obs = observe(cluster(autoscaling=False, replicas=2), wired_now=WIRED)
    p = plan(obs)
    assert p.ask is None and p.scale_to is None and not p.remove_drain
    assert condition(p, "Ready")["status"] == "True"
    assert condition(p, "ChatServersReady")["reason"] == "AllReady"
    assert p.status_patch["desiredReplicas"] == 2
    assert p.status_patch["connections"] == 200
    assert p.status_patch["observedGeneration"] == 3
    assert p.events == ()
    assert p.memory is not None and p.memory.last_total == 200


def test_the_same_look_twice_patches_nothing() -> None:
    first = plan(observe(cluster(autoscaling=False, replicas=2), wired_now=WIRED))
    status = dict(first.status_patch)
    again = plan(
        observe(cluster(autoscaling=False, replicas=2, status=status), memory=first.memory)
    )
    assert again.status_patch == {}


# --- scale ----------------------------------------------------------------------------


def test_more_connections_than_the_target_asks_to_apply_a_larger_size() -> None:
    obs = observe(
        cluster(autoscaling=True, minReplicas=2, maxReplicas=10, targetConnectionsPerPod=100),
        readings=members({0: 250, 1: 250}),
    )
    p = plan(obs)
    assert isinstance(p.ask, Apply)
    chat = next(m for m in p.ask.manifests if m["kind"] == "StatefulSet"
                and m["metadata"]["name"] == names.chat_name(NAME))  # fmt: skip
    assert chat["spec"]["replicas"] == 5
    done = plan(answer(obs, applied=Applied(True)))
    assert done.ask is None
    assert done.status_patch["desiredReplicas"] == 5
    assert done.status_patch["lastScale"]["from"] == 2
    assert done.status_patch["lastScale"]["to"] == 5
    assert "Scaled" in reasons(done)
    assert condition(done, "Progressing")["reason"] == "Scaling"


def test_not_wired_a_size_change_goes_through_the_scale_subresource() -> None:
    obs = observe(cluster(autoscaling=False, replicas=3), wired=False, inbox_partitions=None)
    p = plan(obs)
    assert p.ask is None
    assert p.scale_to == 3
    assert condition(p, "ChatServersReady")["message"] == "2/3 chat servers ready"
    assert p.status_patch["lastScale"]["reason"] == "ScaleSubresource"


def test_a_scale_down_waits_for_the_clients_of_the_last_one_to_be_back() -> None:
    shrinking = replace(observe().memory, shrink=(300, MONO - 1))
    obs = observe(
        cluster(autoscaling=False, replicas=1),
        memory=shrinking,
        readings=members({0: 50, 1: 50}),
    )
    p = plan(obs)
    assert p.ask is None and p.scale_to is None
    assert p.status_patch["desiredReplicas"] == 2


def test_autoscaling_with_replicas_set_warns_once_that_they_are_ignored() -> None:
    obs = observe(cluster(autoscaling=True, replicas=7, minReplicas=2))
    p = plan(obs)
    assert "ScaleIgnored" in reasons(p)
    assert condition(p, "ScaleIgnored")["status"] == "True"
    told = {"conditions": list(p.status_patch["conditions"])}
    again = plan(observe(cluster(autoscaling=True, replicas=7, minReplicas=2, status=told)))
    assert "ScaleIgnored" not in reasons(again)


# --- rollout --------------------------------------------------------------------------


def rolling() -> Observation:
    return observe(cluster(autoscaling=False, replicas=2), chat=statefulset(2, update_revision=NEW))


def test_a_new_revision_asks_to_evict_the_highest_ordinal_first() -> None:
    p = plan(rolling())
    assert p.ask == Evict("rollout", "demo-chat-1", f"uid-pod-1-{OLD}")
    assert p.memory is not None  # kept should the eviction fail


def test_an_eviction_that_went_through_is_a_replacement_in_flight() -> None:
    obs = rolling()
    p = plan(answer(obs, evicted={("rollout", f"uid-pod-1-{OLD}"): True}))
    assert p.ask is None
    assert "ReplacingChatServer" in reasons(p)
    assert p.status_patch["rollout"]["pod"] == "demo-chat-1"
    assert p.status_patch["rollout"]["reason"] == "Draining"
    assert condition(p, "Progressing")["reason"] == "RollingOut"
    assert p.memory is not None and f"uid-pod-1-{OLD}" in p.memory.reported_uids


def test_an_eviction_the_budget_refuses_is_waited_for() -> None:
    obs = rolling()
    p = plan(answer(obs, evicted={("rollout", f"uid-pod-1-{OLD}"): False}))
    assert p.ask is None
    assert "ReplacingChatServer" not in reasons(p)
    assert p.status_patch["rollout"]["reason"] == "EvictionRefused"
    assert p.status_patch["rollout"].get("pod") is None  # nothing in flight


# --- incident controls ----------------------------------------------------------------


def test_paused_writes_the_condition_and_does_nothing_else() -> None:
    obj = cluster(annotations={names.ANNOTATION_PAUSE: "true"})
    p = plan(observe(obj, chat=statefulset(2, update_revision=NEW)))
    assert p.ask is None and p.scale_to is None and p.memory is None and p.gauges is None
    assert set(p.status_patch) == {"conditions"}
    assert condition(p, "ReconciliationPaused")["status"] == "True"
    assert reasons(p) == ["ReconciliationPaused"]
    told = {"conditions": list(p.status_patch["conditions"])}
    obj = cluster(annotations={names.ANNOTATION_PAUSE: "true"}, status=told)
    assert plan(observe(obj)).events == ()  # the Event once, when the pause begins


def test_resumed_says_so_in_the_condition() -> None:
    paused = plan(observe(cluster(annotations={names.ANNOTATION_PAUSE: "true"})))
    obj = cluster(status={"conditions": list(paused.status_patch["conditions"])})
    p = plan(observe(obj))
    assert condition(p, "ReconciliationPaused")["status"] == "False"


def test_a_new_restart_value_applies_and_says_the_roll_began() -> None:
    obj = cluster(annotations={names.ANNOTATION_RESTART: "2026-12-08T04:00"})
    memory = replace(observe().memory, applied_restart="2026-12-01T00:00")
    obs = observe(obj, memory=memory)
    p = plan(obs)
    assert isinstance(p.ask, Apply)
    done = plan(answer(obs, applied=Applied(True)))
    assert "RestartRequested" in reasons(done)
    assert done.memory is not None and done.memory.applied_restart == "2026-12-08T04:00"


def test_a_drain_asks_to_evict_that_pod_and_tracks_it_as_a_disruption() -> None:
    obs = observe(cluster(annotations={names.ANNOTATION_DRAIN: "demo-chat-0"}))
    p = plan(obs)
    assert p.ask == Evict("drain", "demo-chat-0", f"uid-pod-0-{OLD}")
    done = plan(answer(obs, evicted={("drain", f"uid-pod-0-{OLD}"): True}))
    assert "DrainRequested" in reasons(done)
    assert done.status_patch["lastDisruption"]["cause"] == "DrainRequested"
    assert done.status_patch["lastDisruption"]["clients"] == 100
    assert not done.remove_drain  # removed with the eviction, by the reconciler


def test_a_drain_waits_while_that_pod_is_not_ready() -> None:
    obs = observe(
        cluster(annotations={names.ANNOTATION_DRAIN: "demo-chat-0"}),
        pods=[pod(0, ready=False), pod(1)],
    )
    p = plan(obs)
    assert p.ask is None
    assert "DrainRequested" not in reasons(p)


def test_a_drain_of_no_such_pod_is_refused_and_the_annotation_removed() -> None:
    p = plan(observe(cluster(annotations={names.ANNOTATION_DRAIN: "demo-chat-9"})))
    assert p.ask is None and p.remove_drain
    assert "DrainRefused" in reasons(p)


# --- disruptions ----------------------------------------------------------------------


def test_a_ready_pod_gone_unasked_is_a_disruption() -> None:
    before = observe()
    obs = observe(pods=[pod(0)], chat=statefulset(2), memory=before.memory)
    p = plan(obs)
    assert p.lost == 1
    assert "ChatServerLost" in reasons(p)
    assert p.status_patch["lastDisruption"]["pod"] == "demo-chat-1"
    again = plan(observe(pods=[pod(0)], chat=statefulset(2), memory=p.memory))
    assert again.lost == 0  # told once


# --- wiring, conditions, conflicts ----------------------------------------------------


def test_not_wired_applies_nothing_and_says_it_is_wiring() -> None:
    p = plan(observe(wired=False, inbox_partitions=None, chat=None, pods=[]))
    assert p.ask is None
    assert condition(p, "ChatServersReady")["reason"] == "NotCreated"
    assert condition(p, "Progressing")["reason"] == "Reconciling"
    assert "observedGeneration" not in p.status_patch


def test_a_spec_error_is_degraded_and_nothing_else_happens() -> None:
    obs = observe(spec=None, spec_error="spec.chat.minReplicas: must be at least 1")
    p = plan(obs)
    assert p.ask is None and p.memory is None and set(p.status_patch) == {"conditions"}
    assert condition(p, "Degraded")["reason"] == "InvalidSpec"
    assert condition(p, "Ready")["status"] == "False"


def test_a_changed_database_refuses_the_apply_and_ready_says_why() -> None:
    claim = Verdict("Claims", "False", "DatabaseChanged", "postgres now names another database")
    obs = observe(cluster(autoscaling=False, replicas=2), wired_now=WIRED, force_apply=True)
    assert isinstance(plan(obs).ask, Apply)
    p = plan(answer(obs, applied=Applied(False, claims=(claim,))))
    assert condition(p, "Ready")["reason"] == "DatabaseChanged"
    assert p.memory is not None and p.memory.last_apply == obs.memory.last_apply


def test_a_missing_secret_is_in_the_ready_summary() -> None:
    blocked = Verdict("Secrets", "False", "SecretNotFound", "waiting for Secret demo-jwt")
    p = plan(observe(wired_now=WIRED, claims=(blocked,)))
    assert condition(p, "Ready")["reason"] == "SecretNotFound"


def test_apply_is_asked_when_the_resync_is_due() -> None:
    stale = replace(observe().memory, last_apply=-math.inf)
    assert isinstance(
        plan(observe(cluster(autoscaling=False, replicas=2), memory=stale)).ask, Apply
    )
    fresh = observe(cluster(autoscaling=False, replicas=2))
    assert plan(fresh).ask is None


@pytest.mark.parametrize(
    ("changes", "due"),
    [
        ({}, False),  # wired for this spec
        ({"wired_key": "old"}, False),  # the last attempt was this spec: kopf's backoff
        ({"wired_key": "old", "last_attempt_key": "older"}, True),  # a fix: wire now
        ({"wired_key": "old", "skipped_while_paused": True}, True),  # after a pause
        ({"wired_key": "old", "conflict": "owned", "conflict_check_at": MONO - 1}, True),
        ({"wired_key": "old", "conflict": "owned", "conflict_check_at": MONO + 1}, False),
        ({"wired_key": "old", "last_attempt_key": "older", "wiring": True}, False),
    ],
)
def test_when_a_tick_wires_itself(changes: dict[str, Any], due: bool) -> None:
    args: dict[str, Any] = {
        "wired_key": "key",
        "key": "key",
        "last_attempt_key": "key",
        "skipped_while_paused": False,
        "conflict": None,
        "conflict_check_at": 0.0,
        "mono": MONO,
        "wiring": False,
    }
    args.update(changes)
    assert wiring_due(**args) is due


def test_the_periodic_rewire() -> None:
    assert rewire_due(rewire_s=300, wired=True, since_wired=301, rewiring=False)
    assert not rewire_due(rewire_s=300, wired=True, since_wired=10, rewiring=False)
    assert not rewire_due(rewire_s=300, wired=True, since_wired=301, rewiring=True)
    assert not rewire_due(rewire_s=0, wired=True, since_wired=1e9, rewiring=False)
    assert not rewire_due(rewire_s=300, wired=False, since_wired=301, rewiring=False)


def test_answers_default_to_none_asked() -> None:
    assert Answers().evicted == {} and Answers().applied is None
