"""Push requests through Kafka: chat servers produce them, push workers consume them.

A request is JSON on ``<prefix>.push``, keyed by the user id::

    {"user_id": "42", "device_ids": ["7", "9"], "message": {...Message.to_wire()...},
     "ts": 1732830000000}

(ids are decimal strings, as everywhere on the wire; ``ts`` is when it was requested, so
a worker can drop pushes that are too old to matter). The push workers read them in
the consumer group ``<prefix>.push`` and commit after their handler returned: a worker
that dies mid-batch leaves the batch to the next one (at-least-once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, KafkaError

from tidings.bus.partitioning import user_key
from tidings.core.model import Message
from tidings.kafka_config import kafka_client_options, push_topic
from tidings.settings import Settings
from tidings.wire.topics import MAX_RECORD_BYTES

__all__ = ["KafkaPushSink", "PushRequest", "PushUnavailable", "consume_push_requests"]

log = logging.getLogger(__name__)


class PushUnavailable(Exception):
    """Kafka did not take the push request; trying again may help."""

    retriable = True


@dataclass(frozen=True, slots=True)
class PushRequest:
    user_id: int
    device_ids: tuple[int, ...]
    message: Message
    ts: int = 0  # ms since the epoch when it was requested

    def encode(self) -> bytes:
        """The request as compact JSON (ids as strings, the message in its wire form)."""
        return json.dumps(
            {
                "user_id": str(self.user_id),
                "device_ids": [str(d) for d in self.device_ids],
                "message": self.message.to_wire(),
                "ts": self.ts,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> PushRequest:
        """The request that :meth:`encode` made of it (``ts`` 0 when absent)."""
        data = json.loads(raw)
        return cls(
            user_id=int(data["user_id"]),
            device_ids=tuple(int(d) for d in data["device_ids"]),
            message=Message.from_wire(data["message"]),
            ts=int(data.get("ts", 0)),
        )


PushHandler = Callable[[list[PushRequest]], Awaitable[None]]


class KafkaPushSink:
    """:class:`tidings.chat.ports.PushSink` that produces to ``<prefix>.push``.

    ``request`` returns once Kafka acknowledged the request (acks=all), so the inbox
    consumer commits its batch only after the pushes it asked for are safe.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.topic = push_topic(settings.kafka_topic_prefix)
        self._producer: Any = None

    async def start(self) -> None:
        """Start the idempotent producer (acks=all)."""
        producer = AIOKafkaProducer(
            **kafka_client_options(self._settings),
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            max_request_size=MAX_RECORD_BYTES,
        )
        await producer.start()
        self._producer = producer

    async def request(self, user_id: int, device_ids: Sequence[int], message: Message) -> None:
        """Produce a push request for ``user_id``'s ``device_ids``, keyed by the user, and wait
        for Kafka's acknowledgement.

        Raises :class:`PushUnavailable` when Kafka did not take it, ``RuntimeError`` before
        :meth:`start`."""
        if self._producer is None:
            raise RuntimeError("KafkaPushSink is not started")
        push = PushRequest(user_id, tuple(device_ids), message, time.time_ns() // 1_000_000)
        try:
            await self._producer.send_and_wait(self.topic, push.encode(), key=user_key(user_id))
        except KafkaError as exc:
            raise PushUnavailable(f"push request for user {user_id} not taken") from exc

    async def close(self) -> None:
        """Stop the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets a rebalance wait for the batch in flight, so its commit still counts."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._lock:
            pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def consume_push_requests(
    settings: Settings,
    handler: PushHandler,
    *,
    batch_size: int = 100,
    session_timeout_s: float = 10.0,
    heartbeat_interval_s: float = 1.0,
    max_poll_interval_s: float = 300.0,
) -> None:
    """Hand batches of push requests to ``handler`` until cancelled; commit after each.

    A handler that raises ends the loop with its exception, leaving the batch
    uncommitted (the group hands it to another worker, or to this one when it restarts).
    Undecodable records are logged and skipped.
    """
    topic = push_topic(settings.kafka_topic_prefix)
    lock = asyncio.Lock()
    consumer = AIOKafkaConsumer(
        **kafka_client_options(settings),
        group_id=f"{settings.kafka_topic_prefix}.push",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_size,
        session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=int(heartbeat_interval_s * 1000),
        max_poll_interval_ms=int(max_poll_interval_s * 1000),
    )
    consumer.subscribe([topic], listener=_WaitForBatch(lock))
    await consumer.start()
    try:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=batch_size)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                log.warning("push consumer error, retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if not batches:
                continue
            async with lock:
                requests: list[PushRequest] = []
                offsets: dict[TopicPartition, int] = {}
                for tp, records in batches.items():
                    if not records:
                        continue
                    offsets[tp] = records[-1].offset + 1
                    for record in records:
                        try:
                            requests.append(PushRequest.decode(record.value))
                        except (ValueError, KeyError, TypeError):
                            log.error(
                                "skipping an undecodable push request",
                                extra={"partition": tp.partition, "offset": record.offset},
                            )
                if requests:
                    await handler(requests)
                try:
                    await consumer.commit(offsets)
                except CommitFailedError:
                    log.warning("push commit refused after a rebalance; may push twice")
    finally:
        await consumer.stop()
