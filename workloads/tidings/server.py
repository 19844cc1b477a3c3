"""Serving a runtime: the FastAPI app and the WebSocket gateway on one port (uvicorn),
over TLS when ``tls_cert_file``/``tls_key_file`` are set (tls.py); Prometheus metrics on a
port of their own (plain HTTP) when ``metrics_port`` is set."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
import time
from types import FrameType

import uvicorn

from tidings.api.app import RuntimeOpener, create_app
from tidings.api.http_protocol import http_protocol
from tidings.gateway.connection import Connection
from tidings.gateway.gateway import Gateway
from tidings.gc_policy import tune_for_serving
from tidings.metrics import serve_metrics
from tidings.runtime import Runtime
from tidings.settings import Settings
from tidings.tls import CertReloader
from tidings.web import media_origin

log = logging.getLogger(__name__)

# A restart in place: how long the drained clients get to answer the close before the
# process goes on without them (they have their reconnect; nobody waits for a handover).
RESTART_CLOSE_WAIT_S = 0.5


class DrainingServer(uvicorn.Server):
    """uvicorn, with our drain first on SIGTERM: hand work over, send clients away (paced
    in a cluster; at once when this is the only server and the drain is a restart), then
    uvicorn's own shutdown (which closes what is left)."""

    signalled_at: float | None = None  # perf_counter of the first SIGTERM/SIGINT

    def __init__(
        self, config: uvicorn.Config, *, tls: CertReloader | None = None, tls_every_s: float = 10
    ) -> None:
        super().__init__(config)
        self.tls = tls
        self.tls_every_s = tls_every_s
        self._tls_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, then the TLS certificate reloader and :func:`tune_for_serving`."""
        await super().startup(sockets)  # the runtime is open: caches warmed
        if self.tls is not None and not self.should_exit:  # (a failed start is not shut down)
            self._tls_task = asyncio.create_task(self.tls.run(self.tls_every_s))
        tune_for_serving()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Note the time of the first signal; a SIGTERM is then not re-raised after the
        shutdown, so a drained stop exits with status 0."""
        if not self.should_exit:
            self.signalled_at = time.perf_counter()
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            # uvicorn re-raises the signal after a graceful shutdown; a drained stop on
            # SIGTERM (Kubernetes' normal stop) is a clean exit, status 0.
            self._captured_signals.remove(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain the runtime (see the class docstring), stop the TLS reloader, then uvicorn's
        own shutdown."""
        runtime = self.lifespan.state.get("runtime") if hasattr(self, "lifespan") else None
        if isinstance(runtime, Runtime):
            log.info("draining")
            if runtime.restarts_in_place:
                # Nobody new should land on a process that is going away.
                for server in getattr(self, "servers", []):
                    server.close()
            await runtime.drain()
            if runtime.restarts_in_place and runtime.gateway is not None:
                await _let_clients_close(runtime.gateway, RESTART_CLOSE_WAIT_S)
        if self._tls_task is not None:
            self._tls_task.cancel()
        await super().shutdown(sockets)


class _Config(uvicorn.Config):
    """uvicorn's config, serving our own SSL context when there is one: the context the
    :class:`CertReloader` reloads in place (uvicorn would make a context of its own)."""

    tls_context: ssl.SSLContext | None = None

    def load(self) -> None:
        super().load()
        if self.tls_context is not None:
            self.ssl = self.tls_context


async def _let_clients_close(gateway: Gateway, within_s: float) -> None:
    """Wait up to ``within_s`` for the drained sockets to finish their close handshake,
    then close the rest from our side (after what is queued for them is written)."""
    started = time.perf_counter()
    deadline = started + within_s
    # Polled, as uvicorn polls its own connections: the gateway signals no "all closed".
    while gateway.connections and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    left = list(gateway.connections)
    for conn in left:
        if conn.transport is not None:
            conn.transport.close()
    log.info(
        "drained sockets closed",
        extra={"ms": round((time.perf_counter() - started) * 1000), "closed_by_us": len(left)},
    )


def s3_origins(settings: Settings) -> list[str]:
    """The origin the presigned URLs of an S3 media store name (the web page may talk to
    it): the public endpoint's, with the bucket as a subdomain under virtual addressing."""
    if not settings.media_s3_bucket or settings.media_store not in ("auto", "s3"):
        return []
    endpoint = settings.media_s3_public_endpoint or settings.media_s3_endpoint
    if endpoint is None:  # AWS itself
        region = settings.media_s3_region
        return [f"https://{settings.media_s3_bucket}.s3.{region}.amazonaws.com"]
    origin = media_origin(endpoint)
    if origin is None:
        return []
    if settings.media_s3_addressing_style == "virtual":
        scheme, _, host = origin.partition("://")
        origin = f"{scheme}://{settings.media_s3_bucket}.{host}"
    return [origin]


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


def listen_now(config: uvicorn.Config) -> socket.socket:
    """Bind and listen before the runtime opens: a client that connects while the process
    is still starting (a restart's reconnects) waits in the kernel's accept queue and is
    answered as soon as the app is up, instead of being refused and backing off."""
    sock = config.bind_socket()
    sock.listen(config.backlog)
    return sock


def serve(settings: Settings, open_runtime: RuntimeOpener) -> None:
    """Run until SIGTERM/SIGINT; then drain WebSockets, flush and exit."""
    loop = event_loop_choice(settings.event_loop)
    log.info("event loop: %s", loop)
    tls = CertReloader.from_settings(settings)  # None: plain HTTP (raises for a bad pair)
    config = _Config(
        create_app(
            open_runtime,
            api_docs=settings.api_docs,
            max_body_bytes=settings.max_body_bytes,
            media_origins=s3_origins(settings),
        ),
        host=settings.host,
        port=settings.port,
        ws=Connection,  # our Sans-I/O protocol class: no task per connection
        http=http_protocol(settings.http_head_timeout_s),
        timeout_keep_alive=int(max(settings.http_idle_timeout_s, 1)),
        loop=loop,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(max(settings.drain_budget_s, 1)),
        server_header=False,
    )
    config.tls_context = tls.context if tls is not None else None
    server = DrainingServer(config, tls=tls, tls_every_s=settings.tls_reload_every_s)
    if tls is not None:
        log.info(
            "TLS on the public port",
            extra={"serial": f"{tls.info.serial:x}", "not_after": int(tls.info.not_after)},
        )
    sockets = [listen_now(config)]
    serve_metrics(settings.metrics_host, settings.metrics_port)  # off unless set
    server.run(sockets=sockets)
    if server.signalled_at is not None:
        log.info("stopped", extra={"ms": round((time.perf_counter() - server.signalled_at) * 1000)})
    runtime = server.lifespan.state.get("runtime") if hasattr(server, "lifespan") else None
    if isinstance(runtime, Runtime) and runtime.restarts_in_place and server.started:
        # Everything is closed and flushed (the store committed and closed its files, every
        # acked message is on disk): the next process waits only for this one to go, so
        # skip the interpreter's teardown (freeing every object one by one takes a loaded
        # machine a good part of a second with 10,000 clients' worth of them).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
