"""WebSocket frames: typed server frames, a parser, and builders for client frames.

No I/O here. :func:`parse_server_frame` turns one text frame into a typed value (or ``None``
for a frame type this client does not know, which the contract allows servers to add);
the ``*_frame`` builders produce the JSON objects the client sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Self

from ._errors import TidingsProtocolError
from ._models import (
    Attachment,
    Message,
    as_object,
    get_bool,
    get_id,
    get_int,
    get_opt_id,
    get_opt_str,
    get_str,
)

__all__ = [
    "Ack",
    "ClientFrame",
    "ErrorFrame",
    "Event",
    "HeartbeatAck",
    "Msg",
    "Presence",
    "Receipt",
    "Reconnect",
    "Redirect",
    "ServerFrame",
    "Synced",
    "Typing",
    "Welcome",
    "delete_frame",
    "edit_frame",
    "encode",
    "heartbeat_frame",
    "hello_frame",
    "parse_server_frame",
    "reaction_frame",
    "receipt_frame",
    "send_frame",
    "sync_frame",
    "typing_frame",
]

# A client frame as JSON: strings and numbers, and a send's envelopes.
ClientFrame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Welcome:
    user_id: str
    device_id: str
    server_id: str
    heartbeat_s: float
    cursor: int
    """The user's latest inbox ``seq`` on the server."""


@dataclass(frozen=True, slots=True)
class Msg(Message):
    """A message delivered to this device, at inbox position ``seq``: every field of a
    :class:`Message` as it was when sent (``reply_to``, an ``event`` for an edit, delete,
    reaction or membership change, ...)."""

    seq: int = 0  # always given (from_json); a default as Message's last fields have one

    @classmethod
    def from_json(cls, value: object) -> Self:
        message = Message.from_json(value)  # every field of a message, then the seq
        fields_of_message = {f.name: getattr(message, f.name) for f in fields(Message)}
        return cls(**fields_of_message, seq=get_int(as_object(value, "msg"), "seq"))


@dataclass(frozen=True, slots=True)
class Synced:
    cursor: int
    more: bool


@dataclass(frozen=True, slots=True)
class Ack:
    client_msg_id: str
    message_id: str
    channel_id: str
    ts: int


@dataclass(frozen=True, slots=True)
class Receipt:
    channel_id: str
    user_id: str
    message_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    status: str
    last_seen: int | None


@dataclass(frozen=True, slots=True)
class Typing:
    channel_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Redirect:
    chat_url: str


@dataclass(frozen=True, slots=True)
class Reconnect:
    after_ms: int
    # The server restarts in place: come back to the same url, no need to ask discover.
    same_url: bool = False


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    code: str
    message: str
    ref: str | None
    # Fields beyond these (devices_mismatch's missing, extra and stale lists).
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    ts: int


ServerFrame = (
    Welcome
    | Msg
    | Synced
    | Ack
    | Receipt
    | Presence
    | Typing
    | Redirect
    | Reconnect
    | ErrorFrame
    | HeartbeatAck
)
"""Every frame type a server sends that this client understands."""

Event = Welcome | Msg | Synced | Receipt | Presence | Typing | ErrorFrame
"""What :meth:`ChatConnection.events` yields (acks go to :meth:`ChatConnection.send`)."""


