"""The inbox consumer: append to each user's inbox, deliver, ask for pushes, commit.

It runs on the owner of the users' partitions (single writer per user), so each user's
``seq`` is gapless and the same on every device.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from tidings import metrics
from tidings.bus.base import InboxEvent
from tidings.chat.ports import Delivery, Ownership, PushSink
from tidings.core.model import InboxEntry, Message
from tidings.storage.base import Directory, MessageStore

log = logging.getLogger(__name__)

# Users of one consumer poll whose inbox appends run at once.
APPEND_CONCURRENCY = 64


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
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, events: list[InboxEvent]) -> None:
        """One consumer poll: each user's messages of the poll are appended in **one**
        ``append_inbox`` (one head move), users side by side (at most
        ``APPEND_CONCURRENCY`` at once; the store bounds its requests in flight too).
        Returns once every append is durable, so the bus commits only then; an append
        that fails fails the poll, which comes again (appends skip ids they hold)."""
        by_user: dict[int, list[Message]] = defaultdict(list)
        for event in events:
            if event.kind == "msg":
                by_user[event.user_id].append(Message.from_wire(event.payload))
            elif self.ownership.owns(event.user_id):
                self.delivery.deliver_frame(event.user_id, event.payload)
        users = [(u, m) for u, m in by_user.items() if self.ownership.owns(u)]
        if not users:
            return
        if len(users) == 1:
            await self._append_one(*users[0])
            return
        slots = asyncio.Semaphore(APPEND_CONCURRENCY)

        async def bounded(user_id: int, messages: list[Message]) -> None:
            async with slots:
                await self._append_one(user_id, messages)

        results = await asyncio.gather(*(bounded(u, m) for u, m in users), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _append_one(self, user_id: int, messages: list[Message]) -> None:
        appended = await self.messages.append_inbox(user_id, messages)
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
            await self.push.request(user_id, offline, message)
