"""Delivered and read receipts: fan-out, forward-only, read implies delivered."""

from __future__ import annotations

from typing import Any

import httpx

from ._harness import Clients, WsClient, another_device, dm_id, make_group, new_account


async def receipt(conn: WsClient, channel_id: str, message_id: str, status: str) -> None:
    await conn.send(
        {"type": "receipt", "channel_id": channel_id, "message_id": message_id, "status": status}
    )


def expected(channel_id: str, user_id: str, message_id: str, status: str) -> dict[str, Any]:
    return {
        "type": "receipt",
        "channel_id": channel_id,
        "user_id": user_id,
        "message_id": message_id,
        "status": status,
    }


async def test_receipts_reach_the_sender_and_the_readers_other_device(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice = await new_account(http, "alice")
    alice_phone = await another_device(http, alice)
    bob = await new_account(http, "bob")
    bob_phone = await another_device(http, bob)
    a1, a2 = await clients.connect(alice), await clients.connect(alice_phone)
    b1, b2 = await clients.connect(bob), await clients.connect(bob_phone)
    channel = dm_id(alice, bob)

    ack = await a1.send_and_ack("did you get this?", to=bob)
    mid = ack["message_id"]
    await b1.recv_until("msg", message_id=mid)

    await receipt(b1, channel, mid, "delivered")
    want = expected(channel, bob.user_id, mid, "delivered")
    for conn in (a1, a2, b2):
        assert await conn.recv_until("receipt") == want

    await receipt(b1, channel, mid, "read")
    want = expected(channel, bob.user_id, mid, "read")
    for conn in (a1, a2, b2):
        assert await conn.recv_until("receipt") == want


async def test_receipts_only_move_forward(http: httpx.AsyncClient, clients: Clients) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1, b1 = await clients.connect(alice), await clients.connect(bob)
    channel = dm_id(alice, bob)
    m1, m2, m3 = [(await a1.send_and_ack(f"m{i}", to=bob))["message_id"] for i in range(3)]

    await receipt(b1, channel, m2, "read")
    assert await a1.recv_until("receipt") == expected(channel, bob.user_id, m2, "read")
    # Older or equal receipts move nothing and produce no receipt frame...
    await receipt(b1, channel, m1, "read")
    await receipt(b1, channel, m2, "read")
    await receipt(b1, channel, m1, "delivered")
    # ...so the next receipt alice sees is the newer one.
    await receipt(b1, channel, m3, "read")
    assert await a1.recv_until("receipt") == expected(channel, bob.user_id, m3, "read")
    assert a1.pending("receipt") == []


async def test_read_implies_delivered(http: httpx.AsyncClient, clients: Clients) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1, b1 = await clients.connect(alice), await clients.connect(bob)
    channel = dm_id(alice, bob)
    m1, m2 = [(await a1.send_and_ack(f"m{i}", to=bob))["message_id"] for i in range(2)]

    await receipt(b1, channel, m1, "read")
    assert await a1.recv_until("receipt") == expected(channel, bob.user_id, m1, "read")
    # Delivered up to m1 is already implied by the read: no frame for it.
    await receipt(b1, channel, m1, "delivered")
    await receipt(b1, channel, m2, "delivered")
    assert await a1.recv_until("receipt") == expected(channel, bob.user_id, m2, "delivered")
    # A read of m2 still moves the read watermark.
    await receipt(b1, channel, m2, "read")
    assert await a1.recv_until("receipt") == expected(channel, bob.user_id, m2, "read")


async def test_group_receipts_reach_every_member(http: httpx.AsyncClient, clients: Clients) -> None:
    owner, a, b = [await new_account(http, "g") for _ in range(3)]
    channel = (await make_group(http, owner, [a, b], name="r"))["channel_id"]
    conns = [await clients.connect(x) for x in (owner, a, b)]
    ack = await conns[0].send_and_ack("read me", channel_id=channel)
    await receipt(conns[1], channel, ack["message_id"], "read")
    want = expected(channel, a.user_id, ack["message_id"], "read")
    for conn in (conns[0], conns[2]):
        assert await conn.recv_until("receipt") == want


async def test_receipt_for_a_channel_not_mine_is_refused(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob, eve = [await new_account(http, n) for n in ("alice", "bob", "eve")]
    a1, e1 = await clients.connect(alice), await clients.connect(eve, keepalive=False)
    ack = await a1.send_and_ack("private", to=bob)
    await receipt(e1, dm_id(alice, bob), ack["message_id"], "read")
    assert (await e1.recv_until("error"))["code"] == "not_a_member"
    await e1.heartbeat()
    assert a1.pending("receipt") == []
