"""WebSocket frames after the handshake (RFC 6455), without I/O and without per-socket
machinery.

The handshake is done by ``websockets``' ``ServerProtocol``; after it, a connection needs
only this: a :class:`FrameReader` that turns the client's bytes into messages (masked
frames, fragmentation, control frames, the size limit) and :func:`encode_frame` for the
server's unmasked frames. An idle connection then holds a reader of four fields instead
of a protocol object with its stream reader and parser generator, and a heartbeat costs
a few microseconds of parsing. Unmasking is done in C (``websockets.speedups``).
"""

from __future__ import annotations

import struct

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets ships the C extension on Linux
    from websockets.utils import apply_mask

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
DATA_OPCODES = (OP_TEXT, OP_BINARY)

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class FramingError(Exception):
    """The client broke the framing rules; close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameReader:
    """Bytes in, complete ``(opcode, payload)`` out: data messages (fragments joined,
    opcode of the first fragment) and control frames (ping, pong, close) as they come."""

    __slots__ = ("_buffer", "_fragments", "_fragments_opcode", "_fragments_size", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = b""
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._fragments_opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The messages ``data`` completes (an incomplete frame waits for more bytes);
        :class:`FramingError` when the client broke the protocol."""
        buffer = self._buffer + data if self._buffer else data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            if first & 0x70:
                raise FramingError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise FramingError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            fin, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = _U16.unpack_from(buffer, pos + 2)[0]
                header = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = _U64.unpack_from(buffer, pos + 2)[0]
                header = 10
            if opcode >= OP_CLOSE:
                if length > 125 or not fin:
                    raise FramingError(CLOSE_PROTOCOL_ERROR, "bad control frame")
            elif length + self._fragments_size > self.max_size:
                raise FramingError(CLOSE_TOO_BIG, "frame too big")
            start = pos + header + 4
            if end - start < length:
                break
            mask = buffer[pos + header : start]
            payload = apply_mask(buffer[start : start + length], mask) if length else b""
            pos = start + length
            if opcode >= OP_CLOSE:
                if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                    raise FramingError(CLOSE_PROTOCOL_ERROR, "unknown control opcode")
                out.append((opcode, payload))
            elif opcode == OP_CONT:
                if self._fragments is None:
                    raise FramingError(CLOSE_PROTOCOL_ERROR, "continuation of nothing")
                self._fragments.append(payload)
                self._fragments_size += length
                if fin:
                    out.append((self._fragments_opcode, b"".join(self._fragments)))
                    self._fragments, self._fragments_size = None, 0
            elif opcode in DATA_OPCODES:
                if self._fragments is not None:
                    raise FramingError(CLOSE_PROTOCOL_ERROR, "expected a continuation")
                if fin:
                    out.append((opcode, payload))
                else:
                    self._fragments, self._fragments_size = [payload], length
                    self._fragments_opcode = opcode
            else:
                raise FramingError(CLOSE_PROTOCOL_ERROR, "unknown opcode")
        self._buffer = buffer[pos:] if pos < end else b""
        if len(self._buffer) > self.max_size + 14:
            raise FramingError(CLOSE_TOO_BIG, "frame too big")
        return out


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server frame."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 65536:
        return bytes((0x80 | opcode, 126)) + _U16.pack(length) + payload
    return bytes((0x80 | opcode, 127)) + _U64.pack(length) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload: the code, then the reason cut to fit a control frame."""
    return _U16.pack(code) + reason.encode()[:123]


def parse_close(payload: bytes) -> int | None:
    """The code of a close frame (None when it carries none)."""
    return _U16.unpack_from(payload)[0] if len(payload) >= 2 else None
