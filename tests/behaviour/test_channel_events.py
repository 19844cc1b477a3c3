"""Issue #20's contract additions through real HTTP and WebSocket, on both deployments:
read marks and unread counts in the channel list, membership events, group roles,
replies, edits, deletes and reactions (docs/protocol.md, "Everyday messaging")."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from ._harness import (
    Account,
    Clients,
    WsClient,
    befriend,
    dm_id,
    error_code,
    make_group,
    new_account,
)
from ._media import attachment, png_of_about, upload


async def channel_entry(http: httpx.AsyncClient, who: Account, channel_id: str) -> dict[str, Any]:
    response = await http.get("/v1/channels", headers=who.auth)
    assert response.status_code == 200, response.text
    found = [c for c in response.json()["channels"] if c["channel_id"] == channel_id]
    assert found, f"{channel_id} is not in {who.username}'s channel list"
    entry: dict[str, Any] = found[0]
    return entry


async def channel_ids(http: httpx.AsyncClient, who: Account) -> set[str]:
    response = await http.get("/v1/channels", headers=who.auth)
    return {c["channel_id"] for c in response.json()["channels"]}


async def history(http: httpx.AsyncClient, who: Account, channel_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/channels/{channel_id}/messages", headers=who.auth)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def by_id(messages: list[dict[str, Any]], message_id: str) -> dict[str, Any]:
    found = [m for m in messages if m["message_id"] == message_id]
    assert found, f"{message_id} not among {[m['message_id'] for m in messages]}"
    return found[0]


async def search(http: httpx.AsyncClient, who: Account, q: str) -> list[str]:
    response = await http.get("/v1/search", params={"q": q}, headers=who.auth)
    assert response.status_code == 200, response.text
    return [m["message_id"] for m in response.json()["messages"]]


async def act(
    conn: WsClient, channel_id: str, event: dict[str, Any], body: str | None = None
) -> dict[str, Any]:
    """Send an edit, delete or reaction; its answer (ack or error)."""
    client_msg_id = uuid.uuid4().hex
    frame: dict[str, Any] = {
        "type": "send",
        "client_msg_id": client_msg_id,
        "channel_id": channel_id,
        "event": event,
    }
    if body is not None:
        frame["body"] = body
    await conn.send(frame)
    return await conn.recv_send_answer(client_msg_id)


def plain(event: dict[str, Any] | None) -> dict[str, Any] | None:
    """A membership event without the display names it carries."""
    return None if event is None else {k: v for k, v in event.items() if k != "names"}


async def receipt(conn: WsClient, channel_id: str, message_id: str, status: str) -> None:
    await conn.send(
        {"type": "receipt", "channel_id": channel_id, "message_id": message_id, "status": status}
    )


# --- read marks and unread counts ---------------------------------------------------------


async def test_unread_count_and_read_marks_come_from_the_server(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    """A new user's first messages are unread in a chat never opened; the sender's ticks
    come back from the stored watermarks after the sender was away."""
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1 = await clients.connect(alice)
    sent = [await a1.send_and_ack(f"hello {i}", to=bob) for i in range(3)]
    channel = dm_id(alice, bob)

    fresh = await channel_entry(http, bob, channel)
    assert fresh["unread"] == 3
    assert fresh["read_upto"] == "0"
    assert fresh["receipts"] == [
        {"user_id": alice.user_id, "delivered_upto": "0", "read_upto": "0"}
    ]
    # The sender's own messages are never unread to her.
    assert (await channel_entry(http, alice, channel))["unread"] == 0

    await a1.close()  # alice goes away; bob receives and reads two of three
    b1 = await clients.connect(bob)
    await receipt(b1, channel, sent[2]["message_id"], "delivered")
    await receipt(b1, channel, sent[1]["message_id"], "read")
    # Stored once fanned out (bob's own devices hear of his receipts too).
    await b1.recv_until("receipt", status="read")

    read = await channel_entry(http, bob, channel)
    assert read["unread"] == 1
    assert read["read_upto"] == sent[1]["message_id"]
    back = await channel_entry(http, alice, channel)  # alice's reload: the ticks
    assert back["receipts"] == [
        {
            "user_id": bob.user_id,
            "delivered_upto": sent[2]["message_id"],
            "read_upto": sent[1]["message_id"],
        }
    ]


async def test_group_entries_carry_roles_and_every_members_receipts(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, a, b = [await new_account(http, "g") for _ in range(3)]
    group = await make_group(http, owner, [a, b], name="marks")
    channel = group["channel_id"]
    assert group["admin_ids"] == [owner.user_id]
    assert group["members_can_add"] is True
    o1, a1 = await clients.connect(owner), await clients.connect(a)
    ack = await o1.send_and_ack("read me", channel_id=channel)
    await a1.recv_until("msg", message_id=ack["message_id"])
    await receipt(a1, channel, ack["message_id"], "read")
    await o1.recv_until("receipt", user_id=a.user_id)

    entry = await channel_entry(http, owner, channel)
    assert entry["admin_ids"] == [owner.user_id]
    marks = {r["user_id"]: r for r in entry["receipts"]}
    assert set(marks) == {a.user_id, b.user_id}
    assert marks[a.user_id]["read_upto"] == ack["message_id"]
    assert marks[b.user_id]["read_upto"] == "0"
    # Membership events are not unread: b has one message to read, not the joins.
    assert (await channel_entry(http, b, channel))["unread"] == 1


# --- membership events and roles ------------------------------------------------------------


async def test_membership_changes_reach_every_member_as_events(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, carol, dave = [await new_account(http, n) for n in ("owner", "carol", "dave")]
    for friend in (carol, dave):
        await befriend(http, owner, friend)
    created = await http.post(
        "/v1/groups", json={"name": "Book club", "member_ids": [carol.user_id]}, headers=owner.auth
    )
    assert created.status_code == 201, created.text
    channel = created.json()["channel_id"]
    o1, c1 = await clients.connect(owner), await clients.connect(carol)
    # What the group's creation said, in carol's inbox like any message.
    events = [plain(m["event"]) for m in c1.received_msgs() if m["channel_id"] == channel]
    assert events == [
        {"type": "group_created", "name": "Book club"},
        {"type": "member_added", "user_ids": [carol.user_id]},
    ]

    added = await http.put(f"/v1/groups/{channel}/members/{dave.user_id}", headers=owner.auth)
    assert added.status_code == 204, added.text
    got = await c1.recv_until("msg", channel_id=channel)
    assert got["event"] == {
        "type": "member_added",
        "user_ids": [dave.user_id],
        "names": {owner.user_id: owner.username, dave.user_id: dave.username},
    }
    assert got["sender_id"] == owner.user_id
    assert got["body"] == ""
    assert got["client_msg_id"] == f"event:{got['message_id']}"

    renamed = await http.patch(
        f"/v1/groups/{channel}", json={"name": "Reading"}, headers=owner.auth
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Reading"
    assert plain((await c1.recv_until("msg", channel_id=channel))["event"]) == {
        "type": "renamed",
        "name": "Reading",
    }

    removed = await http.delete(f"/v1/groups/{channel}/members/{dave.user_id}", headers=owner.auth)
    assert removed.status_code == 204
    d1 = await clients.connect(dave)  # dave hears of it too (in his backlog)
    told = [plain(m["event"]) for m in d1.received_msgs() if m["channel_id"] == channel]
    assert told[-1] == {"type": "member_removed", "user_id": dave.user_id}
    assert channel not in await channel_ids(http, dave)
    gone = await http.get(f"/v1/channels/{channel}/messages", headers=dave.auth)
    assert gone.status_code == 403
    assert plain((await c1.recv_until("msg", channel_id=channel))["event"]) == {
        "type": "member_removed",
        "user_id": dave.user_id,
    }

    left = await http.delete(f"/v1/groups/{channel}/members/{carol.user_id}", headers=carol.auth)
    assert left.status_code == 204
    got = await o1.recv_until("msg", channel_id=channel, sender_id=carol.user_id)
    assert plain(got["event"]) == {
        "type": "member_left",
        "user_id": carol.user_id,
    }
    # The history keeps every event, newest first.
    kinds = [m["event"]["type"] for m in await history(http, owner, channel) if "event" in m]
    assert kinds == [
        "member_left",
        "member_removed",
        "renamed",
        "member_added",
        "member_added",
        "group_created",
    ]


async def test_only_admins_manage_a_group(http: httpx.AsyncClient, clients: Clients) -> None:
    owner, a, b = [await new_account(http, "r") for _ in range(3)]
    channel = (await make_group(http, owner, [a, b], name="roles"))["channel_id"]
    outsider = await new_account(http, "r")

    def path(*parts: str) -> str:
        return "/".join((f"/v1/groups/{channel}", *parts))

    for response in (
        await http.patch(path(), json={"name": "mine now"}, headers=a.auth),
        await http.delete(path("members", b.user_id), headers=a.auth),
        await http.put(path("admins", a.user_id), headers=a.auth),
    ):
        assert response.status_code == 403, response.text
        assert error_code(response) == "forbidden"
    bad = await http.patch(path(), json={"name": "\u202eevil"}, headers=owner.auth)
    assert bad.status_code == 422
    assert error_code(bad) == "invalid_request"

    # Only admins add, once the group says so.
    locked = await http.patch(path(), json={"members_can_add": False}, headers=owner.auth)
    assert locked.status_code == 200 and locked.json()["members_can_add"] is False
    await befriend(http, a, outsider)
    refused = await http.put(path("members", outsider.user_id), headers=a.auth)
    assert refused.status_code == 403
    assert error_code(refused) == "forbidden"

    promoted = await http.put(path("admins", a.user_id), headers=owner.auth)
    assert promoted.status_code == 204
    allowed = await http.put(path("members", outsider.user_id), headers=a.auth)
    assert allowed.status_code == 204, allowed.text
    view = (await http.get(path(), headers=owner.auth)).json()
    assert sorted(view["admin_ids"]) == sorted([owner.user_id, a.user_id])
    assert outsider.user_id in view["member_ids"]

    # An admin steps down while another remains; the last one cannot.
    assert (await http.delete(path("admins", owner.user_id), headers=owner.auth)).status_code == 204
    last = await http.delete(path("admins", a.user_id), headers=a.auth)
    assert last.status_code == 409
    assert error_code(last) == "last_admin"

    b1 = await clients.connect(b)
    kinds = [m["event"]["type"] for m in b1.received_msgs() if "event" in m]
    assert kinds[-4:] == ["settings_changed", "admin_added", "member_added", "admin_removed"]


async def test_when_the_last_admin_leaves_the_lowest_member_id_takes_over(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, a, b = [await new_account(http, "l") for _ in range(3)]
    channel = (await make_group(http, owner, [a, b], name="heirs"))["channel_id"]
    left = await http.delete(f"/v1/groups/{channel}/members/{owner.user_id}", headers=owner.auth)
    assert left.status_code == 204
    heir = min((a, b), key=lambda x: int(x.user_id))
    view = (await http.get(f"/v1/groups/{channel}", headers=a.auth)).json()
    assert view["admin_ids"] == [heir.user_id]
    a1 = await clients.connect(a)
    events = [plain(m["event"]) for m in a1.received_msgs() if "event" in m]
    assert events[-2:] == [
        {"type": "member_left", "user_id": owner.user_id},
        {"type": "admin_added", "user_id": heir.user_id},
    ]


# --- replies, edits, deletes and reactions ----------------------------------------------------


async def test_reply_names_a_message_of_the_same_channel(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob, carol = [await new_account(http, n) for n in ("alice", "bob", "carol")]
    a1, b1 = await clients.connect(alice), await clients.connect(bob)
    question = await a1.send_and_ack("lunch?", to=bob)
    elsewhere = await a1.send_and_ack("other chat", to=carol)

    await b1.send(
        {
            "type": "send",
            "client_msg_id": "reply-1",
            "to": alice.user_id,
            "body": "yes!",
            "reply_to": question["message_id"],
        }
    )
    ack = await b1.recv_send_answer("reply-1")
    assert ack["type"] == "ack"
    got = await a1.recv_until("msg", message_id=ack["message_id"])
    assert got["reply_to"] == question["message_id"]
    stored = by_id(await history(http, alice, dm_id(alice, bob)), ack["message_id"])
    assert stored["reply_to"] == question["message_id"]

    for target in (elsewhere["message_id"], "12345"):
        await b1.send(
            {
                "type": "send",
                "client_msg_id": f"bad-{target}",
                "to": alice.user_id,
                "body": "?",
                "reply_to": target,
            }
        )
        refused = await b1.recv_send_answer(f"bad-{target}")
        assert refused["code"] == "unknown_message"


async def test_edit_changes_the_text_everywhere_and_keeps_the_versions(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1, b1 = await clients.connect(alice), await clients.connect(bob)
    channel = dm_id(alice, bob)
    word = f"tpyo{uuid.uuid4().hex[:6]}"
    fixed = f"typo{uuid.uuid4().hex[:6]}"
    sent = await a1.send_and_ack(f"a {word} here", to=bob)
    assert await search(http, bob, word) == [sent["message_id"]]

    edit = {"type": "edit", "message_id": sent["message_id"]}
    ack = await act(a1, channel, edit, body=f"a {fixed} here")
    assert ack["type"] == "ack", ack
    live = await b1.recv_until("msg", message_id=ack["message_id"])
    assert live["event"] == {**edit, "previous": f"a {word} here"}
    assert live["body"] == f"a {fixed} here"

    shown = by_id(await history(http, bob, channel), sent["message_id"])
    assert shown["body"] == f"a {fixed} here"
    assert shown["edited_at"] == live["ts"]
    assert await search(http, bob, fixed) == [sent["message_id"]]
    assert await search(http, bob, word) == []  # the old text is no longer found
    # Events themselves are never unread nor searched.
    assert (await channel_entry(http, bob, channel))["unread"] == 1

    # Only its sender edits it; an event is no message to edit.
    assert (await act(b1, channel, edit, body="mine"))["code"] == "forbidden"
    other = {"type": "edit", "message_id": ack["message_id"]}
    assert (await act(a1, channel, other, body="x"))["code"] == "unknown_message"
    assert (await act(a1, channel, edit))["code"] == "invalid_frame"  # no new text


async def test_delete_leaves_a_tombstone_and_leaves_search(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1, b1 = await clients.connect(alice), await clients.connect(bob)
    channel = dm_id(alice, bob)
    secret = f"oops{uuid.uuid4().hex[:8]}"
    sent = await a1.send_and_ack(f"{secret} wrong chat", to=bob)
    react = {"type": "reaction", "message_id": sent["message_id"], "emoji": "😮"}
    assert (await act(b1, channel, react))["type"] == "ack"

    target = {"type": "delete", "message_id": sent["message_id"]}
    assert (await act(b1, channel, target))["code"] == "forbidden"
    ack = await act(a1, channel, target)
    assert ack["type"] == "ack", ack
    assert (await b1.recv_until("msg", message_id=ack["message_id"]))["event"] == target

    shown = by_id(await history(http, bob, channel), sent["message_id"])
    assert shown["deleted"] is True
    assert shown["body"] == ""
    assert "reactions" not in shown
    assert await search(http, bob, secret) == []
    assert (await channel_entry(http, bob, channel))["unread"] == 0
    # A tombstone takes no edit and no reaction.
    edit = {"type": "edit", "message_id": sent["message_id"]}
    assert (await act(a1, channel, edit, body="again"))["code"] == "too_late"
    assert (await act(b1, channel, react))["code"] == "too_late"


async def test_a_deleted_messages_photo_is_no_longer_the_channels(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1 = await clients.connect(alice)
    photo = await upload(http, alice, png_of_about(20_000), "image/png")
    frame = {
        "type": "send",
        "client_msg_id": "with-photo",
        "to": bob.user_id,
        "body": "",
        "attachments": [attachment(photo)],
    }
    await a1.send(frame)
    sent = await a1.recv_send_answer("with-photo")
    assert sent["type"] == "ack", sent
    path = f"/v1/media/{photo['media_id']}"
    assert (await http.get(path, headers=bob.auth)).status_code == 200

    target = {"type": "delete", "message_id": sent["message_id"]}
    assert (await act(a1, dm_id(alice, bob), target))["type"] == "ack"
    shown = by_id(await history(http, bob, dm_id(alice, bob)), sent["message_id"])
    assert "attachments" not in shown
    for _ in range(50):  # unshared just after the delete is durable
        refused = await http.get(path, headers=bob.auth)
        if refused.status_code == 403:
            break
        await asyncio.sleep(0.1)
    assert refused.status_code == 403
    assert error_code(refused) == "not_a_member"
    assert (await http.get(path, headers=alice.auth)).status_code == 200  # still hers


async def test_reactions_one_per_user_replaced_and_taken_back(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, a, b = [await new_account(http, "x") for _ in range(3)]
    channel = (await make_group(http, owner, [a, b], name="reacts"))["channel_id"]
    o1, a1, b1 = [await clients.connect(x) for x in (owner, a, b)]
    sent = await o1.send_and_ack("party on friday", channel_id=channel)
    mid = sent["message_id"]

    def reaction(emoji: str) -> dict[str, Any]:
        return {"type": "reaction", "message_id": mid, "emoji": emoji}

    assert (await act(a1, channel, reaction("👍")))["type"] == "ack"
    assert (await act(b1, channel, reaction("🎉")))["type"] == "ack"
    assert (await act(a1, channel, reaction("❤️")))["type"] == "ack"  # replaces a's 👍
    last = await act(b1, channel, reaction(""))  # b takes it back
    assert last["type"] == "ack"
    got = await o1.recv_until("msg", message_id=last["message_id"])
    assert got["event"] == reaction("") and got["sender_id"] == b.user_id

    shown = by_id(await history(http, owner, channel), mid)
    assert shown["reactions"] == {a.user_id: "❤️"}
    assert (await act(a1, channel, reaction("x" * 17)))["code"] == "invalid_frame"
    assert (await act(a1, channel, reaction("\u0007")))["code"] == "invalid_frame"


async def test_a_resent_action_is_acked_again_and_applied_once(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1, b1 = await clients.connect(alice), await clients.connect(bob)
    channel = dm_id(alice, bob)
    sent = await a1.send_and_ack("first draft", to=bob)
    await b1.recv_until("msg", message_id=sent["message_id"])
    frame = {
        "type": "send",
        "client_msg_id": "edit-once",
        "channel_id": channel,
        "body": "second draft",
        "event": {"type": "edit", "message_id": sent["message_id"]},
    }
    await a1.send(frame)
    first = await a1.recv_send_answer("edit-once")
    await a1.send(frame)
    again = await a1.recv_send_answer("edit-once")
    assert again["type"] == "ack" and again["message_id"] == first["message_id"]
    await b1.recv_until("msg", message_id=first["message_id"])
    after = await a1.send_and_ack("next", to=bob)
    await b1.recv_until("msg", message_id=after["message_id"])
    assert b1.pending("msg") == []  # the edit came once
    assert by_id(await history(http, bob, channel), sent["message_id"])["body"] == "second draft"


async def test_outsiders_and_clients_cannot_make_channel_events(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, a = await new_account(http, "o"), await new_account(http, "o")
    eve = await new_account(http, "eve")
    channel = (await make_group(http, owner, [a], name="closed"))["channel_id"]
    o1, e1 = await clients.connect(owner), await clients.connect(eve)
    sent = await o1.send_and_ack("members only", channel_id=channel)
    react = {"type": "reaction", "message_id": sent["message_id"], "emoji": "👀"}
    assert (await act(e1, channel, react))["code"] == "not_a_member"
    forged = {"type": "member_added", "message_id": sent["message_id"]}
    assert (await act(o1, channel, forged))["code"] == "invalid_frame"


# --- the profile ----------------------------------------------------------------------------


async def test_a_user_changes_their_display_name(http: httpx.AsyncClient) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    await befriend(http, alice, bob)
    changed = await http.patch(
        "/v1/me", json={"display_name": "\uff21lice \uff37"}, headers=alice.auth
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "Alice W"  # NFKC, as at sign-up
    seen = await http.get(f"/v1/users/{alice.user_id}", headers=bob.auth)
    assert seen.json()["display_name"] == "Alice W"
    for bad in ("", "\u200bghost", "x" * 129):
        refused = await http.patch("/v1/me", json={"display_name": bad}, headers=alice.auth)
        assert refused.status_code == 422, bad
        assert error_code(refused) == "invalid_request"
