"""The cluster's :class:`~tidings.chat.ports.MessageLog`: store, then publish on the bus.

The owners of the members' partitions append the events to the inboxes and deliver. (The
embedded default's log is :class:`tidings.storage.sqlite.store.StoreMessageLog`: one
transaction for the message and every inbox row, no bus.)

Dedupe on (sender, client_msg_id) takes no lightweight transaction: a sender's devices
talk to the owner of the sender's inbox partition, so that chat server is the only one
storing the sender's messages. It keeps the recent (sender, client_msg_id) in memory
(:class:`SentCache`), asks the store (one plain read, then plain writes) on a miss, and
publishes only while it still holds the sender's partition in the tenure the send began
in (:class:`Tenure`). The argument, and what happens when a partition moves, is in
docs/architecture.md ("Dedupe without Paxos").
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from tidings import metrics
from tidings.bus.base import RESENT, InboxBus, InboxEvent
from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.core.model import Message
from tidings.storage.base import ClientMsgIdReused, MessageStore

SentKey = tuple[int, str]  # (sender_id, client_msg_id)

# A send that began just before a rebalance waits this long at most for its end before
# it is answered `unavailable` (the consumer group's rebalance timeout is 30 s).
SETTLE_WAIT_S = 30.0


class SenderMoved(ProtocolError):
    """The sender's partition moved to another chat server while the send was stored:
    not acked, not published; the device resends to the new owner, which finds what
    was stored (same message id)."""

    def __init__(self, client_msg_id: str) -> None:
        super().__init__(
            errors.UNAVAILABLE,
            "your chat server changed while this message was stored; send it again",
            ref=client_msg_id,
        )


class SentCache:
    """The recent (sender, client_msg_id) -> stored message, by the sender's partition.

    Bounded: each partition keeps its ``capacity / partitions`` newest entries (at least
    64), so the whole stays within about ``capacity``. An entry is a fact: that message
    is stored under that key (it goes in only after the store said so).
    :meth:`forget` drops the partitions this server lost.
    """

    def __init__(self, capacity: int, partitions: int = 1) -> None:
        self._per_partition = max(64, capacity // max(partitions, 1)) if capacity > 0 else 0
        self._parts: dict[int, OrderedDict[SentKey, Message]] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts.values())

    def get(self, partition: int, key: SentKey) -> Message | None:
        """The message stored under ``key``, if this cache still holds it."""
        part = self._parts.get(partition)
        return part.get(key) if part is not None else None

    def put(self, partition: int, key: SentKey, message: Message) -> None:
        """Remember that ``message`` is stored under ``key`` (dropping the partition's oldest
        entry beyond its share)."""
        if self._per_partition <= 0:
            return
        part = self._parts.setdefault(partition, OrderedDict())
        part[key] = message
        part.move_to_end(key)
        while len(part) > self._per_partition:
            part.popitem(last=False)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop every entry of these partitions (this server lost them)."""
        for partition in partitions:
            self._parts.pop(partition, None)


class Tenure:
    """Which inbox partitions this chat server holds, and since when.

    Each time the server gains a partition it gets a new term number; :meth:`assigned`
    (the consumer group's assignment) hands out terms and ends those of the partitions
    that left. :meth:`revoked` marks a rebalance under way: until the next
    :meth:`assigned` nobody knows who will hold what, so a send may be stored but waits
    before it publishes (:meth:`settled_term`).
    """

    def __init__(self, partition_of: Callable[[int], int]) -> None:
        self.partition_of = partition_of
        self._terms: dict[int, int] = {}
        self._next = 0
        self._settled = asyncio.Event()

    def revoked(self) -> None:
        """A rebalance began: until the next :meth:`assigned`, :meth:`settled_term` waits and
        :meth:`ended` says no."""
        self._settled.clear()

    def assigned(self, partitions: set[int]) -> set[int]:
        """The new assignment; returns the partitions lost (their terms ended)."""
        lost = set(self._terms) - partitions
        for partition in lost:
            del self._terms[partition]
        for partition in sorted(partitions - set(self._terms)):
            self._next += 1
            self._terms[partition] = self._next
        self._settled.set()
        return lost

    def term(self, partition: int) -> int | None:
        """The partition's term as far as known now (None: not held)."""
        return self._terms.get(partition)

    def ended(self, partition: int, term: int | None) -> bool:
        """Known to have moved since ``term`` (during a rebalance nothing is known yet)."""
        return self._settled.is_set() and self._terms.get(partition) != term

    async def settled_term(self, partition: int) -> int | None:
        """The partition's term once no rebalance is under way (raises TimeoutError
        after ``SETTLE_WAIT_S``)."""
        if not self._settled.is_set():
            await asyncio.wait_for(self._settled.wait(), SETTLE_WAIT_S)
        return self._terms.get(partition)


