"""ChannelView folds a channel's messages and events into lines, without sockets: edits,
deletes and reactions change their target, membership events read as text, repeats and
stale events change nothing (docs/protocol.md, "Everyday messaging")."""

from __future__ import annotations

from typing import Any

from tidings.client import ChannelEvent, ChannelView, Line, Message, describe_event

CHANNEL = "g:42"
CAROL, DAVE, EVE = "101", "102", "103"


def message(number: int, sender: str = CAROL, body: str = "", **fields: Any) -> Message:
    return Message(
        message_id=str(number),
        channel_id=fields.pop("channel_id", CHANNEL),
        sender_id=sender,
        sender_device_id="1",
        client_msg_id=f"c{number}",
        body=body,
        ts=1_000 + number,
        **fields,
    )


def event(event_id: int, sender: str, body: str = "", /, **fields: Any) -> Message:
    """A channel event's message; ``fields``: the event's (``message_id`` its target)."""
    return message(event_id, sender, body, event=ChannelEvent(**fields))


def texts(view: ChannelView) -> list[str]:
    return [line.text for line in view.lines]


def test_an_edit_changes_its_targets_text_and_makes_no_line_of_its_own() -> None:
    view = ChannelView(CHANNEL)
    view.apply(message(1, body="a tpyo"))
    changed = view.apply(event(2, CAROL, "a typo", type="edit", message_id="1", previous="a tpyo"))
    assert changed is not None and changed.message_id == "1"
    assert changed.message.body == "a typo"
    assert changed.message.edited_at == 1_002
    assert texts(view) == ["a typo"]


def test_a_delete_leaves_a_tombstone_that_nothing_changes_after() -> None:
    view = ChannelView(CHANNEL)
    view.apply(message(1, body="wrong chat", reactions={DAVE: "😮"}))
    deleted = view.apply(event(2, CAROL, type="delete", message_id="1"))
    assert deleted is not None
    assert (deleted.message.deleted, deleted.message.body, deleted.message.reactions) == (
        True,
        "",
        {},
    )
    assert deleted.text == "(message deleted)"
    assert view.apply(event(3, CAROL, "again", type="edit", message_id="1")) is None
    assert view.apply(event(4, DAVE, type="reaction", message_id="1", emoji="👍")) is None
    line = view.line("1")
    assert line is not None and line.message.deleted and line.message.reactions == {}


def test_reactions_one_per_user_replaced_and_taken_back() -> None:
    view = ChannelView(CHANNEL)
    view.apply(message(1, body="party on friday"))
    view.apply(event(2, DAVE, type="reaction", message_id="1", emoji="👍"))
    view.apply(event(3, EVE, type="reaction", message_id="1", emoji="🎉"))
    view.apply(event(4, DAVE, type="reaction", message_id="1", emoji="❤️"))
    line = view.line("1")
    assert line is not None and line.message.reactions == {DAVE: "❤️", EVE: "🎉"}
    view.apply(event(5, EVE, type="reaction", message_id="1", emoji=""))
    line = view.line("1")
    assert line is not None and line.message.reactions == {DAVE: "❤️"}
    assert line.message.reaction_counts() == {"❤️": 1}


def test_repeats_and_stale_events_change_nothing() -> None:
    """After a reconnect a msg may come again; an older edit or reaction arriving after a
    newer one of the same target (and user) loses."""
    view = ChannelView(CHANNEL)
    view.apply(message(1, body="v0"))
    view.apply(event(3, CAROL, "v2", type="edit", message_id="1"))
    assert view.apply(event(2, CAROL, "v1", type="edit", message_id="1")) is None
    assert view.apply(event(3, CAROL, "v2", type="edit", message_id="1")) is None
    view.apply(event(5, DAVE, type="reaction", message_id="1", emoji="❤️"))
    assert view.apply(event(4, DAVE, type="reaction", message_id="1", emoji="👍")) is None
    line = view.line("1")
    assert line is not None
    assert (line.message.body, line.message.reactions) == ("v2", {DAVE: "❤️"})


