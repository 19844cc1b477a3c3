"""The error codes of the wire contract (docs/protocol.md), in one place.

:class:`ProtocolError` is raised by the core for a client mistake; the adapters turn it
into an HTTP error body or a WebSocket ``error`` frame (closing the socket when
``close_code`` is set).
"""

from __future__ import annotations

from typing import Any

# WebSocket errors that keep the connection open.
INVALID_FRAME = "invalid_frame"
BODY_TOO_LONG = "body_too_long"
NOT_A_MEMBER = "not_a_member"
UNKNOWN_USER = "unknown_user"
UNKNOWN_CHANNEL = "unknown_channel"
RATE_LIMITED = "rate_limited"
PAYLOAD_TOO_LARGE = "payload_too_large"  # HTTP 413: a request body over the limit
DUPLICATE_CLIENT_MSG_ID = "duplicate_client_msg_id"  # reused for another target or body
BLOCKED = "blocked"  # an addition: the 1:1 peer blocked the sender
# Additions, end-to-end channels (docs/e2ee.md): envelopes that do not address exactly the
# recipients' devices; a plaintext send to an end-to-end channel, or envelopes to another.
DEVICES_MISMATCH = "devices_mismatch"
E2E_REQUIRED = "e2e_required"
NOT_E2E = "not_e2e"
# Additions, media (docs/media.md): an attachment that names no upload of the sender's, an
# upload not completed, or one it does not describe truly (or of the other e2e mode).
UNKNOWN_MEDIA = "unknown_media"
MEDIA_NOT_READY = "media_not_ready"
MEDIA_MISMATCH = "media_mismatch"
# Issue #20: replies, edits, deletes, reactions and group roles.
UNKNOWN_MESSAGE = "unknown_message"
TOO_LATE = "too_late"
NOT_SUPPORTED = "not_supported"
LAST_ADMIN = "last_admin"
# WebSocket errors that close it.
UNAUTHORIZED = "unauthorized"
HELLO_TIMEOUT = "hello_timeout"
# HTTP errors.
INVALID_REQUEST = "invalid_request"
USERNAME_TAKEN = "username_taken"
BAD_CREDENTIALS = "bad_credentials"
GROUP_TOO_LARGE = "group_too_large"
GROUP_FULL = "group_full"
FORBIDDEN = "forbidden"
TOO_MANY_DEVICES = "too_many_devices"  # an addition: unlink a device first
NOT_FOUND = "not_found"
UNAVAILABLE = "unavailable"
# Additions, media uploads (HTTP): a type we do not take, first bytes of another type, a
# digest that differs, bytes missing, the user's stored bytes used up; the embedded
# store's signed URLs: too late, or altered.
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
CONTENT_TYPE_MISMATCH = "content_type_mismatch"
SHA256_MISMATCH = "sha256_mismatch"
UPLOAD_INCOMPLETE = "upload_incomplete"
QUOTA_EXCEEDED = "quota_exceeded"
URL_EXPIRED = "url_expired"
BAD_SIGNATURE = "bad_signature"

# Close codes.
CLOSE_UNAUTHORIZED = 4001
CLOSE_REDIRECT = 4003
CLOSE_HELLO_TIMEOUT = 4008
CLOSE_SUPERSEDED = 4011  # an addition: a newer socket of the same device took over
CLOSE_SILENT = 4009  # an addition: the device sent nothing for the presence window
CLOSE_INVALID_PAYLOAD = 1007  # a text frame that is not UTF-8 (RFC 6455)
CLOSE_TOO_BIG = 1009
CLOSE_DRAINED = 1012
CLOSE_TRY_AGAIN_LATER = 1013  # an addition: saturated; reconnect{after_ms} came first


class ProtocolError(Exception):
    """A request the contract refuses, with the code and message the client sees."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        ref: str | None = None,
        close_code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.close_code = close_code
        self.details = details  # more fields of the error frame (devices_mismatch's lists)
