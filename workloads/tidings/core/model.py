"""The values that travel between the core, storage and the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tidings.core.e2ee import is_envelopes, view_for

Attachments = tuple[dict[str, Any], ...]


def attachments_to_text(attachments: Attachments) -> str | None:
    """How storage keeps a message's attachments: compact JSON, or NULL for none."""
    return orjson.dumps(attachments).decode() if attachments else None


def attachments_from_text(text: str | None) -> Attachments:
    """A message's attachments back from storage (see :func:`attachments_to_text`)."""
    return tuple(orjson.loads(text)) if text else ()


def json_to_text(value: dict[Any, Any] | None) -> str | None:
    """How storage keeps an event or the reactions: compact JSON, or NULL for none."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode() if value else None


def json_from_text(text: str | None) -> dict[str, Any] | None:
    """An event or the reactions back from storage (see :func:`json_to_text`)."""
    return orjson.loads(text) if text else None


def reactions_from_text(text: str | None) -> dict[int, str]:
    """The reactions back from storage: emoji by user id."""
    return {int(user): emoji for user, emoji in (json_from_text(text) or {}).items()}


@dataclass(frozen=True, slots=True)
class Message:
    message_id: int
    channel_id: str
    sender_id: int
    sender_device_id: int
    client_msg_id: str
    body: str
    ts: int
    # Media sent with it (core/media.py: as sent, with what the server measured).
    attachments: Attachments = ()
    # Issue #20 (core/channel_events.py): the message this one answers; a channel event
    # (membership, edit, delete, reaction) instead of a text; the target's current state.
    # (The two dicts stay out of the hash, so a Message is still hashable.)
    reply_to: int | None = None
    event: dict[str, Any] | None = field(default=None, hash=False)
    edited_at: int | None = None
    deleted: bool = False
    reactions: dict[int, str] = field(default_factory=dict, hash=False)

    def to_wire_for(self, device_id: int) -> dict[str, Any]:
        """As one device may see it: an end-to-end message shows only that device's own
        envelope (core/e2ee.py); any other is the same for every device."""
        wire = self.to_wire()
        if is_envelopes(self.body):
            wire.update(view_for(self.body, device_id))
        return wire

    def to_wire(self) -> dict[str, Any]:
        """The message as the wire carries it (ids as decimal strings; optional fields only when
        set); an end-to-end body as stored, see :meth:`to_wire_for`."""
        wire = {
            "message_id": str(self.message_id),
            "channel_id": self.channel_id,
            "sender_id": str(self.sender_id),
            "sender_device_id": str(self.sender_device_id),
            "client_msg_id": self.client_msg_id,
            "body": self.body,
            "ts": self.ts,
        }
        if self.attachments:
            wire["attachments"] = list(self.attachments)
        if self.reply_to is not None:
            wire["reply_to"] = str(self.reply_to)
        if self.event is not None:
            wire["event"] = self.event
        if self.edited_at is not None:
            wire["edited_at"] = self.edited_at
        if self.deleted:
            wire["deleted"] = True
        if self.reactions:
            wire["reactions"] = {str(user): emoji for user, emoji in self.reactions.items()}
        return wire

    def same_send(self, other: Message) -> bool:
        """Whether ``other`` repeats this message's send (a resend of the same
        client_msg_id must name the same channel, body and attachments)."""
        return (
            self.channel_id == other.channel_id
            and self.body == other.body
            and self.attachments == other.attachments
            and self.reply_to == other.reply_to
            and _same_action(self.event, other.event)
        )

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Message:
        """A message from its wire form (the inverse of :meth:`to_wire`)."""
        return cls(
            message_id=int(data["message_id"]),
            channel_id=str(data["channel_id"]),
            sender_id=int(data["sender_id"]),
            sender_device_id=int(data["sender_device_id"]),
            client_msg_id=str(data["client_msg_id"]),
            body=str(data["body"]),
            ts=int(data["ts"]),
            attachments=tuple(data.get("attachments") or ()),
            reply_to=int(data["reply_to"]) if "reply_to" in data else None,
            event=data.get("event"),
            edited_at=data.get("edited_at"),
            deleted=bool(data.get("deleted", False)),
            reactions={int(u): e for u, e in (data.get("reactions") or {}).items()},
        )


def _same_action(stored: dict[str, Any] | None, sent: dict[str, Any] | None) -> bool:
    """An event as sent and as stored (the server adds ``previous`` to an edit)."""
    if stored is None or sent is None:
        return stored is sent
    return {k: v for k, v in stored.items() if k != "previous"} == {
        k: v for k, v in sent.items() if k != "previous"
    }


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A message at its place in one user's inbox."""

    seq: int
    message: Message

    def to_wire(self) -> dict[str, Any]:
        """The ``msg`` frame for this entry, the body as stored (see :meth:`to_wire_for`)."""
        return {"type": "msg", "seq": str(self.seq), **self.message.to_wire()}

    def to_wire_for(self, device_id: int) -> dict[str, Any]:
        """The ``msg`` frame one device is sent: an end-to-end message shows it only its
        own envelope (core/e2ee.py); any other is the same for every device."""
        return {"type": "msg", "seq": str(self.seq), **self.message.to_wire_for(device_id)}


@dataclass(frozen=True, slots=True)
class Watermarks:
    """How far one user has received and read one channel (message ids, 0 for none)."""

    delivered_upto: int = 0
    read_upto: int = 0


def advance_watermarks(current: Watermarks, message_id: int, status: str) -> Watermarks | None:
    """Move a user's receipt watermarks forward; None when nothing moves.

    Receipts only move forward and a ``read`` implies ``delivered``.
    """
    delivered = max(current.delivered_upto, message_id)
    read = max(current.read_upto, message_id) if status == "read" else current.read_upto
    moved = current.read_upto < read if status == "read" else current.delivered_upto < delivered
    if not moved:
        return None
    return Watermarks(delivered_upto=delivered, read_upto=read)


@dataclass(frozen=True, slots=True)
class OnlineLease:
    """A user a chat server serves right now, for the "online" lease it keeps renewing."""

    user_id: int
    partition: int
    last_seen: int | None


@dataclass(frozen=True, slots=True)
class PresenceStatus:
    status: str  # "online" | "offline"
    last_seen: int | None  # ms since the epoch; None when never seen

    def to_wire(self) -> dict[str, Any]:
        """The status as the API shows it."""
        return {"status": self.status, "last_seen": self.last_seen}
