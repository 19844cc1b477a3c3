"""Client frames parsed into typed values, and server frames built as dicts.

Parsing never raises anything but :class:`~tidings.core.errors.ProtocolError`, with the
contract's ``invalid_frame`` or ``body_too_long`` code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tidings.core.channel_events import EDIT, parse_action
from tidings.core.e2ee import MARK, Envelope, parse_envelopes
from tidings.core.errors import BODY_TOO_LONG, INVALID_FRAME, ProtocolError
from tidings.core.ids import MAX_ID, parse_decimal_id
from tidings.core.media import Attachment, parse_attachments

MAX_BODY_CHARS = 100_000
MAX_CLIENT_MSG_ID = 64
MAX_SYNC_LIMIT = 1_000
DEFAULT_SYNC_LIMIT = 500

ReceiptStatus = Literal["delivered", "read"]


@dataclass(frozen=True, slots=True)
class Hello:
    token: str
    cursor: int


@dataclass(frozen=True, slots=True)
class Send:
    client_msg_id: str
    body: str
    channel_id: str | None = None
    to: int | None = None
    # End-to-end channels: one ciphertext per recipient device (core/e2ee.py).
    envelopes: tuple[Envelope, ...] | None = None
    # Media uploads sent with it (core/media.py).
    attachments: tuple[Attachment, ...] = ()
    # Issue #20 (core/channel_events.py): the message answered; an edit, delete or
    # reaction of a message instead of a new one.
    reply_to: int | None = None
    action: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    channel_id: str
    message_id: int
    status: ReceiptStatus


@dataclass(frozen=True, slots=True)
class Sync:
    cursor: int
    limit: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Typing:
    channel_id: str


ClientFrame = Hello | Send | Receipt | Sync | Heartbeat | Typing


def _invalid(message: str, ref: str | None = None) -> ProtocolError:
    return ProtocolError(INVALID_FRAME, message, ref=ref)


def _string(frame: dict[str, Any], key: str, ref: str | None = None) -> str:
    value = frame.get(key)
    if not isinstance(value, str):
        raise _invalid(f"field {key!r} must be a string", ref)
    if not value.isascii():
        try:  # JSON can carry lone surrogates (half an emoji); they are not text
            value.encode()
        except UnicodeEncodeError:
            raise _invalid(f"field {key!r} is not valid Unicode", _safe_ref(ref)) from None
    return value


def _safe_ref(ref: str | None) -> str | None:
    if ref is None:
        return None
    try:
        ref.encode()
    except UnicodeEncodeError:
        return None
    return ref


def _decimal(frame: dict[str, Any], key: str, ref: str | None = None) -> int:
    """A non-negative id or sequence sent as a decimal string (plain ints are accepted)."""
    value = frame.get(key)
    if isinstance(value, bool):
        raise _invalid(f"field {key!r} must be a decimal string", ref)
    if isinstance(value, int) and 0 <= value <= MAX_ID:
        return value
    if isinstance(value, str) and (parsed := parse_decimal_id(value)) is not None:
        return parsed
    raise _invalid(f"field {key!r} must be a decimal string", ref)


def parse_client_frame(text: str | bytes) -> ClientFrame:
    """Parse one frame from a client into its typed form.

    Raises :class:`ProtocolError` ``invalid_frame`` when it is not JSON, not an object, has
    no known ``type``, or a field is missing or malformed."""
    try:
        # orjson (C): rejects invalid UTF-8, lone surrogates, NaN and nesting deeper than
        # 1024 levels, all as JSONDecodeError (a ValueError).
        frame = orjson.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _invalid("frame is not valid JSON") from exc
    if not isinstance(frame, dict):
        raise _invalid("frame must be a JSON object")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise _invalid("frame has no 'type'")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise _invalid(f"unknown frame type {kind!r}")
    return parser(frame)


def _parse_hello(frame: dict[str, Any]) -> Hello:
    cursor = _decimal(frame, "cursor") if "cursor" in frame else 0
    return Hello(token=_string(frame, "token"), cursor=cursor)


def _parse_send(frame: dict[str, Any]) -> Send:
    client_msg_id = _string(frame, "client_msg_id")
    if not 1 <= len(client_msg_id) <= MAX_CLIENT_MSG_ID:
        raise _invalid("client_msg_id must be 1-64 characters", client_msg_id[:64] or None)
    ref = client_msg_id
    action = parse_action(frame["event"], ref) if "event" in frame else None
    # A delete or a reaction carries no text.
    body = "" if action is not None and "body" not in frame else _string(frame, "body", ref)
    if len(body) > MAX_BODY_CHARS:
        raise ProtocolError(
            BODY_TOO_LONG, f"body is longer than {MAX_BODY_CHARS} characters", ref=ref
        )
    if body.startswith(MARK):
        raise _invalid("body may not start with a NUL character", ref)
    envelopes = parse_envelopes(frame["envelopes"], ref) if "envelopes" in frame else None
    attachments = parse_attachments(frame["attachments"], ref) if "attachments" in frame else ()
    reply_to = _decimal(frame, "reply_to", ref) if "reply_to" in frame else None
    if action is not None:
        _check_action_shape(action, body, envelopes, attachments, reply_to, ref)
    has_channel, has_to = "channel_id" in frame, "to" in frame
    if has_channel == has_to:
        raise _invalid("send needs exactly one of 'channel_id' and 'to'", ref)
    if has_channel:
        return Send(
            client_msg_id,
            body,
            channel_id=_string(frame, "channel_id", ref),
            envelopes=envelopes,
            attachments=attachments,
            reply_to=reply_to,
            action=action,
        )
    return Send(
        client_msg_id,
        body,
        to=_decimal(frame, "to", ref),
        envelopes=envelopes,
        attachments=attachments,
        reply_to=reply_to,
        action=action,
    )


def _check_action_shape(
    action: dict[str, Any],
    body: str,
    envelopes: tuple[Envelope, ...] | None,
    attachments: tuple[Attachment, ...],
    reply_to: int | None,
    ref: str,
) -> None:
    """An edit carries the new text and nothing else; a delete or reaction nothing."""
    if attachments or reply_to is not None or envelopes is not None:
        raise _invalid(
            "an edit, delete or reaction carries no attachments, reply or envelopes", ref
        )
    if action["type"] == EDIT and not body.strip():
        raise _invalid("an edit needs the new text in 'body'", ref)
    if action["type"] != EDIT and body:
        raise _invalid(f"a {action['type']} carries no 'body'", ref)


def _parse_receipt(frame: dict[str, Any]) -> Receipt:
    status = frame.get("status")
    if status not in ("delivered", "read"):
        raise _invalid("status must be 'delivered' or 'read'")
    return Receipt(
        channel_id=_string(frame, "channel_id"),
        message_id=_decimal(frame, "message_id"),
        status=status,
    )


def _parse_sync(frame: dict[str, Any]) -> Sync:
    limit = DEFAULT_SYNC_LIMIT
    if "limit" in frame:
        limit = _decimal(frame, "limit")
        if not 1 <= limit <= MAX_SYNC_LIMIT:
            raise _invalid(f"limit must be within 1..{MAX_SYNC_LIMIT}")
    return Sync(cursor=_decimal(frame, "cursor"), limit=limit)


def _parse_heartbeat(frame: dict[str, Any]) -> Heartbeat:
    return Heartbeat()


def _parse_typing(frame: dict[str, Any]) -> Typing:
    return Typing(channel_id=_string(frame, "channel_id"))


_PARSERS: dict[str, Callable[[dict[str, Any]], ClientFrame]] = {
    "hello": _parse_hello,
    "send": _parse_send,
    "receipt": _parse_receipt,
    "sync": _parse_sync,
    "heartbeat": _parse_heartbeat,
    "typing": _parse_typing,
}


# --- server frames -------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> bytes:
    """A server frame as the UTF-8 bytes of a WebSocket text frame (orjson, compact)."""
    return orjson.dumps(frame)


def error_frame(
    code: str, message: str, ref: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An ``error`` frame; ``details`` are merged into the frame itself."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if details:
        frame.update(details)
    return frame


def welcome_frame(
    user_id: int, device_id: int, server_id: str, heartbeat_s: int, cursor: int
) -> dict[str, Any]:
    """The ``welcome`` frame that answers an accepted ``hello``."""
    return {
        "type": "welcome",
        "user_id": str(user_id),
        "device_id": str(device_id),
        "server_id": server_id,
        "heartbeat_s": heartbeat_s,
        "cursor": str(cursor),
    }


def synced_frame(cursor: int, more: bool) -> dict[str, Any]:
    """The ``synced`` frame: the sync reached ``cursor``; ``more`` when there is more to fetch."""
    return {"type": "synced", "cursor": str(cursor), "more": more}


def ack_frame(client_msg_id: str, message_id: int, channel_id: str, ts: int) -> dict[str, Any]:
    """The ``ack`` frame: the message sent as ``client_msg_id`` is stored under ``message_id``."""
    return {
        "type": "ack",
        "client_msg_id": client_msg_id,
        "message_id": str(message_id),
        "channel_id": channel_id,
        "ts": ts,
    }


def receipt_frame(channel_id: str, user_id: int, message_id: int, status: str) -> dict[str, Any]:
    """The ``receipt`` frame: ``user_id`` has ``status`` (delivered, read) up to ``message_id``."""
    return {
        "type": "receipt",
        "channel_id": channel_id,
        "user_id": str(user_id),
        "message_id": str(message_id),
        "status": status,
    }


def presence_frame(user_id: int, status: str, last_seen: int | None) -> dict[str, Any]:
    """The ``presence`` frame for one user."""
    return {"type": "presence", "user_id": str(user_id), "status": status, "last_seen": last_seen}


def typing_frame(channel_id: str, user_id: int) -> dict[str, Any]:
    """The ``typing`` frame: ``user_id`` is typing in the channel."""
    return {"type": "typing", "channel_id": channel_id, "user_id": str(user_id)}


def redirect_frame(chat_url: str) -> dict[str, Any]:
    """The ``redirect`` frame: this user is served at ``chat_url``."""
    return {"type": "redirect", "chat_url": chat_url}


def reconnect_frame(after_ms: int) -> dict[str, Any]:
    """The ``reconnect`` frame: connect again after ``after_ms`` milliseconds."""
    return {"type": "reconnect", "after_ms": after_ms}


def heartbeat_ack_frame(ts: int) -> dict[str, Any]:
    """The ``heartbeat_ack`` frame, with the server's time ``ts``."""
    return {"type": "heartbeat_ack", "ts": ts}
