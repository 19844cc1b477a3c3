"""Typed views of the JSON objects the HTTP API returns, and the helpers that read them.

Readers are lenient where the contract allows a client to be (an id or sequence sent as a
JSON number is accepted as well as the decimal string the contract asks for; unknown fields
are ignored) and strict where guessing would be wrong (a missing field is an error).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from ._errors import TidingsProtocolError

__all__ = [
    "ACTION_TYPES",
    "MEMBERSHIP_TYPES",
    "Attachment",
    "Channel",
    "ChannelEvent",
    "Device",
    "FriendRequests",
    "Group",
    "Invite",
    "MediaObject",
    "Message",
    "PresenceInfo",
    "Profile",
    "ReceiptMarks",
    "Session",
    "User",
    "as_object",
    "get_bool",
    "get_id",
    "get_id_list",
    "get_int",
    "get_opt_id",
    "get_opt_int",
    "get_opt_str",
    "get_str",
]


def as_object(value: object, what: str = "body") -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise TidingsProtocolError(f"{what} is not a JSON object: {value!r:.200}")
    return value


def _missing(obj: Mapping[str, object], key: str, kind: str) -> TidingsProtocolError:
    return TidingsProtocolError(f"field {key!r} must be {kind}, got {obj.get(key)!r:.100}")


def get_str(obj: Mapping[str, object], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _missing(obj, key, "a string")
    return value


def get_opt_str(obj: Mapping[str, object], key: str) -> str | None:
    return None if obj.get(key) is None else get_str(obj, key)


def get_id(obj: Mapping[str, object], key: str) -> str:
    """An id: a string (a JSON integer is tolerated and turned into its decimal string)."""
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise _missing(obj, key, "an id string")
    return value


def get_opt_id(obj: Mapping[str, object], key: str) -> str | None:
    return None if obj.get(key) is None else get_id(obj, key)


def get_id_list(obj: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise _missing(obj, key, "a list of ids")
    return tuple(get_id({key: item}, key) for item in value)


def get_int(obj: Mapping[str, object], key: str) -> int:
    """A non-negative integer sent as a decimal string (sequences) or a JSON number (times)."""
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise _missing(obj, key, "a non-negative integer")


def get_opt_int(obj: Mapping[str, object], key: str) -> int | None:
    return None if obj.get(key) is None else get_int(obj, key)


def get_bool(obj: Mapping[str, object], key: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise _missing(obj, key, "a boolean")
    return value


@dataclass(frozen=True, slots=True)
class User:
    """The answer to a signup: ``POST /v1/users``."""

    user_id: str
    username: str
    display_name: str | None

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "user")
        return cls(
            get_id(obj, "user_id"), get_str(obj, "username"), get_opt_str(obj, "display_name")
        )


@dataclass(frozen=True, slots=True)
class PresenceInfo:
    status: str
    last_seen: int | None

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "presence")
        last_seen = None if obj.get("last_seen") is None else get_int(obj, "last_seen")
        return cls(get_str(obj, "status"), last_seen)


@dataclass(frozen=True, slots=True)
class Profile:
    """A user as ``/v1/me``, ``/v1/users/{id}`` and ``/v1/friends`` show it."""

    user_id: str
    username: str
    display_name: str | None
    presence: PresenceInfo | None

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "profile")
        presence = obj.get("presence")
        return cls(
            get_id(obj, "user_id"),
            get_str(obj, "username"),
            get_opt_str(obj, "display_name"),
            None if presence is None else PresenceInfo.from_json(presence),
        )


@dataclass(frozen=True, slots=True)
class Session:
    """The answer to a login: ``POST /v1/sessions``."""

    access_token: str
    expires_at: int
    user_id: str
    device_id: str
    chat_url: str

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "session")
        return cls(
            get_str(obj, "access_token"),
            get_int(obj, "expires_at"),
            get_id(obj, "user_id"),
            get_id(obj, "device_id"),
            get_str(obj, "chat_url"),
        )


@dataclass(frozen=True, slots=True)
class Group:
    """A group. ``invited``: from ``POST /v1/groups``, the members named who are not the
    caller's friends, invited instead of added (empty elsewhere). ``admin_ids``: who may
    rename it, change its settings, add and remove members and make admins (the creator
    first); ``members_can_add``: whether members who are not admins may add others."""

    channel_id: str
    name: str
    owner_id: str
    member_ids: tuple[str, ...]
    invited: tuple[str, ...] = ()
    admin_ids: tuple[str, ...] = ()
    members_can_add: bool = True

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "group")
        return cls(
            get_id(obj, "channel_id"),
            get_str(obj, "name"),
            get_id(obj, "owner_id"),
            get_id_list(obj, "member_ids"),
            get_id_list(obj, "invited") if obj.get("invited") is not None else (),
            get_id_list(obj, "admin_ids") if obj.get("admin_ids") is not None else (),
            get_bool(obj, "members_can_add") if obj.get("members_can_add") is not None else True,
        )


@dataclass(frozen=True, slots=True)
class Device:
    """One of the caller's devices, as ``GET /v1/devices`` lists it. ``last_seen``: when
    it last connected or disconnected (to the minute), or None; ``current``: the calling
    device; ``push``: whether (or with which provider) it has a push token."""

    device_id: str
    name: str | None
    platform: str | None
    push: bool | str | None
    created_at: int | None
    last_seen: int | None
    current: bool

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "device")
        push = obj.get("push")
        if push is not None and not isinstance(push, bool | str):
            push = True  # an object describing the registration: the device has one
        return cls(
            get_id(obj, "device_id"),
            get_opt_str(obj, "name"),
            get_opt_str(obj, "platform"),
            push,
            None if obj.get("created_at") is None else get_int(obj, "created_at"),
            None if obj.get("last_seen") is None else get_int(obj, "last_seen"),
            get_bool(obj, "current") if "current" in obj else False,
        )


@dataclass(frozen=True, slots=True)
class FriendRequests:
    """``GET /v1/friends/requests``: who asked the caller, and whom the caller asked."""

    incoming: tuple[Profile, ...]
    outgoing: tuple[Profile, ...]

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "friend requests")
        return cls(_profiles(obj, "incoming"), _profiles(obj, "outgoing"))


@dataclass(frozen=True, slots=True)
class Invite:
    """A group invite to the caller (``GET /v1/invites``)."""

    channel_id: str
    name: str
    inviter_id: str
    inviter: Profile | None
    created_at: int | None

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "invite")
        inviter = obj.get("inviter")
        return cls(
            get_id(obj, "channel_id"),
            get_str(obj, "name"),
            get_id(obj, "inviter_id"),
            None if inviter is None else Profile.from_json(inviter),
            None if obj.get("created_at") is None else get_int(obj, "created_at"),
        )


def _profiles(obj: Mapping[str, object], key: str) -> tuple[Profile, ...]:
    items = obj.get(key)
    if not isinstance(items, list):
        raise _missing(obj, key, "a list of profiles")
    return tuple(Profile.from_json(item) for item in items)


@dataclass(frozen=True, slots=True)
class ReceiptMarks:
    """Another member's stored receipt watermarks in a channel (message ids, ``"0"`` for
    none): everything up to ``delivered_upto`` reached one of their devices, everything
    up to ``read_upto`` was read. A client draws its ticks from these after a reconnect or
    a reload, then moves them with live ``Receipt`` events."""

    user_id: str
    delivered_upto: str
    read_upto: str

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "receipt marks")
        return cls(get_id(obj, "user_id"), get_id(obj, "delivered_upto"), get_id(obj, "read_upto"))

    def has_delivered(self, message_id: str) -> bool:
        """Whether ``message_id`` (of this channel) reached them."""
        return int(self.delivered_upto) >= int(message_id)

    def has_read(self, message_id: str) -> bool:
        return int(self.read_upto) >= int(message_id)


@dataclass(frozen=True, slots=True)
class Channel:
    """One entry of ``GET /v1/channels``. ``read_upto``: the caller's own read mark (a
    message id, ``"0"`` for none); ``unread``: messages from others after it (channel
    events do not count; ``1000`` means 1,000 or more); ``receipts``: every other
    member's watermarks. Groups also carry ``owner_id``, ``admin_ids`` and
    ``members_can_add`` (``None`` for a 1:1 channel)."""

    channel_id: str
    kind: str
    name: str | None
    member_ids: tuple[str, ...]
    last_message_id: str | None
    read_upto: str = "0"
    unread: int = 0
    receipts: tuple[ReceiptMarks, ...] = ()
    owner_id: str | None = None
    admin_ids: tuple[str, ...] = ()
    members_can_add: bool | None = None

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "channel")
        receipts = obj.get("receipts")
        if receipts is not None and not isinstance(receipts, list):
            raise _missing(obj, "receipts", "a list of receipt marks")
        return cls(
            get_id(obj, "channel_id"),
            get_str(obj, "kind"),
            get_opt_str(obj, "name"),
            get_id_list(obj, "member_ids"),
            get_opt_id(obj, "last_message_id"),
            get_id(obj, "read_upto") if obj.get("read_upto") is not None else "0",
            get_int(obj, "unread") if obj.get("unread") is not None else 0,
            tuple(ReceiptMarks.from_json(item) for item in receipts or ()),
            get_opt_id(obj, "owner_id"),
            get_id_list(obj, "admin_ids") if obj.get("admin_ids") is not None else (),
            get_bool(obj, "members_can_add") if obj.get("members_can_add") is not None else None,
        )

    def receipts_of(self, user_id: str) -> ReceiptMarks | None:
        """``user_id``'s watermarks here (None for the caller, or a non-member)."""
        return next((r for r in self.receipts if r.user_id == user_id), None)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a message carries (docs/protocol.md, "Media"): what :meth:`ApiClient.upload`
    returns and what ``send(..., attachments=[...])`` takes. ``media_id``,
    ``content_type``, ``size`` and ``sha256`` are the completed upload's; ``name``,
    ``width``, ``height`` and ``duration_ms`` what the sender knows. ``thumbnail``: on a
    received message, the server made a WebP preview (never sent)."""

    media_id: str
    content_type: str
    size: int
    sha256: str
    name: str | None = None
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    thumbnail: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The attachment as a ``send`` frame carries it (set fields only)."""
        wire: dict[str, Any] = {
            "media_id": self.media_id,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
        }
        for key in ("name", "width", "height", "duration_ms"):
            value = getattr(self, key)
            if value is not None:
                wire[key] = value
        return wire

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "attachment")
        return cls(
            get_str(obj, "media_id"),
            get_str(obj, "content_type"),
            get_int(obj, "size"),
            get_str(obj, "sha256"),
            get_opt_str(obj, "name"),
            get_opt_int(obj, "width"),
            get_opt_int(obj, "height"),
            get_opt_int(obj, "duration_ms"),
            obj.get("thumbnail") is True,
        )


