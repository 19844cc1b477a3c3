"""The WebSocket opening handshake (RFC 6455 §4.2), server side, without I/O.

uvicorn has parsed the HTTP request already and replays it to the connection; what is
left is to check the upgrade headers and answer ``101`` with ``Sec-WebSocket-Accept`` —
or refuse with a plain HTTP status. No extensions (no permessage-deflate: frames are
small JSON, and compression would cost CPU and memory per socket) and no subprotocols
are negotiated. This replaces ``websockets``' ``ServerProtocol`` for the handshake,
which built a protocol object, a parser generator, a request and a response per socket
(about a third of the CPU of a connection's set-up).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

MAX_REQUEST_BYTES = 16 * 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_REASONS = {400: "Bad Request", 404: "Not Found", 426: "Upgrade Required"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The bytes to write, and whether the socket is now a WebSocket (else: close it)."""

    response: bytes
    accepted: bool


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a request's ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def refusal(status: int, message: str, extra_headers: str = "") -> Outcome:
    """A plain-text HTTP error answer to a request that is not a good upgrade."""
    body = (message + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"{extra_headers}"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return Outcome(head.encode() + body, accepted=False)


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def answer(request: bytes, path: str) -> Outcome:
    """The answer to one complete request head (up to and without the blank line)."""
    try:
        text = request.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        return refusal(400, "the request is not HTTP")
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1."):
        return refusal(400, "a WebSocket opens with GET over HTTP/1.1")
    if parts[1].split("?", 1)[0] != path:
        return refusal(404, f"no WebSocket endpoint at {parts[1]}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return refusal(400, "malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if "host" not in headers:
        return refusal(400, "missing Host header")
    if "websocket" not in _tokens(headers.get("upgrade", "")):
        return refusal(426, "this endpoint speaks WebSocket only", "Upgrade: websocket\r\n")
    if "upgrade" not in _tokens(headers.get("connection", "")):
        return refusal(400, "Connection header must include Upgrade")
    if headers.get("sec-websocket-version") != "13":
        return refusal(426, "WebSocket version 13 only", "Sec-WebSocket-Version: 13\r\n")
    key = headers.get("sec-websocket-key", "")
    try:
        raw_key = base64.b64decode(key.encode(), validate=True)
    except (binascii.Error, ValueError):
        raw_key = b""
    if len(raw_key) != 16:
        return refusal(400, "invalid Sec-WebSocket-Key")
    response = (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    )
    return Outcome(response.encode(), accepted=True)
