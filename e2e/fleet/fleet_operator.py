"""``python e2e/fleet/fleet_operator.py <operator args>``: the operator, counting its API calls.

The operator talks to the API server through two clients: its own :class:`Kube` (the
``kubernetes`` package, one request per ``Kube._send``) and kopf's (aiohttp: watches,
its progress patches, Events). This wrapper counts every request of both, by client,
verb and resource, into ``tidings_fleet_api_requests_total`` on the operator's own
metrics registry (served on ``--metrics-port`` with the rest), then runs the operator
unchanged. The API server's ``apiserver_request_total`` cannot say which client sent a
request, and the test cluster is shared.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import Counter

from tidings_operator import kube, metrics
from tidings_operator.__main__ import main

API_REQUESTS = Counter(
    "tidings_fleet_api_requests_total",
    "Requests the operator sent to the API server, by client (kube: the operator's own, "
    "kopf: kopf's), verb (watch for a GET with watch=true) and resource",
    ["client", "verb", "resource"],
    registry=metrics.REGISTRY,
)


def resource_of(path: str) -> str:
    """``pods`` for /api/v1/namespaces/x/pods/y, ``pods/eviction`` for its eviction,
    ``discovery /apis/g/v`` for a discovery request."""
    full = urlsplit(path).path
    parts = [p for p in full.split("/") if p]
    if parts[:1] == ["api"]:
        parts = parts[2:]
    elif parts[:1] == ["apis"]:
        parts = parts[3:]
    if parts[:1] == ["namespaces"] and len(parts) >= 3:
        parts = parts[2:]
    if not parts:
        return f"discovery {full}"
    resource = parts[0]
    return f"{resource}/{parts[2]}" if len(parts) >= 3 else resource


def verb_of(method: str, path: str) -> str:
    query = urlsplit(path).query
    method = method.upper()
    return "watch" if method == "GET" and "watch=true" in query else method


_send = kube.Kube._send


def _counted_send(self: kube.Kube, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
    API_REQUESTS.labels("kube", method, resource_of(path)).inc()
    return _send(self, method, path, *args, **kwargs)


_request = aiohttp.ClientSession._request


async def _counted_request(
    self: aiohttp.ClientSession, method: str, url: Any, *args: Any, **kwargs: Any
) -> Any:
    params = kwargs.get("params") or {}
    target = str(url)
    if isinstance(params, dict) and str(params.get("watch", "")).lower() == "true":
        target += "?watch=true"
    API_REQUESTS.labels("kopf", verb_of(method, target), resource_of(target)).inc()
    return await _request(self, method, url, *args, **kwargs)


kube.Kube._send = _counted_send  # type: ignore[method-assign]
aiohttp.ClientSession._request = _counted_request  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
