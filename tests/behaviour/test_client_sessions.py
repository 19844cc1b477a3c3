"""The bundled client (`tidings.client`) against a real deployment: logging out,
unlinking a device and logging a device in again end the session, and an open
ChatConnection stops with SessionEnded (close 4001) instead of reconnecting; the CLI's
befriend, friends, devices and logout."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tidings.client import (
    ApiClient,
    ChatConnection,
    SessionEnded,
    TidingsApiError,
    TidingsSessionEndedError,
    add_chat_commands,
)
from tidings.client._cli import run_account, run_login, run_logout, run_signup

from ._harness import PASSWORD, Deployment, unique_name

ENDED_WITHIN_S = 10.0  # a cluster's chat servers learn it from the directory's change log

Opener = Callable[..., Coroutine[Any, Any, ApiClient]]


@pytest.fixture
async def open_api(server: Deployment) -> AsyncIterator[Opener]:
    """open_api(username=None, **login) signs a user up (when new) and logs a device in."""
    opened: list[ApiClient] = []

    async def open_client(username: str | None = None, **login: Any) -> ApiClient:
        api = ApiClient(server.api_urls[len(opened) % len(server.api_urls)])
        opened.append(api)
        if username is None:
            username = unique_name("cli")
            await api.signup(username, PASSWORD)
        await api.login(username, PASSWORD, **login)
        return api

    yield open_client
    for api in opened:
        await api.aclose()


async def ended(conn: ChatConnection) -> BaseException:
    """Read the connection's events until it fails; the error that ended it."""
    with pytest.raises(TidingsSessionEndedError) as caught:
        async with asyncio.timeout(ENDED_WITHIN_S):
            async for _ in conn.events():
                pass
    return caught.value


async def test_logout_ends_the_session_and_its_connection(open_api: Opener) -> None:
    ada = await open_api(device_name="laptop", platform="desktop")
    old_token = ada.token
    assert old_token is not None
    async with ada.chat() as conn:
        assert conn.welcome is not None and conn.welcome.device_id == ada.device_id
        await ada.logout()
        assert (ada.token, ada.session) == (None, None)
        error = await ended(conn)
        assert isinstance(error, SessionEnded) and not error.retriable
        with pytest.raises(TidingsSessionEndedError):
            await conn.send("too late", to="1")
    async with ApiClient(ada.base_url, token=old_token) as stale:
        with pytest.raises(TidingsApiError) as refused:
            await stale.me()
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


async def test_unlinking_a_device_ends_its_connection(open_api: Opener) -> None:
    laptop = await open_api(device_name="laptop", platform="desktop")
    me = await laptop.me()
    phone = await open_api(me.username, device_name="phone", platform="ios")
    assert phone.device_id is not None and laptop.device_id is not None

    devices = await laptop.list_devices()
    assert {d.device_id for d in devices} == {laptop.device_id, phone.device_id}
    assert [d.device_id for d in devices if d.current] == [laptop.device_id]
    by_id = {d.device_id: d for d in devices}
    assert (by_id[phone.device_id].name, by_id[phone.device_id].platform) == ("phone", "ios")

    async with phone.chat() as conn:
        await laptop.unlink_device(phone.device_id)
        await ended(conn)
    with pytest.raises(TidingsApiError) as refused:
        await phone.me()
    assert refused.value.status == 401
    with pytest.raises(TidingsApiError) as again:
        await laptop.unlink_device(phone.device_id)
    assert (again.value.status, again.value.code) == (404, "not_found")
    assert [d.device_id for d in await laptop.list_devices()] == [laptop.device_id]


async def test_a_new_login_of_the_same_device_supersedes_the_old_token(
    open_api: Opener,
) -> None:
    first = await open_api()
    me = await first.me()
    async with first.chat() as conn:
        second = await open_api(me.username, device_id=first.device_id)
        assert second.device_id == first.device_id and second.token != first.token
        error = await ended(conn)
    assert "log in again" in str(error)
    assert (await second.me()).user_id == me.user_id  # the newer token works


