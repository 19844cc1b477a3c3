"""Fixtures and stand-ins shared by every push test: a Directory with devices, messages,
metrics readings.

The push tests live here by feature: unit/ drives the pieces with no network (the retry
policy, payloads, the dispatcher with fake providers, the chat server's grace, signatures);
the files beside it run the providers against stand-in APNs/FCM/webhook servers
(_standins.py), the worker against Kafka, and the whole path from a send to a push."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from tidings.cluster.topics import ensure_topics
from tidings.core.model import Message
from tidings.kafka_config import inbox_topic, members_topic, push_topic
from tidings.settings import Settings
from tidings.storage.sql.directory import SqlDirectory

USER = 42
KAFKA_WAIT_S = 30.0  # joining a consumer group takes a few seconds
SENDER = 7


@pytest.fixture
async def directory(tmp_path: Path) -> AsyncIterator[SqlDirectory]:
    opened = await SqlDirectory.open(f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}")
    await opened.create_user(USER, "bea", "x", "Bea", 0)
    await opened.create_user(SENDER, "al", "x", "Al", 0)
    try:
        yield opened
    finally:
        await opened.close()


async def add_device(directory: SqlDirectory, device_id: int, provider: str, token: str) -> None:
    await directory.create_device(device_id, USER, f"phone {device_id}", "ios", 0)
    await directory.set_push_token(device_id, provider, token)


async def token_of(directory: SqlDirectory, device_id: int) -> str | None:
    device = await directory.get_device(device_id)
    assert device is not None
    return device.push_token


def message(
    message_id: int = 1001, channel_id: str = f"dm:{SENDER}:{USER}", body: str = ""
) -> Message:
    return Message(
        message_id=message_id,
        channel_id=channel_id,
        sender_id=SENDER,
        sender_device_id=1,
        client_msg_id=f"c{message_id}",
        body=body or f"secret words {message_id}",
        ts=1_732_830_000_000,
    )


def msg(message_id: int, channel_id: str = "dm:1:2") -> Message:
    """A short message ("hi") from user 1's device 10, for the tests that only route it."""
    return Message(message_id, channel_id, 1, 10, f"c{message_id}", "hi", 0)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def kafka_settings(testenv: Any) -> AsyncIterator[Settings]:
    """Settings for the test environment's Kafka with topics of this test's own (created,
    and deleted afterwards)."""
    settings = Settings(
        kafka_bootstrap=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"],
        kafka_topic_prefix=f"push-{uuid.uuid4().hex[:12]}",
        kafka_inbox_partitions=2,
        kafka_request_timeout_s=15.0,
    )
    await asyncio.wait_for(ensure_topics(settings), KAFKA_WAIT_S)
    try:
        yield settings
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await asyncio.wait_for(admin.start(), KAFKA_WAIT_S)
        try:
            prefix = settings.kafka_topic_prefix
            mine = {inbox_topic(prefix), members_topic(prefix), push_topic(prefix)}
            doomed = sorted(mine & set(await admin.list_topics()))
            if doomed:
                await asyncio.wait_for(admin.delete_topics(doomed), KAFKA_WAIT_S)
        finally:
            await admin.close()
