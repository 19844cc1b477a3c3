"""`tidings migrate`: bring PostgreSQL, Cassandra and Kafka to what this version needs.

Idempotent: every step checks what is there first, and nothing is ever dropped.
"""

from __future__ import annotations

import logging

from tidings.cluster.topics import ensure_topics
from tidings.settings import Settings
from tidings.storage import directory_schema
from tidings.storage.cassandra_schema import migrate_keyspace
from tidings.storage.directory import make_engine

log = logging.getLogger(__name__)


async def migrate_all(settings: Settings) -> dict[str, object]:
    if not settings.postgres_url:
        raise ValueError("TIDINGS_POSTGRES_URL is not set (postgresql+asyncpg://...)")
    engine = make_engine(settings.postgres_url)
    try:
        postgres = await directory_schema.migrate(engine)
    finally:
        await engine.dispose()
    cassandra = await migrate_keyspace(settings)
    await ensure_topics(settings)
    report: dict[str, object] = {
        "postgres_applied": postgres,
        "cassandra_versions": cassandra,
        "kafka_topics_prefix": settings.kafka_topic_prefix,
    }
    log.info("migrated", extra=report)
    return report
