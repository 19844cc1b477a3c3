"""The gateway's dispatch without a network: a connection fed client frames, a chat
service that is a plain object offering only what the service offers (so a gateway that
reached past it into storage would fail here), the frames the socket was written."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from tidings.auth import Identity, Tokens
from tidings.chat.ports import Ownership
from tidings.chat.service import ChatService, SyncPage
from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.core.model import InboxEntry, Message
from tidings.gateway.connection import Connection
from tidings.gateway.framing import OP_TEXT
from tidings.gateway.gateway import Gateway
from tidings.gateway.session import State
from tidings.runtime import OwnsEveryone
from tidings.settings import Settings

GOOD = (
    b"GET /v1/ws HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
TOKENS = Tokens("a-test-secret-that-is-long-enough-for-hs256", ttl_s=3600)


def entry(seq: int) -> InboxEntry:
    return InboxEntry(seq, Message(100 + seq, "dm:1:2", 2, 20, f"c{seq}", f"m{seq}", 1))


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

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


def masked(payload: bytes) -> bytes:
    """A text frame as a browser sends it (masked; payloads here are short or medium)."""
    key = os.urandom(4)
    size = len(payload)
    head = (
        bytes((0x80 | OP_TEXT, 0x80 | size))
        if size < 126
        else (bytes((0x80 | OP_TEXT, 0x80 | 126)) + struct.pack("!H", size))
    )
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Service:
    """The ChatService calls the gateway makes on a hello, over an inbox in memory."""

    def __init__(self, inbox: list[InboxEntry], *, ended: bool = False) -> None:
        self.inbox = inbox
        self.ended = ended
        self.sync_gate = asyncio.Event()
        self.sync_gate.set()
        self.syncing = asyncio.Event()

    async def authenticate(self, user_id: int, device_id: int, token_version: int) -> None:
        if self.ended:
            raise ProtocolError(
                errors.UNAUTHORIZED, "session ended", close_code=errors.CLOSE_UNAUTHORIZED
            )

    async def open_inbox(self, user_id: int) -> int:
        return self.inbox[-1].seq if self.inbox else 0

    async def sync(self, user_id: int, cursor: int, limit: int) -> SyncPage:
        self.syncing.set()
        await self.sync_gate.wait()
        after = [e for e in self.inbox if e.seq > cursor][:limit]
        return SyncPage(after, after[-1].seq if after else cursor, False)

    async def presence_changed(self, changes: Any) -> None:
        pass


def gateway(service: Service) -> Gateway:
    return Gateway(
        Settings(_env_file=None),  # type: ignore[call-arg]
        cast(ChatService, service),
        TOKENS,
        cast(Ownership, OwnsEveryone()),
        lambda: time.time_ns() // 1_000_000,
    )


def opened(gw: Gateway) -> tuple[Connection, Transport]:
    conn = Connection(gateway=gw)
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(GOOD)
    assert conn.open
    transport.written.clear()  # the 101
    return conn, transport


def send(conn: Connection, frame: dict[str, Any]) -> None:
    conn.data_received(masked(json.dumps(frame).encode()))


def hello(cursor: int = 0) -> dict[str, Any]:
    token, _ = TOKENS.issue(Identity(1, 10, token_version=0))
    return {"type": "hello", "token": token, "cursor": str(cursor)}


def written(transport: Transport) -> list[tuple[int, bytes]]:
    """The server frames written so far: (opcode, payload)."""
    data, out, pos = b"".join(transport.written), [], 0
    while pos < len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            pos += 2
        out.append((opcode, data[pos : pos + length]))
        pos += length
    return out


def received(transport: Transport) -> list[dict[str, Any]]:
    return [json.loads(payload) for opcode, payload in written(transport) if opcode == 1]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_a_hello_is_welcomed_synced_and_then_gets_live_entries_once_in_order() -> None:
    service = Service([entry(1), entry(2), entry(3)])
    service.sync_gate.clear()  # hold the sync, to deliver live entries meanwhile
    gw = gateway(service)
    conn, transport = opened(gw)
    send(conn, hello(cursor=1))
    await until(service.syncing.is_set)
    assert conn.session.state is State.SYNCING
    gw.deliver_entries(1, [entry(3)])  # also in the sync's page: must not go out twice
    gw.deliver_entries(1, [entry(4)])  # newer than the sync: after synced
    service.sync_gate.set()
    await until(lambda: conn.session.state is State.LIVE)
    await until(lambda: len(received(transport)) == 5)
    frames = received(transport)
    assert frames[0]["type"] == "welcome" and frames[0]["cursor"] == "3"
    assert [f["type"] for f in frames[1:]] == ["msg", "msg", "synced", "msg"]
    assert [f["client_msg_id"] for f in frames if f["type"] == "msg"] == ["c2", "c3", "c4"]
    assert gw.connected_devices(1) == {10}
    assert gw.admission.hellos_in_flight == 0
    gw.deliver_entries(1, [entry(4), entry(5)])  # a redelivery, then something new
    await until(lambda: len(received(transport)) == 6)
    assert received(transport)[-1]["client_msg_id"] == "c5"


async def test_the_first_frame_must_be_hello() -> None:
    gw = gateway(Service([]))
    conn, transport = opened(gw)
    send(conn, {"type": "typing", "channel_id": "dm:1:2"})
    await until(lambda: conn.session.state is State.CLOSING)
    await until(lambda: any(op == 8 for op, _ in written(transport)))
    assert received(transport)[0]["code"] == errors.UNAUTHORIZED
    close = next(payload for op, payload in written(transport) if op == 8)
    assert struct.unpack_from("!H", close)[0] == errors.CLOSE_UNAUTHORIZED


async def test_a_hello_whose_session_ended_is_refused_and_served_nothing() -> None:
    gw = gateway(Service([entry(1)], ended=True))
    conn, transport = opened(gw)
    send(conn, hello())
    await until(lambda: any(op == 8 for op, _ in written(transport)))
    assert [f["type"] for f in received(transport)] == ["error"]
    assert received(transport)[0]["code"] == errors.UNAUTHORIZED
    assert conn.session.state is State.CLOSING
    assert gw.connected_devices(1) == set()
    assert gw.admission.hellos_in_flight == 0
    send(conn, hello())  # nothing is handled after close
    await asyncio.sleep(0)
    assert [f["type"] for f in received(transport)] == ["error"]
