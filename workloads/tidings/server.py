"""Serving a runtime: the FastAPI app and the WebSocket gateway on one port (uvicorn)."""

from __future__ import annotations

import uvicorn

from tidings.api.app import RuntimeOpener, create_app
from tidings.gateway.connection import Connection
from tidings.settings import Settings


def serve(settings: Settings, open_runtime: RuntimeOpener) -> None:
    """Run until SIGTERM/SIGINT; then drain WebSockets, flush and exit."""
    config = uvicorn.Config(
        create_app(open_runtime),
        host=settings.host,
        port=settings.port,
        ws=Connection,  # our Sans-I/O protocol class: no task per connection
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(max(settings.drain_budget_s, 1)),
        server_header=False,
    )
    uvicorn.Server(config).run()
