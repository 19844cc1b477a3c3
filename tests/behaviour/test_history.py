"""History, the channel list and search over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from ._harness import MESSAGE_FIELDS, Account, Clients, dm_id, error_code, make_group, new_account


def assert_message(message: dict[str, Any]) -> None:
    assert set(MESSAGE_FIELDS) <= set(message), message
    for key in ("message_id", "sender_id", "sender_device_id"):
        assert isinstance(message[key], str) and message[key].isdigit()
    assert isinstance(message["ts"], int)


async def history(
    http: httpx.AsyncClient, who: Account, channel_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = await http.get(
        f"/v1/channels/{channel_id}/messages", params=params, headers=who.auth
    )
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def test_history_is_newest_first_and_pages_with_before(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1 = await clients.connect(alice)
    acks = [await a1.send_and_ack(f"line {i}", to=bob) for i in range(7)]
    ids = [a["message_id"] for a in acks]
    channel = dm_id(alice, bob)

    everything = await history(http, bob, channel)
    assert [m["message_id"] for m in everything] == ids[::-1]
    assert [m["body"] for m in everything] == [f"line {i}" for i in range(7)][::-1]
    for message in everything:
        assert_message(message)
        assert message["channel_id"] == channel
        assert message["sender_id"] == alice.user_id

    newest = await history(http, bob, channel, limit=3)
    assert [m["message_id"] for m in newest] == ids[6:3:-1]
    older = await history(http, bob, channel, limit=3, before=newest[-1]["message_id"])
    assert [m["message_id"] for m in older] == ids[3:0:-1]
    oldest = await history(http, bob, channel, limit=3, before=older[-1]["message_id"])
    assert [m["message_id"] for m in oldest] == ids[:1]
    assert await history(http, bob, channel, before=ids[0]) == []
    # Both members see the same history.
    assert await history(http, alice, channel) == everything


async def test_history_limit_is_bounded(http: httpx.AsyncClient, clients: Clients) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    channel = dm_id(alice, bob)
    for limit in ("0", "201", "-1", "many"):
        response = await http.get(
            f"/v1/channels/{channel}/messages", params={"limit": limit}, headers=alice.auth
        )
        assert response.status_code == 422, (limit, response.text)
        assert error_code(response) == "invalid_request"
    assert await history(http, alice, channel, limit=200) == []


async def test_history_of_a_channel_not_mine_is_403(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob, eve = [await new_account(http, n) for n in ("alice", "bob", "eve")]
    a1 = await clients.connect(alice)
    await a1.send_and_ack("secret", to=bob)
    response = await http.get(f"/v1/channels/{dm_id(alice, bob)}/messages", headers=eve.auth)
    assert response.status_code == 403
    assert error_code(response) == "not_a_member"


async def test_channels_lists_dm_and_group_with_last_message(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob, carol = [await new_account(http, n) for n in ("alice", "bob", "carol")]
    group = await make_group(http, alice, [bob, carol], name="trio")
    a1 = await clients.connect(alice)
    await a1.send_and_ack("first", to=bob)
    last_dm = await a1.send_and_ack("second", to=bob)

    response = await http.get("/v1/channels", headers=alice.auth)
    assert response.status_code == 200
    channels = {c["channel_id"]: c for c in response.json()["channels"]}
    assert set(channels) == {dm_id(alice, bob), group["channel_id"]}
    dm = channels[dm_id(alice, bob)]
    assert dm["kind"] == "dm"
    assert sorted(dm["member_ids"]) == sorted([alice.user_id, bob.user_id])
    assert dm["last_message_id"] == last_dm["message_id"]
    grp = channels[group["channel_id"]]
    assert grp["kind"] == "group"
    assert grp["name"] == "trio"
    assert sorted(grp["member_ids"]) == sorted([alice.user_id, bob.user_id, carol.user_id])
    assert grp["unread"] == 0  # only the group's own events (joins) so far

    last_group = await a1.send_and_ack("hello trio", channel_id=group["channel_id"])
    channels = {
        c["channel_id"]: c
        for c in (await http.get("/v1/channels", headers=carol.auth)).json()["channels"]
    }
    assert set(channels) == {group["channel_id"]}  # carol is not in the alice-bob dm
    assert channels[group["channel_id"]]["last_message_id"] == last_group["message_id"]


async def test_search_finds_words_only_in_my_channels(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    word = f"zebra{uuid.uuid4().hex[:10]}"
    alice, bob, eve, mallory = [await new_account(http, n) for n in ("al", "bo", "ev", "ma")]
    a1 = await clients.connect(alice)
    e1 = await clients.connect(eve)
    mine = await a1.send_and_ack(f"look, a {word} in the park", to=bob)
    await a1.send_and_ack("nothing to see here", to=bob)
    theirs = await e1.send_and_ack(f"another {word} elsewhere", to=mallory)

    async def search(who: Account, **params: str) -> list[dict[str, Any]]:
        response = await http.get("/v1/search", params=params, headers=who.auth)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["messages"]
        return found

    for who in (alice, bob):
        found = await search(who, q=word)
        assert [m["message_id"] for m in found] == [mine["message_id"]]
        assert_message(found[0])
        assert found[0]["body"] == f"look, a {word} in the park"
    assert [m["message_id"] for m in await search(eve, q=word)] == [theirs["message_id"]]
    # Naming someone else's channel finds nothing either.
    assert await search(eve, q=word, channel_id=dm_id(alice, bob)) == []
    assert [m["message_id"] for m in await search(alice, q=word, channel_id=dm_id(alice, bob))] == [
        mine["message_id"]
    ]
    assert await search(alice, q=f"{word}nothere") == []


async def test_search_needs_a_query(http: httpx.AsyncClient) -> None:
    me = await new_account(http, "s")
    for params in ({}, {"q": ""}):
        response = await http.get("/v1/search", params=params, headers=me.auth)
        assert response.status_code == 422
        assert error_code(response) == "invalid_request"
