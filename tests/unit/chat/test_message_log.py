"""The cluster's message log without sockets or services: dedupe without a lightweight
transaction (a recent-window cache, one read on a miss) and the ownership fence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tidings.bus.base import InboxEvent
from tidings.bus.memory import MemoryBus
from tidings.chat.message_log import BusMessageLog, SenderMoved, SentCache, Tenure
from tidings.core import errors
from tidings.core.model import Message
from tidings.storage.base import ClientMsgIdReused

ALICE, BOB = 11, 22


class FakeStore:
    """save_message as the Cassandra store does it, on a dict: one read, then writes
    (each preceded by the fence); ``gate`` holds saves between the read and the writes."""

    def __init__(self) -> None:
        self.sent: dict[tuple[int, str], Message] = {}
        self.reads = 0
        self.writes = 0
        self.gate: asyncio.Event | None = None

    async def save_message(
        self, message: Message, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> Message:
        self.reads += 1
        key = (message.sender_id, message.client_msg_id)
        found = self.sent.get(key)
        if found is not None:
            return found
        if self.gate is not None:
            await self.gate.wait()
        if fence is not None:
            await fence()
        self.writes += 1
        self.sent[key] = message
        return message


class RecordingBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[InboxEvent] = []

    async def publish(self, events: list[InboxEvent]) -> None:  # type: ignore[override]
        self.published.extend(events)


def message(n: int, client_msg_id: str, body: str = "hi", sender: int = ALICE) -> Message:
    return Message(
        message_id=1000 + n,
        channel_id=f"dm:{ALICE}:{BOB}",
        sender_id=sender,
        sender_device_id=7,
        client_msg_id=client_msg_id,
        body=body,
        ts=n,
    )


def published_ids(bus: RecordingBus) -> list[int]:
    return [int(e.payload["message_id"]) for e in bus.published]


def partition_of(user_id: int) -> int:
    return user_id % 3  # ALICE -> 2, BOB -> 1


async def test_a_resend_hits_the_cache_and_gets_the_first_message() -> None:
    store, bus = FakeStore(), RecordingBus()
    log = BusMessageLog(store, bus)  # type: ignore[arg-type]
    first = await log.append(message(1, "c1"), [ALICE, BOB])
    again = await log.append(message(2, "c1"), [ALICE, BOB])
    assert again == first
    assert store.reads == 1, "the resend was answered from memory"
    # Published twice (the inboxes skip the id they hold), both times the first message.
    assert published_ids(bus) == [first.message_id] * 4


async def test_a_cold_cache_reads_once_and_finds_the_first_message() -> None:
    """A server that never saw the first send (a restart, an ownership move) asks the
    store once and answers with the first message."""
    store = FakeStore()
    first = await BusMessageLog(store, RecordingBus()).append(message(1, "c1"), [ALICE])  # type: ignore[arg-type]
    bus = RecordingBus()
    again = await BusMessageLog(store, bus).append(message(2, "c1"), [ALICE])  # type: ignore[arg-type]
    assert again == first and store.writes == 1
    assert published_ids(bus) == [first.message_id]


async def test_a_reused_client_msg_id_is_refused_and_publishes_nothing() -> None:
    store, bus = FakeStore(), RecordingBus()
    log = BusMessageLog(store, bus)  # type: ignore[arg-type]
    await log.append(message(1, "c1", "hello"), [ALICE, BOB])
    bus.published.clear()
    with pytest.raises(ClientMsgIdReused):
        await log.append(message(2, "c1", "something else"), [ALICE, BOB])
    assert bus.published == []


async def test_the_cache_is_bounded_per_partition_and_forgets_lost_partitions() -> None:
    cache = SentCache(capacity=64 * 2, partitions=2)
    for n in range(100):
        cache.put(0, (ALICE, f"c{n}"), message(n, f"c{n}"))
    cache.put(1, (BOB, "b"), message(0, "b", sender=BOB))
    assert len(cache) == 65
    assert cache.get(0, (ALICE, "c0")) is None  # the oldest went first
    assert cache.get(0, (ALICE, "c99")) is not None
    cache.forget({0})
    assert cache.get(0, (ALICE, "c99")) is None
    assert cache.get(1, (BOB, "b")) is not None
    assert len(SentCache(0)) == 0
    off = SentCache(0)
    off.put(0, (ALICE, "x"), message(1, "x"))
    assert off.get(0, (ALICE, "x")) is None


async def test_a_send_whose_partition_moved_while_stored_is_not_published() -> None:
    """The server lost the sender's partition between the dedupe read and the writes:
    nothing is written or published, and the device is told to send again."""
    store, bus = FakeStore(), RecordingBus()
    tenure = Tenure(partition_of)
    tenure.assigned({1, 2})
    log = BusMessageLog(store, bus, tenure=tenure)  # type: ignore[arg-type]
    store.gate = asyncio.Event()
    pending = log.append(message(1, "c1"), [ALICE, BOB])
    await asyncio.sleep(0)
    tenure.revoked()
    assert tenure.assigned({1}) == {2}  # alice's partition went elsewhere
    store.gate.set()
    with pytest.raises(SenderMoved) as caught:
        await pending
    assert caught.value.code == errors.UNAVAILABLE and caught.value.ref == "c1"
    assert store.writes == 0 and bus.published == []


async def test_a_send_stored_when_the_partition_moved_is_stored_but_not_published() -> None:
    """Stored in the old term, published in none: the new owner's read finds it."""
    store, bus = FakeStore(), RecordingBus()
    tenure = Tenure(partition_of)
    tenure.assigned({2})
    log = BusMessageLog(store, bus, tenure=tenure)  # type: ignore[arg-type]
    blocker: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
    log._tails[ALICE] = blocker  # an earlier send of hers is still publishing
    pending = log.append(message(1, "c1"), [ALICE, BOB])
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.writes == 1  # stored in the term it began in
    tenure.revoked()
    tenure.assigned(set())
    blocker.set_result(message(0, "c0"))
    with pytest.raises(SenderMoved):
        await pending
    assert bus.published == []
    # The new owner: a cold cache, one read, the same message id, published once.
    new_bus = RecordingBus()
    new_tenure = Tenure(partition_of)
    new_tenure.assigned({2})
    again = await BusMessageLog(store, new_bus, tenure=new_tenure).append(  # type: ignore[arg-type]
        message(9, "c1"), [ALICE, BOB]
    )
    assert again.message_id == 1001
    assert published_ids(new_bus) == [1001, 1001]


