"""The inbox consumer: append to each user's inbox, deliver, ask for pushes, commit.

It runs on the owner of the users' partitions (single writer per user), so each user's
``seq`` is gapless and the same on every device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from tidings import metrics
from tidings.bus.base import RESENT, InboxEvent
from tidings.chat.ports import Delivery, Ownership, PushSink
from tidings.core.channel_events import wakes
from tidings.core.ids import timestamp_ms
from tidings.core.model import InboxEntry, Message
from tidings.storage.base import Directory, MessageStore

log = logging.getLogger(__name__)

# Users of one consumer poll whose inbox appends run at once.
APPEND_CONCURRENCY = 64
# How much later than the start of a tenure a message must have been made to be known
# new (far above the servers' clock skew, which NTP keeps to milliseconds).
NEW_AFTER_MS = 10_000


def _wall_ms() -> int:
    return int(time.time() * 1000)


class NewIds:
    """Which message ids no inbox holds yet, so an append need not look for them.

    An inbox is written only by the owner of its user's partition. A message made more
    than ``NEW_AFTER_MS`` after this server's current tenure began (:meth:`restart`, at
    every rebalance) reached no other owner, and in this tenure an event comes a second
    time only when its poll failed and was sought back (a failure restarts the tenure
    too, so every id of the failed poll is looked for again) or when its sender resent
    it (the event is marked ``resent``, and :meth:`among` leaves it out). Before the
    first tenure nothing is known new. (The message id's time is the sending server's
    clock; the margin covers their skew. A server that keeps consuming after the group
    dropped it breaks the single-writer rule for the heads as well; see
    docs/architecture.md.)
    """

    def __init__(self, clock_ms: Callable[[], int] = _wall_ms) -> None:
        self._clock_ms = clock_ms
        self._after_ms: int | None = None

    def restart(self) -> None:
        """A new tenure begins now (a rebalance, or a failed poll): messages made more than
        ``NEW_AFTER_MS`` from now on are new."""
        self._after_ms = self._clock_ms() + NEW_AFTER_MS

    def among(self, messages: Sequence[Message], resent: Container[int] = ()) -> set[int]:
        """The ids of ``messages`` known to be new here (none before the first tenure), less
        those in ``resent``."""
        after = self._after_ms
        if after is None:
            return set()
        return {
            m.message_id
            for m in messages
            if timestamp_ms(m.message_id) > after and m.message_id not in resent
        }


class InboxProcessor:
    def __init__(
        self,
        messages: MessageStore,
        directory: Directory,
        delivery: Delivery,
        push: PushSink,
        ownership: Ownership,
    ) -> None:
        self.messages = messages
        self.directory = directory
        self.delivery = delivery
        self.push = push
        self.ownership = ownership
        self.new_ids = NewIds()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, events: list[InboxEvent]) -> None:
        """One consumer poll: each user's messages of the poll are appended in **one**
        ``append_inbox`` (one head move), users side by side (at most
        ``APPEND_CONCURRENCY`` at once; the store bounds its requests in flight too).
        Returns once every append is durable, so the bus commits only then; an append
        that fails fails the poll, which comes again (appends skip ids they hold: the
        failure makes :attr:`new_ids` forget what it knew new)."""
        try:
            await self._handle(events)
        except BaseException:
            self.new_ids.restart()
            raise

    async def _handle(self, events: list[InboxEvent]) -> None:
        by_user: dict[int, list[Message]] = defaultdict(list)
        resent: set[int] = set()
        for event in events:
            if event.kind == "msg":
                message = Message.from_wire(event.payload)
                by_user[event.user_id].append(message)
                if event.payload.get(RESENT):
                    resent.add(message.message_id)
            elif self.ownership.owns(event.user_id):
                self.delivery.deliver_frame(event.user_id, event.payload)
        users = [(u, m) for u, m in by_user.items() if self.ownership.owns(u)]
        if not users:
            return
        if len(users) == 1:
            await self._append_one(*users[0], resent)
            return
        slots = asyncio.Semaphore(APPEND_CONCURRENCY)

        async def bounded(user_id: int, messages: list[Message]) -> None:
            async with slots:
                await self._append_one(user_id, messages, resent)

        results = await asyncio.gather(*(bounded(u, m) for u, m in users), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _append_one(
        self, user_id: int, messages: list[Message], resent: Container[int]
    ) -> None:
        appended = await self.messages.append_inbox(
            user_id, messages, new=self.new_ids.among(messages, resent)
        )
        if not appended:
            return
        metrics.INBOX_APPENDS.inc(len(appended))
        self.delivery.deliver_entries(user_id, appended)
        await self._push_offline_devices(user_id, [e.message for e in appended])

    def appended(self, by_user: Mapping[int, Sequence[InboxEntry]]) -> None:
        """Entries that just committed to these inboxes (the embedded default, where the
        store appends in the send's own transaction): deliver now, pushes just after."""
        wanted: list[tuple[int, list[Message]]] = []
        appended = 0
        for user_id, entries in by_user.items():
            appended += len(entries)
            self.delivery.deliver_entries(user_id, entries)
            others = [e.message for e in entries if e.message.sender_id != user_id]
            if others:
                wanted.append((user_id, others))
        metrics.INBOX_APPENDS.inc(appended)
        if wanted:
            task = asyncio.get_running_loop().create_task(self._push_many(wanted))
            self._tasks.add(task)
            task.add_done_callback(self._push_done)

    async def _push_many(self, wanted: list[tuple[int, list[Message]]]) -> None:
        for user_id, messages in wanted:
            await self._push_offline_devices(user_id, messages)

    def _push_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("asking for pushes failed", exc_info=task.exception())

    async def _push_offline_devices(self, user_id: int, messages: list[Message]) -> None:
        connected = self.delivery.connected_devices(user_id)
        devices = await self.directory.list_devices(user_id)
        offline = [
            d.device_id
            for d in devices
            if d.device_id not in connected and d.push_token is not None
        ]
        if not offline:
            return
        for message in messages:
            if message.sender_id == user_id:
                continue  # never wake a person's phone for what they sent themselves
            if not wakes(message, user_id):
                continue  # edits, deletes, reactions, others' joins: seen on next open
            await self.push.request(user_id, offline, message)
