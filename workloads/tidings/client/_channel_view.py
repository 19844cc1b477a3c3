"""A channel's messages as a user sees them, folded from its messages and events: no I/O.

A live ``msg`` of a message keeps what it was when sent; the edits, deletes and reactions
that follow are messages of their own (docs/protocol.md, "Channel events"). A
:class:`ChannelView` folds them together: feed it every message of one channel (history
pages, then :meth:`ChatConnection.events` as they come, in any mix) and read
:attr:`~ChannelView.lines`::

    view = ChannelView(channel_id, me=api.user_id, names={bo_id: "Bo"})
    view.apply_all(await api.history(channel_id))
    async for event in chat.events():
        if isinstance(event, Msg) and (line := view.apply(event)) is not None:
            redraw(line)  # a new line, or the one an edit, delete or reaction changed

Edits, deletes and reactions change their target's line and make none of their own;
membership events become system lines with a readable :attr:`Line.system` text ("Carol
added Dave"). Repeats (the same ``message_id``) are dropped, and an older edit or
reaction arriving after a newer one of the same target (and user) changes nothing, so the
fold ends in the server's state whatever the order. An event whose target is not in the
view (older than what was loaded) is dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from ._models import ChannelEvent, Message

__all__ = ["ChannelView", "Line", "describe_event"]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a channel: a message in its current state (edited text, tombstone,
    reactions applied), or a membership event with its readable ``system`` text."""

    message: Message
    system: str | None = None

    @property
    def message_id(self) -> str:
        return self.message.message_id

    @property
    def text(self) -> str:
        """What to show: the system text, the message's body, or a deleted message's
        placeholder."""
        if self.system is not None:
            return self.system
        return "(message deleted)" if self.message.deleted else self.message.body


class ChannelView:
    """The lines of one channel, in message-id order (the channel's time order).

    :param channel_id: messages of other channels are ignored.
    :param me: the caller's user id: shown as "You" in system lines.
    :param names: display names by user id (e.g. from profiles); names carried by the
        events themselves fill in the rest, then the bare user id.
    """

    def __init__(
        self, channel_id: str, *, me: str | None = None, names: Mapping[str, str] | None = None
    ) -> None:
        self.channel_id = channel_id
        self._me = me
        self._names = dict(names or {})
        self._learned: dict[str, str] = {}  # from events' ``names``
        self._lines: dict[str, Line] = {}
        self._seen: set[str] = set()
        self._last_edit: dict[str, int] = {}  # target -> the edit event applied
        self._last_reaction: dict[tuple[str, str], int] = {}  # (target, user) -> event
        self._gone: set[str] = set()  # who left or was removed (and not back since)

    @property
    def lines(self) -> list[Line]:
        return sorted(self._lines.values(), key=lambda line: int(line.message_id))

    def line(self, message_id: str) -> Line | None:
        return self._lines.get(message_id)

    def replied_to(self, line: Line) -> Line | None:
        """The line ``line`` answers, when it is in the view."""
        reply_to = line.message.reply_to
        return None if reply_to is None else self._lines.get(reply_to)

    def name_of(self, user_id: str) -> str:
        """ "You" for the caller, else the best name known, else the user id."""
        if user_id == self._me:
            return "You"
        return self._names.get(user_id) or self._learned.get(user_id) or user_id

    def apply_all(self, messages: Iterable[Message]) -> None:
        """Fold many messages (a history page comes newest first) in message-id order."""
        for message in sorted(messages, key=lambda m: int(m.message_id)):
            self.apply(message)

    def apply(self, message: Message) -> Line | None:
        """Fold one message in; the line it added or changed, or None (another channel, a
        repeat, an event about a message not in the view, or one that changes nothing)."""
        if message.channel_id != self.channel_id or message.message_id in self._seen:
            return None
        self._seen.add(message.message_id)
        event = message.event
        if event is None:
            line = Line(message)
        elif event.is_action:
            return self._act(message, event)
        elif event.is_membership:
            self._learned.update(event.names)
            text = describe_event(event, message.sender_id, self.name_of, self._gone)
            line = Line(message, text)
            self._track_membership(event)
        else:
            return None  # an event type this client does not know
        self._lines[message.message_id] = line
        return line

    def _track_membership(self, event: ChannelEvent) -> None:
        if event.type in ("member_left", "member_removed"):
            self._gone.update(event.subjects)
        elif event.type in ("member_added", "member_joined"):
            self._gone.difference_update(event.subjects)

    def _act(self, message: Message, event: ChannelEvent) -> Line | None:
        target = self._lines.get(event.message_id or "")
        if target is None or target.system is not None:
            return None
        current, order = target.message, int(message.message_id)
        if event.type == "delete":
            changed = dataclasses.replace(
                current, body="", attachments=(), reactions={}, deleted=True, edited_at=None
            )
        elif current.deleted:
            return None  # nothing changes a tombstone
        elif event.type == "edit":
            if order <= self._last_edit.get(target.message_id, 0):
                return None
            self._last_edit[target.message_id] = order
            changed = dataclasses.replace(current, body=message.body, edited_at=message.ts)
        else:  # a reaction
            key = (target.message_id, message.sender_id)
            if order <= self._last_reaction.get(key, 0):
                return None
            self._last_reaction[key] = order
            reactions = dict(current.reactions)
            if event.emoji:
                reactions[message.sender_id] = event.emoji
            else:
                reactions.pop(message.sender_id, None)
            changed = dataclasses.replace(current, reactions=reactions)
        line = Line(changed)
        self._lines[target.message_id] = line
        return line


def _and(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _is(name: str) -> str:
    return "are" if name == "You" else "is"


def describe_event(
    event: ChannelEvent,
    actor_id: str,
    name_of: Callable[[str], str] | None = None,
    gone: Collection[str] = (),
) -> str | None:
    """A membership event as a line of text ("Carol added Dave"), or None for another
    kind of event. ``actor_id``: the event message's ``sender_id``; ``name_of``: user id
    to name (default: the event's own ``names``, then the id); ``gone``: users who had
    left, so the admin made when the last admin left reads "Dave is now an admin" rather
    than as the leaver's doing."""
    if not event.is_membership:
        return None

    def carried(user_id: str) -> str:
        return event.names.get(user_id) or user_id

    name = name_of or carried
    actor = name(actor_id)
    named = [name(user) for user in event.subjects]
    subject = _and(named) or "someone"
    whom = _and(["you" if n == "You" else n for n in named]) or "someone"  # as an object
    match event.type:
        case "group_created":
            return f'{actor} created the group "{event.name}"'
        case "member_added":
            return f"{actor} added {whom}"
        case "member_joined":
            return f"{subject} joined"
        case "member_removed":
            return f"{actor} removed {whom}"
        case "member_left":
            return f"{subject} left"
        case "renamed":
            return f'{actor} renamed the group to "{event.name}"'
        case "admin_added":
            if actor_id in event.subjects or actor_id in gone:
                return f"{subject} {_is(subject)} now an admin"
            return f"{actor} made {whom} an admin"
        case "admin_removed":
            if actor_id in event.subjects:
                return f"{subject} {_is(subject)} no longer an admin"
            return f"{actor} removed {whom} as admin"
        case "settings_changed":
            if event.members_can_add:
                return f"{actor} let every member add people"
            return f"{actor} let only admins add people"
        case _:
            return None
