"""KafkaBus against the test environment's real Kafka broker (the push topic's requests:
tests/push/test_push_requests_kafka.py).

Each test owns a topic prefix (uuid), four inbox partitions, and deletes its topics.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tidings.bus.base import InboxEvent
from tidings.bus.kafka import BusUnavailable, KafkaBus
from tidings.bus.partitioning import partition_for_user
from tidings.cluster.topics import ensure_topics
from tidings.kafka_config import inbox_topic, members_topic, push_topic
from tidings.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

P = 4
ALL = set(range(P))
WAIT_S = 30.0
# Fast rebalances: 6 s is the broker's minimum session timeout.
FAST = {"session_timeout_s": 6.0, "heartbeat_interval_s": 0.3, "max_poll_interval_s": 20.0}


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}")
        await asyncio.sleep(0.05)


def make_settings(bootstrap: str, prefix: str | None = None) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        kafka_topic_prefix=prefix or f"test-{uuid.uuid4().hex[:12]}",
        kafka_inbox_partitions=P,
        kafka_request_timeout_s=15.0,
        server_id="pytest",
    )


async def delete_topics(settings: Settings) -> None:
    prefix = settings.kafka_topic_prefix
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await asyncio.wait_for(admin.start(), WAIT_S)
    try:
        existing = set(await asyncio.wait_for(admin.list_topics(), WAIT_S))
        mine = [t for t in (inbox_topic(prefix), members_topic(prefix), push_topic(prefix))]
        doomed = [t for t in mine if t in existing]
        if doomed:
            await asyncio.wait_for(admin.delete_topics(doomed), WAIT_S)
    finally:
        await admin.close()


@pytest.fixture
async def settings(testenv: Any) -> AsyncIterator[Settings]:
    settings = make_settings(testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await asyncio.wait_for(ensure_topics(settings), WAIT_S)
    try:
        yield settings
    finally:
        await delete_topics(settings)


class Buses:
    """Opens buses and consume tasks; closes whatever is left at the end of a test."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.group = f"{settings.kafka_topic_prefix}.chat"
        self._open: list[KafkaBus] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, *, group: bool = True, **kwargs: Any) -> KafkaBus:
        options = {**FAST, **kwargs}
        bus = KafkaBus(self.settings, group_id=self.group if group else None, **options)
        await asyncio.wait_for(bus.start(), WAIT_S)
        self._open.append(bus)
        return bus

    def consume(self, bus: KafkaBus, handler: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(bus.consume(handler))
        self._tasks.append(task)
        return task

    async def close(self, bus: KafkaBus) -> None:
        if bus in self._open:
            self._open.remove(bus)
            await asyncio.wait_for(bus.close(), WAIT_S)

    async def close_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for bus in list(self._open):
            await self.close(bus)


@pytest.fixture
async def buses(settings: Settings) -> AsyncIterator[Buses]:
    opened = Buses(settings)
    try:
        yield opened
    finally:
        await opened.close_all()


class Collect:
    def __init__(self) -> None:
        self.events: list[InboxEvent] = []
        self.batches = 0

    async def __call__(self, events: list[InboxEvent]) -> None:
        self.batches += 1
        self.events.extend(events)


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT_S)


def msgs(user_ids: range | list[int], tag: str = "m") -> list[InboxEvent]:
    return [InboxEvent(uid, "msg", {"tag": tag, "n": i}) for i, uid in enumerate(user_ids)]


def by_user(events: list[InboxEvent]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event.user_id, []).append(event.payload)
    return out


# --- publish and consume ---------------------------------------------------------------