async def test_sends_during_a_rebalance_publish_once_the_partition_stays() -> None:
    store, bus = FakeStore(), RecordingBus()
    tenure = Tenure(partition_of)
    tenure.assigned({2})
    log = BusMessageLog(store, bus, tenure=tenure)  # type: ignore[arg-type]
    first = await log.append(message(1, "c1"), [ALICE])
    tenure.revoked()
    pending = log.append(message(2, "c2"), [ALICE])
    for _ in range(5):
        await asyncio.sleep(0)
    assert not pending.done(), "no publish while nobody knows who holds what"
    tenure.assigned({2, 0})  # kept hers (eager rebalancing took it away and gave it back)
    second = await pending
    assert published_ids(bus) == [first.message_id, second.message_id]


async def test_a_send_for_a_user_this_server_does_not_hold_is_refused() -> None:
    store, bus = FakeStore(), RecordingBus()
    tenure = Tenure(partition_of)
    tenure.assigned({0})
    log = BusMessageLog(store, bus, tenure=tenure)  # type: ignore[arg-type]
    with pytest.raises(SenderMoved):
        await log.append(message(1, "c1"), [ALICE])
    assert store.reads == 0 and bus.published == []


async def test_terms_change_only_when_a_partition_is_gained_again() -> None:
    tenure = Tenure(partition_of)
    tenure.assigned({0, 1})
    kept, moved = tenure.term(0), tenure.term(1)
    tenure.revoked()
    assert not tenure.ended(0, kept), "nothing is known to have moved during a rebalance"
    assert tenure.assigned({0}) == {1}
    assert tenure.term(0) == kept and not tenure.ended(0, kept)
    assert tenure.ended(1, moved)
    tenure.assigned({0, 1})
    assert tenure.term(1) not in (None, moved), "a partition gained again is a new term"


async def test_a_publish_keeps_a_senders_order() -> None:
    store, bus = FakeStore(), RecordingBus()
    log = BusMessageLog(store, bus)  # type: ignore[arg-type]
    store.gate = asyncio.Event()
    first = log.append(message(1, "c1"), [BOB])
    second = log.append(message(2, "c2"), [BOB])
    store.gate.set()
    await asyncio.gather(first, second)
    assert published_ids(bus) == [1001, 1002]


async def test_writes_wait_for_a_rebalance_to_end_before_they_go_out() -> None:
    """A server in the middle of a rebalance does not know yet whether it keeps the
    sender: it writes nothing until it does, and nothing at all if it does not."""
    store, bus = FakeStore(), RecordingBus()
    tenure = Tenure(partition_of)
    tenure.assigned({2})
    log = BusMessageLog(store, bus, tenure=tenure)  # type: ignore[arg-type]
    store.gate = asyncio.Event()
    kept = log.append(message(1, "kept"), [ALICE])
    for _ in range(3):
        await asyncio.sleep(0)
    tenure.revoked()
    store.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.writes == 0 and not kept.done()
    tenure.assigned({2})
    assert (await kept).message_id == 1001 and store.writes == 1

    store.gate = asyncio.Event()
    lost = log.append(message(2, "lost"), [ALICE])
    for _ in range(3):
        await asyncio.sleep(0)
    tenure.revoked()
    store.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    tenure.assigned({0})
    with pytest.raises(SenderMoved):
        await lost
    assert store.writes == 1 and published_ids(bus) == [1001]
