"""ApiClient against an in-memory HTTP transport: requests as the contract spells them,
answers read into typed values, errors raised from the error body."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tidings.client import (
    ApiClient,
    Device,
    FriendRequests,
    Group,
    Invite,
    Message,
    Profile,
    Session,
    TidingsApiError,
    TidingsConnectionError,
    TidingsProtocolError,
    User,
)

Route = Callable[[httpx.Request], httpx.Response]
SESSION = {
    "access_token": "tok-1",
    "expires_at": 1_800_000_000_000,
    "user_id": "11",
    "device_id": "21",
    "chat_url": "/v1/ws",
}


def api(route: Route, seen: list[httpx.Request] | None = None, **kwargs: object) -> ApiClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return route(request)

    return ApiClient("http://chat.test:8080/", transport=httpx.MockTransport(handler), **kwargs)  # type: ignore[arg-type]


async def test_login_keeps_the_session_and_sends_the_token_afterwards() -> None:
    seen: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/sessions":
            return httpx.Response(201, json=SESSION)
        return httpx.Response(200, json={"chat_url": "wss://chat-2.test/v1/ws"})

    async with api(route, seen) as client:
        session = await client.login("ada", "pw-123456", device_id="21", platform="web")
        assert await client.discover() == "wss://chat-2.test/v1/ws"
    assert session.chat_url == "ws://chat.test:8080/v1/ws"  # relative url resolved, ws scheme
    assert (client.token, client.user_id, client.device_id) == ("tok-1", "11", "21")
    assert json.loads(seen[0].content) == {
        "username": "ada",
        "password": "pw-123456",
        "platform": "web",
        "device_id": "21",
    }
    assert "authorization" not in seen[0].headers
    assert seen[1].headers["authorization"] == "Bearer tok-1"


async def test_error_body_becomes_tidings_api_error() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": {"code": "username_taken", "message": "taken"}})

    async with api(route) as client:
        with pytest.raises(TidingsApiError) as caught:
            await client.signup("ada", "pw-123456")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        409,
        "username_taken",
        "taken",
    )
    assert not caught.value.retriable


async def test_a_busy_answer_says_when_to_come_back() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "unavailable", "message": "saturated"}, "after_ms": 1200}
        return httpx.Response(503, json=body, headers={"Retry-After": "2"})

    async with api(route) as client:
        with pytest.raises(TidingsApiError) as caught:
            await client.discover()
    assert (caught.value.status, caught.value.after_ms) == (503, 1200)
    assert caught.value.retriable


async def test_error_without_a_contract_body_still_raises_with_the_status() -> None:
    async with api(lambda r: httpx.Response(502, text="<html>bad gateway</html>")) as client:
        with pytest.raises(TidingsApiError) as caught:
            await client.me()
    assert caught.value.status == 502
    assert caught.value.code == "http_502"
    assert caught.value.retriable


async def test_network_failure_is_a_connection_error() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with api(route) as client:
        with pytest.raises(TidingsConnectionError):
            await client.friends()


async def test_paths_params_and_typed_answers() -> None:
    seen: list[httpx.Request] = []
    message = {
        "message_id": "9",
        "channel_id": "dm:1:2",
        "sender_id": "1",
        "sender_device_id": "3",
        "client_msg_id": "c",
        "body": "hi",
        "ts": 5,
    }
    answers: dict[tuple[str, str], httpx.Response] = {
        ("POST", "/v1/users"): httpx.Response(
            201, json={"user_id": "1", "username": "ada", "display_name": "Ada"}
        ),
        ("GET", "/v1/users/2"): httpx.Response(
            200,
            json={
                "user_id": "2",
                "username": "bo",
                "display_name": "Bo",
                "presence": {"status": "online", "last_seen": 7},
            },
        ),
        ("PUT", "/v1/friends/2"): httpx.Response(204),
        ("POST", "/v1/groups"): httpx.Response(
            201, json={"channel_id": "g:5", "name": "g", "owner_id": "1", "member_ids": ["1", "2"]}
        ),
        ("PUT", "/v1/groups/g:5/members/3"): httpx.Response(204),
        ("GET", "/v1/channels/dm:1:2/messages"): httpx.Response(200, json={"messages": [message]}),
        ("PUT", "/v1/devices/21/push"): httpx.Response(204),
    }

    def route(request: httpx.Request) -> httpx.Response:
        return answers[(request.method, request.url.path)]

    async with api(route, seen, token="t") as client:
        assert await client.signup("ada", "pw-123456", display_name="Ada") == User(
            "1", "ada", "Ada"
        )
        profile = await client.get_user("2")
        assert isinstance(profile, Profile) and profile.presence is not None
        assert profile.presence.status == "online"
        await client.add_friend("2")
        group = await client.create_group("g", ["2"])
        assert group == Group("g:5", "g", "1", ("1", "2"))
        await client.add_group_member("g:5", "3")
        history = await client.history("dm:1:2", before="100", limit=50)
        assert history == [Message("9", "dm:1:2", "1", "3", "c", "hi", 5)]
        await client.set_push_token("webhook", "https://hook", device_id="21")
    assert dict(seen[5].url.params) == {"before": "100", "limit": "50"}
    assert json.loads(seen[6].content) == {"provider": "webhook", "token": "https://hook"}


async def test_an_answer_missing_a_field_is_a_protocol_error() -> None:
    async with api(lambda r: httpx.Response(200, json={"user_id": "1"})) as client:
        with pytest.raises(TidingsProtocolError):
            await client.me()


def profile(user_id: str, username: str, presence: object = None) -> dict[str, object]:
    return {"user_id": user_id, "username": username, "display_name": None, "presence": presence}


async def test_sessions_devices_friends_blocks_and_invites() -> None:
    """The issue #15 calls: paths and methods as the contract spells them, typed answers."""
    seen: list[httpx.Request] = []
    group = {"channel_id": "g:5", "name": "g", "owner_id": "1", "member_ids": ["1", "2"]}
    answers: dict[tuple[str, str], httpx.Response] = {
        ("GET", "/v1/devices"): httpx.Response(
            200,
            json={
                "devices": [
                    {
                        "device_id": "21",
                        "name": "Web browser",
                        "platform": "web",
                        "push": None,
                        "created_at": 1000,
                        "last_seen": None,
                        "current": True,
                    },
                    {
                        "device_id": "4611686018427387905",
                        "name": "Phone",
                        "platform": "ios",
                        "push": "apns",
                        "created_at": 2000,
                        "last_seen": 120_000,
                        "current": False,
                    },
                ]
            },
        ),
        ("DELETE", "/v1/devices/4611686018427387905"): httpx.Response(204),
        ("GET", "/v1/users"): httpx.Response(
            200, json={"user_id": "4611686018427387904", "username": "bo", "display_name": "Bo"}
        ),
        ("PUT", "/v1/friends/2"): httpx.Response(204),
        ("DELETE", "/v1/friends/3"): httpx.Response(204),
        ("GET", "/v1/friends/requests"): httpx.Response(
            200, json={"incoming": [profile("3", "cy")], "outgoing": [profile("2", "bo")]}
        ),
        ("PUT", "/v1/blocks/3"): httpx.Response(204),
        ("DELETE", "/v1/blocks/3"): httpx.Response(204),
        ("GET", "/v1/blocks"): httpx.Response(200, json={"blocked": [profile("3", "cy")]}),
        ("POST", "/v1/groups"): httpx.Response(201, json={**group, "invited": ["3"]}),
        ("PUT", "/v1/groups/g:5/members/2"): httpx.Response(204),
        ("PUT", "/v1/groups/g:5/members/3"): httpx.Response(202, json={"invited": True}),
        ("GET", "/v1/invites"): httpx.Response(
            200,
            json={
                "invites": [
                    {
                        "channel_id": "g:7",
                        "name": "trip",
                        "inviter_id": "3",
                        "inviter": profile("3", "cy"),
                        "created_at": 9,
                    }
                ]
            },
        ),
        ("POST", "/v1/invites/g:7/accept"): httpx.Response(
            200, json={**group, "channel_id": "g:7"}
        ),
        ("DELETE", "/v1/invites/g:8"): httpx.Response(204),
        ("DELETE", "/v1/sessions/current"): httpx.Response(204),
    }

    def route(request: httpx.Request) -> httpx.Response:
        return answers[(request.method, request.url.path)]

    async with api(route, seen, session=Session("tok", 1, "1", "21", "ws://x")) as client:
        devices = await client.list_devices()
        assert devices[0] == Device("21", "Web browser", "web", None, 1000, None, True)
        assert devices[1].device_id == "4611686018427387905"  # 62-bit ids stay exact
        assert (devices[1].push, devices[1].last_seen, devices[1].current) == (
            "apns",
            120_000,
            False,
        )
        await client.unlink_device("4611686018427387905")
        found = await client.find_user("bo")
        assert found == User("4611686018427387904", "bo", "Bo")
        assert dict(seen[-1].url.params) == {"username": "bo"}
        await client.friend_request("2")
        await client.accept_friend("2")
        await client.decline_friend("3")
        await client.withdraw_friend_request("3")
        requests = await client.friend_requests()
        assert isinstance(requests, FriendRequests)
        assert [p.username for p in requests.incoming] == ["cy"]
        assert [p.username for p in requests.outgoing] == ["bo"]
        await client.block("3")
        await client.unblock("3")
        assert [p.user_id for p in await client.blocked()] == ["3"]
        created = await client.create_group("g", ["2", "3"])
        assert created.invited == ("3",)
        assert await client.add_group_member("g:5", "2") == "added"
        assert await client.add_group_member("g:5", "3") == "invited"
        invites = await client.invites()
        assert invites == [Invite("g:7", "trip", "3", Profile("3", "cy", None, None), 9)]
        joined = await client.accept_invite("g:7")
        assert joined.channel_id == "g:7" and joined.invited == ()
        await client.decline_invite("g:8")
        await client.logout()
        assert (client.token, client.session) == (None, None)
    assert all(r.headers["authorization"] == "Bearer tok" for r in seen)
    assert [f"{r.method} {r.url.path}" for r in seen if r.method != "GET"] == [
        "DELETE /v1/devices/4611686018427387905",
        "PUT /v1/friends/2",
        "PUT /v1/friends/2",
        "DELETE /v1/friends/3",
        "DELETE /v1/friends/3",
        "PUT /v1/blocks/3",
        "DELETE /v1/blocks/3",
        "POST /v1/groups",
        "PUT /v1/groups/g:5/members/2",
        "PUT /v1/groups/g:5/members/3",
        "POST /v1/invites/g:7/accept",
        "DELETE /v1/invites/g:8",
        "DELETE /v1/sessions/current",
    ]


async def test_unknown_username_and_rate_limited_look_ups_raise_with_their_codes() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.params["username"] == "nobody":
            return httpx.Response(404, json={"error": {"code": "unknown_user", "message": "no"}})
        body = {"error": {"code": "rate_limited", "message": "slow down"}, "after_ms": 3000}
        return httpx.Response(429, json=body, headers={"Retry-After": "3"})

    async with api(route, token="t") as client:
        with pytest.raises(TidingsApiError) as unknown:
            await client.find_user("nobody")
        with pytest.raises(TidingsApiError) as limited:
            await client.find_user("someone")
    assert (unknown.value.status, unknown.value.code, unknown.value.retriable) == (
        404,
        "unknown_user",
        False,
    )
    assert (limited.value.code, limited.value.retriable) == ("rate_limited", True)
