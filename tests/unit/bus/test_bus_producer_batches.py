"""Inbox records of one loop tick go out as one producer batch per partition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tidings.bus._producer_batches import ProducerBatches
from tidings.bus.partitioning import partition_for_user, user_key

PARTITIONS = 8


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: Any) -> object | None:
        if self.records and len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    """Keeps what send_batch was given; a partition in ``failing`` is not acknowledged."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.sent: list[tuple[int, list[tuple[bytes, bytes]]]] = []
        self.failing: set[int] = set()

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.sent.append((partition, batch.records))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if partition in self.failing:
            ack.set_exception(RuntimeError(f"partition {partition} not acknowledged"))
        else:
            ack.set_result(None)
        return ack


def users_on_distinct_partitions(n: int) -> list[int]:
    found: dict[int, int] = {}
    user = 1
    while len(found) < n:
        found.setdefault(partition_for_user(user, PARTITIONS), user)
        user += 1
    return list(found.values())


async def test_one_tick_of_publishes_is_one_batch_per_partition_in_order() -> None:
    producer = FakeProducer()
    batches = ProducerBatches("inbox", lambda: producer, lambda: PARTITIONS)
    a, b = users_on_distinct_partitions(2)
    first = batches.add([(a, b"1"), (b, b"2")])
    second = batches.add([(a, b"3")])
    await asyncio.gather(*first, *second)
    assert sorted(producer.sent) == sorted(
        [
            (partition_for_user(a, PARTITIONS), [(user_key(a), b"1"), (user_key(a), b"3")]),
            (partition_for_user(b, PARTITIONS), [(user_key(b), b"2")]),
        ]
    )
    assert len(first) == 2 and len(second) == 1


async def test_a_full_batch_continues_in_another_and_both_are_awaited() -> None:
    producer = FakeProducer(capacity=2)
    batches = ProducerBatches("inbox", lambda: producer, lambda: PARTITIONS)
    (a,) = users_on_distinct_partitions(1)
    await asyncio.gather(*batches.add([(a, str(i).encode()) for i in range(5)]))
    assert [len(records) for _, records in producer.sent] == [2, 2, 1]
    assert [v for _, records in producer.sent for _, v in records] == [b"0", b"1", b"2", b"3", b"4"]


async def test_a_failed_partition_fails_only_the_publishers_with_records_in_it() -> None:
    producer = FakeProducer()
    batches = ProducerBatches("inbox", lambda: producer, lambda: PARTITIONS)
    a, b = users_on_distinct_partitions(2)
    producer.failing.add(partition_for_user(b, PARTITIONS))
    only_a = batches.add([(a, b"x")])
    a_and_b = batches.add([(a, b"y"), (b, b"z")])
    await asyncio.gather(*only_a)
    results = await asyncio.gather(*a_and_b, return_exceptions=True)
    assert [type(r) for r in results] == [type(None), RuntimeError]


async def test_no_producer_fails_the_publish_instead_of_hanging() -> None:
    def closed() -> Any:
        raise RuntimeError("KafkaBus cannot publish: not started")

    batches = ProducerBatches("inbox", closed, lambda: PARTITIONS)
    with pytest.raises(RuntimeError, match="not started"):
        await asyncio.wait_for(asyncio.gather(*batches.add([(1, b"x")])), 5)


async def test_records_arriving_while_a_batch_waits_gather_into_the_next_one() -> None:
    """The producer takes one batch per partition at a time: ten publishes made while
    the first batch waits go out together, as one second batch, not as ten."""
    producer = FakeProducer()
    gate = asyncio.Event()
    plain_send = producer.send_batch

    async def slow_send_batch(batch: FakeBatch, topic: str, *, partition: int) -> Any:
        await gate.wait()
        return await plain_send(batch, topic, partition=partition)

    producer.send_batch = slow_send_batch  # type: ignore[method-assign]
    batches = ProducerBatches("inbox", lambda: producer, lambda: PARTITIONS)
    (a,) = users_on_distinct_partitions(1)
    first = batches.add([(a, b"first")])
    later = []
    for n in range(10):
        await asyncio.sleep(0)  # a later tick each
        later += batches.add([(a, str(n).encode())])
    gate.set()
    await asyncio.gather(*first, *later)
    assert [len(records) for _, records in producer.sent] == [1, 10]
