"""Status conditions in the Kubernetes shape, and the ``Ready`` summary.

A condition is ``{type, status, reason, message, observedGeneration,
lastTransitionTime}`` (the API conventions' ``metav1.Condition``): ``reason`` is
CamelCase, and ``lastTransitionTime`` moves only when ``status`` changes.

The ChatCluster's conditions:

- ``KafkaReady``, ``CassandraReady``: the topics, the keyspace and its schema are there;
- ``MediaReady``: the media store (``spec.media``): the bucket is there with its lifecycle
  rule (``createBucket``), or passed on unchecked, or not configured;
- ``ChatServersReady``: every chat server the cluster should have is ready;
- ``Progressing``: a rollout or a scale is under way;
- ``Degraded``: something needs a human (a spec that cannot work, a rollout that
  stopped, pods that keep failing);
- ``ScaleIgnored``: ``spec.chat.replicas`` was set (``kubectl scale``, an HPA) while the
  operator's own autoscaler is on, so it has no effect;
- ``Ready``: the summary: all of the above fine, not degraded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

__all__ = [
    "CONDITION_TYPES",
    "Condition",
    "Verdict",
    "find",
    "format_time",
    "merge_conditions",
    "merge_patch",
    "parse_time",
    "ready_verdict",
    "set_condition",
]

Status = Literal["True", "False", "Unknown"]

CONDITION_TYPES = (
    "Ready",
    "KafkaReady",
    "CassandraReady",
    "MediaReady",
    "ChatServersReady",
    "Progressing",
    "Degraded",
    "ScaleIgnored",
    "ReconciliationPaused",
)


class Condition(TypedDict):
    type: str
    status: Status
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """A condition's content, before it is merged into the list."""

    type: str
    status: Status
    reason: str
    message: str = ""


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with seconds, as Kubernetes writes times."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _coerce(raw: Mapping[str, Any]) -> Condition | None:
    status = raw.get("status")
    if not isinstance(raw.get("type"), str) or status not in ("True", "False", "Unknown"):
        return None
    return {
        "type": str(raw["type"]),
        "status": status,
        "reason": str(raw.get("reason") or "Unknown"),
        "message": str(raw.get("message") or ""),
        "observedGeneration": int(raw.get("observedGeneration") or 0),
        "lastTransitionTime": str(raw.get("lastTransitionTime") or ""),
    }


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Condition | None:
    for raw in conditions:
        if raw.get("type") == type_:
            return _coerce(raw)
    return None


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    verdict: Verdict,
    *,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """The list with ``verdict`` put in; the transition time kept if the status is unchanged."""
    out: list[Condition] = []
    replaced = False
    for raw in conditions:
        current = _coerce(raw)
        if current is None:
            continue
        if current["type"] != verdict.type:
            out.append(current)
            continue
        replaced = True
        changed = current["status"] != verdict.status or not current["lastTransitionTime"]
        out.append(
            {
                "type": verdict.type,
                "status": verdict.status,
                "reason": verdict.reason,
                "message": verdict.message,
                "observedGeneration": generation,
                "lastTransitionTime": (
                    format_time(now) if changed else current["lastTransitionTime"]
                ),
            }
        )
    if not replaced:
        out.append(
            {
                "type": verdict.type,
                "status": verdict.status,
                "reason": verdict.reason,
                "message": verdict.message,
                "observedGeneration": generation,
                "lastTransitionTime": format_time(now),
            }
        )
    return _ordered(out)


def merge_conditions(
    conditions: Sequence[Mapping[str, Any]],
    verdicts: Iterable[Verdict],
    *,
    generation: int,
    now: datetime,
) -> list[Condition]:
    out: list[Condition] = [c for c in (_coerce(raw) for raw in conditions) if c is not None]
    for verdict in verdicts:
        out = set_condition(out, verdict, generation=generation, now=now)
    return out


def _ordered(conditions: list[Condition]) -> list[Condition]:
    rank = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(conditions, key=lambda c: (rank.get(c["type"], len(rank)), c["type"]))


def ready_verdict(parts: Sequence[Verdict], degraded: Verdict) -> Verdict:
    """``Ready``: True when every part is True and nothing is degraded.

    Otherwise False (or Unknown when a part is not known yet) with the first failing
    part's reason and message, so ``kubectl describe`` says what to look at first.
    """
    if degraded.status == "True":
        return Verdict("Ready", "False", degraded.reason, degraded.message)
    for part in parts:
        if part.status != "True":
            status: Status = "Unknown" if part.status == "Unknown" else "False"
            reason = part.reason if part.reason[:1].isupper() else f"{part.type}False"
            return Verdict("Ready", status, reason, f"{part.type}: {part.message}".strip())
    return Verdict("Ready", "True", "AllReady", "the chat deployment is serving")


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``.

    ``None`` in ``new`` removes a field; objects are patched field by field, lists and
    scalars replaced. An empty patch means nothing changed.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        current = old.get(key)
        if value is None:
            if current is not None:
                patch[key] = None
        elif isinstance(value, Mapping) and isinstance(current, Mapping):
            sub = merge_patch(current, value)
            if sub:
                patch[key] = sub
        elif isinstance(value, Mapping):
            stripped = _strip_none(value)
            if current != stripped:
                patch[key] = stripped
        elif current != value:
            patch[key] = value
    return patch


def _strip_none(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: _strip_none(v) if isinstance(v, Mapping) else v
        for k, v in value.items()
        if v is not None
    }
