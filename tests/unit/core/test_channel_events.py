"""The rules of edits, deletes, reactions and replies, with the clock injected
(core/channel_events.py): windows, who may, what a target must be."""

from __future__ import annotations

import dataclasses

import pytest

from tidings.core.channel_events import (
    applied,
    check_action,
    counts_as_unread,
    membership_event,
    parse_action,
    stored_action,
    wakes,
)
from tidings.core.errors import ProtocolError
from tidings.core.frames import parse_client_frame
from tidings.core.model import Message

SENT_AT = 1_000_000
EDIT_WINDOW = 15 * 60_000
DELETE_WINDOW = 48 * 3_600_000


def message(**changes: object) -> Message:
    base = Message(
        message_id=10,
        channel_id="dm:1:2",
        sender_id=1,
        sender_device_id=5,
        client_msg_id="c",
        body="hello",
        ts=SENT_AT,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def check(kind: str, target: Message | None, *, by: int = 1, at: int, e2e: bool = False) -> None:
    action = parse_action({"type": kind, "message_id": "10", "emoji": "👍"}, "ref")
    check_action(
        action,
        target,
        by,
        at,
        e2e=e2e,
        edit_window_ms=EDIT_WINDOW,
        delete_window_ms=DELETE_WINDOW,
        ref="ref",
    )


def code_of(kind: str, target: Message | None, **kw: object) -> str | None:
    try:
        check(kind, target, **kw)  # type: ignore[arg-type]
    except ProtocolError as exc:
        assert exc.ref == "ref"
        return exc.code
    return None


def test_edit_and_delete_windows_end_when_they_say() -> None:
    target = message()
    assert code_of("edit", target, at=SENT_AT + EDIT_WINDOW) is None
    assert code_of("edit", target, at=SENT_AT + EDIT_WINDOW + 1) == "too_late"
    assert code_of("delete", target, at=SENT_AT + DELETE_WINDOW) is None
    assert code_of("delete", target, at=SENT_AT + DELETE_WINDOW + 1) == "too_late"
    # Reactions have no window.
    assert code_of("reaction", target, by=2, at=SENT_AT + 10 * DELETE_WINDOW) is None


def test_only_the_sender_edits_or_deletes_anyone_reacts() -> None:
    target = message()
    assert code_of("edit", target, by=2, at=SENT_AT) == "forbidden"
    assert code_of("delete", target, by=2, at=SENT_AT) == "forbidden"
    assert code_of("reaction", target, by=2, at=SENT_AT) is None


def test_targets_must_be_messages_that_still_exist() -> None:
    assert code_of("edit", None, at=SENT_AT) == "unknown_message"
    event = message(event={"type": "renamed", "name": "x"})
    assert code_of("reaction", event, at=SENT_AT) == "unknown_message"
    gone = message(deleted=True, body="")
    for kind in ("edit", "delete", "reaction"):
        assert code_of(kind, gone, at=SENT_AT) == "too_late"


def test_no_edits_in_end_to_end_channels() -> None:
    assert code_of("edit", message(), at=SENT_AT, e2e=True) == "not_supported"
    assert code_of("delete", message(), at=SENT_AT, e2e=True) is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {"type": "member_added", "message_id": "1"},
        {"type": "edit"},
        {"type": "edit", "message_id": "-1"},
        {"type": "reaction", "message_id": "1"},
        {"type": "reaction", "message_id": "1", "emoji": "x" * 17},
        {"type": "reaction", "message_id": "1", "emoji": " 👍"},
        {"type": "reaction", "message_id": "1", "emoji": "\u0000"},
    ],
)
def test_malformed_actions_are_invalid_frames(raw: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_action(raw, "ref")
    assert caught.value.code == "invalid_frame"


def test_emoji_sequences_with_joiners_are_one_reaction() -> None:
    family = "👨\u200d👩\u200d👧"
    assert parse_action({"type": "reaction", "message_id": 7, "emoji": family}, "r") == {
        "type": "reaction",
        "message_id": "7",
        "emoji": family,
    }


def test_send_frames_carry_replies_and_actions() -> None:
    reply = parse_client_frame(
        '{"type":"send","client_msg_id":"a","to":"2","body":"hi","reply_to":"9"}'
    )
    assert reply.reply_to == 9  # type: ignore[union-attr]
    delete = parse_client_frame(
        '{"type":"send","client_msg_id":"b","channel_id":"dm:1:2",'
        '"event":{"type":"delete","message_id":"9"}}'
    )
    assert delete.action == {"type": "delete", "message_id": "9"}  # type: ignore[union-attr]
    assert delete.body == ""  # type: ignore[union-attr]
    for bad in (
        # an edit needs its new text; a delete carries none; actions take no reply
        '{"type":"send","client_msg_id":"c","channel_id":"dm:1:2",'
        '"event":{"type":"edit","message_id":"9"}}',
        '{"type":"send","client_msg_id":"c","channel_id":"dm:1:2","body":"x",'
        '"event":{"type":"delete","message_id":"9"}}',
        '{"type":"send","client_msg_id":"c","channel_id":"dm:1:2","body":"x","reply_to":"3",'
        '"event":{"type":"edit","message_id":"9"}}',
    ):
        with pytest.raises(ProtocolError) as caught:
            parse_client_frame(bad)
        assert caught.value.code == "invalid_frame"


def test_applying_events_gives_the_current_state() -> None:
    target = message(attachments=({"media_id": "m"},))

    def event(action: dict[str, str], body: str = "", sender: int = 1, ts: int = 5) -> Message:
        return message(message_id=20, event=action, body=body, sender_id=sender, ts=ts)

    edited = applied(target, event({"type": "edit", "message_id": "10"}, "hi!", ts=7))
    assert (edited.body, edited.edited_at) == ("hi!", 7)
    reacted = applied(
        edited, event({"type": "reaction", "message_id": "10", "emoji": "👍"}, sender=2)
    )
    assert reacted.reactions == {2: "👍"}
    taken_back = applied(
        reacted, event({"type": "reaction", "message_id": "10", "emoji": ""}, sender=2)
    )
    assert taken_back.reactions == {}
    gone = applied(reacted, event({"type": "delete", "message_id": "10"}))
    assert (gone.body, gone.attachments, gone.reactions, gone.deleted) == ("", (), {}, True)


def test_stored_edits_keep_the_text_they_replaced() -> None:
    action = {"type": "edit", "message_id": "10"}
    assert stored_action(action, message(body="old")) == {**action, "previous": "old"}
    # A resend compares without what the server added.
    first = message(message_id=20, event={**action, "previous": "old"}, body="new")
    again = message(message_id=21, event=action, body="new")
    assert first.same_send(again)


def test_what_counts_as_unread() -> None:
    assert counts_as_unread(message(), reader_id=2)
    assert not counts_as_unread(message(), reader_id=1)  # one's own
    assert not counts_as_unread(message(event=membership_event("renamed", name="x")), 2)
    assert not counts_as_unread(message(deleted=True), 2)


def test_membership_events_send_ids_as_strings() -> None:
    assert membership_event("member_added", user_ids=[1, 2]) == {
        "type": "member_added",
        "user_ids": ["1", "2"],
    }
    assert membership_event("member_left", user_id=3) == {"type": "member_left", "user_id": "3"}


def test_only_messages_and_being_added_wake_a_phone() -> None:
    assert wakes(message(), user_id=2)
    added = message(event=membership_event("member_added", user_ids=[2, 3]))
    assert wakes(added, user_id=2)
    assert not wakes(added, user_id=4)  # someone else joined
    for action in ("edit", "delete", "reaction"):
        assert not wakes(message(event={"type": action, "message_id": "1"}), user_id=2)


def test_messages_with_events_and_reactions_stay_hashable() -> None:
    reacted = message(reactions={2: "👍"}, event=None)
    edit = message(message_id=20, event={"type": "edit", "message_id": "10"}, body="new")
    assert len({reacted, edit, dataclasses.replace(edit)}) == 2