def test_a_history_page_of_current_states_and_events_folds_to_the_current_state() -> None:
    """History gives each message as it is now, and the events too (newest first):
    folding them all in id order ends where the server is."""
    page = [
        event(6, DAVE, type="reaction", message_id="1", emoji="❤️"),
        event(5, CAROL, "v2", type="edit", message_id="1"),
        event(4, DAVE, type="reaction", message_id="1", emoji="👍"),
        event(3, CAROL, "v1", type="edit", message_id="1"),
        message(2, DAVE, "gone", deleted=True),
        message(1, body="v2", edited_at=1_005, reactions={DAVE: "❤️"}),
    ]
    view = ChannelView(CHANNEL)
    view.apply_all(page)
    assert [(line.message_id, line.text) for line in view.lines] == [
        ("1", "v2"),
        ("2", "(message deleted)"),
    ]
    line = view.line("1")
    assert line is not None and line.message.reactions == {DAVE: "❤️"}


def test_events_about_messages_not_in_view_and_other_channels_are_dropped() -> None:
    view = ChannelView(CHANNEL)
    assert view.apply(event(2, CAROL, "x", type="edit", message_id="1")) is None
    assert view.apply(message(3, channel_id="dm:1:2", body="elsewhere")) is None
    assert view.apply(event(4, CAROL, type="something_new")) is None
    assert view.lines == []


def test_a_reply_finds_the_line_it_answers() -> None:
    view = ChannelView(CHANNEL)
    view.apply(message(1, body="lunch?"))
    reply = view.apply(message(2, DAVE, "yes!", reply_to="1"))
    assert reply is not None
    answered = view.replied_to(reply)
    assert answered is not None and answered.text == "lunch?"


def test_membership_events_read_as_lines_with_the_names_they_carry() -> None:
    names = {CAROL: "Carol", DAVE: "Dave", EVE: "Eve"}
    view = ChannelView(CHANNEL)
    lines: list[Line | None] = [
        view.apply(event(1, CAROL, type="group_created", name="Book club", names=names)),
        view.apply(event(2, CAROL, type="member_added", user_ids=(DAVE, EVE), names=names)),
        view.apply(event(3, CAROL, type="renamed", name="Reading", names=names)),
        view.apply(event(4, CAROL, type="admin_added", user_id=DAVE, names=names)),
        view.apply(event(5, CAROL, type="settings_changed", members_can_add=False, names=names)),
        view.apply(event(6, DAVE, type="member_removed", user_id=EVE, names=names)),
        view.apply(event(7, DAVE, type="admin_removed", user_id=DAVE, names=names)),
        view.apply(event(8, CAROL, type="member_left", user_id=CAROL, names=names)),
        # The last admin left: the server made Dave admin in Carol's name.
        view.apply(event(9, CAROL, type="admin_added", user_id=DAVE, names=names)),
        view.apply(event(10, EVE, type="member_joined", user_id=EVE, names=names)),
    ]
    assert all(line is not None and line.system is not None for line in lines)
    assert texts(view) == [
        'Carol created the group "Book club"',
        "Carol added Dave and Eve",
        'Carol renamed the group to "Reading"',
        "Carol made Dave an admin",
        "Carol let only admins add people",
        "Dave removed Eve",
        "Dave is no longer an admin",
        "Carol left",
        "Dave is now an admin",
        "Eve joined",
    ]


def test_names_given_to_the_view_win_and_the_caller_is_you() -> None:
    view = ChannelView(CHANNEL, me=DAVE, names={CAROL: "Carol W"})
    view.apply(event(1, CAROL, type="member_added", user_ids=(DAVE, EVE), names={CAROL: "c"}))
    view.apply(event(2, CAROL, type="admin_added", user_id=DAVE))
    view.apply(event(3, DAVE, type="admin_removed", user_id=DAVE))
    assert texts(view) == [
        f"Carol W added you and {EVE}",  # no name known for Eve: her id
        "Carol W made you an admin",
        "You are no longer an admin",
    ]


def test_describe_event_alone_uses_the_events_names() -> None:
    added = ChannelEvent("member_added", user_ids=(DAVE,), names={CAROL: "Carol", DAVE: "Dave"})
    assert describe_event(added, CAROL) == "Carol added Dave"
    assert describe_event(ChannelEvent("member_added", user_ids=(DAVE,)), CAROL) == (
        f"{CAROL} added {DAVE}"
    )
    assert describe_event(ChannelEvent("edit", message_id="1"), CAROL) is None
