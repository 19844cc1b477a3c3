"""1:1 messages: live delivery, offline catch-up, multi-device, idempotent resend."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import httpx
import pytest

from ._harness import (
    MESSAGE_FIELDS,
    Account,
    Clients,
    WsClient,
    another_device,
    assert_msg_frame,
    dm_id,
    new_account,
)


class Pair(NamedTuple):
    alice: Account
    bob: Account
    a1: WsClient
    b1: WsClient


@pytest.fixture
async def online_pair(http: httpx.AsyncClient, clients: Clients) -> Pair:
    """Alice and Bob, new accounts, each with one device connected (a1 and b1)."""
    alice = await new_account(http, "alice")
    bob = await new_account(http, "bob")
    return Pair(alice, bob, await clients.connect(alice), await clients.connect(bob))


async def test_message_to_online_recipient_is_acked_and_delivered(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice = await new_account(http, "alice")
    alice_tablet = await another_device(http, alice)
    bob = await new_account(http, "bob")
    a1 = await clients.connect(alice)
    a2 = await clients.connect(alice_tablet)
    b1 = await clients.connect(bob)

    client_msg_id = await a1.send_msg("hello bob", to=bob)
    ack = await a1.recv_until("ack", client_msg_id=client_msg_id)
    assert ack["channel_id"] == dm_id(alice, bob)
    assert ack["message_id"].isdigit()
    assert isinstance(ack["ts"], int)

    got = await b1.recv_until("msg")
    assert_msg_frame(got)
    assert got["seq"] == "1"  # bob's first inbox entry
    assert got["message_id"] == ack["message_id"]
    assert got["channel_id"] == dm_id(alice, bob)
    assert got["sender_id"] == alice.user_id
    assert got["sender_device_id"] == alice.device_id
    assert got["client_msg_id"] == client_msg_id
    assert got["body"] == "hello bob"
    assert got["ts"] == ack["ts"]

    # The sending device gets its own message (its cursor stays gapless), and so does
    # the sender's other device; both with the same seq in alice's inbox.
    own = await a1.recv_until("msg", message_id=ack["message_id"])
    other = await a2.recv_until("msg", message_id=ack["message_id"])
    assert_msg_frame(own)
    assert own["seq"] == other["seq"] == "1"
    assert {k: own[k] for k in MESSAGE_FIELDS} == {k: got[k] for k in MESSAGE_FIELDS}
    assert {k: other[k] for k in MESSAGE_FIELDS} == {k: got[k] for k in MESSAGE_FIELDS}


async def test_reply_in_the_dm_channel_by_channel_id(online_pair: Pair) -> None:
    _, bob, a1, b1 = online_pair
    first = await a1.send_and_ack("ping", to=bob)
    await b1.recv_until("msg", message_id=first["message_id"])
    reply = await b1.send_and_ack("pong", channel_id=first["channel_id"])
    assert reply["channel_id"] == first["channel_id"]
    got = await a1.recv_until("msg", message_id=reply["message_id"])
    assert got["body"] == "pong"
    assert got["seq"] == "2"  # alice: her own ping, then bob's pong
    assert int(reply["message_id"]) > int(first["message_id"])


async def test_offline_recipient_catches_up_in_order_then_synced(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice = await new_account(http, "alice")
    bob = await new_account(http, "bob")  # logged in, never connected
    a1 = await clients.connect(alice)
    bodies = [f"missed {i}" for i in range(5)]
    acks = [await a1.send_and_ack(body, to=bob) for body in bodies]

    b1 = await clients.connect(bob, cursor="0")
    assert b1.welcome["user_id"] == bob.user_id
    assert b1.welcome["device_id"] == bob.device_id
    assert int(b1.welcome["cursor"]) <= int(b1.synced["cursor"])  # the head when it said hello
    assert b1.synced["more"] is False
    # What the hello answered is a prefix, in seq order, ending at synced's cursor.
    assert [m["seq"] for m in b1.backlog] == [str(i) for i in range(1, len(b1.backlog) + 1)]
    assert b1.synced["cursor"] == str(len(b1.backlog))
    everything = await b1.take_msgs(5)
    assert [m["seq"] for m in everything] == ["1", "2", "3", "4", "5"]
    assert [m["body"] for m in everything] == bodies
    assert [m["message_id"] for m in everything] == [a["message_id"] for a in acks]
    for frame in everything:
        assert_msg_frame(frame)
        assert frame["sender_id"] == alice.user_id


async def test_reconnect_with_latest_cursor_gets_nothing_old(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice = await new_account(http, "alice")
    bob = await new_account(http, "bob")
    a1 = await clients.connect(alice)
    for i in range(3):
        await a1.send_and_ack(f"m{i}", to=bob)
    first = await clients.connect(bob, cursor="0")
    cursor = (await first.take_msgs(3))[-1]["seq"]
    assert cursor == "3"
    await first.close()

    again = await clients.connect(bob, cursor=cursor)
    assert again.backlog == []
    assert again.synced["cursor"] == cursor

    partial = await clients.connect(bob, cursor="1")
    assert [m["seq"] for m in partial.backlog] == ["2", "3"]

    # Live traffic continues after the cursor.
    ack = await a1.send_and_ack("fresh", to=bob)
    live = await again.recv_until("msg", message_id=ack["message_id"])
    assert live["seq"] == "4"


async def test_sync_frame_pages_the_inbox(online_pair: Pair) -> None:
    _, bob, a1, b1 = online_pair
    for i in range(5):
        await a1.send_and_ack(f"page {i}", to=bob)
    assert [(await b1.recv_until("msg"))["seq"] for _ in range(5)] == ["1", "2", "3", "4", "5"]
    await b1.send({"type": "sync", "cursor": "1", "limit": "2"})
    page = await b1.frames_through("synced")
    assert [f["seq"] for f in page if f["type"] == "msg"] == ["2", "3"]
    assert page[-1]["cursor"] == "3"
    assert page[-1]["more"] is True
    await b1.send({"type": "sync", "cursor": "3"})
    rest = await b1.frames_through("synced")
    assert [f["seq"] for f in rest if f["type"] == "msg"] == ["4", "5"]
    assert rest[-1]["more"] is False


async def test_two_devices_see_identical_history_and_seq(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice = await new_account(http, "alice")
    phone = await another_device(http, alice)
    bob = await new_account(http, "bob")
    carol = await new_account(http, "carol")
    a1 = await clients.connect(alice)
    a2 = await clients.connect(phone)
    b1 = await clients.connect(bob)
    c1 = await clients.connect(carol)

    sent = []
    for i in range(3):
        sent.append(await a1.send_and_ack(f"from laptop {i}", to=bob))
        sent.append(await b1.send_and_ack(f"from bob {i}", to=alice))
        sent.append(await c1.send_and_ack(f"from carol {i}", to=alice))
        sent.append(await a2.send_and_ack(f"from phone {i}", to=carol))
    ids = {a["message_id"] for a in sent}

    def view(frames: list[dict[str, object]]) -> list[tuple[object, object]]:
        return sorted((int(str(f["seq"])), f["message_id"]) for f in frames)

    live1 = [await a1.recv_until("msg") for _ in ids]
    live2 = [await a2.recv_until("msg") for _ in ids]
    assert {f["message_id"] for f in live1} == ids
    assert view(live1) == view(live2)
    assert [s for s, _ in view(live1)] == list(range(1, len(ids) + 1))  # gapless
    # Each device got them in seq order.
    assert [int(f["seq"]) for f in live1] == sorted(int(f["seq"]) for f in live1)
    assert [int(f["seq"]) for f in live2] == sorted(int(f["seq"]) for f in live2)

    # A third device, fresh from cursor 0, sees the very same history.
    laptop2 = await clients.connect(await another_device(http, alice), cursor="0")
    assert view(laptop2.backlog) == view(live1)
    assert [f["body"] for f in laptop2.backlog] == [f["body"] for f in live1]


async def test_resend_with_same_client_msg_id_is_deduplicated(
    clients: Clients, online_pair: Pair
) -> None:
    alice, bob, a1, b1 = online_pair

    first = await a1.send_and_ack("only once", to=bob, client_msg_id="retry-1")
    second = await a1.send_and_ack("only once", to=bob, client_msg_id="retry-1")
    assert second["message_id"] == first["message_id"]
    assert second["channel_id"] == first["channel_id"]
    # After a reconnect the resend is still recognised.
    await a1.close()
    a1 = await clients.connect(alice, cursor="1")
    third = await a1.send_and_ack("only once", to=bob, client_msg_id="retry-1")
    assert third["message_id"] == first["message_id"]
    # A different client_msg_id is a new message: bob's next msg after the first is it.
    sentinel = await a1.send_and_ack("next one", to=bob, client_msg_id="retry-2")

    got = await b1.recv_until("msg")
    assert got["message_id"] == first["message_id"]
    assert got["seq"] == "1"
    nxt = await b1.recv_until("msg")
    assert nxt["message_id"] == sentinel["message_id"], "the resend was delivered again"
    assert nxt["seq"] == "2"
    # And bob's inbox holds exactly two entries.
    b2 = await clients.connect(bob, cursor="0")
    assert [m["message_id"] for m in b2.backlog] == [first["message_id"], sentinel["message_id"]]


async def test_same_client_msg_id_from_different_senders_are_different_messages(
    online_pair: Pair,
) -> None:
    alice, bob, a1, b1 = online_pair
    from_alice = await a1.send_and_ack("a", to=bob, client_msg_id="shared-id")
    from_bob = await b1.send_and_ack("b", to=alice, client_msg_id="shared-id")
    assert from_alice["message_id"] != from_bob["message_id"]


async def test_largest_body_is_accepted_intact(online_pair: Pair) -> None:
    _, bob, a1, b1 = online_pair
    body = "é" * 50_000 + "x" * 49_999 + "🙂"  # 100,000 characters, not bytes
    assert len(body) == 100_000
    ack = await a1.send_and_ack(body, to=bob)
    got = await b1.recv_until("msg", message_id=ack["message_id"])
    assert got["body"] == body


async def test_typing_reaches_the_peer_only(online_pair: Pair) -> None:
    alice, bob, a1, b1 = online_pair
    channel = dm_id(alice, bob)
    await a1.send({"type": "typing", "channel_id": channel})
    got = await b1.recv_until("typing")
    assert got == {"type": "typing", "channel_id": channel, "user_id": alice.user_id}
    # Alice is not told about her own typing: her next frame is her heartbeat's answer.
    await a1.heartbeat()
    assert a1.pending("typing") == []


async def test_concurrent_senders_give_a_gapless_ordered_inbox(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    bob = await new_account(http, "bob")
    senders = [await new_account(http, f"s{i}") for i in range(3)]
    b1 = await clients.connect(bob)
    conns = [await clients.connect(s) for s in senders]
    per_sender = 15

    async def burst(conn: WsClient) -> list[str]:
        ids = [await conn.send_msg(f"n{i}", to=bob) for i in range(per_sender)]
        return [(await conn.recv_until("ack", client_msg_id=c))["message_id"] for c in ids]

    acked = await asyncio.gather(*(burst(c) for c in conns))
    got = [await b1.recv_until("msg") for _ in range(per_sender * len(senders))]
    assert [int(m["seq"]) for m in got] == list(range(1, len(got) + 1))
    assert len({m["message_id"] for m in got}) == len(got)
    for sender, ids in zip(senders, acked, strict=True):
        from_sender = [m["message_id"] for m in got if m["sender_id"] == sender.user_id]
        assert from_sender == ids, "one sender's messages arrived out of order"
        assert [int(i) for i in ids] == sorted(int(i) for i in ids)  # ids grow with time
    b2 = await clients.connect(bob, cursor="0")
    assert [(m["seq"], m["message_id"]) for m in b2.backlog] == [
        (m["seq"], m["message_id"]) for m in got
    ]


async def test_backlog_longer_than_a_page_arrives_whole_before_synced(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1 = await clients.connect(alice)
    watcher = await clients.connect(await another_device(http, bob))
    total, window = 505, 50  # the server pages its catch-up; this is more than a page
    for start in range(0, total, window):
        ids = [await a1.send_msg(f"b{i}", to=bob) for i in range(start, min(total, start + window))]
        for client_msg_id in ids:
            await a1.recv_until("ack", client_msg_id=client_msg_id)
    live = await watcher.take_msgs(total)  # bob's inbox holds them all now
    assert live[-1]["seq"] == str(total)

    b1 = await clients.connect(bob, cursor="0")
    assert [m["seq"] for m in b1.backlog] == [str(i) for i in range(1, total + 1)]
    assert [m["message_id"] for m in b1.backlog] == [m["message_id"] for m in live]
    assert b1.synced == {"type": "synced", "cursor": str(total), "more": False}
