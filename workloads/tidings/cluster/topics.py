"""The cluster's Kafka topics, created or brought up to date idempotently (``tidings
migrate``), from the settings.

The topics, their layout and how they are brought up to date are
:mod:`tidings.wire.topics` and :mod:`tidings.wire.topic_admin`, which the operator uses
too. Partition counts only ever grow: growing the inbox moves users to other partitions
(their hash is taken modulo P), which is why P is chosen once, at cluster creation.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from tidings.kafka_config import kafka_client_options
from tidings.settings import Settings
from tidings.wire import topic_admin
from tidings.wire.topics import TopicSpec
from tidings.wire.topics import topic_specs as wire_topic_specs

__all__ = ["TopicSpec", "ensure_topics", "topic_specs"]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The three topics as the settings describe them (the brokers' default retention)."""
    return wire_topic_specs(
        settings.kafka_topic_prefix,
        partitions=settings.kafka_inbox_partitions,
        replication=settings.kafka_replication_factor,
    )


async def ensure_topics(settings: Settings) -> None:
    """Create the three topics, or raise their partition counts and fix their configs."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        await topic_admin.ensure_topics(admin, topic_specs(settings))
    finally:
        await admin.close()
