"""Smoke test: the test environment's Kafka broker works with aiokafka."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_create_topic_produce_and_consume(testenv) -> None:  # type: ignore[no-untyped-def]
    bootstrap = testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"]
    topic = f"smoke-{uuid.uuid4().hex}"
    messages = [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(5)]

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await asyncio.wait_for(admin.start(), 30)
    try:
        await asyncio.wait_for(
            admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]), 30
        )
        assert topic in await asyncio.wait_for(admin.list_topics(), 30)

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await asyncio.wait_for(producer.start(), 30)
        try:
            for key, value in messages:
                await asyncio.wait_for(producer.send_and_wait(topic, value, key=key), 30)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"smoke-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await asyncio.wait_for(consumer.start(), 30)
        try:
            received: list[tuple[bytes | None, bytes | None]] = []

            async def collect() -> None:
                async for record in consumer:
                    received.append((record.key, record.value))
                    if len(received) == len(messages):
                        return

            await asyncio.wait_for(collect(), 60)
            await asyncio.wait_for(consumer.commit(), 30)
        finally:
            await consumer.stop()
        assert received == messages
    finally:
        try:
            await asyncio.wait_for(admin.delete_topics([topic]), 30)
        finally:
            await admin.close()