async def test_a_connection_started_with_an_ended_token_fails_at_once(open_api: Opener) -> None:
    ada = await open_api()
    assert ada.session is not None and ada.token is not None
    session, token = ada.session, ada.token
    await ada.logout()
    conn = ChatConnection(session.chat_url, token)
    with pytest.raises(TidingsSessionEndedError):
        async with asyncio.timeout(ENDED_WITHIN_S):
            await conn.start()
    await conn.aclose()


async def test_the_cli_befriends_by_username_and_logs_out(
    server: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tidings client login|befriend|friends|devices|logout` against the deployment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("TIDINGS_PASSWORD", PASSWORD)
    url = server.api_urls[0]
    ada, bo = unique_name("cla"), unique_name("clb")
    for name in (ada, bo):
        assert await run_signup(parse("signup", "--url", url, name)) == 0
        assert await run_login(parse("login", "--url", url, name)) == 0
    capsys.readouterr()

    assert await run_account(parse("befriend", "--user", ada, bo)) == 0
    assert await run_account(parse("befriend", "--user", bo, ada)) == 0  # accepts
    assert await run_account(parse("friends", "--user", ada)) == 0
    assert await run_account(parse("devices", "--user", ada)) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    friends = [line for line in lines if "relation" in line]
    assert [(f["relation"], f["username"]) for f in friends] == [("friend", bo)]
    devices = [line for line in lines if "device_id" in line and "relation" not in line]
    assert [(d["name"], d["platform"], d["current"]) for d in devices] == [
        ("tidings-cli", "desktop", True)
    ]

    state_path = tmp_path / "config" / "tidings" / f"{ada}.json"
    token = json.loads(state_path.read_text())["access_token"]
    assert await run_logout(parse("logout", "--user", ada)) == 0
    assert not state_path.exists()
    async with ApiClient(url, token=token) as stale:
        with pytest.raises(TidingsApiError) as refused:
            await stale.me()
    assert refused.value.status == 401


async def test_the_cli_publishes_keys_and_both_sides_see_one_safety_number(
    server: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tidings client keys` and `tidings client safety-number`: the keys stay in a file
    only the user reads, and the two sides compute the same number."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("TIDINGS_PASSWORD", PASSWORD)
    url = server.api_urls[0]
    ada, bo = unique_name("kya"), unique_name("kyb")
    for name in (ada, bo):
        assert await run_signup(parse("signup", "--url", url, name)) == 0
        assert await run_login(parse("login", "--url", url, name)) == 0
    assert await run_account(parse("befriend", "--user", ada, bo)) == 0
    assert await run_account(parse("befriend", "--user", bo, ada)) == 0
    capsys.readouterr()
    for name in (ada, bo):
        assert await run_account(parse("keys", "--user", name)) == 0
        keys_file = tmp_path / "config" / "tidings" / f"{name}.keys.json"
        assert keys_file.stat().st_mode & 0o777 == 0o600
    published = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["one_time_prekeys"] for p in published] == [50, 50]
    assert await run_account(parse("safety-number", "--user", ada, bo)) == 0
    assert await run_account(parse("safety-number", "--user", bo, ada)) == 0
    (ada_sees,), (bo_sees,) = ([json.loads(line)] for line in capsys.readouterr().out.splitlines())
    assert ada_sees["safety_number"] == bo_sees["safety_number"]
    assert len(ada_sees["safety_number"].replace(" ", "")) == 60
    # Looking at keys takes no one-time prekey.
    token = json.loads((tmp_path / "config" / "tidings" / f"{bo}.json").read_text())
    async with ApiClient(url, token=token["access_token"]) as http:
        counted = await http._request("GET", "/v1/keys/count")
    assert counted == {"one_time_prekeys": 50}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tidings")
    add_chat_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["client", *argv])
