"""`tidings client ...`: the state file, and login/send/listen end to end against an
in-memory HTTP API and a scripted WebSocket server."""

from __future__ import annotations

import argparse
import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tidings.client import ApiClient
from tidings.client._cli import (
    add_chat_commands,
    run_account,
    run_listen,
    run_login,
    run_logout,
    run_send,
)
from tidings.client._state import ChatState, StateError, find_state_path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tidings")
    add_chat_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["client", *argv])


def make_state(path: Path, url: str, cursor: int = 0) -> ChatState:
    state = ChatState("http://api.test", "ada", "1", "d1", "tok", 1, url, cursor)
    state.save(path)
    return state


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("TIDINGS_URL", raising=False)
    monkeypatch.delenv("TIDINGS_PASSWORD", raising=False)
    return tmp_path / "config" / "tidings"


# -- the state file ---------------------------------------------------------------------------


def test_state_round_trips_privately_with_the_cursor_as_a_decimal_string(tmp_path: Path) -> None:
    path = tmp_path / "s" / "ada.json"
    state = make_state(path, "ws://x/v1/ws", cursor=2**63 + 1)
    assert ChatState.load(path) == state
    assert json.loads(path.read_text())["cursor"] == str(2**63 + 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["ada.json"]  # no temp file left


def test_state_path_is_chosen_from_flags_or_the_only_file(config_home: Path) -> None:
    with pytest.raises(StateError, match="login"):
        find_state_path(None, None)
    make_state(config_home / "ada.json", "ws://x")
    assert find_state_path(None, None) == config_home / "ada.json"
    make_state(config_home / "bo.json", "ws://x")
    with pytest.raises(StateError, match="--user"):
        find_state_path(None, None)
    assert find_state_path(None, "bo") == config_home / "bo.json"
    assert find_state_path(Path("/elsewhere.json"), "bo") == Path("/elsewhere.json")


def test_a_broken_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"url": "http://a"}')
    with pytest.raises(StateError, match="not a Tidings state file"):
        ChatState.load(path)


def test_send_needs_exactly_one_destination() -> None:
    with pytest.raises(SystemExit):
        parse("send", "hi")
    with pytest.raises(SystemExit):
        parse("send", "--to", "2", "--channel", "c", "hi")
    assert parse("send", "--to", "2", "hi").handler.__name__ == "run_send"


# -- login ----------------------------------------------------------------------------------------


async def test_login_saves_the_session_and_a_second_login_reuses_the_device(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies: list[dict[str, Any]] = []

    def route(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(
            201,
            json={
                "access_token": f"tok{len(bodies)}",
                "expires_at": 5,
                "user_id": "1",
                "device_id": "d1",
                "chat_url": "ws://chat.test/v1/ws",
            },
        )

    def client() -> ApiClient:
        return ApiClient("http://api.test", transport=httpx.MockTransport(route))

    args = parse("login", "--url", "http://api.test", "ada", "pw-123456")
    assert await run_login(args, client()) == 0
    path = config_home / "ada.json"
    saved = ChatState.load(path)
    assert (saved.access_token, saved.device_id, saved.cursor) == ("tok1", "d1", 0)
    saved.cursor = 7
    saved.save(path)

    assert await run_login(args, client()) == 0
    again = ChatState.load(path)
    assert again.access_token == "tok2"
    assert again.cursor == 7  # same user, same deployment: resume where listen stopped
    assert "device_id" not in bodies[0]
    assert bodies[1]["device_id"] == "d1"
    assert json.loads(capsys.readouterr().out.splitlines()[0])["state"] == str(path)


# -- send and listen against a scripted chat server ----------------------------------------


def msg_frame(seq: int) -> dict[str, Any]:
    return {
        "type": "msg",
        "seq": str(seq),
        "message_id": str(100 + seq),
        "channel_id": "dm:1:2",
        "sender_id": "2",
        "sender_device_id": "d2",
        "client_msg_id": f"c{seq}",
        "body": f"m{seq}",
        "ts": seq,
    }


async def test_listen_prints_messages_and_resumes_at_the_saved_cursor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = [msg_frame(seq) for seq in (1, 2, 3)]
    hellos: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        hellos.append(hello)
        await ws.send(
            json.dumps(
                {
                    "type": "welcome",
                    "user_id": "1",
                    "device_id": "d1",
                    "server_id": "s",
                    "heartbeat_s": 5,
                    "cursor": "3",
                }
            )
        )
        for frame in inbox[int(hello["cursor"]) :]:
            await ws.send(json.dumps(frame))
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/ws"
        path = tmp_path / "ada.json"
        make_state(path, url)
        async with asyncio.timeout(10):
            assert await run_listen(parse("listen", "--state", str(path), "--count", "2")) == 0
            assert ChatState.load(path).cursor == 2
            assert await run_listen(parse("listen", "--state", str(path), "--count", "1")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["type"], line["seq"], line["body"]) for line in lines] == [
        ("msg", "1", "m1"),
        ("msg", "2", "m2"),
        ("msg", "3", "m3"),
    ]
    assert [h["cursor"] for h in hellos] == ["0", "2"]
    assert ChatState.load(path).cursor == 3


async def test_send_prints_the_ack_and_does_not_move_the_cursor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sent: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "welcome",
                    "user_id": "1",
                    "device_id": "d1",
                    "server_id": "s",
                    "heartbeat_s": 5,
                    "cursor": "9",
                }
            )
        )
        await ws.send(json.dumps(msg_frame(9)))  # backlog the send command ignores
        frame = json.loads(await ws.recv())
        sent.append(frame)
        await ws.send(
            json.dumps(
                {
                    "type": "ack",
                    "client_msg_id": frame["client_msg_id"],
                    "message_id": "555",
                    "channel_id": "dm:1:2",
                    "ts": 1,
                }
            )
        )
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass

    async with serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/ws"
        path = tmp_path / "ada.json"
        make_state(path, url, cursor=8)
        args = parse("send", "--state", str(path), "--to", "2", "--client-msg-id", "k1", "hey")
        async with asyncio.timeout(10):
            assert await run_send(args) == 0
    assert sent == [{"type": "send", "client_msg_id": "k1", "body": "hey", "to": "2"}]
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "type": "ack",
        "client_msg_id": "k1",
        "message_id": "555",
        "channel_id": "dm:1:2",
        "ts": 1,
    }
    assert ChatState.load(path).cursor == 8


