"""Every byte a deployment keeps at rest, read back the way an operator (or a thief of
the disks) could: for `tidings up` the files of its data directory (the SQLite
databases with their write-ahead logs); for a cluster the Cassandra keyspace's tables
read through CQL, every record of the Kafka topics, and the PostgreSQL database's
tables."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ._cluster import Cluster
from ._harness import Deployment


async def bytes_at_rest(server: Deployment) -> bytes:
    if isinstance(server, Cluster):
        parts = await asyncio.gather(
            asyncio.to_thread(_cassandra, server), _kafka(server), _postgres(server)
        )
        return b"\n".join(parts)
    data_dir: Path = server.data_dir  # type: ignore[attr-defined]
    return await asyncio.to_thread(_files, data_dir)


def _files(data_dir: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def _cassandra(cluster: Cluster) -> bytes:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
    from cassandra.cluster import Cluster as CassandraCluster
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
    cassandra = CassandraCluster(
        list(cluster.backends.cassandra_hosts),
        port=cluster.backends.cassandra_port,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    out: list[bytes] = []
    try:
        session = cassandra.connect()
        tables = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
            (cluster.namespace,),
        )
        for (table,) in tables:
            for row in session.execute(f"SELECT * FROM {cluster.namespace}.{table}"):
                out.append(_flatten(row))
    finally:
        cassandra.shutdown()
    return b"\n".join(out)


async def _kafka(cluster: Cluster) -> bytes:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.backends.kafka_bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(f"{cluster.namespace}.")]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        for p in topic["partitions"]
    ]
    assert partitions, f"no topics of {cluster.namespace} in Kafka"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.backends.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                for record in batch.get(tp, []):
                    out.append((record.key or b"") + b" " + (record.value or b""))
    finally:
        await consumer.stop()
    return b"\n".join(out)


async def _postgres(cluster: Cluster) -> bytes:
    import asyncpg

    conn = await asyncpg.connect(cluster.postgres_url.replace("+asyncpg", ""), timeout=10)
    out: list[bytes] = []
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        for table in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table["tablename"]}"'):
                out.append(_flatten(tuple(row.values())))
    finally:
        await conn.close()
    return b"\n".join(out)


def _flatten(row: Any) -> bytes:
    """A row's values as bytes: text as UTF-8, blobs as they are, the rest as repr."""
    parts = []
    for value in row:
        if isinstance(value, bytes | bytearray | memoryview):
            parts.append(bytes(value))
        elif isinstance(value, str):
            parts.append(value.encode())
        else:
            parts.append(repr(value).encode())
    return b"\x1f".join(parts)