async def test_published_events_reach_the_handler_with_their_keys_and_kinds(
    buses: Buses,
) -> None:
    bus = await buses.open()
    got = Collect()
    buses.consume(bus, got)
    await wait_until(lambda: bus.owned_partitions() == ALL, "the only member to own all")
    assert bus.partition_count == P

    durable = [InboxEvent(uid, "msg", {"n": uid, "body": f"hi {uid}"}) for uid in range(100, 140)]
    durable += [InboxEvent(101, "msg", {"n": 1000, "body": "second for 101"})]
    await asyncio.wait_for(bus.publish(durable), WAIT_S)
    ephemeral = [
        InboxEvent(7, "typing", {"type": "typing", "channel_id": "dm:1:7", "user_id": "1"}),
        InboxEvent(8, "presence", {"type": "presence", "user_id": "1", "status": "online"}),
        InboxEvent(9, "receipt", {"type": "receipt", "message_id": "5", "status": "read"}),
    ]
    await asyncio.wait_for(bus.publish_ephemeral(ephemeral), WAIT_S)

    await wait_until(lambda: len(got.events) >= len(durable) + 3, "all events")
    assert sorted(got.events, key=repr) == sorted(durable + ephemeral, key=repr)
    # One user's events stay in order (one partition).
    assert [p["n"] for p in by_user(got.events)[101]] == [101, 1000]


