"""Reading one compacted topic from its beginning, and following it.

No consumer group and nothing committed: every reader sees every record. Each record is
handed to ``apply(key, value)`` in offset order (``value`` None: a tombstone); what to
keep is the caller's (the newest record per key, usually). ``start`` waits, bounded,
until the records present at start have been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["Apply", "CompactedTopicReader"]

log = logging.getLogger(__name__)

Apply = Callable[[bytes | None, bytes | None], None]


class CompactedTopicReader:
    """Partition 0 of ``topic``, read from the beginning by a background task."""

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        apply: Apply,
        *,
        name: str,
        poll_ms: int = 1000,
    ) -> None:
        """``options``: aiokafka client options; ``name``: the task's; ``poll_ms``: how
        long one fetch waits for records."""
        self._options = options
        self.topic = topic
        self._apply = apply
        self._name = name
        self._poll_ms = poll_ms
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()

    async def start(self, *, catch_up_timeout_s: float | None = 10.0) -> bool:
        """Start reading; wait up to ``catch_up_timeout_s`` (None: not at all) for the
        records present now. Returns whether they have all been read."""
        consumer = AIOKafkaConsumer(
            **self._options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        if end == 0:
            self._caught_up.set()
        self._task = asyncio.create_task(self._run(tp, end), name=self._name)
        if catch_up_timeout_s is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._caught_up.wait(), catch_up_timeout_s)
        return self.caught_up

    @property
    def caught_up(self) -> bool:
        """Whether the records present at start have all been read."""
        return self._caught_up.is_set()

    async def _run(self, tp: Any, end: int) -> None:
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(tp, timeout_ms=self._poll_ms)
            except KafkaError:
                log.warning("reading %s failed; retrying", self.topic, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._apply(record.key, record.value)
            if not self._caught_up.is_set():
                # By position, not by the last record's offset: compaction leaves gaps.
                with contextlib.suppress(KafkaError):
                    if await consumer.position(tp) >= end:
                        self._caught_up.set()

    async def close(self) -> None:
        """Stop reading and close the consumer (errors closing it propagate)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
