"""Who serves which inbox partition: membership records on a compacted Kafka topic.

Every chat server publishes a :class:`~tidings.wire.members.MemberRecord` (server id,
WebSocket URL, the inbox partitions it owns, its connection count, whether it is
draining) every ``membership_interval_s`` to ``<prefix>.members``, keyed by its server id, and a
tombstone when it shuts down cleanly. Compaction keeps the newest record per server.

A :class:`MembershipView` reads the topic from the beginning (no consumer group: every
reader sees everything), keeps the newest record per server and ignores records older
than ``membership_ttl_s`` (a server that died without a tombstone fades out) and
tombstoned ones. The API answers discovery from it; the operator sums its connection
counts. ZooKeeper's job, done by Kafka's group protocol plus this topic.

Ages are wall-clock: a record's ``ts`` is the publisher's clock, compared with the
reader's. Servers run NTP; the TTL (seconds) dwarfs their skew (milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tidings.bus.partitioning import partition_for_user
from tidings.kafka_config import kafka_client_options
from tidings.settings import Settings
from tidings.wire.compacted import CompactedTopicReader
from tidings.wire.members import MemberRecord
from tidings.wire.topics import members_topic

__all__ = ["MemberRecord", "MembershipPublisher", "MembershipView"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # seconds since the epoch, like time.time


def _now_ms(clock: Clock) -> int:
    return int(clock() * 1000)


class MembershipPublisher:
    """Publishes ``snapshot()`` every ``membership_interval_s``, and at once on ``poke()``.

    ``start()`` publishes the first record before it returns; ``close()`` publishes a
    tombstone for every server id it published (one, normally) so readers forget the
    server at once instead of after the TTL.
    """

    def __init__(
        self,
        settings: Settings,
        snapshot: Callable[[], MemberRecord],
        *,
        interval_s: float | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._settings = settings
        self._snapshot = snapshot
        self._interval = interval_s if interval_s is not None else settings.membership_interval_s
        self._clock = clock
        self.topic = members_topic(settings.kafka_topic_prefix)
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._keys: set[bytes] = set()

    async def start(self) -> None:
        """Connect, publish the first record and start publishing every interval.

        Raises what starting the producer or the first publish raised (a failed publish
        stops the producer first)."""
        producer = AIOKafkaProducer(**kafka_client_options(self._settings), acks="all", linger_ms=0)
        await producer.start()
        self._producer = producer
        try:
            await self.publish_now()
        except Exception:
            await producer.stop()
            self._producer = None
            raise
        self._task = asyncio.create_task(self._run(), name="membership-publisher")

    def poke(self) -> None:
        """Publish soon (e.g. right after the owned partitions changed)."""
        self._wake.set()

    async def publish_now(self) -> MemberRecord:
        """Publish ``snapshot()`` stamped with the clock's time now; returns what was published.

        Raises ``RuntimeError`` before :meth:`start`."""
        if self._producer is None:
            raise RuntimeError("MembershipPublisher is not started")
        record = replace(self._snapshot(), ts=_now_ms(self._clock))
        key = record.server_id.encode()
        await self._producer.send_and_wait(self.topic, record.encode(), key=key)
        self._keys.add(key)
        return record

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.publish_now()
            except Exception:
                log.warning("publishing the membership record failed", exc_info=True)

    async def close(self) -> None:
        """Stop publishing and publish a tombstone for each server id published (a failure to is
        logged, not raised)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            for key in sorted(self._keys):
                await asyncio.wait_for(
                    producer.send_and_wait(self.topic, None, key=key),
                    self._settings.kafka_request_timeout_s,
                )
        except (KafkaError, TimeoutError):
            log.warning("could not publish the membership tombstone", exc_info=True)
        finally:
            await producer.stop()


