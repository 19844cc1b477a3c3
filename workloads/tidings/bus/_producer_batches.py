"""Inbox events handed to the Kafka producer as batches per partition.

``AIOKafkaProducer.send`` costs tens of µs of Python per record (metadata lookups that
copy the topic's partition set three times, a partitioner call, a coroutine); a 1:1
message is two records and a group message up to a hundred. :class:`ProducerBatches` groups
records by partition (computed with :func:`tidings.bus.partitioning.partition_for_user`,
the producer's own murmur2), fills one ``BatchBuilder`` per partition and hands it over
with ``send_batch``: one metadata check per batch instead of three per record. Records
of one loop tick share a batch, and while a partition's batch waits for the producer
(it takes one per partition at a time) the next one gathers whatever arrives, so under
load batches grow rather than queue. Compression, ``linger_ms``, idempotence and
``acks=all`` are the producer's as before.

Each publisher gets one future per partition its records went to; it resolves when that
partition's batch is acknowledged, or fails with the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from tidings.bus.partitioning import partition_for_user, user_key

Record = tuple[bytes, bytes]  # key, value


class ProducerBatches:
    """See the module docstring. ``producer`` is called for each batch, so a renewed
    producer is picked up; ``partitions`` gives the topic's partition count.

    Per partition at most one batch waits to be taken by the producer (its
    ``send_batch`` returns once the partition's previous batch was drained to the
    broker): records that arrive meanwhile gather into the next one, so under load the
    batches grow instead of queueing up one small batch per tick.
    """

    def __init__(
        self, topic: str, producer: Callable[[], Any], partitions: Callable[[], int]
    ) -> None:
        self._topic = topic
        self._producer = producer
        self._partitions = partitions
        self._pending: dict[int, list[Record]] = {}
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._sending: dict[int, asyncio.Task[None]] = {}
        self._settling: set[asyncio.Task[None]] = set()

    def add(self, records: Sequence[tuple[int, bytes]]) -> list[asyncio.Future[None]]:
        """Queue ``(user_id, value)`` records; returns the futures of their batches."""
        loop = asyncio.get_running_loop()
        count = self._partitions()
        waits: dict[int, asyncio.Future[None]] = {}
        for user_id, value in records:
            partition = partition_for_user(user_id, count)
            self._pending.setdefault(partition, []).append((user_key(user_id), value))
            ack = self._acks.get(partition)
            if ack is None:
                ack = self._acks[partition] = loop.create_future()
            waits[partition] = ack
            if partition not in self._sending:
                self._sending[partition] = loop.create_task(self._send_pending(partition))
        return list(waits.values())

    async def _send_pending(self, partition: int) -> None:
        """Hand the partition's pending records over, batch after batch, until none are
        left (records queued during a hand-over make the next batch)."""
        try:
            while (records := self._pending.pop(partition, None)) is not None:
                ack = self._acks.pop(partition)
                try:
                    delivered = await self._queue(partition, records)
                except asyncio.CancelledError:
                    ack.cancel()
                    raise
                except BaseException as exc:
                    _fail(ack, exc)
                    continue
                settle = asyncio.ensure_future(_settle(delivered, ack))
                self._settling.add(settle)
                settle.add_done_callback(self._settling.discard)
        finally:
            del self._sending[partition]

    async def _queue(self, partition: int, records: list[Record]) -> list[Any]:
        """Give the records to the producer as one batch (more if they overflow one);
        returns the futures of their acknowledgements."""
        producer = self._producer()
        delivered = []
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                delivered.append(await producer.send_batch(batch, self._topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # a first always fits
        delivered.append(await producer.send_batch(batch, self._topic, partition=partition))
        return delivered


async def _settle(delivered: list[Any], ack: asyncio.Future[None]) -> None:
    try:
        await asyncio.gather(*delivered)
    except asyncio.CancelledError:
        ack.cancel()
        raise
    except BaseException as exc:
        _fail(ack, exc)
        return
    if not ack.done():
        ack.set_result(None)


def _fail(ack: asyncio.Future[None], exc: BaseException) -> None:
    if not ack.done():
        ack.set_exception(exc)
        ack.exception()  # its publishers see it; one that went away must not log it
