"""The message path driven without sockets: service -> bus -> inbox processor -> devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tidings.bus.base import InboxEvent
from tidings.bus.memory import MemoryBus
from tidings.chat.delivery import InboxProcessor
from tidings.chat.service import ChatService
from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.core.frames import Receipt, Send
from tidings.core.ids import SnowflakeGenerator
from tidings.core.model import InboxEntry, Message
from tidings.runtime import OwnsEveryone, wall_ms
from tidings.storage.sql.directory import SqlDirectory
from tidings.storage.sqlite.store import SqliteMessageStore


class RecordingDelivery:
    def __init__(self) -> None:
        self.entries: dict[int, list[InboxEntry]] = {}
        self.frames: dict[int, list[dict[str, Any]]] = {}
        self.connected: dict[int, set[int]] = {}

    def deliver_entries(self, user_id: int, entries: Sequence[InboxEntry]) -> None:
        self.entries.setdefault(user_id, []).extend(entries)

    def deliver_frame(self, user_id: int, frame: dict[str, Any]) -> None:
        self.frames.setdefault(user_id, []).append(frame)

    def connected_devices(self, user_id: int) -> set[int]:
        return self.connected.get(user_id, set())


class RecordingPush:
    def __init__(self) -> None:
        self.requests: list[tuple[int, tuple[int, ...], int]] = []

    async def request(self, user_id: int, device_ids: Sequence[int], message: Message) -> None:
        self.requests.append((user_id, tuple(device_ids), message.message_id))


SETTLE_WITHIN_S = 10.0


class CountingBus(MemoryBus):
    """The in-memory bus, counting the events published so a test can wait for them all."""

    def __init__(self) -> None:
        super().__init__()
        self.published = 0

    async def publish(self, events: Sequence[InboxEvent]) -> None:
        self.published += len(events)
        await super().publish(events)


class World:
    def __init__(self, directory: SqlDirectory, messages: SqliteMessageStore) -> None:
        self.directory = directory
        self.messages = messages
        self.bus = CountingBus()
        self.delivery = RecordingDelivery()
        self.push = RecordingPush()
        self.service = ChatService(directory, messages, self.bus, SnowflakeGenerator(1), wall_ms)
        self.processor = InboxProcessor(
            messages, directory, self.delivery, self.push, OwnsEveryone()
        )
        self._ids = SnowflakeGenerator(2)
        self.handled = 0  # events the processor has handled, over every settle()

    async def user(self, name: str) -> int:
        user_id = self._ids.next_id()
        await self.directory.create_user(user_id, name, "x", name, wall_ms())
        return user_id

    async def device(self, user_id: int, push_token: str | None = None) -> int:
        device_id = self._ids.next_id()
        await self.directory.create_device(device_id, user_id, "phone", "ios", wall_ms())
        if push_token:
            await self.directory.set_push_token(device_id, "apns", push_token)
        return device_id

    async def settle(self) -> None:
        """Run the consumer until the processor has handled every event published so far
        (and any the handling published in turn); fail if that takes SETTLE_WITHIN_S."""

        async def handle(batch: list[InboxEvent]) -> None:
            await self.processor.handle(batch)
            self.handled += len(batch)

        consumer = asyncio.create_task(self.bus.consume(handle))
        try:
            async with asyncio.timeout(SETTLE_WITHIN_S):
                while self.handled < self.bus.published:
                    if consumer.done():
                        consumer.result()  # the handler raised: show why
                    await asyncio.sleep(0.005)
        except TimeoutError:
            raise AssertionError(
                f"the inbox processor handled {self.handled} of {self.bus.published} events "
                f"within {SETTLE_WITHIN_S}s"
            ) from None
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    directory = await SqlDirectory.open(f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}")
    messages = await SqliteMessageStore.open(tmp_path / "messages.db")
    yield World(directory, messages)
    await messages.close()
    await directory.close()


async def test_a_message_reaches_every_member_with_gapless_seq(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    a1 = await world.device(alice)
    for n in range(3):
        await world.service.send(alice, a1, Send(f"c{n}", f"hello {n}", to=bob))
    await world.settle()
    for user in (alice, bob):
        seqs = [e.seq for e in world.delivery.entries[user]]
        assert seqs == [1, 2, 3]
        assert [e.message.body for e in world.delivery.entries[user]] == [
            "hello 0",
            "hello 1",
            "hello 2",
        ]
    assert await world.messages.inbox_head(bob) == 3


async def test_a_resend_returns_the_same_message_and_delivers_nothing_twice(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    a1 = await world.device(alice)
    first = await world.service.send(alice, a1, Send("same", "once", to=bob))
    again = await world.service.send(alice, a1, Send("same", "once", to=bob))
    await world.settle()
    assert again.message_id == first.message_id
    assert [e.message.message_id for e in world.delivery.entries[bob]] == [first.message_id]


async def test_sending_to_a_channel_one_is_not_in_is_refused(world: World) -> None:
    alice, bob, carol = await world.user("alice"), await world.user("bob"), await world.user("c")
    a1 = await world.device(alice)
    group = await world.directory.create_group("g:1", "pals", bob, [bob, carol], wall_ms())
    with pytest.raises(ProtocolError) as caught:
        await world.service.send(alice, a1, Send("x", "hi", channel_id=group.channel_id))
    assert caught.value.code == errors.NOT_A_MEMBER
    with pytest.raises(ProtocolError) as caught:
        await world.service.send(alice, a1, Send("y", "hi", channel_id="g:404"))
    assert caught.value.code == errors.UNKNOWN_CHANNEL
    with pytest.raises(ProtocolError) as caught:
        await world.service.send(alice, a1, Send("z", "hi", to=12345))
    assert caught.value.code == errors.UNKNOWN_USER


async def test_offline_devices_with_a_push_token_get_a_push_request(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    a1 = await world.device(alice, push_token="alice-phone")
    b1 = await world.device(bob, push_token="bob-phone")
    b2 = await world.device(bob)  # no token: nothing to push to
    world.delivery.connected[alice] = {a1}
    sent = await world.service.send(alice, a1, Send("p", "wake up", to=bob))
    await world.settle()
    assert world.push.requests == [(bob, (b1,), sent.message_id)]
    assert b2 not in world.push.requests[0][1]


async def test_receipts_fan_out_once_and_only_forward(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    a1 = await world.device(alice)
    m1 = await world.service.send(alice, a1, Send("1", "one", to=bob))
    m2 = await world.service.send(alice, a1, Send("2", "two", to=bob))
    await world.settle()
    await world.service.receipt(bob, Receipt(m2.channel_id, m2.message_id, "read"))
    await world.service.receipt(bob, Receipt(m1.channel_id, m1.message_id, "read"))  # older
    await world.settle()
    receipts = [f for f in world.delivery.frames[alice] if f["type"] == "receipt"]
    assert receipts == [
        {
            "type": "receipt",
            "channel_id": m2.channel_id,
            "user_id": str(bob),
            "message_id": str(m2.message_id),
            "status": "read",
        }
    ]
    marks = await world.messages.get_watermarks(m2.channel_id, bob)
    assert marks.read_upto == marks.delivered_upto == m2.message_id


async def test_sync_pages_through_the_inbox(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    a1 = await world.device(alice)
    for n in range(5):
        await world.service.send(alice, a1, Send(f"s{n}", str(n), to=bob))
    await world.settle()
    page = await world.service.sync(bob, 0, 2)
    assert ([e.seq for e in page.entries], page.cursor, page.more) == ([1, 2], 2, True)
    page = await world.service.sync(bob, 4, 2)
    assert ([e.seq for e in page.entries], page.cursor, page.more) == ([5], 5, False)
