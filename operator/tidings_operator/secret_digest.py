"""The Secrets a pod template reads, hashed onto the template so a change rolls the pods.

Kubernetes gives a container a Secret's values when it starts (``env`` and ``envFrom``),
so a rotated Kafka password or JWT signing key reaches no running pod by itself. The
operator reads the Secrets each workload's template names — found in the template itself,
so this cannot drift from the builders — and writes a hash of exactly the keys the pods
read into ``tidings.dev/secrets-hash`` on the template. A change of one of those keys is a
new template: the chat pods go through the paced rollout (their StatefulSet is
``OnDelete``), the api pods and push workers roll by their own strategy. A key the pods do
not read changes nothing.

Not hashed: the serving certificate's volume (``tls``), which the servers reload in place
(``tidings.tls``). A Secret that is missing, or lacks a key the template needs without
``optional``, keeps the hash the live template has: the operator does not roll pods onto
an environment that cannot start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from tidings_operator import names

__all__ = ["HOT_RELOADED_VOLUMES", "secret_reads", "secrets_hash", "stamp_secrets_hash"]

HOT_RELOADED_VOLUMES = frozenset({"tls"})  # builders' serving-certificate volume

# A Secret read whole (envFrom, a volume without items): every key.
ALL_KEYS = None

Reads = dict[str, dict[str, bool] | None]  # secret -> {key: optional}, or None: all keys


def secret_reads(pod_spec: Mapping[str, Any]) -> Reads:
    """Which Secrets (and which of their keys) a pod spec's containers read."""
    reads: Reads = {}

    def whole(name: str) -> None:
        reads[name] = ALL_KEYS

    def key(name: str, k: str, optional: bool) -> None:
        if name in reads and reads[name] is ALL_KEYS:
            return
        keys = reads.setdefault(name, {})
        assert keys is not None
        keys[k] = keys.get(k, True) and optional

    containers: Iterable[Mapping[str, Any]] = [
        *(pod_spec.get("initContainers") or []),
        *(pod_spec.get("containers") or []),
    ]
    for container in containers:
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref:
                whole(str(ref["name"]))
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                key(str(ref["name"]), str(ref["key"]), bool(ref.get("optional")))
    for volume in pod_spec.get("volumes") or []:
        secret = volume.get("secret")
        if not secret or volume.get("name") in HOT_RELOADED_VOLUMES:
            continue
        items = secret.get("items")
        if items:
            for item in items:
                key(str(secret["secretName"]), str(item["key"]), bool(secret.get("optional")))
        else:
            whole(str(secret["secretName"]))
    return reads


def secrets_hash(reads: Reads, secrets: Mapping[str, Mapping[str, str]]) -> str | None:
    """A short hash of the values ``reads`` names; None when one cannot be read (a Secret
    missing, or a key that is not optional)."""
    picked: dict[str, dict[str, str]] = {}
    for name, keys in sorted(reads.items()):
        data = secrets.get(name)
        if data is None:
            return None
        if keys is ALL_KEYS:
            picked[name] = dict(data)
            continue
        values: dict[str, str] = {}
        for k, optional in keys.items():
            if k in data:
                values[k] = data[k]
            elif not optional:
                return None
        picked[name] = values
    if not picked:
        return ""
    blob = json.dumps(picked, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stamp_secrets_hash(
    manifests: Iterable[dict[str, Any]],
    secrets: Mapping[str, Mapping[str, str]] | None,
    live: Mapping[tuple[str, str], Mapping[str, Any] | None],
) -> list[str]:
    """Write each workload's hash onto its pod template (in place); returns the workloads
    whose hash could not be made and kept the live one (a Secret or key missing).

    ``secrets``: the namespace's Secrets the spec names, decoded (None: not read this
    time, keep every live hash). ``live``: the workloads as they are, by (kind, name).
    """
    kept: list[str] = []
    for manifest in manifests:
        template = (manifest.get("spec") or {}).get("template")
        if template is None:
            continue
        meta = manifest["metadata"]
        annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
        digest = None
        if secrets is not None:
            digest = secrets_hash(secret_reads(template.get("spec") or {}), secrets)
        if digest is None:
            current = _live_hash(live.get((manifest["kind"], meta["name"])))
            if secrets is not None:
                kept.append(f"{manifest['kind']} {meta['name']}")
            if current is None:
                continue  # never stamped (or not made yet): nothing to keep
            digest = current
        if digest:
            annotations[names.ANNOTATION_SECRETS_HASH] = digest
    return kept


def _live_hash(obj: Mapping[str, Any] | None) -> str | None:
    if obj is None:
        return None
    template = (obj.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(names.ANNOTATION_SECRETS_HASH)
    return str(value) if value is not None else None
