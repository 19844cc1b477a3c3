"""ChatConnection against scripted in-process WebSocket servers (127.0.0.1, port 0).

Each test's server plays one part of the contract (redirect, drain, a dropped connection,
a refused token, ...) and the test checks what the application sees.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tidings.client import (
    Ack,
    Backoff,
    ChatConnection,
    ErrorFrame,
    Event,
    Msg,
    Presence,
    Receipt,
    SessionEnded,
    Synced,
    TidingsApiError,
    TidingsChatError,
    TidingsConnectionError,
    TidingsSessionEndedError,
    TidingsSupersededError,
    TidingsUnauthorizedError,
    Typing,
    Welcome,
)

Handler = Callable[[ServerConnection], Awaitable[None]]
JSON = dict[str, Any]


@asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/ws"


async def recv(ws: ServerConnection) -> JSON:
    frame: JSON = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return frame


async def send(ws: ServerConnection, **frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def welcome(
    ws: ServerConnection, *, cursor: int | None = None, heartbeat_s: float = 5
) -> JSON:
    """Read the hello, answer welcome; return the hello. ``cursor``: the inbox head the
    welcome names (default: the hello's cursor, a head the device has seen up to)."""
    hello = await recv(ws)
    assert hello["type"] == "hello"
    if cursor is None:
        cursor = int(hello["cursor"])
    await send(
        ws,
        type="welcome",
        user_id="1",
        device_id="d1",
        server_id="s1",
        heartbeat_s=heartbeat_s,
        cursor=str(cursor),
    )
    return hello


def msg_frame(seq: int, message_id: str | None = None) -> JSON:
    return {
        "type": "msg",
        "seq": str(seq),
        "message_id": message_id or f"{1000 + seq}",
        "channel_id": "dm:1:2",
        "sender_id": "2",
        "sender_device_id": "d2",
        "client_msg_id": f"c{seq}",
        "body": f"message {seq}",
        "ts": 1_700_000_000_000 + seq,
    }


def fast_backoff() -> Backoff:
    return Backoff(0.01, 0.05, rng=random.Random(0))


def chat(url: str, **kwargs: Any) -> ChatConnection:
    kwargs.setdefault("backoff", fast_backoff())
    return ChatConnection(url, "tok", **kwargs)


async def take(conn: ChatConnection, n: int, kind: type[Event] = Msg) -> list[Any]:
    """The next ``n`` events of type ``kind`` (others are skipped)."""
    got: list[Any] = []
    async with asyncio.timeout(5):
        async for event in conn.events():
            if isinstance(event, kind):
                got.append(event)
                if len(got) == n:
                    break
    return got


async def serve_until_closed(ws: ServerConnection) -> None:
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()


# -- connecting and receiving --------------------------------------------------------------


async def test_hello_carries_token_and_cursor_and_backlog_arrives_in_order_once() -> None:
    hellos: list[JSON] = []

    async def handler(ws: ServerConnection) -> None:
        hellos.append(await welcome(ws, cursor=4))
        for frame in (msg_frame(3), msg_frame(5), msg_frame(4), msg_frame(5), msg_frame(6)):
            await send(ws, **frame)
        await send(ws, type="synced", cursor="6", more=False)
        await serve_until_closed(ws)

    async with fake_server(handler) as url, chat(url, cursor=2) as conn:
        messages = await take(conn, 4)
        assert [m.seq for m in messages] == [3, 4, 5, 6]
        assert [m.body for m in messages] == [f"message {n}" for n in (3, 4, 5, 6)]
        assert conn.cursor == 6
    assert hellos == [{"type": "hello", "token": "tok", "cursor": "2"}]


async def test_a_welcome_below_our_cursor_rewinds_it_and_new_messages_arrive() -> None:
    """The server was restored from a backup: its inbox ends at 3, our saved cursor is 9.
    Messages 4 and 5 are new (the lost ones' seqs, other ids), not repeats."""

    async def handler(ws: ServerConnection) -> None:
        await welcome(ws, cursor=3)
        await send(ws, type="synced", cursor="3", more=False)
        await send(ws, **msg_frame(4, message_id="2004"))
        await send(ws, **msg_frame(5, message_id="2005"))
        await serve_until_closed(ws)

    async with fake_server(handler) as url, chat(url, cursor=9) as conn:
        messages = await take(conn, 2)
        assert [(m.seq, m.message_id) for m in messages] == [(4, "2004"), (5, "2005")]
        assert conn.cursor == 5


async def test_cursor_counts_only_what_the_application_has_taken() -> None:
    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        for seq in (1, 2, 3):
            await send(ws, **msg_frame(seq))
        await serve_until_closed(ws)

    async with fake_server(handler) as url, chat(url) as conn:
        events = conn.events()
        assert isinstance(await anext(events), Welcome)
        first = await anext(events)
        assert isinstance(first, Msg) and first.seq == 1
        await asyncio.sleep(0.1)  # 2 and 3 have arrived but are not taken yet
        assert conn.cursor == 1


async def test_events_expose_receipts_presence_typing_synced_and_errors() -> None:
    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        await send(
            ws, type="receipt", channel_id="dm:1:2", user_id="2", message_id="9", status="read"
        )
        await send(ws, type="presence", user_id="2", status="online", last_seen=5)
        await send(ws, type="typing", channel_id="dm:1:2", user_id="2")
        await send(ws, type="synced", cursor="0", more=False)
        await send(ws, type="error", code="rate_limited", message="slow down")
        await send(ws, type="brand_new_frame")  # ignored
        await serve_until_closed(ws)

    async with fake_server(handler) as url, chat(url) as conn:
        events = []
        async with asyncio.timeout(5):
            async for event in conn.events():
                events.append(event)
                if isinstance(event, ErrorFrame):
                    break
    assert events == [
        Welcome("1", "d1", "s1", 5.0, 0),
        Receipt("dm:1:2", "2", "9", "read"),
        Presence("2", "online", 5),
        Typing("dm:1:2", "2"),
        Synced(0, False),
        ErrorFrame("rate_limited", "slow down", None),
    ]


async def test_a_gap_is_filled_by_a_sync_from_the_cursor() -> None:
    syncs: list[JSON] = []

    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        await send(ws, type="synced", cursor="0", more=False)
        await send(ws, **msg_frame(1))
        await send(ws, **msg_frame(3))  # 2 went missing
        request = await recv(ws)
        syncs.append(request)
        for seq in (2, 3):
            await send(ws, **msg_frame(seq))
        await send(ws, type="synced", cursor="3", more=False)
        await serve_until_closed(ws)

    async with fake_server(handler) as url, chat(url) as conn:
        assert [m.seq for m in await take(conn, 3)] == [1, 2, 3]
    assert syncs == [{"type": "sync", "cursor": "1"}]


# -- sending ----------------------------------------------------------------------------------


async def test_send_returns_the_ack_and_an_error_about_it_raises() -> None:
    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        while True:
            frame = await recv(ws)
            if frame["type"] != "send":
                continue
            if "to" in frame:
                await send(
                    ws,
                    type="ack",
                    client_msg_id=frame["client_msg_id"],
                    message_id="77",
                    channel_id="dm:1:2",
                    ts=9,
                )
            else:
                await send(
                    ws,
                    type="error",
                    code="not_a_member",
                    message="nope",
                    ref=frame["client_msg_id"],
                )

    async with fake_server(handler) as url, chat(url) as conn:
        ack = await conn.send("hi", to="2", client_msg_id="mine")
        assert ack == Ack("mine", "77", "dm:1:2", 9)
        with pytest.raises(TidingsChatError) as caught:
            await conn.send("hi", channel_id="g:5")
        assert caught.value.code == "not_a_member"


async def test_unacked_send_is_resent_with_the_same_id_after_a_reconnect() -> None:
    seen: list[tuple[int, JSON]] = []
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        number = connections
        await welcome(ws)
        while True:
            frame = await recv(ws)
            if frame["type"] != "send":
                continue
            seen.append((number, frame))
            if number == 1:
                ws.transport.abort()  # lost before the ack
                return
            await send(
                ws,
                type="ack",
                client_msg_id=frame["client_msg_id"],
                message_id="5",
                channel_id="dm:1:2",
                ts=1,
            )

    async with fake_server(handler) as url, chat(url) as conn:
        async with asyncio.timeout(5):
            ack = await conn.send("hello", to="2")
    assert [n for n, _ in seen] == [1, 2]
    assert seen[0][1] == seen[1][1]  # same frame, same client_msg_id: the server dedupes
    assert ack.client_msg_id == seen[0][1]["client_msg_id"]


async def test_a_send_made_while_disconnected_goes_out_after_the_welcome() -> None:
    first_gone = asyncio.Event()
    connections = 0
    sends: list[JSON] = []

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await welcome(ws)
            await ws.close()
            first_gone.set()
            return
        await asyncio.sleep(0.2)  # the client is disconnected for a while
        await welcome(ws)
        frame = await recv(ws)
        sends.append(frame)
        await send(
            ws,
            type="ack",
            client_msg_id=frame["client_msg_id"],
            message_id="1",
            channel_id="c",
            ts=1,
        )
        await serve_until_closed(ws)

    async with fake_server(handler) as url, chat(url) as conn:
        await first_gone.wait()
        await asyncio.sleep(0.05)
        assert not conn.connected
        ack = await asyncio.wait_for(conn.send("later", channel_id="c", client_msg_id="x"), 5)
    assert ack.message_id == "1"
    assert [f["client_msg_id"] for f in sends] == ["x"]


async def test_aclose_fails_pending_sends_and_ends_events() -> None:
    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        await serve_until_closed(ws)  # never acks

    async with fake_server(handler) as url:
        conn = chat(url)
        await conn.start()
        pending = asyncio.create_task(conn.send("x", to="2"))
        await asyncio.sleep(0.05)
        await conn.aclose()
        with pytest.raises(TidingsConnectionError):
            await pending
        assert [e async for e in conn.events() if isinstance(e, Msg)] == []
        with pytest.raises(TidingsConnectionError):
            await conn.send("y", to="2")


# -- reconnecting ------------------------------------------------------------------------------


async def test_reconnect_resumes_at_the_cursor_and_drops_redelivered_messages() -> None:
    hellos: list[JSON] = []

    async def handler(ws: ServerConnection) -> None:
        hellos.append(await welcome(ws))
        if len(hellos) == 1:
            for seq in (1, 2):
                await send(ws, **msg_frame(seq))
            await asyncio.sleep(0.05)
            ws.transport.abort()
            return
        for seq in (2, 3):  # at-least-once: 2 again
            await send(ws, **msg_frame(seq))
        await serve_until_closed(ws)

    async with fake_server(handler) as url, chat(url) as conn:
        assert [m.seq for m in await take(conn, 3)] == [1, 2, 3]
    assert [h["cursor"] for h in hellos] == ["0", "2"]


async def test_same_message_id_under_another_seq_is_not_delivered_twice() -> None:
    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        await send(ws, **msg_frame(1, message_id="42"))
        await send(ws, **msg_frame(2, message_id="42"))
        await send(ws, **msg_frame(3, message_id="43"))
        await serve_until_closed(ws)

    async with fake_server(handler) as url, chat(url) as conn:
        got = await take(conn, 2)
        assert [(m.seq, m.message_id) for m in got] == [(1, "42"), (3, "43")]
        assert conn.cursor == 3


async def test_redirect_connects_to_the_given_url() -> None:
    async def target(ws: ServerConnection) -> None:
        await welcome(ws)
        await send(ws, **msg_frame(1))
        await serve_until_closed(ws)

    async with fake_server(target) as target_url:

        async def redirector(ws: ServerConnection) -> None:
            await recv(ws)
            await send(ws, type="redirect", chat_url=target_url)
            await ws.close(4003, "redirect")

        async with fake_server(redirector) as url, chat(url, max_attempts=1) as conn:
            assert [m.seq for m in await take(conn, 1)] == [1]
            assert conn.welcome is not None


async def test_reconnect_frame_waits_then_rediscovers() -> None:
    loop = asyncio.get_running_loop()
    discovered_at: list[float] = []
    drained_at: list[float] = []

    async def new_home(ws: ServerConnection) -> None:
        await welcome(ws)
        await send(ws, **msg_frame(2))
        await serve_until_closed(ws)

    async with fake_server(new_home) as new_url:

        async def draining(ws: ServerConnection) -> None:
            await welcome(ws)
            await send(ws, **msg_frame(1))
            drained_at.append(loop.time())
            await send(ws, type="reconnect", after_ms=300)
            await asyncio.sleep(0.05)
            await ws.close(1012, "draining")

        async def discover() -> str:
            discovered_at.append(loop.time())
            return new_url

        async with fake_server(draining) as url, chat(url, discover=discover) as conn:
            assert [m.seq for m in await take(conn, 2)] == [1, 2]
    assert len(discovered_at) == 1
    assert discovered_at[0] - drained_at[0] >= 0.29


async def test_reconnect_with_same_url_comes_back_without_discover() -> None:
    """A server that restarts in place says ``same_url``: come back to it directly."""
    attempts = 0

    async def restarting(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await welcome(ws)
        await send(ws, **msg_frame(attempts))
        if attempts == 1:
            await send(ws, type="reconnect", after_ms=50, same_url=True)
            await ws.close(1012, "restarting")
            return
        await serve_until_closed(ws)

    discovers = 0

    async def discover() -> str:
        nonlocal discovers
        discovers += 1
        return "ws://127.0.0.1:9/v1/ws"  # nobody there: asking would have been wrong

    async with fake_server(restarting) as url, chat(url, discover=discover) as conn:
        assert [m.seq for m in await take(conn, 2)] == [1, 2]
    assert (attempts, discovers) == (2, 0)


async def test_discover_that_says_come_back_later_is_waited_out() -> None:
    loop = asyncio.get_running_loop()
    asked: list[float] = []

    async def new_home(ws: ServerConnection) -> None:
        await welcome(ws)
        await send(ws, **msg_frame(2))
        await serve_until_closed(ws)

    async with fake_server(new_home) as new_url:

        async def draining(ws: ServerConnection) -> None:
            await welcome(ws)
            await send(ws, **msg_frame(1))
            await send(ws, type="reconnect", after_ms=10)
            await ws.close(1012, "draining")

        async def discover() -> str:
            asked.append(loop.time())
            if len(asked) == 1:  # saturated: come back in 200 ms
                raise TidingsApiError(503, "unavailable", "saturated", after_ms=200)
            return new_url

        async with fake_server(draining) as url, chat(url, discover=discover) as conn:
            assert [m.seq for m in await take(conn, 2)] == [1, 2]
    assert len(asked) == 2
    assert asked[1] - asked[0] >= 0.19


def restarting_server(failures: int) -> tuple[Handler, list[int]]:
    """A server that says reconnect, then turns ``failures`` attempts away before any
    welcome (as a process that is still starting would), then serves."""
    attempts = [0]

    async def handler(ws: ServerConnection) -> None:
        attempts[0] += 1
        if attempts[0] == 1:
            await welcome(ws)
            await send(ws, type="reconnect", after_ms=10, same_url=True)
            await ws.close(1012, "restarting")
        elif attempts[0] <= 1 + failures:
            await ws.close(1011, "starting")
        else:
            await welcome(ws)
            await send(ws, **msg_frame(1))
            await serve_until_closed(ws)

    return handler, attempts


async def test_attempts_failing_after_a_reconnect_use_the_restart_backoff() -> None:
    handler, attempts = restarting_server(failures=2)
    usual = Backoff(60.0, 60.0)  # would stall the test past take()'s 5 s
    restart = Backoff(0.01, 0.02, rng=random.Random(0))
    async with fake_server(handler) as url, chat(url, backoff=usual, restart=restart) as conn:
        assert [m.seq for m in await take(conn, 1)] == [1]
    assert attempts[0] == 4
    assert (usual.attempts, restart.attempts) == (0, 2)


async def test_a_restart_in_place_keeps_to_the_same_url_while_the_new_process_starts() -> None:
    """The attempt after ``after_ms`` and 4 of its 5 retries fail (the new process is not
    listening yet); the last retry finds it, at the same url: no discover."""
    handler, attempts = restarting_server(failures=5)
    discovers = 0

    async def discover() -> str:
        nonlocal discovers
        discovers += 1
        return "ws://127.0.0.1:9/v1/ws"  # nobody there: asking would have been wrong

    restart = Backoff(0.01, 0.02, rng=random.Random(0))
    async with (
        fake_server(handler) as url,
        chat(url, discover=discover, restart=restart) as conn,
    ):
        assert [m.seq for m in await take(conn, 1)] == [1]
    assert (attempts[0], discovers) == (7, 0)
    assert restart.attempts == 5


async def test_a_restart_in_place_that_does_not_come_back_falls_back_to_discover() -> None:
    """After the first attempt and 5 retries at the same url, the client asks discover."""
    handler, attempts = restarting_server(failures=100)
    asked_after: list[int] = []

    async def new_home(ws: ServerConnection) -> None:
        await welcome(ws)
        await send(ws, **msg_frame(1))
        await serve_until_closed(ws)

    async with fake_server(new_home) as new_url:

        async def discover() -> str:
            asked_after.append(attempts[0])
            return new_url

        restart = Backoff(0.01, 0.02, rng=random.Random(0))
        async with (
            fake_server(handler) as url,
            chat(url, discover=discover, restart=restart) as conn,
        ):
            assert [m.seq for m in await take(conn, 1)] == [1]
    # The welcome, then 1 + 5 failed attempts at the same url, then discover.
    assert asked_after == [7]
    assert attempts[0] == 7


async def test_after_the_restart_window_the_usual_backoff_applies_again() -> None:
    handler, attempts = restarting_server(failures=2)
    usual = fast_backoff()
    restart = Backoff(60.0, 60.0)
    async with (
        fake_server(handler) as url,
        chat(url, backoff=usual, restart=restart, restart_window=0.0) as conn,
    ):
        assert [m.seq for m in await take(conn, 1)] == [1]
    assert attempts[0] == 4
    assert (usual.attempts, restart.attempts) == (2, 0)


async def test_lost_connection_retries_with_backoff_and_rediscovers() -> None:
    attempts = 0

    async def flaky(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            await ws.close(1011, "oops")  # before any welcome
            return
        await welcome(ws)
        await send(ws, **msg_frame(1))
        await serve_until_closed(ws)

    discovers = 0
    async with fake_server(flaky) as url:

        async def discover() -> str:
            nonlocal discovers
            discovers += 1
            return url

        backoff = fast_backoff()
        async with chat(url, discover=discover, backoff=backoff) as conn:
            assert [m.seq for m in await take(conn, 1)] == [1]
    assert attempts == 3
    assert discovers == 2
    assert backoff.attempts == 2  # a short-lived success does not reset it


async def test_a_silent_server_is_dropped_after_missed_heartbeats() -> None:
    heartbeats = 0
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal heartbeats, connections
        connections += 1
        await welcome(ws, heartbeat_s=0.1)
        while True:  # reads heartbeats, never answers anything
            frame = await recv(ws)
            heartbeats += frame["type"] == "heartbeat"

    async with fake_server(handler) as url, chat(url) as conn:
        welcomes = await take(conn, 2, Welcome)
    assert len(welcomes) == 2
    assert connections >= 2
    assert heartbeats >= 2


# -- permanent failures -----------------------------------------------------------------------


async def test_close_4001_raises_unauthorized_without_retrying() -> None:
    attempts = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await recv(ws)
        await send(ws, type="error", code="unauthorized", message="bad token")
        await ws.close(4001, "unauthorized")

    async with fake_server(handler) as url:
        with pytest.raises(TidingsUnauthorizedError):
            async with chat(url):
                pass
        await asyncio.sleep(0.2)
    assert attempts == 1


async def test_4001_after_welcome_ends_events_with_unauthorized() -> None:
    attempts = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await welcome(ws)
        await send(ws, **msg_frame(1))
        await ws.close(4001, "token expired")

    async with fake_server(handler) as url, chat(url) as conn:
        got: list[Event] = []
        with pytest.raises(TidingsUnauthorizedError):
            async with asyncio.timeout(5):
                async for event in conn.events():
                    got.append(event)
        assert [e.seq for e in got if isinstance(e, Msg)] == [1]
        with pytest.raises(TidingsUnauthorizedError):
            await conn.wait_closed()
    assert attempts == 1


async def test_4001_after_welcome_is_session_ended_and_nothing_reconnects() -> None:
    """Logged out elsewhere, device unlinked, token superseded: the server closes 4001."""
    attempts = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await welcome(ws)
        await asyncio.sleep(0.05)
        await ws.close(4001, "session ended")

    discovers = 0

    async def discover() -> str:
        nonlocal discovers
        discovers += 1
        raise AssertionError("a session that ended is not rediscovered")

    async with fake_server(handler) as url, chat(url, discover=discover) as conn:
        with pytest.raises(SessionEnded) as caught:
            await take(conn, 1)
        with pytest.raises(TidingsSessionEndedError):
            await conn.send("too late", to="2")
        await asyncio.sleep(0.2)
    assert isinstance(caught.value, TidingsUnauthorizedError)  # older handlers still match
    assert not caught.value.retriable
    assert "session ended" in str(caught.value)
    assert (attempts, discovers) == (1, 0)


async def test_discover_answering_401_is_session_ended() -> None:
    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        await ws.close(1011, "oops")  # an ordinary drop: the client rediscovers

    async def discover() -> str:
        raise TidingsApiError(401, "unauthorized", "device unlinked")

    async with fake_server(handler) as url, chat(url, discover=discover) as conn:
        with pytest.raises(TidingsSessionEndedError):
            await conn.wait_closed()


async def test_close_4011_superseded_does_not_reconnect() -> None:
    """A newer socket of the same device took over: this one stays closed."""
    attempts = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await welcome(ws)
        await send(ws, **msg_frame(1))
        await ws.close(4011, "superseded")

    async with fake_server(handler) as url, chat(url) as conn:
        got: list[Event] = []
        with pytest.raises(TidingsSupersededError):
            async with asyncio.timeout(5):
                async for event in conn.events():
                    got.append(event)
        assert [e.seq for e in got if isinstance(e, Msg)] == [1]
        assert not conn.connected
        await asyncio.sleep(0.2)
    assert attempts == 1


async def test_a_blocked_send_raises_and_is_not_sent_again() -> None:
    sends: list[JSON] = []

    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        while True:
            frame = await recv(ws)
            if frame["type"] == "send":
                sends.append(frame)
                await send(
                    ws, type="error", code="blocked", message="blocked", ref=frame["client_msg_id"]
                )

    async with fake_server(handler) as url, chat(url) as conn:
        with pytest.raises(TidingsChatError) as caught:
            await conn.send("hi", to="2", client_msg_id="m1")
        assert (caught.value.code, caught.value.ref) == ("blocked", "m1")
        assert not caught.value.retriable
        await asyncio.sleep(0.1)
    assert len(sends) == 1


async def test_gives_up_after_max_attempts_when_nobody_listens() -> None:
    async with fake_server(serve_until_closed) as url:
        pass  # the port is free again: connections are refused
    with pytest.raises(TidingsConnectionError) as caught:
        async with asyncio.timeout(5):
            await chat(url, max_attempts=3).start()
    assert not isinstance(caught.value, TidingsUnauthorizedError)
    assert "3 attempts" in str(caught.value)
