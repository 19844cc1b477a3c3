"""Errors raised by the Tidings client.

Hierarchy::

    TidingsError                      base of everything this package raises
    ├── TidingsApiError               an HTTP call answered 4xx/5xx (status, code, message)
    ├── TidingsChatError              an ``error`` frame answering one of our frames (code, ref)
    ├── TidingsProtocolError          the server sent something that breaks the wire contract
    └── TidingsConnectionError        the server could not be reached or the connection ended
        ├── TidingsUnauthorizedError  the token was refused (close 4001): reconnecting won't help
        │   └── TidingsSessionEndedError  (also ``SessionEnded``) the session was ended: this
        │                             device logged out or was unlinked, or a newer login of
        │                             it superseded the token (close 4001)
        └── TidingsSupersededError    a newer socket of the same device took over (close 4011)

Each error says whether retrying the same call later may succeed (``retriable``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SessionEnded",
    "TidingsApiError",
    "TidingsChatError",
    "TidingsConnectionError",
    "TidingsError",
    "TidingsProtocolError",
    "TidingsSessionEndedError",
    "TidingsSupersededError",
    "TidingsUnauthorizedError",
]


class TidingsError(Exception):
    """Base class of every error raised by :mod:`tidings.client`."""

    @property
    def retriable(self) -> bool:
        return False


class TidingsApiError(TidingsError):
    """An HTTP call failed with ``{"error": {"code", "message"}}`` (or a body without one).

    ``after_ms``: the server said when to come back (a 503 from admission control, a
    login flood), else None."""

    def __init__(
        self, status: int, code: str, message: str, *, after_ms: int | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.after_ms = after_ms

    @property
    def retriable(self) -> bool:
        return self.status >= 500 or self.status == 429


class TidingsChatError(TidingsError):
    """The chat server answered a frame with ``error`` (e.g. ``not_a_member``)."""

    def __init__(
        self,
        code: str,
        message: str,
        ref: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref
        self.details = details or {}  # e.g. devices_mismatch's missing, extra, stale

    @property
    def retriable(self) -> bool:
        return self.code == "rate_limited"


class TidingsProtocolError(TidingsError):
    """A frame or body from the server does not follow the wire contract."""


class TidingsConnectionError(TidingsError):
    """The server could not be reached, or the connection was closed while we waited."""

    @property
    def retriable(self) -> bool:
        return True


class TidingsUnauthorizedError(TidingsConnectionError):
    """The server refused the token (close 4001 or HTTP 401): log in again."""

    @property
    def retriable(self) -> bool:
        return False


class TidingsSessionEndedError(TidingsUnauthorizedError):
    """The server ended this device's session (close 4001): the device logged out
    (``DELETE /v1/sessions/current``) or was unlinked (``DELETE /v1/devices/{id}``), or a
    newer login of the same device superseded the token. The connection does not come
    back; log in again (a new device if this one was unlinked)."""


SessionEnded = TidingsSessionEndedError
"""Short name of :class:`TidingsSessionEndedError`."""


class TidingsSupersededError(TidingsConnectionError):
    """A newer socket of the same device took over (close 4011, at most
    ``max_sockets_per_device`` sockets per device): the device is connected there, so
    this connection does not reconnect."""

    @property
    def retriable(self) -> bool:
        return False
