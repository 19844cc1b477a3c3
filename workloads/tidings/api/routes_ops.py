"""Liveness and readiness. Prometheus metrics are not on this port: see
``tidings.metrics.serve_metrics`` (``TIDINGS_METRICS_PORT``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from tidings.api.deps import RuntimeDep
from tidings.api.errors import error_response
from tidings.core import errors

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(runtime: RuntimeDep) -> dict[str, object] | Response:
    """Readiness: ready (with the connection count on a chat server), or 503 ``unavailable``
    while draining."""
    gateway = runtime.gateway
    if gateway is None:
        return {"status": "ready"}
    if gateway.draining:
        return error_response(503, errors.UNAVAILABLE, "draining")
    return {"status": "ready", "connections": gateway.connection_count}
