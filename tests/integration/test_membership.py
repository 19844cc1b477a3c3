"""Membership records, the view of them, and the topics, against the real Kafka broker.

Each test owns a topic prefix (uuid) and deletes its topics; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tidings.bus.partitioning import partition_for_user
from tidings.cluster.membership import MemberRecord, MembershipPublisher, MembershipView
from tidings.cluster.ownership import PartitionOwnership
from tidings.cluster.topics import ensure_topics
from tidings.kafka_config import inbox_topic, members_topic, push_topic
from tidings.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

P = 4
WAIT_S = 30.0


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}")
        await asyncio.sleep(0.05)


def make_settings(bootstrap: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "kafka_topic_prefix": f"test-{uuid.uuid4().hex[:12]}",
        "kafka_inbox_partitions": P,
        "kafka_request_timeout_s": 15.0,
        "server_id": "pytest",
        "membership_interval_s": 60.0,  # tests publish with poke() / start() unless they wait
        "membership_ttl_s": 60.0,
    }
    values.update(overrides)
    return Settings(**values)


class Admin:
    def __init__(self, bootstrap: str) -> None:
        self.client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)

    async def partitions(self, topic: str) -> int:
        (described,) = await asyncio.wait_for(self.client.describe_topics([topic]), WAIT_S)
        return len(described["partitions"])

    async def config(self, topic: str) -> dict[str, tuple[str, int]]:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, None)
        (response,) = await asyncio.wait_for(self.client.describe_configs([resource]), WAIT_S)
        (described,) = response.resources
        return {entry[0]: (entry[1], entry[3]) for entry in described[4]}

    async def wait_config(self, topic: str, key: str, value: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while (await self.config(topic))[key][0] != value:
            if loop.time() > deadline:
                raise AssertionError(f"{topic} {key} did not become {value}")
            await asyncio.sleep(0.1)

    async def alter(self, topic: str, configs: dict[str, str]) -> None:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs)
        await asyncio.wait_for(self.client.alter_configs([resource]), WAIT_S)

    async def delete_prefix(self, prefix: str) -> None:
        existing = set(await asyncio.wait_for(self.client.list_topics(), WAIT_S))
        mine = [inbox_topic(prefix), members_topic(prefix), push_topic(prefix)]
        doomed = [t for t in mine if t in existing]
        if doomed:
            await asyncio.wait_for(self.client.delete_topics(doomed), WAIT_S)


@pytest.fixture
async def admin(testenv: Any) -> AsyncIterator[Admin]:
    admin = Admin(testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await asyncio.wait_for(admin.client.start(), WAIT_S)
    try:
        yield admin
    finally:
        await admin.client.close()


@pytest.fixture
async def settings(testenv: Any, admin: Admin) -> AsyncIterator[Settings]:
    settings = make_settings(testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await asyncio.wait_for(ensure_topics(settings), WAIT_S)
    try:
        yield settings
    finally:
        await admin.delete_prefix(settings.kafka_topic_prefix)


class Closing:
    """Starts publishers and views; closes what is left at the end of a test."""

    def __init__(self) -> None:
        self.items: list[MembershipPublisher | MembershipView] = []

    async def publisher(
        self, settings: Settings, snapshot: Callable[[], MemberRecord], **kwargs: Any
    ) -> MembershipPublisher:
        publisher = MembershipPublisher(settings, snapshot, **kwargs)
        await asyncio.wait_for(publisher.start(), WAIT_S)
        self.items.append(publisher)
        return publisher

    async def view(self, settings: Settings, **kwargs: Any) -> MembershipView:
        view = MembershipView(settings, **kwargs)
        await asyncio.wait_for(view.start(), WAIT_S)
        self.items.append(view)
        return view

    async def close(self, item: MembershipPublisher | MembershipView) -> None:
        self.items.remove(item)
        await asyncio.wait_for(item.close(), WAIT_S)

    async def close_all(self) -> None:
        for item in reversed(self.items):
            await asyncio.wait_for(item.close(), WAIT_S)
        self.items.clear()


@pytest.fixture
async def closing() -> AsyncIterator[Closing]:
    c = Closing()
    try:
        yield c
    finally:
        await c.close_all()


def server(
    server_id: str, partitions: tuple[int, ...], connections: int = 0, draining: bool = False
) -> MemberRecord:
    return MemberRecord(
        server_id=server_id,
        url=f"ws://{server_id}.chat:8080/v1/ws",
        partitions=partitions,
        connections=connections,
        draining=draining,
        partition_count=P,
    )


# --- records and the view --------------------------------------------------------------


async def test_published_records_appear_in_the_view(settings: Settings, closing: Closing) -> None:
    view = await closing.view(settings)
    await closing.publisher(settings, lambda: server("chat-0", (0, 1), connections=3))
    await closing.publisher(settings, lambda: server("chat-1", (2, 3), connections=4))
    await wait_until(lambda: len(view.members()) == 2, "both servers in the view")

    assert [m.server_id for m in view.members()] == ["chat-0", "chat-1"]
    assert view.owner_url(0) == view.owner_url(1) == "ws://chat-0.chat:8080/v1/ws"
    assert view.owner_url(3) == "ws://chat-1.chat:8080/v1/ws"
    assert view.owner_url(7) is None
    assert view.total_connections() == 7
    assert view.partition_count() == P
    user = next(u for u in range(100) if partition_for_user(u, P) == 2)
    assert view.owner_url_for_user(user) == "ws://chat-1.chat:8080/v1/ws"
    (record,) = [m for m in view.members() if m.server_id == "chat-0"]
    assert record.partitions == (0, 1) and record.connections == 3 and record.ts > 0


async def test_a_new_view_reads_what_was_published_before_it(
    settings: Settings, closing: Closing
) -> None:
    await closing.publisher(settings, lambda: server("chat-0", (0, 1, 2, 3)))
    gone = await closing.publisher(settings, lambda: server("chat-9", ()))
    await closing.close(gone)  # tombstoned before the view starts
    view = await closing.view(settings)  # start() waits until it has read the backlog
    assert view.caught_up
    assert [m.server_id for m in view.members()] == ["chat-0"]
    assert view.owner_url(2) == "ws://chat-0.chat:8080/v1/ws"


async def test_poke_publishes_at_once(settings: Settings, closing: Closing) -> None:
    connections = [1]
    view = await closing.view(settings)
    publisher = await closing.publisher(
        settings, lambda: server("chat-0", (0,), connections=connections[0])
    )
    await wait_until(lambda: view.total_connections() == 1, "the first record")
    connections[0] = 42
    publisher.poke()  # the interval is a minute: only the poke can publish this soon
    await wait_until(lambda: view.total_connections() == 42, "the poked record")


async def test_records_are_republished_every_interval(settings: Settings, closing: Closing) -> None:
    fast = settings.model_copy(update={"membership_interval_s": 0.2})
    view = await closing.view(fast)
    await closing.publisher(fast, lambda: server("chat-0", (0,)))
    await wait_until(lambda: len(view.members()) == 1, "the first record")
    first_ts = view.members()[0].ts
    await wait_until(lambda: view.members()[0].ts > first_ts, "a newer record")


async def test_stale_records_expire_after_the_ttl(settings: Settings, closing: Closing) -> None:
    short = settings.model_copy(update={"membership_ttl_s": 1.5})
    view = await closing.view(short)
    await closing.publisher(short, lambda: server("chat-0", (0, 1)))  # then silent for 60 s
    await wait_until(lambda: view.owner_url(0) is not None, "the record")
    loop = asyncio.get_running_loop()
    seen = loop.time()
    await wait_until(lambda: view.owner_url(0) is None, "the record to expire")
    assert loop.time() - seen <= 1.5 + 0.5
    assert view.members() == [] and view.total_connections() == 0


async def test_ages_follow_the_clock(settings: Settings, closing: Closing) -> None:
    skew = [0.0]

    def clock() -> float:
        return time.time() + skew[0]

    view = await closing.view(settings, clock=clock)
    await closing.publisher(settings, lambda: server("chat-0", (0,)))
    await wait_until(lambda: len(view.members()) == 1, "the record")
    skew[0] = settings.membership_ttl_s - 1
    assert len(view.members()) == 1
    skew[0] = settings.membership_ttl_s + 1
    assert view.members() == [] and view.owner_url(0) is None


async def test_a_tombstone_removes_the_server_at_once(settings: Settings, closing: Closing) -> None:
    view = await closing.view(settings)
    publisher = await closing.publisher(settings, lambda: server("chat-0", (0, 1)))
    await closing.publisher(settings, lambda: server("chat-1", (2, 3)))
    await wait_until(lambda: len(view.members()) == 2, "both servers")
    await closing.close(publisher)  # clean shutdown: tombstone (TTL is a minute)
    await wait_until(lambda: [m.server_id for m in view.members()] == ["chat-1"], "chat-0 gone")
    assert view.owner_url(0) is None and view.owner_url(2) is not None


async def test_a_moving_partition_goes_to_the_server_that_is_not_draining(
    settings: Settings, closing: Closing
) -> None:
    view = await closing.view(settings)
    await closing.publisher(settings, lambda: server("chat-new", (0,)))
    await closing.publisher(settings, lambda: server("chat-old", (0, 1), draining=True))
    await wait_until(lambda: len(view.members()) == 2, "both servers")
    assert view.owner_url(0) == "ws://chat-new.chat:8080/v1/ws"
    assert view.owner_url(1) == "ws://chat-old.chat:8080/v1/ws"  # still its owner


async def test_partition_ownership_answers_owns_and_owner_url(
    settings: Settings, closing: Closing
) -> None:
    view = await closing.view(settings)
    await closing.publisher(settings, lambda: server("chat-1", (2, 3)))
    await wait_until(lambda: len(view.members()) == 1, "the record")
    mine = {0, 1}
    ownership = PartitionOwnership(mine.__contains__, lambda: P, view)
    for user in range(50):
        partition = partition_for_user(user, P)
        assert ownership.owns(user) == (partition in mine)
        expected = None if partition in mine else "ws://chat-1.chat:8080/v1/ws"
        assert ownership.owner_url(user) == expected


# --- topics ----------------------------------------------------------------------------


async def test_ensure_topics_creates_them_and_is_idempotent(
    settings: Settings, admin: Admin
) -> None:
    prefix = settings.kafka_topic_prefix
    for _ in range(2):
        await asyncio.wait_for(ensure_topics(settings), WAIT_S)
        assert await admin.partitions(inbox_topic(prefix)) == P
        assert await admin.partitions(push_topic(prefix)) == P
        assert await admin.partitions(members_topic(prefix)) == 1
    members = await admin.config(members_topic(prefix))
    assert members["cleanup.policy"][0] == "compact"
    assert members["segment.ms"][0] == "600000"
    inbox = await admin.config(inbox_topic(prefix))
    assert inbox["cleanup.policy"][0] == "delete"
    assert int(inbox["max.message.bytes"][0]) >= 8 << 20


async def test_ensure_topics_never_shrinks_and_grows_when_asked(
    settings: Settings, admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = settings.kafka_topic_prefix
    fewer = settings.model_copy(update={"kafka_inbox_partitions": 2})
    with caplog.at_level(logging.WARNING, logger="tidings.wire.topic_admin"):
        await asyncio.wait_for(ensure_topics(fewer), WAIT_S)
    assert await admin.partitions(inbox_topic(prefix)) == P
    assert await admin.partitions(push_topic(prefix)) == P
    assert "never shrink" in caplog.text

    more = settings.model_copy(update={"kafka_inbox_partitions": 6})
    await asyncio.wait_for(ensure_topics(more), WAIT_S)
    assert await admin.partitions(inbox_topic(prefix)) == 6
    assert await admin.partitions(push_topic(prefix)) == 6
    assert await admin.partitions(members_topic(prefix)) == 1


async def test_ensure_topics_restores_compaction_and_keeps_other_overrides(
    settings: Settings, admin: Admin
) -> None:
    topic = members_topic(settings.kafka_topic_prefix)
    await admin.alter(topic, {"cleanup.policy": "delete", "retention.ms": "123456789"})
    # (Config changes reach the broker's view a moment after AlterConfigs returns.)
    await admin.wait_config(topic, "cleanup.policy", "delete")
    await asyncio.wait_for(ensure_topics(settings), WAIT_S)
    await admin.wait_config(topic, "cleanup.policy", "compact")
    config = await admin.config(topic)
    assert config["retention.ms"][0] == "123456789"
    assert config["segment.ms"][0] == "600000"


async def test_concurrent_ensure_topics_agree(testenv: Any, admin: Admin) -> None:
    settings = make_settings(testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    try:
        await asyncio.wait_for(asyncio.gather(*(ensure_topics(settings) for _ in range(3))), WAIT_S)
        assert await admin.partitions(inbox_topic(settings.kafka_topic_prefix)) == P
    finally:
        await admin.delete_prefix(settings.kafka_topic_prefix)
