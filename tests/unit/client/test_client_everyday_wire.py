"""Everyday messaging on the wire (docs/protocol.md, issue #20), without a server: the new
message, channel and group fields read into typed values; replies, edits, deletes and
reactions built as the contract spells them; the group, admin and profile calls' paths."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tidings.client import (
    ApiClient,
    Channel,
    ChannelEvent,
    Group,
    Message,
    Msg,
    ReceiptMarks,
    Session,
    TidingsProtocolError,
    parse_server_frame,
)
from tidings.client._cli import event_to_json
from tidings.client._frames import delete_frame, edit_frame, reaction_frame, send_frame

BIG = "1848390265372672001"  # beyond 2**53: ids stay strings
MESSAGE: dict[str, Any] = {
    "message_id": "9",
    "channel_id": "g:5",
    "sender_id": "1",
    "sender_device_id": "3",
    "client_msg_id": "c",
    "body": "lunch at one",
    "ts": 4,
}


def test_a_message_carries_reply_edit_delete_and_reaction_state() -> None:
    message = Message.from_json(
        MESSAGE
        | {"reply_to": BIG, "edited_at": 77, "reactions": {"2": "👍", BIG: "🎉"}, "unknown": 1}
    )
    assert message.reply_to == BIG
    assert message.edited_at == 77
    assert message.reactions == {"2": "👍", BIG: "🎉"}
    assert not message.deleted and message.event is None and not message.is_event
    assert Message.from_json(MESSAGE | {"deleted": True, "body": ""}).deleted
    plain = Message.from_json(MESSAGE)
    assert (plain.reply_to, plain.edited_at, plain.reactions, plain.deleted) == (
        None,
        None,
        {},
        False,
    )


def test_events_are_typed_by_kind() -> None:
    edit = Message.from_json(
        MESSAGE | {"event": {"type": "edit", "message_id": BIG, "previous": "lunch at noon"}}
    ).event
    assert edit == ChannelEvent("edit", message_id=BIG, previous="lunch at noon")
    assert edit is not None and edit.is_action and not edit.is_membership
    added = ChannelEvent.from_json(
        {"type": "member_added", "user_ids": ["2", "3"], "names": {"1": "Carol", "2": "Dave"}}
    )
    assert added.subjects == ("2", "3") and added.is_membership
    assert added.names == {"1": "Carol", "2": "Dave"}
    assert ChannelEvent.from_json({"type": "member_left", "user_id": "2"}).subjects == ("2",)
    switched = ChannelEvent.from_json({"type": "settings_changed", "members_can_add": False})
    assert switched.members_can_add is False
    future = ChannelEvent.from_json({"type": "pinned", "whatever": [1]})
    assert future == ChannelEvent("pinned") and not future.is_action
    assert added.to_json() == {
        "type": "member_added",
        "user_ids": ["2", "3"],
        "names": {"1": "Carol", "2": "Dave"},
    }


@pytest.mark.parametrize(
    "broken",
    [
        {"event": {"no_type": 1}},
        {"event": "edit"},
        {"reactions": ["👍"]},
        {"reactions": {"2": 5}},
        {"reply_to": ""},
    ],
)
def test_malformed_new_fields_are_protocol_errors(broken: dict[str, Any]) -> None:
    with pytest.raises(TidingsProtocolError):
        Message.from_json(MESSAGE | broken)


def test_a_msg_frame_carries_the_same_new_fields() -> None:
    frame = MESSAGE | {
        "type": "msg",
        "seq": "12",
        "body": "",
        "event": {"type": "reaction", "message_id": "8", "emoji": "❤️"},
    }
    msg = parse_server_frame(json.dumps(frame))
    assert isinstance(msg, Msg) and msg.seq == 12
    assert msg.event == ChannelEvent("reaction", message_id="8", emoji="❤️")
    reply = parse_server_frame(json.dumps(MESSAGE | {"type": "msg", "seq": "13", "reply_to": "8"}))
    assert isinstance(reply, Msg) and reply.reply_to == "8"


def test_listen_output_spells_events_as_the_wire_and_reads_membership_as_text() -> None:
    frame = MESSAGE | {
        "type": "msg",
        "seq": "3",
        "body": "",
        "event": {"type": "member_added", "user_ids": ["2"], "names": {"1": "Carol", "2": "Dave"}},
    }
    msg = parse_server_frame(json.dumps(frame))
    assert isinstance(msg, Msg)
    out = event_to_json(msg)
    assert out["event"] == frame["event"]
    assert out["text"] == "Carol added Dave"
    assert "reply_to" not in out and "reactions" not in out and "deleted" not in out
    plain = parse_server_frame(json.dumps(MESSAGE | {"type": "msg", "seq": "4"}))
    assert isinstance(plain, Msg)
    assert {"event", "text", "edited_at"}.isdisjoint(event_to_json(plain))


def test_channel_entries_carry_read_marks_unread_and_roles() -> None:
    group = Channel.from_json(
        {
            "channel_id": "g:5",
            "kind": "group",
            "name": "Book club",
            "member_ids": ["1", "2", "3"],
            "last_message_id": "40",
            "owner_id": "1",
            "admin_ids": ["1", "2"],
            "members_can_add": False,
            "read_upto": "30",
            "unread": 4,
            "receipts": [
                {"user_id": "2", "delivered_upto": "40", "read_upto": "35"},
                {"user_id": "3", "delivered_upto": "0", "read_upto": "0"},
            ],
        }
    )
    assert (group.read_upto, group.unread, group.admin_ids, group.members_can_add) == (
        "30",
        4,
        ("1", "2"),
        False,
    )
    dave = group.receipts_of("2")
    assert dave == ReceiptMarks("2", "40", "35")
    assert dave.has_delivered("40") and not dave.has_read("40") and dave.has_read("35")
    assert group.receipts_of("1") is None
    dm = Channel.from_json(
        {"channel_id": "dm:1:2", "kind": "dm", "member_ids": ["1", "2"], "unread": 0}
    )
    assert (dm.read_upto, dm.receipts, dm.admin_ids, dm.members_can_add) == ("0", (), (), None)


def test_groups_carry_admins_and_the_add_setting() -> None:
    group = Group.from_json(
        {
            "channel_id": "g:5",
            "name": "n",
            "owner_id": "1",
            "member_ids": ["1", "2"],
            "e2e": False,
            "admin_ids": ["1"],
            "members_can_add": False,
        }
    )
    assert (group.admin_ids, group.members_can_add) == (("1",), False)


def test_replies_edits_deletes_and_reactions_as_the_contract_spells_them() -> None:
    assert send_frame("c1", "yes!", to="2", reply_to="8") == {
        "type": "send",
        "client_msg_id": "c1",
        "body": "yes!",
        "reply_to": "8",
        "to": "2",
    }
    assert edit_frame("c2", "g:5", "8", "fixed") == {
        "type": "send",
        "client_msg_id": "c2",
        "channel_id": "g:5",
        "body": "fixed",
        "event": {"type": "edit", "message_id": "8"},
    }
    assert delete_frame("c3", "g:5", "8") == {  # no body: a delete carries none
        "type": "send",
        "client_msg_id": "c3",
        "channel_id": "g:5",
        "event": {"type": "delete", "message_id": "8"},
    }
    assert reaction_frame("c4", "g:5", "8", "") == {
        "type": "send",
        "client_msg_id": "c4",
        "channel_id": "g:5",
        "event": {"type": "reaction", "message_id": "8", "emoji": ""},
    }


async def test_group_admin_and_profile_calls() -> None:
    seen: list[httpx.Request] = []
    group = {
        "channel_id": "g:5",
        "name": "Reading",
        "owner_id": "11",
        "member_ids": ["11", "12"],
        "admin_ids": ["11"],
        "members_can_add": False,
    }
    profile = {"user_id": "11", "username": "ada", "display_name": "Ada L", "presence": None}

    def route(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "PATCH" and request.url.path == "/v1/me":
            return httpx.Response(200, json=profile)
        if request.method == "PATCH":
            return httpx.Response(200, json=group)
        return httpx.Response(204)

    session = {
        "access_token": "t",
        "expires_at": 1,
        "user_id": "11",
        "device_id": "21",
        "chat_url": "ws://x",
    }
    async with ApiClient(
        "http://chat.test",
        session=Session.from_json(session),
        transport=httpx.MockTransport(route),
    ) as api:
        assert (await api.rename_group("g:5", "Reading")).name == "Reading"
        assert (await api.set_group_settings("g:5", members_can_add=False)).members_can_add is False
        await api.make_admin("g:5", "12")
        await api.unmake_admin("g:5", "12")
        await api.remove_group_member("g:5", "12")
        await api.leave_group("g:5")
        assert (await api.set_display_name("Ada L")).display_name == "Ada L"
        with pytest.raises(ValueError):
            await api.update_group("g:5")
    assert [(r.method, r.url.path) for r in seen] == [
        ("PATCH", "/v1/groups/g:5"),
        ("PATCH", "/v1/groups/g:5"),
        ("PUT", "/v1/groups/g:5/admins/12"),
        ("DELETE", "/v1/groups/g:5/admins/12"),
        ("DELETE", "/v1/groups/g:5/members/12"),
        ("DELETE", "/v1/groups/g:5/members/11"),  # leaving: removing oneself
        ("PATCH", "/v1/me"),
    ]
    bodies = [json.loads(r.content) for r in seen if r.method == "PATCH"]
    assert bodies == [{"name": "Reading"}, {"members_can_add": False}, {"display_name": "Ada L"}]