@dataclass
class _Index:
    records: dict[str, MemberRecord] = field(default_factory=dict)
    by_partition: dict[int, set[str]] = field(default_factory=dict)

    def put(self, server_id: str, record: MemberRecord | None) -> None:
        old = self.records.pop(server_id, None)
        if old is not None:
            for partition in old.partitions:
                holders = self.by_partition.get(partition)
                if holders is not None:
                    holders.discard(server_id)
                    if not holders:
                        del self.by_partition[partition]
        if record is not None:
            self.records[server_id] = record
            for partition in record.partitions:
                self.by_partition.setdefault(partition, set()).add(server_id)


class MembershipView:
    """The live chat servers, read from ``<prefix>.members``; see the module docstring."""

    def __init__(self, settings: Settings, *, clock: Clock = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._ttl_ms = int(settings.membership_ttl_s * 1000)
        self.topic = members_topic(settings.kafka_topic_prefix)
        self._index = _Index()
        self._reader: CompactedTopicReader | None = None

    async def start(self, *, catch_up_timeout_s: float | None = 10.0) -> None:
        """Start reading; wait (bounded) until the records present at start are read."""
        self._reader = CompactedTopicReader(
            kafka_client_options(self._settings), self.topic, self._apply, name="membership-view"
        )
        caught_up = await self._reader.start(catch_up_timeout_s=catch_up_timeout_s)
        if catch_up_timeout_s is not None and not caught_up:
            log.warning("membership view did not catch up in time; answering from less")

    @property
    def caught_up(self) -> bool:
        """Whether the records present at start have been read."""
        return self._reader is not None and self._reader.caught_up

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        server_id = key.decode(errors="replace")
        if value is None:
            self._index.put(server_id, None)
            return
        try:
            record = MemberRecord.decode(value)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable membership record", extra={"key": server_id})
            return
        self._index.put(server_id, record)

    def _fresh(self, record: MemberRecord, now_ms: int) -> bool:
        return now_ms - record.ts <= self._ttl_ms

    def members(self) -> list[MemberRecord]:
        """The live servers (fresh, not tombstoned), by server id."""
        now = _now_ms(self._clock)
        return sorted(
            (r for r in self._index.records.values() if self._fresh(r, now)),
            key=lambda r: r.server_id,
        )

    def total_connections(self) -> int:
        """The connection count summed over the live servers."""
        return sum(record.connections for record in self.members())

    def owner(self, partition: int) -> MemberRecord | None:
        """The live server that owns ``partition``.

        Two records may claim a partition for a moment while it moves (the previous owner
        republishes within ``membership_interval_s``): a server that is not draining wins,
        then the newest record.
        """
        now = _now_ms(self._clock)
        best: MemberRecord | None = None
        for server_id in self._index.by_partition.get(partition, ()):
            record = self._index.records[server_id]
            if not self._fresh(record, now):
                continue
            if best is None or (not record.draining, record.ts) > (not best.draining, best.ts):
                best = record
        return best

    def owner_url(self, partition: int) -> str | None:
        """The URL of :meth:`owner`, or None when no live server owns ``partition``."""
        record = self.owner(partition)
        return record.url if record is not None else None

    def any_url(self) -> str | None:
        """The least loaded live server that is not draining: where to send a client
        whose partition has no owner for a moment (a rebalance); it will be redirected
        or told to reconnect once the owner is known."""
        ready = [r for r in self.members() if not r.draining]
        if not ready:
            return None
        return min(ready, key=lambda r: (r.connections, r.server_id)).url

    def partition_count(self) -> int:
        """The inbox partition count the live servers report (settings when none does)."""
        counts = [r.partition_count for r in self.members() if r.partition_count > 0]
        return max(counts) if counts else self._settings.kafka_inbox_partitions

    def owner_url_for_user(self, user_id: int) -> str | None:
        """The URL of the live server owning ``user_id``'s inbox partition, or None."""
        return self.owner_url(partition_for_user(user_id, self.partition_count()))

    async def close(self) -> None:
        """Stop reading the topic."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
