"""One WebSocket connection: bytes in, frames out, no coroutine of its own.

bytes ↔ WebSocket framing ↔ :class:`~tidings.gateway.session.Session`: this class reads
and writes the socket, and hands each data frame to its gateway (which decides, asking the
session); what state the chat session is in lives in the session, never here.

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
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from tidings import metrics
from tidings.core.frames import encode, error_frame
from tidings.core.model import InboxEntry
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
from tidings.gateway.session import Session
from tidings.settings import Settings

log = logging.getLogger(__name__)

WS_PATH = "/v1/ws"


class GatewayPort(Protocol):
    """What a connection asks of the gateway that owns it
    (:class:`tidings.gateway.gateway.Gateway`; a Protocol, so that this module does not
    import the gateway, which imports it). Each member does what the same name on
    ``Gateway`` says."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock_ms(self) -> Callable[[], int]: ...
    def opened(self, conn: Connection) -> None: ...
    def closed(self, conn: Connection) -> None: ...
    def drain_connection(self, conn: Connection) -> None: ...
    def handle_raw_frame(self, conn: Connection, data: bytes, text: bool) -> None: ...
    def want_flush(self, conn: Connection) -> None: ...


class Connection(asyncio.Protocol):
    """One socket: the handshake, then frames in (to the gateway) and out (batched per
    loop tick). ``session`` is its chat session; ``gateway`` is given in tests, else
    taken from uvicorn's ``app_state``."""

    __slots__ = (
        "dirty",
        "gateway",
        "handshake",
        "open",
        "out",
        "reader",
        "server_state",
        "session",
        "transport",
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
        self.dirty = False  # the gateway will flush ``out`` at the end of this tick
        self.session = Session(gateway.clock_ms())

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The socket is open (asyncio): count it in, wait for the request's bytes."""
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        if self.server_state is not None:
            self.server_state.connections.add(self)
        self.gateway.opened(self)

    def data_received(self, data: bytes) -> None:
        """Bytes from the socket: the handshake's, then frames (asyncio)."""
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
                if self.session.heard(self.gateway.clock_ms()):
                    self.gateway.handle_raw_frame(self, payload, opcode == OP_TEXT)
            elif opcode == OP_PING:
                self._write_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self._close_received(payload)
                return

    def eof_received(self) -> bool | None:
        """The client closed its side (asyncio)."""
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket is gone (asyncio): the session ends, the gateway forgets it."""
        if self.server_state is not None:
            self.server_state.connections.discard(self)
        self.session.close()
        self.out = None
        self.gateway.closed(self)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown (SIGTERM): tell the client to reconnect, close."""
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
        self.session.close()
        if self.transport is not None:
            self.transport.write(outcome.response)
            self.transport.close()

    def _close_received(self, payload: bytes) -> None:
        """The client closes: answer with its code (unless we already said close)."""
        self.session.close()
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

    # --- frames out ----------------------------------------------------------------

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Queue one JSON frame (see :meth:`send_text`)."""
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
        if not self.dirty:
            self.dirty = True
            self.gateway.want_flush(self)

    def send_error(
        self,
        code: str,
        message: str,
        ref: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Queue an ``error`` frame (and count it by code)."""
        metrics.ERRORS_SENT.labels(code).inc()
        self.send_frame(error_frame(code, message, ref, details))

    def close(self, code: int, reason: str = "") -> None:
        """Say close; the client answers with its close and the socket ends (the sweep
        aborts it after a grace if the client never does)."""
        self.session.close()
        if self.open:
            self._write_frame(OP_CLOSE, close_payload(code, reason))
            self.open = False
        self.flush()

    def abort(self) -> None:
        """Drop the socket now, without a close handshake."""
        self.session.close()
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        """Write the frames queued in this tick in one ``write``; a client that does not
        read (its write buffer past ``max_write_buffer_bytes``) is dropped."""
        self.dirty = False
        out, transport = self.out, self.transport
        if not out or transport is None:
            return
        self.out = None
        if transport.is_closing():
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if transport.get_write_buffer_size() > self.gateway.settings.max_write_buffer_bytes:
            metrics.SLOW_CONSUMERS.inc()
            log.warning("dropping a slow consumer", extra={"user_id": self.session.user_id})
            self.abort()

    # --- delivery ------------------------------------------------------------------

    def deliver(self, entries: Sequence[InboxEntry]) -> None:
        """Live inbox entries: sent if the session is live and has not sent them yet,
        buffered while it is still catching up (:meth:`Session.deliverable`)."""
        self.send_entries(self.session.deliverable(entries))

    def send_entries(self, entries: Sequence[InboxEntry]) -> None:
        """Send inbox entries the session let out (:meth:`Session.deliverable`,
        :meth:`Session.go_live`), as this device sees them."""
        device_id = self.session.device_id
        for entry in entries:
            self.send_frame(entry.to_wire_for(device_id))
            metrics.DELIVERIES.inc()