@dataclass(frozen=True, slots=True)
class MediaObject:
    """An upload as ``/v1/media`` describes it. ``state``: ``pending`` or ``ready``;
    ``url`` / ``thumbnail_url`` (presigned, until ``url_expires_at``) come with
    ``GET /v1/media/{id}``; ``upload`` (the slot: how to PUT the bytes), ``expires_at``
    and ``done_parts`` with a pending upload's answers."""

    media_id: str
    state: str
    content_type: str
    size: int
    sha256: str
    e2e: bool = False
    width: int | None = None
    height: int | None = None
    thumbnail: bool = False
    url: str | None = None
    thumbnail_url: str | None = None
    url_expires_at: int | None = None
    expires_at: int | None = None
    upload: dict[str, Any] | None = None
    done_parts: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "media")
        upload = obj.get("upload")
        done = obj.get("done_parts")
        if done is not None and not isinstance(done, list):
            raise _missing(obj, "done_parts", "a list of part numbers")
        return cls(
            get_str(obj, "media_id"),
            get_str(obj, "state"),
            get_str(obj, "content_type"),
            get_int(obj, "size"),
            get_str(obj, "sha256"),
            obj.get("e2e") is True,
            get_opt_int(obj, "width"),
            get_opt_int(obj, "height"),
            obj.get("thumbnail") is True,
            get_opt_str(obj, "url"),
            get_opt_str(obj, "thumbnail_url"),
            get_opt_int(obj, "url_expires_at"),
            get_opt_int(obj, "expires_at"),
            dict(upload) if isinstance(upload, dict) else None,
            tuple(get_int({"n": n}, "n") for n in done or ()),
        )


