"""A small Kubernetes client: raw JSON objects in and out, off the event loop.

The ``kubernetes`` package (sync) loads the credentials (in-cluster service account or a
kubeconfig) and sends the requests; each request runs in a thread so the operator's
event loop never blocks. Objects are plain dicts (the builders' manifests), not the
package's model classes.

Create-or-patch is server-side apply (``PATCH`` with ``application/apply-patch+yaml``,
field manager ``tidings-operator``, forced): idempotent and level-based — applying the
same manifest twice changes nothing (no new resourceVersion, no new revision), and
fields the operator stops setting are removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes import config as _config

from tidings_operator import names

# The kubernetes package is only partly typed: its loaders and responses are used as Any.
config: Any = _config

__all__ = ["KINDS", "Kind", "Kube", "KubeError", "kind_of"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read


class KubeError(Exception):
    """The API server refused or could not be reached; ``status`` 0 for the latter."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    plural: str

    def path(self, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        out = f"{base}/namespaces/{quote(namespace)}/{self.plural}"
        if name is not None:
            out += f"/{quote(name)}"
        if sub is not None:
            out += f"/{sub}"
        return out


KINDS: dict[str, Kind] = {
    "ConfigMap": Kind("v1", "configmaps"),
    "Service": Kind("v1", "services"),
    "Secret": Kind("v1", "secrets"),
    "Pod": Kind("v1", "pods"),
    "StatefulSet": Kind("apps/v1", "statefulsets"),
    "Deployment": Kind("apps/v1", "deployments"),
    "PodDisruptionBudget": Kind("policy/v1", "poddisruptionbudgets"),
    "Ingress": Kind("networking.k8s.io/v1", "ingresses"),
    "HTTPRoute": Kind("gateway.networking.k8s.io/v1", "httproutes"),
    "TLSRoute": Kind("gateway.networking.k8s.io/v1", "tlsroutes"),
    "Certificate": Kind("cert-manager.io/v1", "certificates"),
    names.KIND: Kind(names.API_VERSION, names.PLURAL),
}


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    return KINDS[str(manifest["kind"])]


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self._api: Any = api

    @classmethod
    def from_environment(cls) -> Kube:
        """In a pod: its service account; elsewhere: ``$KUBECONFIG`` or ``~/.kube/config``."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            configuration = client.Configuration()
            config.load_kube_config(client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        self._api.close()

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str | None,
        query: list[tuple[str, str]] | None,
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            m, url, h, b, _ = self._api.param_serialize(
                method,
                path,
                query_params=query,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                m, url, header_params=h, body=b, _request_timeout=REQUEST_TIMEOUT
            )
            response.read()
        except Exception as exc:  # urllib3 errors: the API server cannot be reached
            raise KubeError(0, "Unreachable", f"{method} {path}: {exc}") from exc
        data = response.data
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return int(response.status), parsed

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        query: list[tuple[str, str]] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Send a request; the parsed answer. 404 gives None when ``missing_ok``."""
        status, parsed = await asyncio.to_thread(
            self._send, method, path, body, content_type, query
        )
        if 200 <= status < 300:
            return parsed
        if status == 404 and missing_ok:
            return None
        reason, message = "Unknown", ""
        if isinstance(parsed, dict):
            reason = str(parsed.get("reason") or reason)
            message = str(parsed.get("message") or "")
        raise KubeError(status, reason, f"{method} {path}: {message}")

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.request(
            "GET", KINDS[kind].path(namespace, name), missing_ok=True
        )
        return found

    async def list(
        self, kind: str, namespace: str, selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", selector)] if selector else None
        listed = await self.request("GET", KINDS[kind].path(namespace), query=query)
        items: list[dict[str, Any]] = listed.get("items") or []
        return items

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply: create, or patch to exactly what the manifest says."""
        meta = manifest["metadata"]
        applied: dict[str, Any] = await self.request(
            "PATCH",
            kind_of(manifest).path(meta["namespace"], meta["name"]),
            dict(manifest),
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", names.FIELD_MANAGER), ("force", "true")],
        )
        return applied

    async def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete (with the uid as a precondition); False when it was not there."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            gone = await self.request(
                "DELETE", KINDS[kind].path(namespace, name), body, missing_ok=True
            )
        except KubeError as exc:
            if exc.status == 409:  # the uid precondition failed: another pod by now
                return False
            raise
        return gone is not None

    async def evict(self, namespace: str, pod: str, uid: str) -> bool:
        """Evict a pod through the eviction API (PodDisruptionBudgets apply).

        False when a budget forbids it now (429) or the pod is not there any more.
        """
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
            "deleteOptions": {"preconditions": {"uid": uid}},
        }
        try:
            done = await self.request(
                "POST", KINDS["Pod"].path(namespace, pod, "eviction"), body, missing_ok=True
            )
        except KubeError as exc:
            if exc.status in (409, 429):
                log.info("eviction of %s/%s refused for now: %s", namespace, pod, exc.message)
                return False
            raise
        return done is not None

    async def post_event(
        self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event about ``obj`` (shown by ``kubectl describe``); never raises."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'tidings')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": names.FIELD_MANAGER},
            "reportingComponent": names.FIELD_MANAGER,
            "reportingInstance": names.FIELD_MANAGER,
        }
        try:
            await self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body)
        except KubeError as exc:
            log.warning("could not post an event (%s): %s", reason, exc)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch a ChatCluster's status (``None`` values remove fields)."""
        await self.request(
            "PATCH",
            KINDS[names.KIND].path(namespace, name, "status"),
            {"status": dict(status)},
            content_type="application/merge-patch+json",
        )
