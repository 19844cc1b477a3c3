"""One device's chat session, with no I/O: what state it is in and what that allows.

In the manner of websockets' ``protocol.py``: the session is a plain object that the
connection (bytes) and the gateway (dispatch) drive by calling its methods; it never
writes to a socket, awaits or reads the clock. Tests drive it without a socket.

The states, in order::

    HELLO ──hello──▶ SYNCING ──synced──▶ LIVE
      │                 │                  │
      └─────────────────┴──────────────────┴──▶ CLOSING

- ``HELLO``: the socket is open; the only frame allowed is ``hello``.
- ``SYNCING``: a ``hello`` is being checked, then the inbox after its cursor is sent;
  live entries that arrive meanwhile wait in the sync buffer.
- ``LIVE``: every live entry newer than the last one sent goes out.
- ``CLOSING``: close was said or heard; nothing more is handled or delivered.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Sequence

from tidings.core.frames import ClientFrame
from tidings.core.model import InboxEntry, Message
from tidings.core.ratelimit import TokenBucket

MAX_QUEUED_FRAMES = 64  # frames waiting for their turn, per connection


class State(enum.Enum):
    """Where a session is (see the module docstring)."""

    HELLO = "hello"
    SYNCING = "syncing"
    LIVE = "live"
    CLOSING = "closing"


# Module names for the members: compared with ``is`` on every frame, a global is cheaper
# to reach than an attribute of the enum class.
HELLO, SYNCING, LIVE, CLOSING = State.HELLO, State.SYNCING, State.LIVE, State.CLOSING


class Session:
    """One device's session on one socket (see the module docstring for the states).

    The identity (``user_id``, ``device_id``, ``token_version``) is 0 until the hello
    is accepted. ``answers`` holds the sends being stored, answered in this order (None
    while there are none); ``bucket`` is the user's send bucket, shared by its sockets.
    """

    __slots__ = (
        "_busy",
        "_hello_pending",
        "_pending",
        "answers",
        "bucket",
        "device_id",
        "last_heard",
        "opened_at",
        "sent_seq",
        "state",
        "sync_buffer",
        "token_version",
        "user_id",
    )

    def __init__(self, now_ms: int) -> None:
        self.state = HELLO
        self.user_id = 0
        self.device_id = 0
        self.token_version = 0
        self.opened_at = now_ms
        self.last_heard = now_ms
        self.sent_seq = 0
        self.sync_buffer: list[InboxEntry] | None = None
        self.bucket: TokenBucket | None = None
        self.answers: deque[tuple[str, asyncio.Future[Message]]] | None = None
        self._pending: deque[ClientFrame] | None = None
        self._busy = False
        self._hello_pending = False

    # --- frames in -----------------------------------------------------------------

    def heard(self, now_ms: int) -> bool:
        """A frame came in at ``now_ms``: whether it is to be handled (not while closing)."""
        if self.state is CLOSING:
            return False
        self.last_heard = now_ms
        return True

    def hello_received(self) -> None:
        """The first frame was a ``hello``, admitted: SYNCING, so that a second hello is
        refused while this one is checked."""
        assert self.state is HELLO, self.state
        self.state = SYNCING
        self._hello_pending = True

    def hello_finished(self) -> bool:
        """The hello's handling ended (done, refused, or the socket went away): whether
        it was still counted as in flight (true once per hello)."""
        pending = self._hello_pending
        self._hello_pending = False
        return pending

    # --- the queue: one frame handled at a time, in order --------------------------

    def enqueue(self, frame: ClientFrame) -> bool:
        """Queue ``frame`` for handling; False when the queue is full."""
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        elif len(pending) >= MAX_QUEUED_FRAMES:
            return False
        pending.append(frame)
        return True

    def start_handling(self) -> bool:
        """Whether the caller is to start handling the queue now (nobody is yet)."""
        if self._busy:
            return False
        self._busy = True
        return True

    def next_frame(self) -> ClientFrame | None:
        """The next queued frame to handle, or None (none left, or closing)."""
        pending = self._pending
        if not pending or self.state is CLOSING:
            return None
        return pending.popleft()

    def handling_stopped(self) -> None:
        """The handler of the queue stopped (see :meth:`start_handling`)."""
        self._busy = False
        if not self._pending:
            self._pending = None

    # --- the hello, the sync, live --------------------------------------------------

    def authenticated(
        self, user_id: int, device_id: int, token_version: int, bucket: TokenBucket
    ) -> None:
        """The hello's token and session are good: whose session this is. Live entries
        wait in the sync buffer from now until :meth:`go_live`."""
        self.user_id = user_id
        self.device_id = device_id
        self.token_version = token_version
        self.bucket = bucket
        self.sync_buffer = []

    def go_live(self, cursor: int) -> Sequence[InboxEntry]:
        """The inbox was sent up to ``cursor``: LIVE. Returns the entries buffered while
        syncing that are newer than ``cursor``, in order, to be sent now (they count as
        sent already: not to be passed through :meth:`deliverable` again)."""
        assert self.state is SYNCING, self.state
        buffered, self.sync_buffer = self.sync_buffer or [], None
        self.state = LIVE
        self.sent_seq = cursor
        return self.deliverable(buffered)

    def deliverable(self, entries: Sequence[InboxEntry]) -> Sequence[InboxEntry]:
        """Of live ``entries`` (in seq order), those to send now: while LIVE, those newer
        than the last one sent (which they become); while SYNCING none (they are
        buffered); else none."""
        state = self.state
        if state is LIVE:
            sent = self.sent_seq
            if len(entries) == 1:  # the usual case: one message, no list built
                seq = entries[0].seq
                if seq <= sent:
                    return ()
                self.sent_seq = seq
                return entries
            fresh = []
            for entry in entries:
                if entry.seq > sent:
                    sent = entry.seq
                    fresh.append(entry)
            self.sent_seq = sent
            return fresh
        if state is SYNCING and self.sync_buffer is not None:
            self.sync_buffer.extend(entries)
        return ()

    # --- the end -------------------------------------------------------------------

    def close(self) -> None:
        """Close was said or heard, or the socket went away: nothing more is handled."""
        self.state = CLOSING

    def hello_overdue(self, deadline_ms: int) -> bool:
        """Still waiting for the hello although the socket opened by ``deadline_ms``."""
        return self.state is HELLO and self.opened_at <= deadline_ms

    def silent(self, deadline_ms: int) -> bool:
        """LIVE, and nothing heard since ``deadline_ms``."""
        return self.state is LIVE and self.last_heard <= deadline_ms

    def closing_since(self, deadline_ms: int) -> bool:
        """CLOSING, and nothing heard since ``deadline_ms`` (its close grace is over)."""
        return self.state is CLOSING and self.last_heard <= deadline_ms
