"""The WebSocket opening handshake, as a connection sees it: bytes in, bytes out."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from tidings.gateway import handshake
from tidings.gateway.connection import Connection
from tidings.gateway.framing import OP_TEXT

GOOD = (
    b"GET /v1/ws HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


def connection() -> tuple[Connection, Transport, list[bytes]]:
    frames: list[bytes] = []
    gateway = SimpleNamespace(
        settings=SimpleNamespace(max_frame_bytes=1 << 20, max_write_buffer_bytes=1 << 22),
        clock_ms=lambda: 0,
        opened=lambda conn: None,
        want_flush=lambda conn: None,
        handle_raw_frame=lambda conn, data, text: frames.append(data),
    )
    conn = Connection(gateway=gateway)  # type: ignore[arg-type]
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, frames


def masked(payload: bytes) -> bytes:
    key = os.urandom(4)
    return (
        bytes((0x80 | OP_TEXT, 0x80 | len(payload)))
        + key
        + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    )


def test_the_accept_key_is_the_rfc_example() -> None:
    assert handshake.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_good_request_split_anywhere_opens_the_socket_and_frames_behind_it_are_read() -> None:
    conn, transport, frames = connection()
    stream = GOOD + masked(b'{"type":"heartbeat"}')
    for i in range(0, len(stream), 7):
        conn.data_received(stream[i : i + 7])
    response = transport.written[0]
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert conn.open and not transport.closed
    assert frames == [b'{"type":"heartbeat"}']


def test_a_frame_in_the_same_packet_as_the_request_is_read() -> None:
    conn, _, frames = connection()
    conn.data_received(GOOD + masked(b"x"))
    assert conn.open and frames == [b"x"]


@pytest.mark.parametrize(
    ("request_bytes", "status", "header"),
    [
        (GOOD.replace(b"/v1/ws", b"/v1/elsewhere"), b"404", b""),
        (GOOD.replace(b"GET", b"POST"), b"400", b""),
        (
            GOOD.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
            b"426",
            b"Sec-WebSocket-Version: 13\r\n",
        ),
        (GOOD.replace(b"Upgrade: websocket\r\n", b""), b"426", b"Upgrade: websocket\r\n"),
        (GOOD.replace(b"keep-alive, Upgrade", b"keep-alive"), b"400", b""),
        (GOOD.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="), b"400", b""),
        (GOOD.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!"), b"400", b""),
        (GOOD.replace(b"Host: chat.example\r\n", b""), b"400", b""),
        (GOOD.replace(b"Host: chat.example", b"Host chat.example"), b"400", b""),
    ],
)
def test_a_bad_request_is_refused_with_a_status_and_the_socket_closed(
    request_bytes: bytes, status: bytes, header: bytes
) -> None:
    conn, transport, frames = connection()
    conn.data_received(request_bytes + masked(b"ignored"))
    response = b"".join(transport.written)
    assert response.startswith(b"HTTP/1.1 " + status + b" ")
    assert header in response
    assert b"Connection: close" in response
    assert transport.closed and not conn.open and frames == []
    conn.data_received(masked(b"after the refusal"))
    assert frames == [] and len(transport.written) == 1


def test_a_request_head_that_never_ends_is_refused_at_the_limit() -> None:
    conn, transport, _ = connection()
    conn.data_received(b"GET /v1/ws HTTP/1.1\r\n")
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    while not transport.closed:
        conn.data_received(filler)
        assert len(transport.written) <= 1
    assert transport.written[0].startswith(b"HTTP/1.1 400 ")
