"""The post-handshake WebSocket framing (RFC 6455) without sockets."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.gateway.framing import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameReader,
    FramingError,
    close_payload,
    encode_frame,
    parse_close,
)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A frame as a browser sends it: masked with a random key."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, (0x80 if masked else 0) | length))
    elif length < 65536:
        header = bytes((first, (0x80 if masked else 0) | 126)) + struct.pack("!H", length)
    else:
        header = bytes((first, (0x80 if masked else 0) | 127)) + struct.pack("!Q", length)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_a_text_frame_is_unmasked() -> None:
    reader = FrameReader(1 << 20)
    assert reader.feed(client_frame(OP_TEXT, b'{"type":"heartbeat"}')) == [
        (OP_TEXT, b'{"type":"heartbeat"}')
    ]


@given(
    st.lists(st.binary(max_size=70_000), min_size=1, max_size=4),
    st.integers(min_value=1, max_value=5000),
)
def test_frames_split_anywhere_come_out_whole_and_in_order(
    payloads: list[bytes], chunk: int
) -> None:
    stream = b"".join(client_frame(OP_BINARY, p) for p in payloads)
    reader = FrameReader(1 << 20)
    out = []
    for start in range(0, len(stream), chunk):
        out += reader.feed(stream[start : start + chunk])
    assert out == [(OP_BINARY, p) for p in payloads]


def test_fragments_are_joined_and_control_frames_may_come_between() -> None:
    reader = FrameReader(1 << 20)
    stream = (
        client_frame(OP_TEXT, b"hel", fin=False)
        + client_frame(OP_PING, b"p")
        + client_frame(OP_CONT, b"lo", fin=False)
        + client_frame(OP_CONT, b"!")
    )
    assert reader.feed(stream) == [(OP_PING, b"p"), (OP_TEXT, b"hello!")]


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (client_frame(OP_TEXT, b"x", masked=False), CLOSE_PROTOCOL_ERROR),
        (client_frame(OP_CONT, b"x"), CLOSE_PROTOCOL_ERROR),
        (
            client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"),
            CLOSE_PROTOCOL_ERROR,
        ),
        (client_frame(OP_PING, b"x" * 126), CLOSE_PROTOCOL_ERROR),
        (client_frame(0x3, b"x"), CLOSE_PROTOCOL_ERROR),
        (bytes((0xC1, 0x80)) + b"\0\0\0\0", CLOSE_PROTOCOL_ERROR),  # RSV1 set
        (client_frame(OP_TEXT, b"x" * 1025), CLOSE_TOO_BIG),
    ],
)
def test_broken_framing_is_a_close_code(stream: bytes, code: int) -> None:
    with pytest.raises(FramingError) as caught:
        FrameReader(1024).feed(stream)
    assert caught.value.code == code


def test_fragments_over_the_limit_together_are_too_big() -> None:
    reader = FrameReader(1024)
    reader.feed(client_frame(OP_TEXT, b"x" * 1000, fin=False))
    with pytest.raises(FramingError) as caught:
        reader.feed(client_frame(OP_CONT, b"x" * 100))
    assert caught.value.code == CLOSE_TOO_BIG


def test_a_too_big_frame_is_refused_from_its_header_alone() -> None:
    header = bytes((0x81, 0x80 | 127)) + struct.pack("!Q", 1 << 40)
    with pytest.raises(FramingError):
        FrameReader(1 << 20).feed(header)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_have_the_right_length_encoding(size: int) -> None:
    frame = encode_frame(OP_TEXT, b"y" * size)
    assert frame[0] == 0x81
    assert len(frame) == size + (2 if size < 126 else 4 if size < 65536 else 10)


def test_close_payloads_round_trip() -> None:
    assert parse_close(close_payload(4001, "unauthorized")) == 4001
    assert parse_close(b"") is None
    assert len(close_payload(1000, "x" * 500)) == 125
    assert FrameReader(1 << 20).feed(client_frame(OP_CLOSE, close_payload(1000))) == [
        (OP_CLOSE, close_payload(1000))
    ]
