"""Incident controls: annotations on a ChatCluster that a platform team sets by hand
(docs/operator.md, "Incident controls"). No I/O.

- ``tidings.dev/pause-reconciliation: "true"``: hands off. The operator changes nothing —
  no wiring, applying, scaling, rollout step or repair — and says so in the condition
  ``ReconciliationPaused``; removing the annotation (or any other value) resumes, and the
  next tick applies whatever changed meanwhile.
- ``tidings.dev/restart: <timestamp>``: a paced roll of every chat pod now. The value is
  copied onto the chat pod template, so a new value is a new revision, which the rollout
  (rollout.py) replaces one pod at a time, each drained first — the same path as an image
  upgrade. Setting the same value again does nothing.
- ``tidings.dev/drain: <pod>``: drain one chat pod for maintenance, once: evicted (the pod
  drains its clients within the drain budget, the StatefulSet makes it again), reported
  in ``status.lastDisruption`` with cause ``DrainRequested`` — when, how many clients, and
  when they were back — and the annotation removed. It waits while a rollout step or
  another pod is on its way out; a name that is no chat pod of the cluster is refused
  with a Warning Event (and removed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidings_operator.names import ANNOTATION_DRAIN, ANNOTATION_PAUSE, ANNOTATION_RESTART
from tidings_operator.status import Verdict, find

PAUSED = "ReconciliationPaused"


def paused(obj: Mapping[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ANNOTATION_PAUSE, "")).strip().lower() == "true"


def pause_verdicts(obj: Mapping[str, Any]) -> list[Verdict]:
    """The ``ReconciliationPaused`` condition to write: True while paused; False once
    resumed (only where it was written before: a cluster never paused has none)."""
    if paused(obj):
        return [
            Verdict(
                PAUSED,
                "True",
                "PausedByAnnotation",
                f"{ANNOTATION_PAUSE}=true: the operator changes nothing (no wiring, applying, "
                "scaling, rollout or repair) until the annotation is removed",
            )
        ]
    conditions = (obj.get("status") or {}).get("conditions") or []
    if find(conditions, PAUSED) is not None:
        return [Verdict(PAUSED, "False", "Reconciling", "")]
    return []


def newly_paused(obj: Mapping[str, Any]) -> bool:
    """Paused now, and the status does not say so yet (an event is due)."""
    if not paused(obj):
        return False
    condition = find((obj.get("status") or {}).get("conditions") or [], PAUSED)
    return condition is None or condition["status"] != "True"


def restart_requested(obj: Mapping[str, Any]) -> str | None:
    """The ``tidings.dev/restart`` value (None when unset or blank)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = str(annotations.get(ANNOTATION_RESTART, "")).strip()
    return value[:63] or None


def drain_requested(obj: Mapping[str, Any]) -> str | None:
    """The chat pod ``tidings.dev/drain`` names (None when unset or blank)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = str(annotations.get(ANNOTATION_DRAIN, "")).strip()
    return value or None
