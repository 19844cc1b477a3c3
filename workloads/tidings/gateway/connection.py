"""One WebSocket connection: bytes in, frames out, no coroutine of its own.

uvicorn builds this class on an upgrade (``ws=`` in its config) with ``config``,
``server_state`` and ``app_state``, calls ``connection_made``, replays the request bytes
into ``data_received`` and hands the transport over. The class registers itself in
``server_state.connections`` so uvicorn's graceful shutdown reaches :meth:`shutdown`.
The handshake is :mod:`tidings.gateway.handshake`, the frames after it
:mod:`tidings.gateway.framing`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

from tidings import metrics
from tidings.core.frames import ClientFrame, encode, error_frame
from tidings.core.model import InboxEntry, Message
from tidings.core.ratelimit import TokenBucket
from tidings.gateway import handshake
from tidings.gateway.framing import (
    CLOSE_TOO_BIG,
    DATA_OPCODES,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    FramingError,
    close_payload,
    encode_frame,
    parse_close,
)
from tidings.settings import Settings

log = logging.getLogger(__name__)

WS_PATH = "/v1/ws"
MAX_QUEUED_FRAMES = 64

# Connection states.
AWAIT_HELLO, SYNCING, LIVE, CLOSING = 0, 1, 2, 3


class GatewayPort(Protocol):
    """What a connection asks of the gateway that owns it
    (:class:`tidings.gateway.gateway.Gateway`; a Protocol, so that this module does not
    import the gateway, which imports it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock_ms(self) -> Callable[[], int]: ...
    def opened(self, conn: Connection) -> None: ...
    def closed(self, conn: Connection) -> None: ...
    def drain_connection(self, conn: Connection) -> None: ...
    def handle_raw_frame(self, conn: Connection, data: bytes) -> None: ...
    async def handle_frame(self, conn: Connection, frame: ClientFrame) -> None: ...
    def want_flush(self, conn: Connection) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


class Connection(asyncio.Protocol):
    __slots__ = (
        "answers",
        "bucket",
        "busy",
        "device_id",
        "dirty",
        "gateway",
        "handshake",
        "hello_pending",
        "last_heard",
        "open",
        "opened_at",
        "out",
        "pending",
        "reader",
        "sent_seq",
        "server_state",
        "state",
        "sync_buffer",
        "text_frame",
        "token_version",
        "transport",
        "user_id",
    )

    def __init__(
        self,
        config: Any = None,
        server_state: Any = None,
        app_state: dict[str, Any] | None = None,
        *,
        gateway: GatewayPort | None = None,
    ) -> None:
        if gateway is None:
            assert app_state is not None and "gateway" in app_state, "no gateway in app state"
            gateway = app_state["gateway"]
        self.gateway: GatewayPort = gateway
        self.server_state = server_state
        # The request's bytes until its head is complete; then ``reader`` takes over.
        self.handshake: bytes | None = b""
        self.reader: FrameReader | None = None
        self.open = False  # handshake done and no close said: frames may be written
        self.out: list[bytes] | None = None  # frames waiting for this tick's write
        self.transport: asyncio.Transport | None = None
        self.user_id = 0
        self.device_id = 0
        self.token_version = 0
        self.state = AWAIT_HELLO
        now = gateway.clock_ms()
        self.opened_at = now
        self.last_heard = now
        self.bucket: TokenBucket | None = None
        self.pending: deque[ClientFrame] | None = None
        self.busy = False
        self.dirty = False
        self.hello_pending = False
        self.text_frame = True  # the frame being handled came as text (not binary)
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
        reader = self.reader
        if reader is None:  # still in the handshake
            self._handshake_bytes(data)
            return
        try:
            messages = reader.feed(data)
        except FramingError as exc:
            self._protocol_error(exc.code, exc.reason)
            return
        for opcode, payload in messages:
            if opcode in DATA_OPCODES:
                self.text_frame = opcode == OP_TEXT
                self._frame(payload)
            elif opcode == OP_PING:
                self._write_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self._close_received(payload)
                return

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        self.state = CLOSING
        self.out = None
        self.gateway.closed(self)

    # uvicorn calls this on graceful shutdown (SIGTERM).
    def shutdown(self) -> None:
        self.gateway.drain_connection(self)

    # --- the handshake (websockets' ServerProtocol), then our own framing -----------

    def _handshake_bytes(self, data: bytes) -> None:
        buffered = self.handshake
        if buffered is None:
            return  # refused; the transport is closing
        buffered += data
        head, blank, leftover = buffered.partition(b"\r\n\r\n")
        if not blank:
            if len(buffered) > handshake.MAX_REQUEST_BYTES:
                self._refuse(handshake.refusal(400, "request head too large"))
            else:
                self.handshake = buffered
            return
        outcome = handshake.answer(head, WS_PATH)
        if not outcome.accepted:
            self._refuse(outcome)
            return
        self.handshake = None
        if self.transport is not None:
            self.transport.write(outcome.response)
        # The rest is frames, read by a lean reader; bytes that came right behind the
        # request are its first input.
        self.reader = FrameReader(self.gateway.settings.max_frame_bytes)
        self.open = True
        if leftover:
            self.data_received(leftover)

    def _refuse(self, outcome: handshake.Outcome) -> None:
        self.handshake = None
        self.state = CLOSING
        if self.transport is not None:
            self.transport.write(outcome.response)
            self.transport.close()

    def _frame(self, data: bytes) -> None:
        if self.state == CLOSING:
            return
        self.last_heard = self.gateway.clock_ms()
        self.gateway.handle_raw_frame(self, data)

    def _close_received(self, payload: bytes) -> None:
        """The client closes: answer with its code (unless we already said close)."""
        self.state = CLOSING
        if self.open:
            code = parse_close(payload)
            self._write_frame(OP_CLOSE, close_payload(code) if code is not None else b"")
            self.open = False
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def _protocol_error(self, code: int, reason: str) -> None:
        if code == CLOSE_TOO_BIG:
            metrics.ERRORS_SENT.labels("frame_too_big").inc()
        self.close(code, reason)
        if self.transport is not None:
            self.transport.close()  # no more reading from a client that broke the rules

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
        if self.open:
            self._write_frame(OP_TEXT, text)

    def _write_frame(self, opcode: int, payload: bytes) -> None:
        self.write_framed(encode_frame(opcode, payload))

    def write_framed(self, frame: bytes) -> None:
        """Queue one already framed WebSocket frame for this tick's write."""
        out = self.out
        if out is None:
            if self.transport is None:
                return
            out = self.out = []
        out.append(frame)
        self.gateway.want_flush(self)

    def send_error(
        self,
        code: str,
        message: str,
        ref: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        metrics.ERRORS_SENT.labels(code).inc()
        self.send_frame(error_frame(code, message, ref, details))

    def close(self, code: int, reason: str = "") -> None:
        """Say close; the client answers with its close and the socket ends (the sweep
        aborts it after a grace if the client never does)."""
        self.state = CLOSING
        if self.open:
            self._write_frame(OP_CLOSE, close_payload(code, reason))
            self.open = False
        self.flush()

    def abort(self) -> None:
        self.state = CLOSING
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        out, transport = self.out, self.transport
        if not out or transport is None:
            return
        self.out = None
        if transport.is_closing():
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
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
                self.send_frame(entry.to_wire_for(self.device_id))
                metrics.DELIVERIES.inc()
