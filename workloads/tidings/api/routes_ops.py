"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tidings.api.deps import RuntimeDep
from tidings.api.errors import error_response
from tidings.core import errors

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(runtime: RuntimeDep) -> dict[str, object] | Response:
    gateway = runtime.gateway
    if gateway is None:
        return {"status": "ready"}
    if gateway.draining:
        return error_response(503, errors.UNAVAILABLE, "draining")
    return {"status": "ready", "connections": gateway.connection_count}


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
