"""What a notification says, for each provider. No I/O.

By default a notification carries no message body, only the ids an app needs to fetch
it (channel and message), which suits end-to-end encryption: the app wakes, syncs over
its own connection and decides what to show. ``push_preview`` opts into a short preview.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tidings.core.e2ee import is_envelopes
from tidings.core.media import summary
from tidings.core.model import Message

# APNs and FCM both refuse payloads over 4 KiB; a preview stays well inside that.
MAX_PREVIEW_BYTES = 2000
APNS_COLLAPSE_ID_MAX_BYTES = 64
GENERIC_TEXT = "New message"


@dataclass(frozen=True, slots=True)
class Notification:
    user_id: int
    device_id: int
    channel_id: str
    message_id: int
    preview: str | None = None

    @property
    def collapse_key(self) -> str:
        """One visible notification per channel: a later push replaces an earlier one."""
        return collapse_id(self.channel_id)


def build_notification(
    user_id: int, device_id: int, message: Message, *, preview: bool, preview_chars: int
) -> Notification:
    """The notification to ``device_id`` about ``message``: ids only, plus a preview of at
    most ``preview_chars`` when ``preview`` is on and the message is not end-to-end encrypted."""
    return Notification(
        user_id=user_id,
        device_id=device_id,
        channel_id=message.channel_id,
        message_id=message.message_id,
        # Never a preview of an end-to-end message: its body is ciphertext for devices.
        preview=(
            cut_preview(_preview_text(message), preview_chars)
            if preview and not is_envelopes(message.body)
            else None
        ),
    )


def _preview_text(message: Message) -> str:
    """The body, after what the message carries ("📷 Photo the beach")."""
    carries = summary(message.attachments)
    return f"{carries} {message.body}".strip() if carries else message.body


def cut_preview(body: str, chars: int, max_bytes: int = MAX_PREVIEW_BYTES) -> str:
    """At most ``chars`` characters and ``max_bytes`` bytes of UTF-8, with an ellipsis if cut."""
    text = " ".join(body.split())
    cut = len(text) > chars
    text = text[:chars]
    while len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        text, cut = text[: len(text) * 3 // 4], True
    return text + "…" if cut else text


def collapse_id(channel_id: str) -> str:
    """The APNs collapse id of a channel: its id, or the SHA-256 hex of it when longer than
    64 bytes."""
    if len(channel_id.encode()) <= APNS_COLLAPSE_ID_MAX_BYTES:
        return channel_id
    return hashlib.sha256(channel_id.encode()).hexdigest()


def _ids(n: Notification) -> dict[str, str]:
    return {"channel_id": n.channel_id, "message_id": str(n.message_id)}


def aps(n: Notification, push_type: str = "alert") -> dict[str, Any]:
    """The ``aps`` dictionary: an alert an extension may rewrite, or a silent wake-up."""
    if push_type == "background":
        return {"content-available": 1}
    return {
        "alert": {"body": n.preview if n.preview is not None else GENERIC_TEXT},
        "sound": "default",
        "mutable-content": 1,  # lets a notification service extension decrypt or fetch
        "thread-id": n.channel_id,
    }


def apns_payload(n: Notification, push_type: str = "alert") -> dict[str, Any]:
    """The APNs JSON payload: :func:`aps` and the ids under ``tidings``."""
    return {"aps": aps(n, push_type), "tidings": _ids(n)}


def fcm_message(token: str, n: Notification) -> dict[str, Any]:
    """The ``message`` of an FCM v1 ``messages:send`` request.

    Android gets a high-priority data message (the app wakes and syncs), plus a visible
    notification only with a preview; iOS devices on FCM get the same ``aps`` as APNs.
    """
    data = {"type": "msg", **_ids(n)}
    message: dict[str, Any] = {
        "token": token,
        "data": data,
        "android": {"priority": "high", "collapse_key": n.collapse_key},
        "apns": {
            "headers": {
                "apns-push-type": "alert",
                "apns-priority": "10",
                "apns-collapse-id": n.collapse_key,
            },
            "payload": apns_payload(n),
        },
    }
    if n.preview is not None:
        message["notification"] = {"body": n.preview}
    return message


def webhook_body(token: str, n: Notification) -> dict[str, Any]:
    """The webhook's JSON body (see :mod:`tidings.push.webhook`)."""
    body: dict[str, Any] = {
        "token": token,
        "user_id": str(n.user_id),
        "device_id": str(n.device_id),
        **_ids(n),
        "collapse_key": n.collapse_key,
    }
    if n.preview is not None:
        body["preview"] = n.preview
    return body
