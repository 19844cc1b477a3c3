"""``spec.<component>.podTemplate``: where a component's pods run and what they may use.

A platform team sets the scheduling of each component (chat, api, push) as it does for
any workload: resources, affinity, tolerations, nodeSelector, topologySpreadConstraints,
priorityClassName, extra labels and annotations. The operator's own labels and
annotations win over extra ones of the same key (selectors and the config hash depend on
them). The Kubernetes-typed parts are passed through as written; the API server checks
them when the operator applies the workload.

Unset, a component gets defaults (:func:`default_resources`, :func:`default_spread`):
chat pods are sized from ``targetConnectionsPerPod`` with the figures of
docs/benchmarks.md, and every component spreads over zones and nodes where it can.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PodTemplate", "default_resources", "default_spread", "parse_pod_template"]

# Sizing a chat pod (docs/operator.md, "Pod templates and their defaults"). An idle
# authenticated connection costs ~6.3 KiB with the kernel's share and ~4 µs of CPU a second
# (docs/benchmarks.md); a connection that chats costs more (buffers, the directory cache),
# so the request allows 16 KiB and 10 µs/s per connection on top of a base for the
# process (the drivers, caches and Python itself).
CHAT_BASE_MEMORY_MI = 256
CHAT_MEMORY_KIB_PER_CONNECTION = 16
CHAT_BASE_CPU_M = 250
CHAT_CPU_US_PER_CONNECTION = 10
# The limit leaves room for a reconnect storm's handshakes and send queues.
CHAT_MEMORY_LIMIT_FACTOR = 2
API_RESOURCES = {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
PUSH_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


class PodTemplateError(ValueError):
    """The block cannot work as written (spec.SpecError wraps it)."""


@dataclass(frozen=True, slots=True)
class PodTemplate:
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # None: unset (the default applies); a value, even empty, is the user's.
    resources: dict[str, Any] | None = None
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] | None = None
    node_selector: dict[str, str] | None = None
    topology_spread: list[dict[str, Any]] | None = None
    priority_class_name: str | None = None

    def pod_spec_fields(self, spread_default: list[dict[str, Any]]) -> dict[str, Any]:
        """The pod spec's scheduling fields, defaults filled in."""
        out: dict[str, Any] = {}
        if self.affinity:
            out["affinity"] = self.affinity
        if self.tolerations:
            out["tolerations"] = self.tolerations
        if self.node_selector:
            out["nodeSelector"] = self.node_selector
        spread = spread_default if self.topology_spread is None else self.topology_spread
        if spread:
            out["topologySpreadConstraints"] = spread
        if self.priority_class_name:
            out["priorityClassName"] = self.priority_class_name
        return out


def _map(raw: Mapping[str, Any], key: str, path: str) -> dict[str, str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise PodTemplateError(f"{path}.{key} must map names to strings")
    return {str(k): v for k, v in value.items()}


def _list(raw: Mapping[str, Any], key: str, path: str) -> list[dict[str, Any]] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise PodTemplateError(f"{path}.{key} must be a list of objects")
    return [dict(v) for v in value]


def parse_pod_template(raw: Mapping[str, Any] | None, path: str) -> PodTemplate:
    if not raw:
        return PodTemplate()
    if not isinstance(raw, Mapping):
        raise PodTemplateError(f"{path} must be an object")
    meta = raw.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise PodTemplateError(f"{path}.metadata must be an object")
    resources = raw.get("resources")
    affinity = raw.get("affinity")
    for key, value in (("resources", resources), ("affinity", affinity)):
        if value is not None and not isinstance(value, Mapping):
            raise PodTemplateError(f"{path}.{key} must be an object")
    priority = raw.get("priorityClassName")
    if priority is not None and not isinstance(priority, str):
        raise PodTemplateError(f"{path}.priorityClassName must be a string")
    return PodTemplate(
        labels=_map(meta, "labels", f"{path}.metadata") or {},
        annotations=_map(meta, "annotations", f"{path}.metadata") or {},
        resources=dict(resources) if resources is not None else None,
        affinity=dict(affinity) if affinity is not None else None,
        tolerations=_list(raw, "tolerations", path),
        node_selector=_map(raw, "nodeSelector", path),
        topology_spread=_list(raw, "topologySpreadConstraints", path),
        priority_class_name=priority or None,
    )


def default_resources(component: str, target_connections: int) -> dict[str, Any]:
    """Requests and limits for a component whose spec sets none. No CPU limit: throttling
    a chat server stalls every socket it holds (heartbeats time out, clients flap)."""
    if component == "api":
        return {k: dict(v) for k, v in API_RESOURCES.items()}
    if component == "push":
        return {k: dict(v) for k, v in PUSH_RESOURCES.items()}
    memory_mi = CHAT_BASE_MEMORY_MI + math.ceil(
        target_connections * CHAT_MEMORY_KIB_PER_CONNECTION / 1024
    )
    cpu_m = CHAT_BASE_CPU_M + math.ceil(target_connections * CHAT_CPU_US_PER_CONNECTION / 1000)
    return {
        "requests": {"cpu": f"{cpu_m}m", "memory": f"{memory_mi}Mi"},
        "limits": {"memory": f"{memory_mi * CHAT_MEMORY_LIMIT_FACTOR}Mi"},
    }


def default_spread(selector: Mapping[str, str]) -> list[dict[str, Any]]:
    """Spread over zones, then nodes, where the scheduler can (``ScheduleAnyway``: a
    single-zone or single-node cluster still schedules every pod)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(selector)},
        }
        for key in (ZONE, HOST)
    ]
