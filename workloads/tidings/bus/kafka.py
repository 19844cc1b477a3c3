"""The cluster's inbox bus: the Kafka topic ``<prefix>.inbox``.

Every event is keyed by its recipient (``str(user_id).encode()``) and Kafka's default
murmur2 partitioner picks the partition, so :func:`tidings.bus.partitioning.
partition_for_user` tells anyone which partition, and therefore which chat server, a user
is on. Same semantics as the embedded bus:

- ``publish`` sends every event with ``acks=all`` on an idempotent producer and returns
  once all are acknowledged (durable); it raises :class:`BusUnavailable` otherwise.
- ``publish_ephemeral`` hands the events to the producer and returns without waiting for
  the acknowledgements; failures are logged, never raised.
- ``consume`` hands batches to the handler and commits each partition's offsets only
  after the handler returned; a handler that raises (or is cancelled) leaves them
  uncommitted, so whoever reads the partition next gets those events again.

Partition ownership (the consumer group ``group_id``) is reported through two callbacks:

- ``on_revoked(partitions)`` runs when a rebalance starts, after the batch in flight (if
  any) finished and was committed and before any other member can be given these
  partitions: the server stops serving their users here. Kafka's classic group protocol,
  which aiokafka speaks, is *eager*: every rebalance revokes **all** the partitions a
  member holds, and the new assignment usually gives most of them back (the assignor is
  sticky, see :mod:`tidings.bus._sticky`). ``close()`` revokes everything too, before it
  leaves the group.
- ``on_assigned(partitions)`` runs when the rebalance is over, with the member's whole
  new assignment (possibly empty), before any of their events are handled.

Partitions in ``revoked - assigned`` moved to another server; the ones in both stayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
    codec,
)
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaError,
)

from tidings import metrics
from tidings.bus._producer_batches import ProducerBatches
from tidings.bus._sticky import StickyAssignor
from tidings.bus.base import EventHandler, InboxEvent
from tidings.kafka_config import inbox_topic, kafka_client_options
from tidings.settings import Settings
from tidings.wire.topics import MAX_RECORD_BYTES

__all__ = ["BusUnavailable", "KafkaBus", "PartitionCallback", "kafka_client_options"]

log = logging.getLogger(__name__)

PartitionCallback = Callable[[set[int]], Awaitable[None]]

# MAX_RECORD_BYTES (tidings.wire.topics): a 100,000-character body is up to ~1.2 MB of
# JSON once non-ASCII characters are escaped; the topics' max.message.bytes is the same.
_METADATA_TRIES = 10


def compression_type(name: str) -> str | None:
    """aiokafka's ``compression_type`` for the setting; a codec whose library is missing
    (cramjam, for lz4, zstd and snappy) falls back to none, with a warning, rather than
    stopping the server."""
    if name == "none":
        return None
    available = {
        "gzip": codec.has_gzip,
        "lz4": codec.has_lz4,
        "zstd": codec.has_zstd,
        "snappy": codec.has_snappy,
    }
    if not available[name]():
        log.warning("kafka_compression=%s needs the cramjam package; sending uncompressed", name)
        return None
    return name


class BusUnavailable(Exception):
    """Kafka did not take or give the events; trying again may help."""

    retriable = True


class KafkaBus:
    """:class:`tidings.bus.base.InboxBus` on Kafka; see the module docstring.

    Without ``group_id`` the bus only publishes (the API process). The timing knobs are
    the consumer group's: a crashed server's partitions move after ``session_timeout_s``
    (``kafka_session_timeout_s``, 6 s by default: the broker's default minimum,
    ``group.min.session.timeout.ms``); ``heartbeat_interval_s``
    (``kafka_heartbeat_interval_s``) is how soon members notice a rebalance and how
    often they say they are alive; ``max_poll_interval_s`` is also the rebalance
    timeout: a member whose batch is still running that long after a rebalance began is
    dropped from the group, and its partitions move while it is still handling them (its
    commit then fails, so the new owner redelivers) -- keep batches far shorter than that.

    ``partition_weights`` (optional, called once per join) says how much each owned
    partition is worth keeping across a rebalance (a chat server: its sockets on it);
    see :class:`tidings.bus._sticky.StickyAssignor`.

    ``start`` returns once the consumer is connected; it joins the group in the
    background, and ``on_assigned`` reports the first assignment.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str | None = None,
        on_assigned: PartitionCallback | None = None,
        on_revoked: PartitionCallback | None = None,
        batch_size: int = 500,
        session_timeout_s: float | None = None,
        heartbeat_interval_s: float | None = None,
        max_poll_interval_s: float = 30.0,
        poll_timeout_s: float = 1.0,
        partition_weights: Callable[[], Mapping[int, int]] | None = None,
    ) -> None:
        if session_timeout_s is None:
            session_timeout_s = settings.kafka_session_timeout_s
        if heartbeat_interval_s is None:
            heartbeat_interval_s = settings.kafka_heartbeat_interval_s
        self._settings = settings
        self.topic = inbox_topic(settings.kafka_topic_prefix)
        self._group_id = group_id
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._batch_size = batch_size
        self._session_timeout_ms = int(session_timeout_s * 1000)
        self._heartbeat_interval_ms = int(heartbeat_interval_s * 1000)
        self._max_poll_interval_ms = int(max_poll_interval_s * 1000)
        self._poll_timeout_ms = int(poll_timeout_s * 1000)
        self._partition_weights = partition_weights
        self._producer: Any = None
        self._consumer: Any = None
        self._partition_count = settings.kafka_inbox_partitions
        self._batches = ProducerBatches(
            self.topic,
            lambda: self._require(self._producer, "publish"),
            lambda: self._partition_count,
        )
        self._owned: set[int] = set()
        # Held while a batch is handled and committed, and by the rebalance callbacks, so
        # a revocation waits for the batch in flight and no batch runs during one.
        self._lock = asyncio.Lock()
        self._uncommitted: dict[TopicPartition, int] = {}
        self._lag: dict[TopicPartition, int] = {}  # per partition, for INBOX_LAG
        self._commit_interval_s = settings.kafka_commit_interval_ms / 1000
        self._committed_at = 0.0

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the producer and, with a ``group_id``, the consumer (see the class docstring).

        Raises :class:`BusUnavailable` when Kafka cannot be reached or the inbox topic does not
        exist. The topic's own partition count is used when it differs from the settings'."""
        options = kafka_client_options(self._settings)
        producer = self._new_producer()
        try:
            await producer.start()
            partitions = await self._topic_partitions(producer)
        except KafkaError as exc:
            await producer.stop()
            raise BusUnavailable(f"cannot reach Kafka at {self._settings.kafka_bootstrap}") from exc
        if not partitions:
            await producer.stop()
            raise BusUnavailable(
                f"topic {self.topic} does not exist: create it first (tidings migrate or the "
                "operator; tidings.cluster.topics.ensure_topics)"
            )
        self._partition_count = len(partitions)
        if self._partition_count != self._settings.kafka_inbox_partitions:
            log.warning(
                "inbox topic has a different partition count than configured; using the topic's",
                extra={
                    "topic": self.topic,
                    "partitions": self._partition_count,
                    "configured": self._settings.kafka_inbox_partitions,
                },
            )
        self._producer = producer
        if self._group_id is None:
            return
        consumer = AIOKafkaConsumer(
            **options,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
            max_poll_interval_ms=self._max_poll_interval_ms,
            # aiokafka's default is the session timeout; the Java client's (and ours) is the
            # poll interval: a member busy with a batch has that long to rejoin before the
            # group moves on without it.
            rebalance_timeout_ms=self._max_poll_interval_ms,
            max_poll_records=self._batch_size,
            # The broker answers a fetch once this much has gathered or after the wait:
            # under load fewer, fuller fetches (each is a request to encode and a
            # response to decode here); idle, a few milliseconds more per event.
            fetch_max_wait_ms=self._settings.kafka_fetch_wait_ms,
            fetch_min_bytes=self._settings.kafka_fetch_min_bytes,
            # Exactly one assignor. aiokafka (0.14) sends one JoinGroup per configured
            # assignor, each with one protocol more than the last (aio-libs/aiokafka#1168);
            # the broker takes the later ones for a member changing its metadata and starts
            # another rebalance, which fails the others' SyncGroup. Under load the members
            # keep doing that to each other: hundreds of generations a minute and no
            # assignment that lasts. Every chat server speaks tidings-sticky, so there is
            # nothing to fall back to anyway.
            partition_assignment_strategy=(StickyAssignor(self._partition_weights),),
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await producer.stop()
            self._producer = None
            raise BusUnavailable(f"cannot reach Kafka at {self._settings.kafka_bootstrap}") from exc
        # Subscribing after start() joins the group in the background (subscribing before
        # makes start() wait for the first assignment, unbounded): on_assigned says when.
        consumer.subscribe([self.topic], listener=_Listener(self))
        self._consumer = consumer

    def _new_producer(self) -> Any:
        """``acks=all`` and idempotence (``publish`` is the ack's durability), batched:

        - ``kafka_linger_ms`` (2 ms): a partition's batch waits that long for more
          records before it is sent. aiokafka keeps one request in flight per broker, so
          under load batches fill while the previous request is out anyway; the linger
          adds the same grouping at moderate load for a couple of milliseconds of
          latency.
        - ``kafka_max_batch_bytes`` (256 KiB) per partition: aiokafka's 16 KiB default
          makes a send wait for the batch in flight to drain once 40 events pile up on a
          partition; a larger batch costs memory only when it is used.
        - ``kafka_compression`` (lz4): a batch is compressed once by the producer, stored
          and replicated compressed, and decompressed by the consumer; the broker checks
          it record by record. Inbox events are JSON with the message repeated for
          every member, which LZ4 shrinks well for a few µs per batch. LZ4 (and zstd,
          snappy) come from the ``cramjam`` package, a dependency (``aiokafka[lz4]``);
          gzip needs nothing but costs several times the CPU for these small batches,
          so it is not the default.
        """
        settings = self._settings
        return AIOKafkaProducer(
            **kafka_client_options(settings),
            acks="all",
            enable_idempotence=True,
            linger_ms=settings.kafka_linger_ms,
            max_batch_size=settings.kafka_max_batch_bytes,
            compression_type=compression_type(settings.kafka_compression),
            max_request_size=MAX_RECORD_BYTES,
        )

    async def _topic_partitions(self, producer: Any) -> set[int]:
        """The inbox topic's partitions from a metadata request for *all* topics.

        (Asking for the topic by name would auto-create it on brokers that allow that,
        with the broker's default partition count.) A topic created a moment ago may
        take a little while to show up in the broker's metadata, hence a few tries.
        """
        for attempt in range(_METADATA_TRIES):
            cluster = await producer.client.fetch_all_metadata()
            partitions: set[int] | None = cluster.partitions_for_topic(self.topic)
            if partitions:
                return partitions
            if attempt + 1 < _METADATA_TRIES:
                await asyncio.sleep(0.5)
        return set()

    async def close(self) -> None:
        """Revoke what this member owns, leave the group (partitions move at once), stop."""
        await self.leave_group()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # flushes what publish_ephemeral left in flight

    async def leave_group(self) -> None:
        """Stop consuming and hand the partitions over at once; publishing still works.

        A draining chat server calls this first, so the new owners are ready by the time
        its clients reconnect.
        """
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                async with self._lock:
                    await self._commit_uncommitted(consumer)
                    owned, self._owned = self._owned, set()
                    await self._call(self._on_revoked, owned, "on_revoked")
            finally:
                await consumer.stop()  # sends LeaveGroup

    # --- ownership ---------------------------------------------------------------------

    @property
    def partition_count(self) -> int:
        """The inbox topic's partition count (known after ``start``)."""
        return self._partition_count

    def owned_partitions(self) -> set[int]:
        """The inbox partitions this consumer is assigned now (a copy)."""
        return set(self._owned)

    def owns_partition(self, partition: int) -> bool:
        """Whether ``partition`` is in this consumer's current assignment."""
        return partition in self._owned

    # --- producing ---------------------------------------------------------------------

    async def publish(self, events: Sequence[InboxEvent]) -> None:
        """Send ``events`` and wait until every one is acknowledged.

        Raises :class:`BusUnavailable` when an event is too large for a record (then nothing is
        sent) or when a partition batch is not acknowledged (then some events may have been)."""
        if not events:
            return
        producer = self._require(self._producer, "publish")
        records = _records(events)
        if len(records) < len(events):
            raise BusUnavailable(
                f"an inbox event is larger than {MAX_RECORD_BYTES} bytes; nothing was sent"
            )
        # The events join the next producer batch of their partition
        # (_producer_batches.py); then every batch's acknowledgement is awaited together.
        acks = self._batches.add(records)
        results = await asyncio.gather(*acks, return_exceptions=True)
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            if not isinstance(failed[0], KafkaError):
                raise failed[0]
            await self._renew_producer_after(failed[0], producer)
            raise BusUnavailable(
                f"{len(events)} inbox events not acknowledged ({len(failed)} of "
                f"{len(results)} partition batches failed)"
            ) from failed[0]

    async def _renew_producer_after(self, exc: BaseException, producer: Any) -> None:
        """An idempotent producer whose batches timed out while the broker was away can
        come back out of sequence, and aiokafka then fails every later send: a fatal
        error gets a fresh producer (a new producer id), so sends recover by themselves."""
        if isinstance(exc, KafkaError) and exc.retriable:
            return
        if self._producer is not producer:
            return  # renewed already by a concurrent publish
        log.warning("renewing the Kafka producer after %r", exc)
        fresh = self._new_producer()
        try:
            await fresh.start()
        except KafkaError:
            log.warning("could not start a fresh producer yet", exc_info=True)
            return
        self._producer = fresh
        try:
            await producer.stop()
        except Exception:
            log.debug("stopping the failed producer", exc_info=True)

    async def publish_ephemeral(self, events: Sequence[InboxEvent]) -> None:
        """Send ``events`` without waiting; failures are logged, and events too large for a
        record are dropped with a warning."""
        self._require(self._producer, "publish")
        records = _records(events)
        if len(records) < len(events):
            log.warning(
                "dropped ephemeral inbox events larger than %d bytes",
                MAX_RECORD_BYTES,
                extra={"count": len(events) - len(records)},
            )
        for ack in self._batches.add(records):
            ack.add_done_callback(_log_ephemeral_failure)

    # --- consuming ---------------------------------------------------------------------

    async def consume(self, handler: EventHandler) -> None:
        """Hand batches to ``handler`` until cancelled (or the bus is closed)."""
        consumer = self._require(self._consumer, "consume (no group_id)")
        failures = 0
        while True:
            try:
                batches = await consumer.getmany(
                    timeout_ms=self._poll_timeout_ms, max_records=self._batch_size
                )
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                if not exc.retriable:
                    raise BusUnavailable(f"inbox consumer failed: {exc}") from exc
                log.warning("inbox consumer error, retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            self._note_lag(consumer, batches)
            if not batches:
                if self._uncommitted:  # quiet now: commit what the last batches left
                    async with self._lock:
                        if self._consumer is consumer:
                            await self._commit_uncommitted(consumer)
                continue
            # No await between getmany returning and taking a free lock: the records are
            # from the current assignment. If a rebalance callback holds the lock, it is
            # the assignment callback (a revocation stops getmany from returning) or a
            # revocation that queued behind us; either way the records are still ours.
            async with self._lock:
                if self._consumer is not consumer:
                    return  # closed (and revoked) while we waited: hand nothing more
                try:
                    await self._handle(consumer, batches, handler)
                    failures = 0
                except Exception:
                    # The batch was not committed and its partitions were sought back:
                    # it comes again. Storage being away must not end consumption.
                    failures += 1
                    log.warning("inbox batch failed; it will be retried", exc_info=True)
            if failures:  # back off outside the lock, so a rebalance is not held up
                await asyncio.sleep(min(0.5 * 2 ** min(failures, 4), 5.0))

    def _note_lag(self, consumer: Any, batches: dict[TopicPartition, list[Any]]) -> None:
        """``tidings_inbox_consumer_lag``: records behind the brokers' end, over this
        server's partitions, as the last fetch saw it (a fetch that returned nothing means
        caught up). A few dict lookups per batch."""
        lag = self._lag
        if not batches:
            lag.clear()
        for tp, records in batches.items():
            end = consumer.highwater(tp)
            if records and end is not None:
                lag[tp] = max(0, end - records[-1].offset - 1)
        metrics.INBOX_LAG.set(sum(lag.values()))

    async def _handle(
        self, consumer: Any, batches: dict[TopicPartition, list[Any]], handler: EventHandler
    ) -> None:
        events: list[InboxEvent] = []
        first: dict[TopicPartition, int] = {}
        upto: dict[TopicPartition, int] = {}
        for tp, records in batches.items():
            if not records:
                continue
            first[tp] = records[0].offset
            upto[tp] = records[-1].offset + 1
            for record in records:
                if record.value is None:
                    continue
                try:
                    events.append(InboxEvent.decode(record.value))
                except (ValueError, KeyError, TypeError):
                    log.error(
                        "skipping an undecodable inbox record",
                        extra={"partition": tp.partition, "offset": record.offset},
                    )
        try:
            if events:
                await handler(events)
        except BaseException:
            # Not handled: read these again (this member, or the next owner after a
            # restart or rebalance, from the committed offset).
            for tp, offset in first.items():
                # (Not assigned any more: the next owner starts from the commit anyway.)
                with contextlib.suppress(IllegalStateError):
                    consumer.seek(tp, offset)
            raise
        self._uncommitted.update(upto)
        # Committed at most every kafka_commit_interval_ms (and when the consumer goes
        # quiet, and on every revocation): a crash redelivers what came since the last
        # commit, and inbox appends skip the ids their inboxes hold.
        now = asyncio.get_running_loop().time()
        if now - self._committed_at >= self._commit_interval_s:
            self._committed_at = now
            await self._commit_uncommitted(consumer)

    async def _commit_uncommitted(self, consumer: Any) -> None:
        if not self._uncommitted:
            return
        offsets, self._uncommitted = self._uncommitted, {}
        try:
            await consumer.commit(offsets)
        except CommitFailedError:
            log.warning(
                "inbox commit refused after a rebalance; the next owner redelivers",
                extra={"partitions": sorted(tp.partition for tp in offsets)},
            )
        except (KafkaError, IllegalStateError):
            log.warning("inbox commit failed; will retry with the next one", exc_info=True)
            for tp, offset in offsets.items():
                self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, 0))

    # --- rebalance callbacks (from aiokafka's coordinator task) ------------------------

    async def _partitions_revoked(self, revoked: set[int]) -> None:
        async with self._lock:  # waits for the batch in flight
            if self._consumer is not None:
                await self._commit_uncommitted(self._consumer)
            # Offsets not committed by now belong to the next owner to redeliver; a later
            # commit of them (in a new generation) could move its position.
            self._uncommitted.clear()
            self._owned = set()
            await self._call(self._on_revoked, revoked, "on_revoked")

    async def _partitions_assigned(self, assigned: set[int]) -> None:
        async with self._lock:
            self._owned = set(assigned)
            log.info("inbox partitions assigned", extra={"partitions": sorted(assigned)})
            if self._on_assigned is not None:
                await self._call(self._on_assigned, set(assigned), "on_assigned")

    async def _call(self, callback: PartitionCallback | None, parts: set[int], name: str) -> None:
        if callback is None or (not parts and name == "on_revoked"):
            return
        try:
            await callback(set(parts))
        except Exception:
            log.exception("%s callback failed", name, extra={"partitions": sorted(parts)})

    @staticmethod
    def _require(client: Any, what: str) -> Any:
        if client is None:
            raise RuntimeError(f"KafkaBus cannot {what}: not started")
        return client


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._bus._partitions_revoked(_partitions(revoked, self._bus.topic))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._bus._partitions_assigned(_partitions(assigned, self._bus.topic))


def _partitions(tps: Any, topic: str) -> set[int]:
    return {tp.partition for tp in tps if tp.topic == topic}


def _records(events: Sequence[InboxEvent]) -> list[tuple[int, bytes]]:
    """``(user_id, encoded event)`` of the events that fit in a record (the producer's
    ``max_request_size`` less room for the batch and record headers)."""
    records = [(event.user_id, event.encode()) for event in events]
    return [r for r in records if len(r[1]) <= MAX_RECORD_BYTES - 1024]


def _log_ephemeral_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("an ephemeral inbox event was not delivered", exc_info=future.exception())
