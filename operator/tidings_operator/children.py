"""The children of every ChatCluster, watched instead of read every tick.

kopf watches the operator's chat pods, StatefulSets and Deployments (filtered by the
server: ``app.kubernetes.io/managed-by=tidings-operator``) and keeps them in indexes
(``@kopf.index``), by (namespace, ChatCluster) for pods and (namespace, name) for
workloads. A tick reads them from memory: in the steady state the only request it makes
is the ChatCluster's GET (whose status it merges into), and a status patch when something
changed. kopf fills the indexes before any ChatCluster handler runs, so the ticker (which
only ticks ChatClusters those handlers saw) never reads them half-filled.

The watch also says when a pod went away more precisely than a tick can: the moment its
deletion began (``deletionTimestamp`` minus its grace period) is kept for a while after the
pod is gone (:class:`Departures`), so a disruption is dated when it happened, not when the
next tick noticed.

The indexes lag the operator's own writes by a watch event: a workload it has just made
may be missing for a tick (it is applied again, which changes nothing), and a StatefulSet
it has just changed may show the old generation (the rollout waits for ``observedGeneration``
anyway).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tidings_operator import names
from tidings_operator.observe import epoch

__all__ = [
    "DEPARTURES_KEPT_S",
    "Departures",
    "Indexes",
    "index_chat_pods",
    "index_workloads",
    "slim",
]

DEPARTURES_KEPT_S = 600.0

Key = tuple[str, str]
Index = Mapping[Key, Any]  # kopf.Index: key -> kopf.Store (an iterable of values)


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without its managedFields (most of its size, never read here)."""
    out = {k: v for k, v in body.items() if k != "metadata"}
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


@dataclass
class Departures:
    """When each chat pod began to go away (its deletion), kept after it is gone."""

    clock: Callable[[], float] = time.time
    _began: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # uid: ...

    def note(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        deletion = epoch(meta.get("deletionTimestamp"))
        uid = str(meta.get("uid") or "")
        if deletion is None or not uid or uid in self._began:
            return
        grace = meta.get("deletionGracePeriodSeconds")
        began = deletion - float(grace) if isinstance(grace, int) else deletion
        now = self.clock()
        self._began[uid] = (str(meta.get("name") or ""), began, now)
        for old, (_, _, seen) in list(self._began.items()):
            if now - seen > DEPARTURES_KEPT_S:
                del self._began[old]

    def began(self, uid: str) -> float | None:
        found = self._began.get(uid)
        return found[1] if found is not None else None


def index_chat_pods(
    namespace: str | None, labels: Mapping[str, str], body: Mapping[str, Any], memo: Any, **_: Any
) -> dict[Key, dict[str, Any]] | None:
    """kopf index ``tidings_chat_pods``: a ChatCluster's chat pods, by (namespace, name)."""
    if not namespace or labels.get(names.LABEL_COMPONENT) != names.CHAT:
        return None
    cluster = labels.get(names.LABEL_INSTANCE)
    if not cluster:
        return None
    departures = memo.get("departures") if memo is not None else None
    if isinstance(departures, Departures):
        departures.note(body)
    return {(namespace, cluster): slim(body)}


def index_workloads(
    namespace: str | None, name: str, body: Mapping[str, Any], **_: Any
) -> dict[Key, dict[str, Any]] | None:
    """kopf index ``tidings_statefulsets`` / ``tidings_deployments``: by (namespace, name)."""
    if not namespace:
        return None
    return {(namespace, name): slim(body)}


@dataclass(frozen=True)
class Indexes:
    """The live kopf indexes a tick reads its children from."""

    chat_pods: Index
    statefulsets: Index
    deployments: Index

    def pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        return [dict(p) for p in self.chat_pods.get((namespace, cluster), ())]

    def workload(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        index = self.statefulsets if kind == "StatefulSet" else self.deployments
        return next(iter(index.get((namespace, name), ())), None)
