"""Channel events (issue #20; docs/protocol.md, "Everyday messaging"): no I/O.

A channel event is a message with an ``event`` object. Membership events are made by the
server; edits, deletes and reactions are *actions* a member sends, checked here against
the message they name (the *target*) before anything is stored.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import Any

from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.core.ids import parse_decimal_id
from tidings.core.model import Message

EDIT = "edit"
DELETE = "delete"
REACTION = "reaction"
ACTIONS = frozenset({EDIT, DELETE, REACTION})

# Made by the server when a group changes (routes_social.py); a client cannot send them.
GROUP_CREATED = "group_created"
MEMBER_ADDED = "member_added"
MEMBER_JOINED = "member_joined"
MEMBER_REMOVED = "member_removed"
MEMBER_LEFT = "member_left"
RENAMED = "renamed"
ADMIN_ADDED = "admin_added"
ADMIN_REMOVED = "admin_removed"
SETTINGS_CHANGED = "settings_changed"

MAX_EMOJI_CHARS = 16
EVENT_CLIENT_MSG_ID = "event:"  # + the event's message id: server-made events


def _invalid(message: str, ref: str) -> ProtocolError:
    return ProtocolError(errors.INVALID_FRAME, message, ref=ref)


def parse_action(raw: Any, ref: str) -> dict[str, Any]:
    """A ``send``'s ``event``: ``{type, message_id, emoji?}`` with the id as a decimal
    string; anything else is ``invalid_frame``."""
    if not isinstance(raw, dict):
        raise _invalid("'event' must be an object", ref)
    kind = raw.get("type")
    if kind not in ACTIONS:
        raise _invalid("'event.type' must be 'edit', 'delete' or 'reaction'", ref)
    target = raw.get("message_id")
    if isinstance(target, int) and not isinstance(target, bool):
        target = str(target)
    if not isinstance(target, str) or parse_decimal_id(target) is None:
        raise _invalid("'event.message_id' must be a message id", ref)
    action: dict[str, Any] = {"type": kind, "message_id": str(int(target))}
    if kind == REACTION:
        emoji = raw.get("emoji")
        if not isinstance(emoji, str) or not _is_emoji_text(emoji):
            raise _invalid(
                f"'event.emoji' must be 1-{MAX_EMOJI_CHARS} characters without control "
                "characters, or '' to take a reaction back",
                ref,
            )
        action["emoji"] = emoji
    return action


def _is_emoji_text(text: str) -> bool:
    if text == "":
        return True
    if len(text) > MAX_EMOJI_CHARS or text.strip() != text:
        return False
    # Zero-width joiners and variation selectors are part of emoji (category Cf / Mn).
    return all(unicodedata.category(c) not in ("Cc", "Cs", "Co", "Cn") for c in text)


def action_target(action: dict[str, Any]) -> int:
    """The id of the message an edit, delete or reaction acts on."""
    return int(action["message_id"])


def check_reply(target: Message | None, ref: str) -> None:
    """A reply must name a message of the same channel that is not an event."""
    if target is None or target.event is not None:
        raise ProtocolError(errors.UNKNOWN_MESSAGE, "no such message in this channel", ref=ref)


def check_action(
    action: dict[str, Any],
    target: Message | None,
    sender_id: int,
    now_ms: int,
    *,
    e2e: bool,
    edit_window_ms: int,
    delete_window_ms: int,
    ref: str,
) -> None:
    """Raise the contract's error unless the sender may do ``action`` to ``target``."""
    check_reply(target, ref)
    assert target is not None
    kind = action["type"]
    if kind == REACTION:
        if target.deleted:
            raise ProtocolError(errors.TOO_LATE, "the message was deleted", ref=ref)
        return
    if kind == EDIT and e2e:
        raise ProtocolError(
            errors.NOT_SUPPORTED, "edits are not supported in end-to-end channels", ref=ref
        )
    if target.sender_id != sender_id:
        raise ProtocolError(errors.FORBIDDEN, "only its sender may change a message", ref=ref)
    window = edit_window_ms if kind == EDIT else delete_window_ms
    if target.deleted or now_ms - target.ts > window:
        raise ProtocolError(
            errors.TOO_LATE,
            f"a message can be {'edited' if kind == EDIT else 'deleted'} for "
            f"{window // 60_000} minutes after it was sent",
            ref=ref,
        )


def stored_action(action: dict[str, Any], target: Message) -> dict[str, Any]:
    """The event as stored: an edit keeps the text it replaced (every version stays in
    the channel's history)."""
    if action["type"] == EDIT:
        return {**action, "previous": target.body}
    return action


def membership_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server-made event; user ids go on the wire as decimal strings."""
    event: dict[str, Any] = {"type": kind}
    for key, value in fields.items():
        if key == "user_ids":
            event[key] = [str(u) for u in value]
        elif key == "user_id":
            event[key] = str(value)
        else:
            event[key] = value
    return event


def counts_as_unread(message: Message, reader_id: int) -> bool:
    """Whether the message counts as unread for ``reader_id``: not an event, not their own,
    not deleted."""
    return message.event is None and message.sender_id != reader_id and not message.deleted


def wakes(message: Message, user_id: int) -> bool:
    """Whether a push goes to the user's offline devices: for a message, or for being
    added to a group; not for edits, deletes, reactions or other membership events."""
    event = message.event
    if event is None:
        return True
    return event["type"] == MEMBER_ADDED and str(user_id) in event.get("user_ids", ())


def applied(target: Message, event: Message) -> Message:
    """``target`` as ``event`` (an edit, delete or reaction of it) leaves it."""
    action = event.event or {}
    kind = action.get("type")
    if kind == EDIT:
        return dataclasses.replace(target, body=event.body, edited_at=event.ts)
    if kind == DELETE:
        return dataclasses.replace(
            target, body="", attachments=(), reactions={}, deleted=True, edited_at=None
        )
    if kind == REACTION:
        reactions = dict(target.reactions)
        if action.get("emoji"):
            reactions[event.sender_id] = action["emoji"]
        else:
            reactions.pop(event.sender_id, None)
        return dataclasses.replace(target, reactions=reactions)
    return target
