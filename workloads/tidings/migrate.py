"""`tidings migrate`: bring PostgreSQL, Cassandra and Kafka to what this version needs.

Idempotent: every step checks what is there first, and nothing is ever dropped.
"""

from __future__ import annotations

import logging

from tidings.cluster.topics import ensure_topics
from tidings.settings import Settings
from tidings.storage.cassandra.schema import migrate_keyspace
from tidings.storage.sql import directory_schema
from tidings.storage.sql.directory import make_engine

log = logging.getLogger(__name__)


ENGINES = ("postgres", "cassandra", "kafka")


async def migrate_all(settings: Settings, only: tuple[str, ...] = ENGINES) -> dict[str, object]:
    """Migrate the engines in ``only`` (all by default), in the order of :data:`ENGINES`."""
    report: dict[str, object] = {}
    if "postgres" in only:
        if not settings.postgres_url:
            raise ValueError("TIDINGS_POSTGRES_URL is not set (postgresql+asyncpg://...)")
        engine = make_engine(settings.postgres_url)
        try:
            report["postgres_applied"] = await directory_schema.migrate(engine)
        finally:
            await engine.dispose()
    if "cassandra" in only:
        report["cassandra_versions"] = await migrate_keyspace(settings)
    if "kafka" in only:
        await ensure_topics(settings)
        report["kafka_topics_prefix"] = settings.kafka_topic_prefix
    log.info("migrated", extra=report)
    return report
