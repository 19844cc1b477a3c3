"""Smoke test: the test environment's Cassandra node works with cassandra-driver.

Covers a keyspace/table round trip and a storage-attached index (SAI) with an analyzer,
the feature the chat's message search relies on (Cassandra 5.0).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from cassandra.cluster import Cluster, Session

pytestmark = [pytest.mark.cassandra, pytest.mark.timeout(180)]


@pytest.fixture
def session(testenv) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    hosts = testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",")
    port = int(testenv["TIDINGS_TEST_CASSANDRA_PORT"])
    cluster = Cluster(hosts, port=port, connect_timeout=15, protocol_version=5)
    session = cluster.connect()
    session.default_timeout = 60
    try:
        yield session
    finally:
        cluster.shutdown()


async def _run(session: Session, query: str, params: tuple[object, ...] = ()) -> list[object]:
    """Run a statement on the driver's own threads without blocking the event loop."""
    future = session.execute_async(query, params)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[object]] = loop.create_future()

    def ok(rows: object) -> None:
        loop.call_soon_threadsafe(done.set_result, list(rows or []))  # type: ignore[call-overload]

    def failed(exc: BaseException) -> None:
        loop.call_soon_threadsafe(done.set_exception, exc)

    future.add_callbacks(ok, failed)
    return await asyncio.wait_for(done, 60)


async def test_keyspace_table_and_sai_with_analyzer(session: Session) -> None:
    keyspace = f"smoke_{uuid.uuid4().hex[:16]}"
    await _run(
        session,
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    )
    try:
        await _run(
            session,
            f"CREATE TABLE {keyspace}.messages ("
            " chat_id uuid, seq bigint, body text, PRIMARY KEY (chat_id, seq))"
            " WITH CLUSTERING ORDER BY (seq DESC)",
        )
        chat_id = uuid.uuid4()
        bodies = ["Hello World", "see you tomorrow", "hello again"]
        for seq, body in enumerate(bodies):
            await _run(
                session,
                f"INSERT INTO {keyspace}.messages (chat_id, seq, body) VALUES (%s, %s, %s)",
                (chat_id, seq, body),
            )

        rows = await _run(
            session,
            f"SELECT seq, body FROM {keyspace}.messages WHERE chat_id = %s",
            (chat_id,),
        )
        assert [(r.seq, r.body) for r in rows] == [(2, bodies[2]), (1, bodies[1]), (0, bodies[0])]

        # SAI with an analyzer. Cassandra 5.0 ships the non-tokenizing analyzer only
        # (case folding, Unicode normalization, ASCII folding, matched with '='); the
        # tokenizing 'index_analyzer' option and the ':' operator are not in 5.0.x.
        await _run(
            session,
            f"CREATE INDEX messages_body_idx ON {keyspace}.messages (body) USING 'sai' "
            "WITH OPTIONS = {'case_sensitive': 'false', 'normalize': 'true', 'ascii': 'true'}",
        )
        await _run(
            session,
            f"INSERT INTO {keyspace}.messages (chat_id, seq, body) VALUES (%s, %s, %s)",
            (chat_id, 3, "Héllo Wörld"),
        )
        # The index builds in the background on a table with data; wait until it is queryable.
        for _ in range(120):
            status = await _run(
                session,
                "SELECT is_queryable, is_building FROM system_views.sai_column_indexes"
                " WHERE keyspace_name = %s AND index_name = %s",
                (keyspace, "messages_body_idx"),
            )
            if status and status[0].is_queryable and not status[0].is_building:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail(f"SAI index did not become queryable: {status}")
        rows = await _run(
            session,
            f"SELECT seq FROM {keyspace}.messages WHERE body = %s",
            ("HELLO world",),
        )
        matched = sorted(r.seq for r in rows)
        assert matched == [0, 3]

        # The same index restricts a query within a partition too.
        rows = await _run(
            session,
            f"SELECT seq FROM {keyspace}.messages WHERE chat_id = %s AND body = %s",
            (chat_id, "SEE YOU TOMORROW"),
        )
        assert [r.seq for r in rows] == [1]
    finally:
        await _run(session, f"DROP KEYSPACE IF EXISTS {keyspace}")
