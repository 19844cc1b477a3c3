"""Serving a runtime: the FastAPI app and the WebSocket gateway on one port (uvicorn)."""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType

import uvicorn

from tidings.api.app import RuntimeOpener, create_app
from tidings.gateway.connection import Connection
from tidings.runtime import Runtime
from tidings.settings import Settings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn, with our drain first on SIGTERM: hand work over, send clients away in
    paced batches, then uvicorn's own shutdown (which closes what is left)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            # uvicorn re-raises the signal after a graceful shutdown; a drained stop on
            # SIGTERM (Kubernetes' normal stop) is a clean exit, status 0.
            self._captured_signals.remove(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        runtime = self.lifespan.state.get("runtime") if hasattr(self, "lifespan") else None
        if isinstance(runtime, Runtime):
            log.info("draining")
            await runtime.drain()
        await super().shutdown(sockets)


def event_loop_choice(wanted: str) -> str:
    """uvicorn's ``loop``: uvloop when asked for or ("auto") when it is installed."""
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise RuntimeError("TIDINGS_EVENT_LOOP=uvloop but uvloop is not installed") from None
        return "asyncio"
    return "uvloop"


def serve(settings: Settings, open_runtime: RuntimeOpener) -> None:
    """Run until SIGTERM/SIGINT; then drain WebSockets, flush and exit."""
    loop = event_loop_choice(settings.event_loop)
    log.info("event loop: %s", loop)
    config = uvicorn.Config(
        create_app(open_runtime),
        host=settings.host,
        port=settings.port,
        ws=Connection,  # our Sans-I/O protocol class: no task per connection
        loop=loop,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(max(settings.drain_budget_s, 1)),
        server_header=False,
    )
    DrainingServer(config).run()
