"""The FastAPI application; its lifespan opens the runtime (stores, bus, gateway)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tidings import __version__
from tidings.api import (
    routes_accounts,
    routes_history,
    routes_keys,
    routes_media,
    routes_ops,
    routes_social,
)
from tidings.api.errors import BodyLimit, install_error_handlers
from tidings.media import local as local_media
from tidings.runtime import Runtime
from tidings.web import mount_web

RuntimeOpener = Callable[[], Awaitable[Runtime]]


def create_app(
    open_runtime: RuntimeOpener,
    *,
    api_docs: bool = False,
    max_body_bytes: int = 1 << 20,
    media_origins: Sequence[str] = (),
) -> FastAPI:
    """``api_docs``: serve ``/docs``, ``/redoc`` and ``/openapi.json`` (off by default:
    they describe every endpoint to anyone, and ``/docs`` loads scripts from a CDN).
    ``media_origins``: a blob store of another origin the web client uploads to and shows
    images from (its page's Content-Security-Policy allows them)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        runtime = await open_runtime()
        runtime.start()
        try:
            # The gateway's Connection class finds the gateway in this state (app_state).
            yield {"runtime": runtime, "gateway": runtime.gateway}
        finally:
            await runtime.close()

    docs: dict[str, Any] = (
        {} if api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    )
    app = FastAPI(title="Tidings", version=__version__, lifespan=lifespan, **docs)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, unlimited_puts=local_media.ROUTE)
    for module in (
        routes_accounts,
        routes_social,
        routes_history,
        routes_keys,
        routes_media,
        routes_ops,
    ):
        app.include_router(module.router)
    mount_web(app, media_origins)  # the web client at /, its assets under /web/
    return app
