"""What a notification says, without I/O."""

from __future__ import annotations

import json
from dataclasses import replace

from tidings.core.model import Message
from tidings.push.payload import (
    apns_payload,
    build_notification,
    collapse_id,
    cut_preview,
    fcm_message,
    webhook_body,
)

MESSAGE = Message(123456789012345678, "dm:1:2", 1, 10, "c1", "the secret plan", 1_700_000_000_000)


def test_no_body_by_default() -> None:
    n = build_notification(2, 20, MESSAGE, preview=False, preview_chars=100)
    for payload in (apns_payload(n), fcm_message("tok", n), webhook_body("tok", n)):
        assert "secret" not in json.dumps(payload)
    assert apns_payload(n)["tidings"] == {
        "channel_id": "dm:1:2",
        "message_id": "123456789012345678",
    }


def test_preview_when_asked() -> None:
    n = build_notification(2, 20, MESSAGE, preview=True, preview_chars=10)
    assert n.preview == "the secret…"
    assert apns_payload(n)["aps"]["alert"]["body"] == "the secret…"
    assert fcm_message("tok", n)["notification"] == {"body": "the secret…"}
    assert webhook_body("tok", n)["preview"] == "the secret…"


def test_a_preview_says_what_a_message_carries() -> None:
    def photo(n: int, content_type: str = "image/jpeg") -> dict[str, object]:
        return {"media_id": f"{n:032x}", "content_type": content_type, "size": 1, "sha256": ""}

    with_photo = replace(MESSAGE, body="the beach", attachments=(photo(1),))
    n = build_notification(2, 20, with_photo, preview=True, preview_chars=100)
    assert n.preview == "📷 Photo the beach"
    three = replace(MESSAGE, body="", attachments=(photo(1), photo(2), photo(3)))
    assert build_notification(2, 20, three, preview=True, preview_chars=100).preview == (
        "📷 3 photos"
    )
    mixed = replace(MESSAGE, body="", attachments=(photo(1), photo(2, "video/mp4")))
    assert build_notification(2, 20, mixed, preview=True, preview_chars=100).preview == (
        "📎 2 attachments"
    )
    # No preview asked for: nothing of it either.
    assert build_notification(2, 20, with_photo, preview=False, preview_chars=100).preview is None


def test_preview_is_bounded_in_bytes_too() -> None:
    text = cut_preview("😀" * 1000, 1000, max_bytes=400)
    assert len(text.encode()) <= 400 + len("…".encode())
    assert text.endswith("…")
    assert cut_preview("short\n\nlines", 100) == "short lines"


def test_fcm_data_values_are_strings() -> None:
    n = build_notification(2, 20, MESSAGE, preview=False, preview_chars=100)
    message = fcm_message("tok", n)
    assert all(isinstance(v, str) for v in message["data"].values())
    assert message["token"] == "tok"
    assert message["android"]["collapse_key"] == "dm:1:2"


def test_background_push_is_silent() -> None:
    n = build_notification(2, 20, MESSAGE, preview=True, preview_chars=100)
    assert apns_payload(n, "background")["aps"] == {"content-available": 1}


def test_collapse_id_fits_apns() -> None:
    assert collapse_id("g:123") == "g:123"
    long_id = "dm:18446744073709551615:18446744073709551614" + "x" * 40
    assert len(collapse_id(long_id).encode()) <= 64
    assert collapse_id(long_id) == collapse_id(long_id)
