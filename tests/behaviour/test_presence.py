"""Presence: online on connect, offline with last_seen after the window, no flapping.

The test servers use a presence window of PRESENCE_OFFLINE_AFTER_S seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from ._harness import (
    PRESENCE_OFFLINE_AFTER_S,
    Account,
    Clients,
    WsClient,
    another_device,
    befriend,
    make_group,
    new_account,
)

SLACK_S = 1.5  # scheduling slack on top of the window


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def presence_of(conn: WsClient, user: Account, within: float) -> dict[str, Any]:
    return await conn.recv_until("presence", within, user_id=user.user_id)


async def stored_presence(
    http: httpx.AsyncClient, viewer: Account, user: Account, status: str
) -> dict[str, Any]:
    """`GET /v1/users/{id}` until it shows ``status`` (it is written just after fan-out)."""
    deadline = time.monotonic() + 3
    while True:
        response = await http.get(f"/v1/users/{user.user_id}", headers=viewer.auth)
        assert response.status_code == 200
        presence: dict[str, Any] = response.json()["presence"]
        if presence["status"] == status or time.monotonic() > deadline:
            assert presence["status"] == status, presence
            return presence
        await asyncio.sleep(0.05)


async def test_friend_sees_online_when_user_connects(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    watcher, user = await new_account(http, "watch"), await new_account(http, "user")
    await befriend(http, watcher, user)
    w = await clients.connect(watcher)
    before = now_ms()
    await clients.connect(user)
    frame = await presence_of(w, user, within=3)
    assert frame["status"] == "online"
    assert isinstance(frame["last_seen"], int)
    assert before - 1000 <= frame["last_seen"] <= now_ms() + 1000
    shown = await stored_presence(http, watcher, user, "online")
    assert isinstance(shown["last_seen"], int)


async def test_presence_goes_both_ways_of_a_friendship(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    watcher, user = await new_account(http, "watch"), await new_account(http, "user")
    await befriend(http, user, watcher)  # the user asked, the watcher accepted
    w = await clients.connect(watcher)
    await clients.connect(user)
    assert (await presence_of(w, user, within=3))["status"] == "online"


async def test_group_peer_sees_presence(http: httpx.AsyncClient, clients: Clients) -> None:
    peer, user = await new_account(http, "peer"), await new_account(http, "user")
    await make_group(http, peer, [user], name="p")
    p = await clients.connect(peer)
    await clients.connect(user)
    assert (await presence_of(p, user, within=3))["status"] == "online"


async def test_stranger_sees_no_presence(http: httpx.AsyncClient, clients: Clients) -> None:
    stranger, friend, user = [await new_account(http, n) for n in ("str", "frn", "user")]
    await befriend(http, friend, user)
    s = await clients.connect(stranger)
    f = await clients.connect(friend)
    await clients.connect(user)
    await presence_of(f, user, within=3)  # by now the fan-out is done
    await s.heartbeat()
    assert s.pending("presence") == []


async def test_offline_with_last_seen_after_last_device_disconnects(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    watcher, user = await new_account(http, "watch"), await new_account(http, "user")
    phone = await another_device(http, user)
    await befriend(http, watcher, user)
    w = await clients.connect(watcher)
    u1 = await clients.connect(user)
    u2 = await clients.connect(phone)
    assert (await presence_of(w, user, within=3))["status"] == "online"

    await u1.close()  # one device left: still online
    await asyncio.sleep(0.2)
    closed_at = now_ms()
    await u2.close()
    frame = await presence_of(w, user, within=PRESENCE_OFFLINE_AFTER_S + SLACK_S)
    elapsed_ms = now_ms() - closed_at
    assert frame["status"] == "offline", "went offline although a device was still connected"
    assert closed_at - 1000 <= frame["last_seen"] <= closed_at + 1000
    assert elapsed_ms <= (PRESENCE_OFFLINE_AFTER_S + SLACK_S) * 1000
    shown = await stored_presence(http, watcher, user, "offline")
    assert shown["last_seen"] == frame["last_seen"]


async def test_silent_device_goes_offline(http: httpx.AsyncClient, clients: Clients) -> None:
    watcher, user = await new_account(http, "watch"), await new_account(http, "user")
    await befriend(http, watcher, user)
    w = await clients.connect(watcher)
    connected_at = now_ms()
    u = await clients.connect(user, keepalive=False)  # never sends another frame
    assert (await presence_of(w, user, within=3))["status"] == "online"
    frame = await presence_of(w, user, within=PRESENCE_OFFLINE_AFTER_S + SLACK_S)
    assert frame["status"] == "offline"
    assert connected_at - 1000 <= frame["last_seen"] <= connected_at + 1000
    await u.wait_closed(within=1)  # the server let go of the silent socket


async def test_quick_reconnect_causes_no_offline_online_pair(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    watcher, user = await new_account(http, "watch"), await new_account(http, "user")
    await befriend(http, watcher, user)
    w = await clients.connect(watcher)
    u = await clients.connect(user)
    assert (await presence_of(w, user, within=3))["status"] == "online"

    await u.close()
    u = await clients.connect(user)  # back well inside the window
    await asyncio.sleep(PRESENCE_OFFLINE_AFTER_S + 0.5)  # the window has long passed
    assert [f for f in w.pending("presence") if f["user_id"] == user.user_id] == []

    # Leaving for good: the next presence frame is the offline, not an online.
    await u.close()
    frame = await presence_of(w, user, within=PRESENCE_OFFLINE_AFTER_S + SLACK_S)
    assert frame["status"] == "offline"


async def test_heartbeats_keep_a_device_online_whatever_their_json_spelling(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    """The compact heartbeat (every client library's) takes a fast path: it must be
    answered and count as activity exactly like any other spelling."""
    user = await new_account(http, "beat")
    conn = await clients.connect(user)
    spellings = ['{"type":"heartbeat"}', '{"type": "heartbeat"}', '{ "type" : "heartbeat" }']
    deadline = time.monotonic() + 2 * PRESENCE_OFFLINE_AFTER_S + SLACK_S
    while time.monotonic() < deadline:
        for spelling in spellings:
            before = now_ms()
            await conn.send_raw(spelling)
            ack = await conn.recv_until("heartbeat_ack", 3)
            assert before - 1_000 <= ack["ts"] <= now_ms() + 1_000
        await asyncio.sleep(PRESENCE_OFFLINE_AFTER_S / 4)
    # Past twice the presence window, only heartbeats said: still served, not closed.
    assert (await conn.heartbeat())["type"] == "heartbeat_ack"
    response = await http.get(f"/v1/users/{user.user_id}", headers=user.auth)
    assert response.status_code == 200
    assert response.json()["presence"]["status"] == "online"