def test_handler_reports_tidings_errors_on_stderr_with_exit_code_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("listen", "--state", str(tmp_path / "missing.json"))
    assert args.handler(args) == 1
    assert "tidings client login" in capsys.readouterr().err


# -- account commands (sessions, devices, friends, blocks, invites) ---------------------------


def recording_api(
    answers: dict[tuple[str, str], httpx.Response], seen: list[httpx.Request]
) -> ApiClient:
    def route(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[(request.method, request.url.path)]

    state = ChatState.load(find_state_path(None, None))
    return ApiClient(state.url, session=state.session, transport=httpx.MockTransport(route))


async def test_logout_ends_the_session_and_deletes_the_state_file(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_home / "ada.json"
    make_state(path, "ws://x/v1/ws")
    seen: list[httpx.Request] = []
    api = recording_api({("DELETE", "/v1/sessions/current"): httpx.Response(204)}, seen)
    assert await run_logout(parse("logout"), api) == 0
    assert [(r.method, r.url.path, r.headers["authorization"]) for r in seen] == [
        ("DELETE", "/v1/sessions/current", "Bearer tok")
    ]
    assert not path.exists()
    assert json.loads(capsys.readouterr().out) == {"logged_out": "d1", "state": str(path)}


async def test_befriend_by_username_looks_the_user_up_first(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_state(config_home / "ada.json", "ws://x/v1/ws")
    seen: list[httpx.Request] = []
    answers = {
        ("GET", "/v1/users"): httpx.Response(
            200, json={"user_id": "4611686018427387904", "username": "bo", "display_name": None}
        ),
        ("PUT", "/v1/friends/4611686018427387904"): httpx.Response(204),
        ("PUT", "/v1/friends/7"): httpx.Response(204),
    }
    assert await run_account(parse("befriend", "bo"), recording_api(answers, seen)) == 0
    assert await run_account(parse("befriend", "7"), recording_api(answers, seen)) == 0
    assert [(r.method, r.url.path) for r in seen] == [
        ("GET", "/v1/users"),
        ("PUT", "/v1/friends/4611686018427387904"),
        ("PUT", "/v1/friends/7"),
    ]
    assert seen[0].url.params["username"] == "bo"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"friend_request": "4611686018427387904"}, {"friend_request": "7"}]


async def test_friends_lists_friends_and_requests_one_line_each(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_state(config_home / "ada.json", "ws://x/v1/ws")

    def person(uid: str, name: str) -> dict[str, Any]:
        return {"user_id": uid, "username": name, "display_name": None, "presence": None}

    answers = {
        ("GET", "/v1/friends"): httpx.Response(200, json={"friends": [person("2", "bo")]}),
        ("GET", "/v1/friends/requests"): httpx.Response(
            200, json={"incoming": [person("3", "cy")], "outgoing": [person("4", "di")]}
        ),
    }
    assert await run_account(parse("friends"), recording_api(answers, [])) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["relation"], line["username"]) for line in lines] == [
        ("friend", "bo"),
        ("incoming", "cy"),
        ("outgoing", "di"),
    ]


def test_a_refused_token_says_to_log_in_again(
    config_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_state(config_home / "ada.json", "ws://x/v1/ws")

    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "gone"}})

    real = httpx.AsyncClient.__init__

    def with_mock(self: httpx.AsyncClient, *a: Any, **kw: Any) -> None:
        kw["transport"] = httpx.MockTransport(route)
        real(self, *a, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", with_mock)
    args = parse("devices")
    assert args.handler(args) == 1
    assert "log in again" in capsys.readouterr().err
