"""uvicorn's HTTP protocol (httptools), with a deadline for each request's head.

uvicorn closes a keep-alive connection that stays idle after a response
(``timeout_keep_alive``), but a connection that never finishes a request head — a
slowloris sending a header every few seconds, or a socket that sends nothing at all —
stays open as long as the client likes, each holding a file descriptor and buffers.
Here a request head must be complete within ``head_timeout_s`` of the connection opening
or of the request's first byte; otherwise the connection is closed. (WebSocket upgrades
are requests like any other: their head is timed the same way.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadTimedHttpProtocol(HttpToolsProtocol):
    head_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A connection opened: its first request head is timed from now."""
        super().connection_made(transport)
        self._start_head_deadline()

    def on_message_begin(self) -> None:
        """A request's first byte: its head is timed from now (unless already timed)."""
        super().on_message_begin()
        self._start_head_deadline()

    def on_headers_complete(self) -> None:
        """The head is complete: no deadline until the next request begins."""
        self._stop_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection closed: its deadline goes with it."""
        self._stop_head_deadline()
        super().connection_lost(exc)

    def _start_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def http_protocol(head_timeout_s: float) -> type[HeadTimedHttpProtocol]:
    """The protocol class for uvicorn's ``http=`` with this head deadline."""
    return type("HeadTimedHttp", (HeadTimedHttpProtocol,), {"head_timeout_s": head_timeout_s})
