"""Edits, deletes and reactions on ChatConnection against a scripted WebSocket server:
acked like a send, sent again with the same client_msg_id after a reconnect, refused
with the contract's codes; and the CLI's reply/edit/delete/react and channels."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tidings.client import Ack, ApiClient, Backoff, ChatConnection, TidingsChatError
from tidings.client._cli import add_chat_commands, run_account, run_action
from tidings.client._state import ChatState

JSON = dict[str, Any]
Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/ws"


async def recv(ws: ServerConnection) -> JSON:
    frame: JSON = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return frame


async def send(ws: ServerConnection, **frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def welcome(ws: ServerConnection) -> None:
    hello = await recv(ws)
    assert hello["type"] == "hello"
    await send(
        ws,
        type="welcome",
        user_id="1",
        device_id="d1",
        server_id="s1",
        heartbeat_s=5,
        cursor=hello["cursor"],
    )


async def ack(ws: ServerConnection, frame: JSON, message_id: str) -> None:
    await send(
        ws,
        type="ack",
        client_msg_id=frame["client_msg_id"],
        message_id=message_id,
        channel_id=frame["channel_id"],
        ts=9,
    )


def chat(url: str) -> ChatConnection:
    return ChatConnection(url, "tok", backoff=Backoff(0.01, 0.05, rng=random.Random(0)))


async def test_edit_delete_and_react_are_acked_and_refusals_raise() -> None:
    sent: list[JSON] = []
    refusals = {"9": "forbidden", "10": "too_late", "11": "unknown_message", "12": "not_supported"}

    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        while True:
            frame = await recv(ws)
            if frame["type"] != "send":
                continue
            sent.append(frame)
            target = frame["event"]["message_id"]
            if target in refusals:
                await send(
                    ws,
                    type="error",
                    code=refusals[target],
                    message="no",
                    ref=frame["client_msg_id"],
                )
            else:
                await ack(ws, frame, f"{100 + len(sent)}")

    async with fake_server(handler) as url, chat(url) as conn:
        async with asyncio.timeout(5):
            edited = await conn.edit("g:5", "8", "fixed", client_msg_id="e1")
            deleted = await conn.delete("g:5", "8", client_msg_id="d1")
            reacted = await conn.react("g:5", "7", "🎉", client_msg_id="r1")
            taken_back = await conn.react("g:5", "7", "", client_msg_id="r2")
            codes = []
            for target in refusals:
                with pytest.raises(TidingsChatError) as caught:
                    await conn.edit("g:5", target, "x")
                codes.append((caught.value.code, caught.value.retriable))
    assert [edited, deleted, reacted, taken_back] == [
        Ack("e1", "101", "g:5", 9),
        Ack("d1", "102", "g:5", 9),
        Ack("r1", "103", "g:5", 9),
        Ack("r2", "104", "g:5", 9),
    ]
    assert [f["event"] for f in sent[:4]] == [
        {"type": "edit", "message_id": "8"},
        {"type": "delete", "message_id": "8"},
        {"type": "reaction", "message_id": "7", "emoji": "🎉"},
        {"type": "reaction", "message_id": "7", "emoji": ""},
    ]
    assert sent[0]["body"] == "fixed" and "body" not in sent[1]
    assert codes == [(code, False) for code in refusals.values()]


async def test_an_unacked_action_is_resent_with_the_same_id_after_a_reconnect() -> None:
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
            await ack(ws, frame, "55")

    async with fake_server(handler) as url, chat(url) as conn:
        async with asyncio.timeout(5):
            answer = await conn.react("g:5", "7", "👍")
    assert [n for n, _ in seen] == [1, 2]
    assert seen[0][1] == seen[1][1]  # the same frame and client_msg_id: applied once
    assert answer.client_msg_id == seen[0][1]["client_msg_id"]


async def test_a_reply_names_the_message_it_answers() -> None:
    sent: list[JSON] = []

    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        frame = await recv(ws)
        sent.append(frame)
        await ack(ws, frame, "60")
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()

    async with fake_server(handler) as url, chat(url) as conn:
        async with asyncio.timeout(5):
            await conn.send("yes!", channel_id="g:5", reply_to="7", client_msg_id="r")
    assert sent == [
        {"type": "send", "client_msg_id": "r", "body": "yes!", "reply_to": "7", "channel_id": "g:5"}
    ]


# -- the CLI -------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tidings")
    add_chat_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["client", *argv])


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "tidings"


async def test_cli_reply_edit_delete_and_react_print_their_acks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sent: list[JSON] = []

    async def handler(ws: ServerConnection) -> None:
        await welcome(ws)
        frame = await recv(ws)
        sent.append(frame)
        await ack(ws, frame, f"{200 + len(sent)}")
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()

    async with fake_server(handler) as url:
        path = tmp_path / "ada.json"
        ChatState("http://api.test", "ada", "1", "d1", "tok", 1, url, 4).save(path)
        commands = [
            ("reply", "g:5", "7", "yes!"),
            ("edit", "g:5", "7", "fixed"),
            ("delete", "g:5", "7"),
            ("react", "g:5", "7", "👍"),
            ("react", "g:5", "7", ""),
        ]
        async with asyncio.timeout(20):
            for argv in commands:
                args = parse(*argv, "--state", str(path), "--client-msg-id", f"k-{argv[0]}")
                assert args.handler.__name__ == "run_action"
                assert await run_action(args) == 0
    assert [(f.get("reply_to"), f.get("event"), f.get("body")) for f in sent] == [
        ("7", None, "yes!"),
        (None, {"type": "edit", "message_id": "7"}, "fixed"),
        (None, {"type": "delete", "message_id": "7"}, None),
        (None, {"type": "reaction", "message_id": "7", "emoji": "👍"}, None),
        (None, {"type": "reaction", "message_id": "7", "emoji": ""}, None),
    ]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["type"], line["message_id"]) for line in lines] == [
        ("ack", str(201 + i)) for i in range(5)
    ]
    assert ChatState.load(path).cursor == 4  # acting moves no cursor


async def test_cli_channels_prints_unread_counts_one_line_each(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ChatState("http://api.test", "ada", "1", "d1", "tok", 1, "ws://x", 0).save(
        config_home / "ada.json"
    )
    entry = {
        "channel_id": "dm:1:2",
        "kind": "dm",
        "member_ids": ["1", "2"],
        "last_message_id": "9",
        "read_upto": "7",
        "unread": 2,
        "receipts": [{"user_id": "2", "delivered_upto": "9", "read_upto": "8"}],
    }

    def route(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/v1/channels")
        return httpx.Response(200, json={"channels": [entry]})

    api = ApiClient("http://api.test", token="tok", transport=httpx.MockTransport(route))
    assert await run_account(parse("channels"), api) == 0
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert (line["channel_id"], line["unread"], line["read_upto"]) == ("dm:1:2", 2, "7")
    assert line["receipts"] == [{"user_id": "2", "delivered_upto": "9", "read_upto": "8"}]
