"""The inbox cursor: in-order, once-only delivery of ``msg`` frames (no I/O).

A user's inbox ``seq`` is gapless, so the cursor is the highest ``seq`` up to which every
message has been seen. :class:`InboxTracker` takes ``msg`` frames in whatever order and
multiplicity the network produced them and hands them back in ``seq`` order, each once:

* a ``seq`` at or below the cursor, or already held, is a redelivery and is dropped;
* a ``seq`` beyond a missing one is held back until the gap fills (the connection asks the
  server to ``sync``) or the caller gives up on the gap with :meth:`InboxTracker.skip_gap`;
* a message whose ``message_id`` was delivered recently is dropped even under a new ``seq``
  (at-least-once delivery, as the contract says), but its ``seq`` still moves the cursor.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from ._frames import Msg, Synced

logger = logging.getLogger(__name__)

__all__ = ["Inbox", "InboxTracker", "Step", "SyncPlan"]


@dataclass(frozen=True, slots=True)
class Step:
    """The cursor moved to ``seq``; ``msg`` is the message to deliver, or ``None`` for a
    duplicate whose position only advances the cursor."""

    seq: int
    msg: Msg | None


class InboxTracker:
    """Orders and dedupes ``msg`` frames, starting after ``cursor``."""

    def __init__(self, cursor: int = 0, *, remember: int = 4096, max_held: int = 10_000) -> None:
        if cursor < 0:
            raise ValueError("cursor must be >= 0")
        self._cursor = cursor
        self._held: dict[int, Msg] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._max_held = max_held

    @property
    def cursor(self) -> int:
        """Highest ``seq`` such that every ``seq`` up to it has been released."""
        return self._cursor

    @property
    def has_gap(self) -> bool:
        """True while messages are held back behind a missing ``seq``."""
        return bool(self._held)

    def offer(self, msg: Msg) -> list[Step]:
        """Take one ``msg`` frame; return what can now be released, in ``seq`` order."""
        if msg.seq <= self._cursor or msg.seq in self._held:
            return []
        self._held[msg.seq] = msg
        steps = self._drain()
        if len(self._held) > self._max_held:
            steps.extend(self.skip_gap())
        return steps

    def rewind(self, cursor: int) -> None:
        """Start again after ``cursor``, lower than ours: the server's inbox ends there (its
        data was restored from a backup), so the ``seq``s after it are new messages, not
        repeats. What is held goes; the message ids seen are kept (still deduped)."""
        if 0 <= cursor < self._cursor:
            self._cursor = cursor
            self._held.clear()

    def skip_gap(self, upto: int | None = None) -> list[Step]:
        """Give up on missing ``seq`` values (those up to ``upto``, or all): release what is
        held behind them, in order."""
        steps: list[Step] = []
        for seq in sorted(self._held):
            if upto is not None and seq > upto + 1:
                break
            if seq in self._held:  # not released by an earlier drain in this loop
                self._cursor = seq - 1
                steps.extend(self._drain())
        return steps

    def _drain(self) -> list[Step]:
        steps: list[Step] = []
        while (msg := self._held.pop(self._cursor + 1, None)) is not None:
            self._cursor = msg.seq
            if msg.message_id in self._seen:
                self._seen.move_to_end(msg.message_id)
                steps.append(Step(msg.seq, None))
                continue
            self._seen[msg.message_id] = None
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)
            steps.append(Step(msg.seq, msg))
        return steps


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What the connection does after a frame: deliver ``steps``, then, unless ``sync_from``
    is ``None``, send ``sync{cursor: sync_from}``."""

    steps: list[Step]
    sync_from: int | None = None


class Inbox:
    """Keeps a connection's inbox gapless: an :class:`InboxTracker` plus the decisions of
    when to ask the server for a ``sync`` and when a missing ``seq`` is really missing.

    * After ``hello`` the server streams the backlog and ends it with ``synced``; a gap seen
      meanwhile waits for that ``synced``.
    * A gap seen with no sync in flight asks for a sync from the cursor right away.
    * ``synced{more: true}`` (the server stopped at its limit), or a ``synced.cursor``
      beyond what arrived, asks for the next page.
    * A ``seq`` at or below ``synced.cursor`` still missing after a sync that was sent after
      the gap appeared does not exist on the server: the tracker skips it.
    * Syncs that move nothing ``max_stalls`` times in a row end the syncing: everything
      held is released. A misbehaving server cannot make the client sync forever.
    """

    def __init__(self, cursor: int = 0, *, max_stalls: int = 3, **tracker_options: int) -> None:
        self.tracker = InboxTracker(cursor, **tracker_options)
        self._sync_in_flight = False
        self._gap_sync_sent = False
        self._sync_base = cursor
        self._stalls = 0
        self._max_stalls = max_stalls

    @property
    def cursor(self) -> int:
        return self.tracker.cursor

    @property
    def sync_in_flight(self) -> bool:
        return self._sync_in_flight

    def rewind(self, cursor: int) -> None:
        """The ``welcome`` named a cursor below ours (see :meth:`InboxTracker.rewind`)."""
        self.tracker.rewind(cursor)
        self._sync_base = min(self._sync_base, cursor)

    def on_hello(self) -> None:
        """A ``hello`` carrying :attr:`cursor` went out: the backlog and a ``synced`` follow."""
        self._request_sync()

    def on_sync_sent(self) -> None:
        """The application sent a ``sync`` of its own."""
        self._request_sync()

    def on_msg(self, msg: Msg) -> SyncPlan:
        steps = self.tracker.offer(msg)
        if self.tracker.has_gap and not self._sync_in_flight:
            return SyncPlan(steps, self._request_sync())
        return SyncPlan(steps)

    def on_synced(self, synced: Synced) -> SyncPlan:
        self._sync_in_flight = False
        tracker = self.tracker
        steps: list[Step] = []
        if tracker.has_gap and tracker.cursor < synced.cursor and self._gap_sync_sent:
            logger.warning(
                "inbox: seqs missing on the server between %d and %d; skipped",
                tracker.cursor,
                synced.cursor,
            )
            steps = tracker.skip_gap(upto=synced.cursor)
        self._stalls = self._stalls + 1 if tracker.cursor == self._sync_base else 0
        if self._stalls >= self._max_stalls:
            logger.warning(
                "inbox: %d syncs moved nothing past seq %d; releasing what is held",
                self._stalls,
                tracker.cursor,
            )
            self._stalls = 0
            steps.extend(tracker.skip_gap())
            if tracker.cursor == self._sync_base:
                self._gap_sync_sent = False
                return SyncPlan(steps)  # even that moved nothing: stop asking
        if synced.more or tracker.has_gap or tracker.cursor < synced.cursor:
            return SyncPlan(steps, self._request_sync())
        self._gap_sync_sent = False
        self._stalls = 0
        return SyncPlan(steps)

    def _request_sync(self) -> int:
        self._sync_in_flight = True
        self._gap_sync_sent = self.tracker.has_gap
        self._sync_base = self.tracker.cursor
        return self.tracker.cursor
