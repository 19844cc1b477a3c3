"""The cluster's :class:`~tidings.chat.ports.MessageLog`: store, then publish on the bus.

The owners of the members' partitions append the events to the inboxes and deliver. (The
embedded default's log is :class:`tidings.storage.sqlite.StoreMessageLog`: one
transaction for the message and every inbox row, no bus.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tidings import metrics
from tidings.bus.base import InboxBus, InboxEvent
from tidings.core.model import Message
from tidings.storage.base import ClientMsgIdReused, MessageStore


def same_target(stored: Message, message: Message) -> bool:
    """A resend must name the channel and body the client_msg_id was first used for."""
    return stored.channel_id == message.channel_id and stored.body == message.body


class BusMessageLog:
    def __init__(self, messages: MessageStore, bus: InboxBus) -> None:
        self.messages = messages
        self.bus = bus
        # Per sender, the append published last: a sender's messages are stored side by
        # side but published in the order they were taken (ids, and so inbox order).
        self._tails: dict[int, asyncio.Future[Message]] = {}

    def append(self, message: Message, members: Sequence[int]) -> asyncio.Future[Message]:
        sender = message.sender_id
        task = asyncio.ensure_future(self._append(message, members, self._tails.get(sender)))
        self._tails[sender] = task
        task.add_done_callback(lambda done: self._untail(sender, done))
        return task

    def _untail(self, sender: int, done: asyncio.Future[Message]) -> None:
        if self._tails.get(sender) is done:
            del self._tails[sender]

    async def _append(
        self,
        message: Message,
        members: Sequence[int],
        before: asyncio.Future[Message] | None,
    ) -> Message:
        """A resend publishes the first message again: inboxes skip ids they hold, so
        nothing is delivered twice, and a message whose first publish was cut short by a
        crash still reaches everyone."""
        stored = await self.messages.find_sent(message.sender_id, message.client_msg_id)
        if stored is None:
            stored = await self.messages.save_message(message)
            if stored is message:
                metrics.MESSAGES_SENT.inc()
        if not same_target(stored, message):
            raise ClientMsgIdReused(stored)
        if before is not None and not before.done():
            await asyncio.wait([before])  # its outcome is its caller's; only the order matters
        payload = stored.to_wire()
        await self.bus.publish([InboxEvent(member, "msg", payload) for member in members])
        return stored
