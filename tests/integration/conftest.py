"""Fixtures the integration tests share: a Kafka topic prefix and a Cassandra keyspace of
the test's own, removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient


@pytest.fixture
async def prefix(testenv: Any) -> AsyncIterator[str]:
    """A topic prefix no other test uses; its topics are deleted afterwards."""
    value = f"optest{uuid.uuid4().hex[:10]}"
    yield value
    admin = AIOKafkaAdminClient(bootstrap_servers=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(f"{value}.")]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


@pytest.fixture
def keyspace(testenv: Any) -> Iterator[str]:
    """A keyspace name no other test uses; the keyspace is dropped afterwards."""
    from cassandra.cluster import Cluster

    value = f"optest_{uuid.uuid4().hex[:10]}"
    yield value
    hosts = [h.strip() for h in testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",") if h.strip()]
    cluster = Cluster(hosts, port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]), protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {value}", timeout=60)
    finally:
        cluster.shutdown()