# Actions a member sends (ChatConnection.edit / delete / react); the server applies each
# to the message it names.
ACTION_TYPES = frozenset({"edit", "delete", "reaction"})
# Made by the server when a group changes; a client cannot send them.
MEMBERSHIP_TYPES = frozenset(
    {
        "group_created",
        "member_added",
        "member_joined",
        "member_removed",
        "member_left",
        "renamed",
        "admin_added",
        "admin_removed",
        "settings_changed",
    }
)


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """A message's ``event`` (docs/protocol.md, "Channel events"): what the message *does*
    instead of saying something. ``type`` says which fields apply:

    - ``edit`` (``message_id``: the target, ``previous``: the text it replaced; the new
      text is the message's ``body``), ``delete`` (``message_id``), ``reaction``
      (``message_id``, ``emoji``; ``""`` takes the sender's reaction back);
    - ``group_created`` / ``renamed`` (``name``), ``member_added`` (``user_ids``),
      ``member_joined`` / ``member_removed`` / ``member_left`` / ``admin_added`` /
      ``admin_removed`` (``user_id``), ``settings_changed`` (``members_can_add``).

    The message's ``sender_id`` is who did it. ``names``: display names (user id to name)
    of the users a membership event names, as they were then, when the server sends them.
    A type this client does not know keeps its ``type`` and leaves the rest unset.
    """

    type: str
    message_id: str | None = None
    emoji: str | None = None
    previous: str | None = None
    name: str | None = None
    user_id: str | None = None
    user_ids: tuple[str, ...] = ()
    members_can_add: bool | None = None
    names: dict[str, str] = field(default_factory=dict)

    @property
    def is_action(self) -> bool:
        """An edit, delete or reaction of another message (no line of its own)."""
        return self.type in ACTION_TYPES

    @property
    def is_membership(self) -> bool:
        return self.type in MEMBERSHIP_TYPES

    @property
    def subjects(self) -> tuple[str, ...]:
        """The users a membership event is about (``user_ids``, or ``user_id``)."""
        if self.user_ids:
            return self.user_ids
        return (self.user_id,) if self.user_id is not None else ()

    def to_json(self) -> dict[str, Any]:
        """The event as the wire spells it (fields that are set only)."""
        wire: dict[str, Any] = {"type": self.type}
        for key in ("message_id", "emoji", "previous", "name", "user_id", "members_can_add"):
            value = getattr(self, key)
            if value is not None:
                wire[key] = value
        if self.user_ids:
            wire["user_ids"] = list(self.user_ids)
        if self.names:
            wire["names"] = dict(self.names)
        return wire

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "event")
        names = obj.get("names")
        if names is not None and not isinstance(names, dict):
            raise _missing(obj, "names", "an object of user ids to names")
        return cls(
            get_str(obj, "type"),
            get_opt_id(obj, "message_id"),
            get_opt_str(obj, "emoji"),
            get_opt_str(obj, "previous"),
            get_opt_str(obj, "name"),
            get_opt_id(obj, "user_id"),
            get_id_list(obj, "user_ids") if obj.get("user_ids") is not None else (),
            get_bool(obj, "members_can_add") if obj.get("members_can_add") is not None else None,
            {str(k): v for k, v in (names or {}).items() if isinstance(v, str)},
        )


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message, as history and search return it.

    Everyday messaging (docs/protocol.md, issue #20): ``reply_to`` names the message this
    one answers; ``event`` makes it a channel event (an edit, delete or reaction of
    another message, or a membership change) rather than a text; ``edited_at`` (ms),
    ``deleted`` (a tombstone: empty ``body``, no attachments, no reactions) and
    ``reactions`` (user id to emoji, one each) are the message's current state as
    history and search give it. A live ``Msg`` keeps what the message was when sent:
    :class:`~._channel_view.ChannelView` applies the events that follow.
    """

    message_id: str
    channel_id: str
    sender_id: str
    sender_device_id: str
    client_msg_id: str | None
    body: str
    ts: int
    # End-to-end channels (docs/e2ee.md): this device's own envelope ({type, body}, or
    # None: none was made for it) and the sending device's identity key.
    e2e: bool = False
    envelope: dict[str, Any] | None = None
    sender_key: str | None = None
    # Media (docs/protocol.md): the files it carries, as sent (empty: none).
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    event: ChannelEvent | None = None
    edited_at: int | None = None
    deleted: bool = False
    reactions: dict[str, str] = field(default_factory=dict)

    @property
    def is_event(self) -> bool:
        return self.event is not None

    def reaction_counts(self) -> dict[str, int]:
        """How many members reacted with each emoji, most first (then by emoji)."""
        counts: dict[str, int] = {}
        for emoji in self.reactions.values():
            counts[emoji] = counts.get(emoji, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    @classmethod
    def from_json(cls, value: object) -> Self:
        obj = as_object(value, "message")
        envelope = obj.get("envelope")
        attachments = obj.get("attachments")
        if attachments is not None and not isinstance(attachments, list):
            raise _missing(obj, "attachments", "a list of attachments")
        event = obj.get("event")
        reactions = obj.get("reactions")
        if reactions is not None and not isinstance(reactions, dict):
            raise _missing(obj, "reactions", "an object of user ids to emoji")
        return cls(
            get_id(obj, "message_id"),
            get_id(obj, "channel_id"),
            get_id(obj, "sender_id"),
            get_id(obj, "sender_device_id"),
            get_opt_str(obj, "client_msg_id"),
            get_str(obj, "body"),
            get_int(obj, "ts"),
            obj.get("e2e") is True,
            dict(envelope) if isinstance(envelope, dict) else None,
            get_opt_str(obj, "sender_key"),
            tuple(Attachment.from_json(item) for item in attachments or ()),
            get_opt_id(obj, "reply_to"),
            None if event is None else ChannelEvent.from_json(event),
            get_opt_int(obj, "edited_at"),
            obj.get("deleted") is True,
            {str(user): get_str(reactions, user) for user in reactions} if reactions else {},
        )