async def test_records_land_on_partition_for_user(buses: Buses, settings: Settings) -> None:
    bus = await buses.open(group=False)
    users = [*range(1, 201), 2**62 + 17, 987654321012345]
    await asyncio.wait_for(bus.publish(msgs(users)), WAIT_S)

    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    await asyncio.wait_for(reader.start(), WAIT_S)
    try:
        tps = [TopicPartition(bus.topic, p) for p in range(P)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        seen: list[tuple[int, bytes, int]] = []

        async def read_all() -> None:
            while len(seen) < len(users):
                for tp, records in (await reader.getmany(timeout_ms=500)).items():
                    seen.extend((tp.partition, r.key, r.offset) for r in records)

        await asyncio.wait_for(read_all(), WAIT_S)
    finally:
        await reader.stop()
    assert len(seen) == len(users)
    for partition, key, _ in seen:
        assert key == str(int(key)).encode()
        assert partition == partition_for_user(int(key), P), key
    assert {partition for partition, _, _ in seen} == ALL


async def test_a_large_body_makes_the_round_trip(buses: Buses) -> None:
    bus = await buses.open()
    got = Collect()
    buses.consume(bus, got)
    body = "\N{GRINNING FACE}" * 100_000  # ~1.2 MB once JSON-escaped
    await asyncio.wait_for(bus.publish([InboxEvent(5, "msg", {"body": body})]), WAIT_S)
    await wait_until(lambda: len(got.events) == 1, "the large event")
    assert got.events[0].payload["body"] == body


async def test_start_refuses_a_missing_topic_and_does_not_create_it(testenv: Any) -> None:
    settings = make_settings(testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    bus = KafkaBus(settings, group_id="nobody")
    with pytest.raises(BusUnavailable, match="does not exist"):
        await asyncio.wait_for(bus.start(), WAIT_S)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await asyncio.wait_for(admin.start(), WAIT_S)
    try:
        assert inbox_topic(settings.kafka_topic_prefix) not in await admin.list_topics()
    finally:
        await admin.close()


async def test_too_large_events_raise_on_publish_and_are_logged_when_ephemeral(
    buses: Buses, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await buses.open(group=False)
    huge = [InboxEvent(5, "typing", {"pad": "x" * (9 << 20)})]
    with pytest.raises(BusUnavailable):
        await asyncio.wait_for(bus.publish(huge), WAIT_S)
    with caplog.at_level(logging.WARNING, logger="tidings.bus.kafka"):
        await asyncio.wait_for(bus.publish_ephemeral(huge), WAIT_S)
    assert "dropped ephemeral inbox events" in caplog.text


# --- commits: at-least-once ------------------------------------------------------------


async def test_committed_events_are_not_delivered_again(buses: Buses) -> None:
    first = await buses.open()
    got = Collect()
    task = buses.consume(first, got)
    await asyncio.wait_for(first.publish(msgs(range(1, 6), "old")), WAIT_S)
    await wait_until(lambda: len(got.events) == 5, "the first five")
    await cancel(task)
    await buses.close(first)

    second = await buses.open()
    await asyncio.wait_for(second.publish(msgs(range(1, 4), "new")), WAIT_S)
    again = Collect()
    buses.consume(second, again)
    await wait_until(lambda: len(again.events) >= 3, "the three new ones")
    await asyncio.sleep(1.0)  # room for anything old to show up (it must not)
    assert {e.payload["tag"] for e in again.events} == {"new"}
    assert len(again.events) == 3


async def test_a_handler_that_raises_leaves_its_batch_to_the_next_consumer(buses: Buses) -> None:
    first = await buses.open()
    events = msgs(range(1, 6))
    await asyncio.wait_for(first.publish(events), WAIT_S)
    seen: list[InboxEvent] = []

    async def boom(batch: list[InboxEvent]) -> None:
        seen.extend(batch)
        raise RuntimeError("handler failed")  # e.g. storage is away

    failing = buses.consume(first, boom)
    await wait_until(lambda: len(seen) >= 5, "the five tried")
    assert not failing.done(), "a failing batch must not end consumption"
    await cancel(failing)
    await buses.close(first)

    second = await buses.open()
    got = Collect()
    buses.consume(second, got)
    await wait_until(lambda: len(got.events) >= 5, "the redelivered five")
    assert sorted(got.events, key=repr) == sorted(events, key=repr)


async def test_a_failed_batch_comes_back_to_the_same_consumer(buses: Buses) -> None:
    """Storage away for a while: the consumer retries the uncommitted batch itself, with
    backoff, and carries on once the handler succeeds."""
    bus = await buses.open()
    events = msgs(range(1, 6))
    await asyncio.wait_for(bus.publish(events), WAIT_S)
    calls = 0
    got = Collect()

    async def fail_twice(batch: list[InboxEvent]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("not yet")
        await got(batch)

    buses.consume(bus, fail_twice)
    await wait_until(lambda: len(got.events) >= 5, "the five again")
    assert calls >= 3
    assert sorted(got.events, key=repr) == sorted(events, key=repr)


async def test_a_handler_cancelled_mid_batch_leaves_it_uncommitted(buses: Buses) -> None:
    first = await buses.open()
    events = msgs(range(1, 6))
    await asyncio.wait_for(first.publish(events), WAIT_S)
    entered = asyncio.Event()

    async def hang(batch: list[InboxEvent]) -> None:
        entered.set()
        await asyncio.Event().wait()

    task = buses.consume(first, hang)
    await asyncio.wait_for(entered.wait(), WAIT_S)
    await cancel(task)
    await buses.close(first)

    second = await buses.open()
    got = Collect()
    buses.consume(second, got)
    await wait_until(lambda: len(got.events) >= 5, "the redelivered five")
    assert sorted(got.events, key=repr) == sorted(events, key=repr)


# --- ownership and rebalances ----------------------------------------------------------


async def test_joining_a_fresh_group_takes_a_single_rebalance(buses: Buses) -> None:
    """Every JoinGroup a member sends in one join carries the same protocols and metadata.

    A member that joins again with different metadata while the group is completing a
    rebalance (or stable) makes the broker start another one, which fails the SyncGroup
    of everyone else; they rejoin, and so on: with several members a rebalance storm.
    aiokafka sends one JoinGroup per configured assignor, each with one protocol more
    (aio-libs/aiokafka#1168), so the bus must offer exactly one. Alone in a fresh group
    a member then gets its first assignment in generation 1; with two assignors the
    second JoinGroup always forces a generation 2.
    """
    bus = await buses.open()
    await wait_until(lambda: bus.owned_partitions() == ALL, "the lone member to own everything")
    coordinator = bus._consumer._coordinator
    assert coordinator.generation == 1, f"joined in generation {coordinator.generation}"


async def test_two_members_split_the_partitions_and_hand_them_back(buses: Buses) -> None:
    log: list[tuple[str, str, set[int]]] = []

    def recorder(name: str) -> dict[str, Any]:
        async def on_assigned(partitions: set[int]) -> None:
            log.append((name, "assigned", partitions))

        async def on_revoked(partitions: set[int]) -> None:
            log.append((name, "revoked", partitions))

        return {"on_assigned": on_assigned, "on_revoked": on_revoked}

    def of(name: str) -> list[tuple[str, set[int]]]:
        return [(what, parts) for who, what, parts in log if who == name]

    a = await buses.open(**recorder("a"))
    got_a = Collect()
    buses.consume(a, got_a)
    await wait_until(lambda: a.owned_partitions() == ALL, "a to own everything")
    assert of("a") == [("assigned", ALL)]

    b = await buses.open(**recorder("b"))
    got_b = Collect()
    task_b = buses.consume(b, got_b)
    await wait_until(
        lambda: len(a.owned_partitions()) == 2 and len(b.owned_partitions()) == 2,
        "a and b to split the partitions",
    )
    share_a, share_b = a.owned_partitions(), b.owned_partitions()
    assert share_a | share_b == ALL and not share_a & share_b
    # Eager protocol: a gives up everything, then gets its share back (sticky: a subset).
    assert of("a") == [("assigned", ALL), ("revoked", ALL), ("assigned", share_a)]
    assert of("b") == [("assigned", share_b)]
    assert log.index(("a", "revoked", ALL)) < log.index(("b", "assigned", share_b))

    # Each member now handles exactly the users on its partitions.
    users = list(range(1000, 1040))
    await asyncio.wait_for(a.publish(msgs(users)), WAIT_S)
    await wait_until(lambda: len(got_a.events) + len(got_b.events) >= len(users), "all events")
    for got, share in ((got_a, share_a), (got_b, share_b)):
        assert got.events
        assert all(partition_for_user(e.user_id, P) in share for e in got.events)

    # b leaves: it revokes its share first, then a gets everything.
    await cancel(task_b)
    await buses.close(b)
    await wait_until(lambda: a.owned_partitions() == ALL, "a to own everything again")
    assert of("b") == [("assigned", share_b), ("revoked", share_b)]
    assert of("a")[-2:] == [("revoked", share_a), ("assigned", ALL)]
    assert log.index(("b", "revoked", share_b)) < len(log) - 1  # a's final assignment last
    assert log[-1] == ("a", "assigned", ALL)


async def test_revocation_waits_for_the_batch_in_flight_and_commits_it(buses: Buses) -> None:
    """A member joining mid-batch: the old owner finishes and commits before handing over."""
    events_log: list[str] = []
    release = asyncio.Event()
    a_seen: list[InboxEvent] = []

    async def slow(batch: list[InboxEvent]) -> None:
        events_log.append("a: batch started")
        a_seen.extend(batch)
        await release.wait()
        events_log.append("a: batch done")

    async def a_revoked(partitions: set[int]) -> None:
        events_log.append("a: revoked")

    a = await buses.open(on_revoked=a_revoked)
    buses.consume(a, slow)
    await wait_until(lambda: a.owned_partitions() == ALL, "a to own everything")
    events = msgs(range(1, 21))
    await asyncio.wait_for(a.publish(events), WAIT_S)
    await wait_until(lambda: "a: batch started" in events_log, "a's batch to start")

    b = await buses.open()
    got_b = Collect()
    buses.consume(b, got_b)
    await asyncio.sleep(1.5)  # the rebalance has begun and is waiting for a's batch
    assert "a: revoked" not in events_log
    release.set()
    await wait_until(lambda: len(b.owned_partitions()) == 2, "b to get its share")
    assert events_log.index("a: batch done") < events_log.index("a: revoked")
    # Whatever a handled was committed before b took over: b sees none of it again.
    await asyncio.sleep(1.0)
    handled_by_a = {repr(e) for e in a_seen}
    assert not handled_by_a & {repr(e) for e in got_b.events}
