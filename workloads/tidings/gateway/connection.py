"""One WebSocket connection: bytes in, frames out, no coroutine of its own.

uvicorn builds this class on an upgrade (``ws=`` in its config) with ``config``,
``server_state`` and ``app_state``, calls ``connection_made``, replays the request bytes
into ``data_received`` and hands the transport over. The class registers itself in
``server_state.connections`` so uvicorn's graceful shutdown reaches :meth:`shutdown`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from tidings import metrics
from tidings.core.frames import ClientFrame, encode, error_frame
from tidings.core.model import InboxEntry, Message
from tidings.core.ratelimit import TokenBucket

if TYPE_CHECKING:
    from tidings.gateway.gateway import Gateway

log = logging.getLogger(__name__)
# websockets logs every open and close at INFO: too chatty for 50,000 sockets a server.
wire_log = logging.getLogger("tidings.gateway.wire")
wire_log.setLevel(logging.WARNING)

WS_PATH = "/v1/ws"
MAX_QUEUED_FRAMES = 64

# Connection states.
AWAIT_HELLO, SYNCING, LIVE, CLOSING = 0, 1, 2, 3


class Connection(asyncio.Protocol):
    __slots__ = (
        "answers",
        "bucket",
        "busy",
        "device_id",
        "dirty",
        "gateway",
        "hello_pending",
        "last_heard",
        "opened_at",
        "pending",
        "sent_seq",
        "server_state",
        "state",
        "sync_buffer",
        "transport",
        "user_id",
        "ws",
    )

    def __init__(
        self,
        config: Any = None,
        server_state: Any = None,
        app_state: dict[str, Any] | None = None,
        *,
        gateway: Gateway | None = None,
    ) -> None:
        if gateway is None:
            assert app_state is not None and "gateway" in app_state, "no gateway in app state"
            gateway = app_state["gateway"]
        self.gateway: Gateway = gateway
        self.server_state = server_state
        self.ws = ServerProtocol(max_size=gateway.settings.max_frame_bytes, logger=wire_log)
        self.transport: asyncio.Transport | None = None
        self.user_id = 0
        self.device_id = 0
        self.state = AWAIT_HELLO
        now = gateway.clock_ms()
        self.opened_at = now
        self.last_heard = now
        self.bucket: TokenBucket | None = None
        self.pending: deque[ClientFrame] | None = None
        self.busy = False
        self.dirty = False
        self.hello_pending = False
        # Sends stored or being stored, answered in this order (None while there are none).
        self.answers: deque[tuple[str, asyncio.Future[Message]]] | None = None
        self.sent_seq = 0
        self.sync_buffer: list[InboxEntry] | None = None

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        if self.server_state is not None:
            self.server_state.connections.add(self)
        self.gateway.opened(self)

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._process()
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        self.state = CLOSING
        self.gateway.closed(self)

    # uvicorn calls this on graceful shutdown (SIGTERM).
    def shutdown(self) -> None:
        self.gateway.drain_connection(self)

    # --- frames in -----------------------------------------------------------------

    def _process(self) -> None:
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._frame(bytes(event.data))
        if self.ws.state is State.CLOSED:
            self.flush()
            if self.transport is not None:
                self.transport.close()
        else:
            self.gateway.want_flush(self)

    def _handshake(self, request: Request) -> None:
        if request.path.split("?", 1)[0] != WS_PATH:
            response = self.ws.reject(404, f"no WebSocket endpoint at {request.path}\n")
        else:
            response = self.ws.accept(request)
        self.ws.send_response(response)
        if self.ws.state is not State.OPEN:
            self.state = CLOSING

    def _frame(self, data: bytes) -> None:
        if self.state == CLOSING:
            return
        self.last_heard = self.gateway.clock_ms()
        self.gateway.handle_raw_frame(self, data)

    # --- queued handling: one frame at a time per connection, no task while idle ---

    def enqueue(self, frame: ClientFrame) -> bool:
        if self.pending is None:
            self.pending = deque()
        if len(self.pending) >= MAX_QUEUED_FRAMES:
            return False
        self.pending.append(frame)
        if not self.busy:
            self.busy = True
            self.gateway.spawn(self._drain())
        return True

    async def _drain(self) -> None:
        try:
            while self.pending and self.state != CLOSING:
                frame = self.pending.popleft()
                await self.gateway.handle_frame(self, frame)
        finally:
            self.busy = False
            if not self.pending:
                self.pending = None

    # --- frames out ----------------------------------------------------------------

    def send_frame(self, frame: dict[str, Any]) -> None:
        self.send_text(encode(frame))

    def send_text(self, text: bytes) -> None:
        """Queue a text frame (UTF-8 bytes); written with whatever else this connection
        gets in the same loop tick (one ``write`` per connection per tick)."""
        if self.ws.state is not State.OPEN:
            return
        self.ws.send_text(text)
        self.gateway.want_flush(self)

    def send_error(self, code: str, message: str, ref: str | None = None) -> None:
        metrics.ERRORS_SENT.labels(code).inc()
        self.send_frame(error_frame(code, message, ref))

    def close(self, code: int, reason: str = "") -> None:
        self.state = CLOSING
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
        self.flush()
        if self.ws.state is State.CLOSED and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.state = CLOSING
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        chunks = self.ws.data_to_send()
        if not chunks:
            return
        payload = b"".join(chunks)
        if payload:
            transport.write(payload)
        if chunks[-1] == b"":  # the protocol asks for EOF: the server closes TCP first
            transport.close()
            return
        if transport.get_write_buffer_size() > self.gateway.settings.max_write_buffer_bytes:
            metrics.SLOW_CONSUMERS.inc()
            log.warning("dropping a slow consumer", extra={"user_id": self.user_id})
            self.abort()

    # --- delivery ------------------------------------------------------------------

    def deliver(self, entries: list[InboxEntry]) -> None:
        """Live inbox entries: buffered while the connection is still catching up."""
        if self.state == SYNCING:
            assert self.sync_buffer is not None
            self.sync_buffer.extend(entries)
            return
        if self.state != LIVE:
            return
        for entry in entries:
            if entry.seq > self.sent_seq:
                self.sent_seq = entry.seq
                self.send_frame(entry.to_wire())
                metrics.DELIVERIES.inc()