class BusMessageLog:
    """Store, then publish one ``msg`` event per member; see the module docstring.

    ``tenure`` is None where this process serves every sender (tests, a single node): no
    fencing then. ``sent_cache`` defaults to 100,000 entries.
    """

    def __init__(
        self,
        messages: MessageStore,
        bus: InboxBus,
        *,
        tenure: Tenure | None = None,
        sent_cache: SentCache | None = None,
    ) -> None:
        self.messages = messages
        self.bus = bus
        self.tenure = tenure
        self.sent = sent_cache if sent_cache is not None else SentCache(100_000)
        # Per sender, the append published last: a sender's messages are stored side by
        # side but published in the order they were taken (ids, and so inbox order).
        self._tails: dict[int, asyncio.Future[Message]] = {}

    def append(self, message: Message, members: Sequence[int]) -> asyncio.Future[Message]:
        """As :meth:`MessageLog.append <tidings.chat.ports.MessageLog.append>`: the sender's
        messages are published in the order this is called."""
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
        tenure, ref = self.tenure, message.client_msg_id
        partition, term = 0, None
        if tenure is not None:
            partition = tenure.partition_of(message.sender_id)
            term = await self._settled_term(tenure, partition, ref)
            if term is None:  # a connection not sent away yet after a rebalance
                raise SenderMoved(ref)
        key = (message.sender_id, ref)
        stored = self.sent.get(partition, key)
        if stored is None:
            # Write only while the sender's partition is held in the send's term and no
            # rebalance is under way (then who holds what is not known yet).
            fence = functools.partial(self._still_held, tenure, partition, term, ref)
            stored = await self.messages.save_message(
                message, fence=fence if tenure is not None else None
            )
            if stored is message:
                metrics.MESSAGES_SENT.inc()
            if tenure is None or not tenure.ended(partition, term):
                self.sent.put(partition, key, stored)
        if not stored.same_send(message):
            raise ClientMsgIdReused(stored)
        if before is not None and not before.done():
            await asyncio.wait([before])  # its outcome is its caller's; only the order matters
        # Whoever holds the sender now may take a resend of it: publishing here too could
        # deliver it twice under two ids. Not acked; the resend finds it stored.
        await self._still_held(tenure, partition, term, ref)
        payload = stored.to_wire()
        if stored is not message:
            payload[RESENT] = True  # its inboxes may hold it: they look before appending
        await self.bus.publish([InboxEvent(member, "msg", payload) for member in members])
        return stored

    @classmethod
    async def _still_held(
        cls, tenure: Tenure | None, partition: int, term: int | None, ref: str
    ) -> None:
        """Raise :class:`SenderMoved` unless ``partition`` is held in ``term`` once no
        rebalance is under way (nothing to check without a tenure)."""
        if tenure is not None and await cls._settled_term(tenure, partition, ref) != term:
            raise SenderMoved(ref)

    @staticmethod
    async def _settled_term(tenure: Tenure, partition: int, ref: str) -> int | None:
        try:
            return await tenure.settled_term(partition)
        except TimeoutError:
            raise SenderMoved(ref) from None
