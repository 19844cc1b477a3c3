"""A light WebSocket client: websockets' Sans-I/O ``ClientProtocol`` under an
``asyncio.Protocol``, no task per connection, so one generator process holds thousands.

Each text frame received goes to ``on_text(conn, text)``; ``opened`` resolves when the
handshake is done (or fails), ``closed`` when TCP is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

TextHandler = Callable[["WsConn", str], None]


class WsConn(asyncio.Protocol):
    __slots__ = ("closed", "on_text", "opened", "proto", "state", "transport")

    def __init__(self, url: str, on_text: TextHandler, *, deflate: bool, state: Any) -> None:
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        self.proto = ClientProtocol(parse_uri(url), extensions=extensions, max_size=None)
        self.on_text = on_text
        self.state = state  # whatever the caller keeps per connection
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the opening handshake."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to the protocol: settle :attr:`opened` on the handshake's answer and
        pass each text frame to ``on_text``."""
        self.proto.receive_data(data)
        for event in self.proto.events_received():
            if isinstance(event, Response):
                if not self.opened.done():
                    if self.proto.handshake_exc is not None:
                        self.opened.set_exception(self.proto.handshake_exc)
                    else:
                        self.opened.set_result(None)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.on_text(self, bytes(event.data).decode())
        self._flush()

    def eof_received(self) -> bool | None:
        """The server closed its side: let the protocol answer (the transport is not kept open)."""
        self.proto.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Settle :attr:`opened` (with an error, if the handshake never finished) and
        :attr:`closed`."""
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def is_open(self) -> bool:
        """Whether the WebSocket is open (handshake done, no close yet)."""
        return self.proto.state is State.OPEN

    def send(self, text: str) -> None:
        """Send ``text`` as a text frame; nothing when the WebSocket is not open."""
        if self.proto.state is State.OPEN:
            self.proto.send_text(text.encode())
            self._flush()

    def close(self) -> None:
        """Start the closing handshake (code 1000), or close the transport when not open."""
        if self.proto.state is State.OPEN:
            self.proto.send_close(1000)
            self._flush()
        elif self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        chunks = self.proto.data_to_send()
        if not chunks:
            return
        payload = b"".join(chunks)
        if payload:
            transport.write(payload)
        if chunks[-1] == b"":
            transport.close()


async def connect(
    url: str,
    on_text: TextHandler,
    *,
    deflate: bool = False,
    state: Any = None,
    local_host: str | None = None,
    within: float = 30.0,
) -> WsConn:
    """Open a WebSocket to ``url`` (``ws://host:port/path``), optionally from a given
    source address (many 127.0.0.x addresses give many ephemeral port ranges)."""
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: WsConn(url, on_text, deflate=deflate, state=state),
            uri.host,
            uri.port,
            local_addr=(local_host, 0) if local_host else None,
        ),
        within,
    )
    await asyncio.wait_for(conn.opened, within)
    return conn


# --- a one-shot HTTP GET ------------------------------------------------------------------
#
# A storm's clients each ask /v1/discover once per reconnect. httpx's pool bookkeeping
# (an expiry check per pooled connection per request, an import look-up per request) cost
# the generator ~2 ms of CPU a request and made the generators, not the server, the
# bottleneck. A device's app after a restart opens a fresh connection anyway (its
# keep-alive one died with the server): one GET on its own connection, read to the end.


class HttpError(Exception):
    """The server answered, but not a response this reader understands."""


class _OneGet(asyncio.Protocol):
    __slots__ = ("buf", "done", "request")

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.buf = bytearray()
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None and not self.buf:
            self.done.set_exception(exc)
        else:
            self.done.set_result(bytes(self.buf))


def _dechunk(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response read to EOF."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise HttpError(f"no complete response ({len(raw)} bytes)")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return int(parts[1]), headers, body


async def http_get(
    base_url: str,
    path: str,
    headers: dict[str, str],
    *,
    local_host: str | None = None,
    within: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """``GET base_url + path`` on a connection of its own (``Connection: close``)."""
    scheme, _, rest = base_url.partition("://")
    if scheme != "http":
        raise ValueError(f"http_get speaks plain http only, not {base_url!r}")
    hostport = rest.split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode("latin-1")
    loop = asyncio.get_running_loop()

    async def exchange() -> bytes:
        transport, proto = await loop.create_connection(
            lambda: _OneGet(request),
            host or hostport,
            int(port) if port else 80,
            local_addr=(local_host, 0) if local_host else None,
        )
        try:
            return await proto.done
        finally:
            transport.close()

    return parse_response(await asyncio.wait_for(exchange(), within))