def parse_server_frame(data: str | bytes) -> ServerFrame | None:
    """Parse one frame; ``None`` for a type this client does not know (ignore it)."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TidingsProtocolError(f"frame is not JSON: {data!r:.200}") from exc
    obj = as_object(raw, "frame")
    kind = obj.get("type")
    match kind:
        case "msg":
            return Msg.from_json(obj)
        case "welcome":
            return Welcome(
                get_id(obj, "user_id"),
                get_id(obj, "device_id"),
                get_str(obj, "server_id") if "server_id" in obj else "",
                _positive_number(obj, "heartbeat_s"),
                get_int(obj, "cursor"),
            )
        case "synced":
            return Synced(get_int(obj, "cursor"), get_bool(obj, "more") if "more" in obj else False)
        case "ack":
            return Ack(
                get_str(obj, "client_msg_id"),
                get_id(obj, "message_id"),
                get_id(obj, "channel_id"),
                get_int(obj, "ts"),
            )
        case "receipt":
            return Receipt(
                get_id(obj, "channel_id"),
                get_id(obj, "user_id"),
                get_id(obj, "message_id"),
                get_str(obj, "status"),
            )
        case "presence":
            last_seen = None if obj.get("last_seen") is None else get_int(obj, "last_seen")
            return Presence(get_id(obj, "user_id"), get_str(obj, "status"), last_seen)
        case "typing":
            return Typing(get_id(obj, "channel_id"), get_id(obj, "user_id"))
        case "redirect":
            return Redirect(get_str(obj, "chat_url"))
        case "reconnect":
            return Reconnect(get_int(obj, "after_ms"), obj.get("same_url") is True)
        case "error":
            details = {k: v for k, v in obj.items() if k not in ("type", "code", "message", "ref")}
            return ErrorFrame(
                get_str(obj, "code"),
                get_opt_str(obj, "message") or "",
                get_opt_id(obj, "ref"),
                details,
            )
        case "heartbeat_ack":
            return HeartbeatAck(get_int(obj, "ts") if "ts" in obj else 0)
        case str():
            return None
        case _:
            raise TidingsProtocolError(f"frame has no string 'type': {data!r:.200}")


def _positive_number(obj: Mapping[str, object], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if number > 0:
                return number
    raise TidingsProtocolError(f"field {key!r} must be a positive number, got {value!r:.100}")


def encode(frame: ClientFrame) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def hello_frame(token: str, cursor: int) -> ClientFrame:
    return {"type": "hello", "token": token, "cursor": str(cursor)}


def send_frame(
    client_msg_id: str,
    body: str,
    *,
    channel_id: str | None = None,
    to: str | None = None,
    envelopes: list[dict[str, Any]] | None = None,
    attachments: Sequence[Attachment | Mapping[str, Any]] | None = None,
    reply_to: str | None = None,
) -> ClientFrame:
    """A ``send``; ``attachments``: :class:`Attachment` descriptors (or their wire form);
    ``reply_to``: the id of the message (of the same channel) this one answers."""
    if (channel_id is None) == (to is None):
        raise ValueError("give exactly one of channel_id or to")
    frame: ClientFrame = {"type": "send", "client_msg_id": client_msg_id, "body": body}
    if reply_to is not None:
        frame["reply_to"] = reply_to
    if envelopes is not None:
        frame["envelopes"] = envelopes
    if attachments:
        frame["attachments"] = [
            item.to_wire() if isinstance(item, Attachment) else dict(item) for item in attachments
        ]
    if channel_id is not None:
        frame["channel_id"] = channel_id
    else:
        assert to is not None
        frame["to"] = to
    return frame


def _action_frame(
    client_msg_id: str, channel_id: str, event: dict[str, str], body: str | None = None
) -> ClientFrame:
    """A ``send`` that acts on a message of ``channel_id`` instead of saying something."""
    frame: ClientFrame = {
        "type": "send",
        "client_msg_id": client_msg_id,
        "channel_id": channel_id,
        "event": event,
    }
    if body is not None:
        frame["body"] = body
    return frame


def edit_frame(client_msg_id: str, channel_id: str, message_id: str, body: str) -> ClientFrame:
    """Replace the text of one's own message ``message_id`` with ``body``."""
    event = {"type": "edit", "message_id": message_id}
    return _action_frame(client_msg_id, channel_id, event, body)


def delete_frame(client_msg_id: str, channel_id: str, message_id: str) -> ClientFrame:
    """Delete one's own message ``message_id`` for everyone (it becomes a tombstone)."""
    return _action_frame(client_msg_id, channel_id, {"type": "delete", "message_id": message_id})


def reaction_frame(client_msg_id: str, channel_id: str, message_id: str, emoji: str) -> ClientFrame:
    """React to ``message_id`` with ``emoji`` (replacing one's earlier reaction); ``""``
    takes it back."""
    event = {"type": "reaction", "message_id": message_id, "emoji": emoji}
    return _action_frame(client_msg_id, channel_id, event)


def receipt_frame(channel_id: str, message_id: str, status: str) -> ClientFrame:
    if status not in ("delivered", "read"):
        raise ValueError(f"receipt status must be 'delivered' or 'read', not {status!r}")
    return {"type": "receipt", "channel_id": channel_id, "message_id": message_id, "status": status}


def sync_frame(cursor: int, limit: int | None = None) -> ClientFrame:
    frame: ClientFrame = {"type": "sync", "cursor": str(cursor)}
    if limit is not None:
        frame["limit"] = limit
    return frame


def heartbeat_frame() -> ClientFrame:
    return {"type": "heartbeat"}


def typing_frame(channel_id: str) -> ClientFrame:
    return {"type": "typing", "channel_id": channel_id}
