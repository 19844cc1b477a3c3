"""Draining without sockets: who is told what, and when."""

from __future__ import annotations

import time
from typing import Any, cast

from tidings.chat.ports import Ownership
from tidings.chat.service import ChatService
from tidings.core import errors
from tidings.core.ratelimit import TokenBucket
from tidings.gateway.connection import Connection
from tidings.gateway.gateway import Gateway
from tidings.gateway.session import CLOSING, HELLO, LIVE, SYNCING, Session, State
from tidings.runtime import OwnsEveryone
from tidings.settings import Settings


class FakeConnection:
    """What the drain touches of a Connection: its session's state, frames out, close."""

    def __init__(self, state: State) -> None:
        self.session = Session(0)
        self.session.state = state
        self.frames: list[dict[str, Any]] = []
        self.closed_with: int | None = None

    def send_frame(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str = "") -> None:
        self.session.close()
        self.closed_with = code


def gateway(**settings: Any) -> tuple[Gateway, list[FakeConnection]]:
    gw = Gateway(
        Settings(_env_file=None, **settings),  # type: ignore[call-arg]
        cast(ChatService, None),  # the drain reaches no service
        cast(Any, None),
        cast(Ownership, OwnsEveryone()),
        lambda: time.time_ns() // 1_000_000,
    )
    conns = [FakeConnection(s) for s in (LIVE, LIVE, SYNCING, HELLO, LIVE, CLOSING) * 20]
    gw.connections = set(cast(list[Connection], conns))
    return gw, conns


async def test_a_restart_in_place_tells_everyone_at_once_to_come_back_here() -> None:
    gw, conns = gateway(drain_budget_s=60)
    started = time.monotonic()
    told = await gw.drain(0, reconnect_window_ms=(1000, 4000), same_url=True)
    assert time.monotonic() - started < 0.5  # not paced over a quarter of the 60 s budget
    assert gw.draining
    assert told == len(conns)
    for conn in conns:
        assert conn.closed_with == errors.CLOSE_DRAINED
    talked_to = [c for c in conns if c.frames]
    assert len(talked_to) == 100  # all but the 20 already closing, hello or not
    after = [c.frames[0]["after_ms"] for c in talked_to]
    assert all(1000 <= ms <= 4000 for ms in after)
    assert len(set(after)) > 50  # jittered over the window
    assert all(c.frames == [{"type": "reconnect", "after_ms": c.frames[0]["after_ms"],
                             "same_url": True}] for c in talked_to)  # fmt: skip


async def test_a_cluster_drain_is_paced_and_spread_as_the_peers_need() -> None:
    # 120 sockets (100 to tell) at 100 admitted a second: spread over 1.2 s.
    gw, conns = gateway(drain_budget_s=60, drain_admit_per_s=100)
    started = time.monotonic()
    await gw.drain(0.3)
    assert time.monotonic() - started >= 0.2  # paced over (most of) the window it was given
    after = [c.frames[0]["after_ms"] for c in conns if c.frames]
    assert len(after) == 100
    assert all(0 <= ms <= 1200 for ms in after)
    assert max(after) > 600  # spread over the whole of it, not bunched
    assert not any("same_url" in c.frames[0] for c in conns if c.frames)


def test_the_drain_spread_grows_with_the_clients_within_half_the_budget() -> None:
    settings = Settings(_env_file=None, drain_budget_s=30)  # type: ignore[call-arg]
    assert settings.drain_spread_s(1) == 0.5  # a lone client is not kept waiting
    assert settings.drain_spread_s(10_000) == 5.0  # at 2,000 admitted a second
    assert settings.drain_spread_s(1_000_000) == 15.0  # never past half the budget


def test_the_restart_window_setting_is_taken_in_order() -> None:
    assert Settings(_env_file=None).restart_reconnect_window_ms == (1000, 4000)  # type: ignore[call-arg]
    swapped = Settings(_env_file=None, restart_reconnect_min_s=3, restart_reconnect_max_s=0.5)  # type: ignore[call-arg]
    assert swapped.restart_reconnect_window_ms == (500, 3000)


async def test_a_send_whose_sender_moved_is_not_answered_and_the_device_is_sent_on() -> None:
    """A send stored while the sender's partition moved (cluster fencing) is neither
    acked nor refused: the device is told to reconnect, and resends it to its new server
    (which finds it by client_msg_id); sends after it on that socket get no answer here."""
    import asyncio
    from collections import deque

    from tidings.chat.message_log import SenderMoved
    from tidings.core.model import Message

    gw, _ = gateway()
    conn = FakeConnection(SYNCING)
    conn.session.authenticated(7, 70, 0, TokenBucket(1, 1, 0))
    conn.session.go_live(0)
    gw.connections = {cast(Connection, conn)}
    gw.by_user = {7: [cast(Connection, conn)]}
    loop = asyncio.get_running_loop()
    moved: asyncio.Future[Message] = loop.create_future()
    moved.set_exception(SenderMoved("m1"))
    later: asyncio.Future[Message] = loop.create_future()
    later.set_result(Message(1, "dm:7:8", 7, 70, "m2", "hi", 1))
    conn.session.answers = deque([("m1", moved), ("m2", later)])
    gw._answer_sends(cast(Connection, conn))
    assert [f["type"] for f in conn.frames] == ["reconnect"]
    assert conn.closed_with == errors.CLOSE_DRAINED
    assert 7 not in gw.by_user and conn not in gw.connections
