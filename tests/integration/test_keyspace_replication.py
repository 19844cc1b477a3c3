"""The operator's Cassandra wiring against the test environment's node: a replication
change in the spec is applied to an existing keyspace (with the repair it needs said), and
one the cluster cannot serve is refused and reported, the keyspace left as it was."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cassandra.cluster import Cluster, Session

from tidings_operator.spec import CassandraSpec
from tidings_operator.wiring import ensure_cassandra

pytestmark = [pytest.mark.cassandra, pytest.mark.timeout(300)]


@pytest.fixture
def session(testenv: Any) -> Iterator[Session]:
    hosts = testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",")
    cluster = Cluster(hosts, port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]), protocol_version=5)
    session = cluster.connect()
    session.default_timeout = 60
    try:
        yield session
    finally:
        cluster.shutdown()


@pytest.fixture
def spec(testenv: Any, session: Session) -> Iterator[CassandraSpec]:
    keyspace = f"repl_{uuid.uuid4().hex[:12]}"
    yield CassandraSpec(
        contact_points=tuple(testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",")),
        port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
        keyspace=keyspace,
        replication_factor=1,
        consistency="LOCAL_ONE",
    )
    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)


def replication(session: Session, keyspace: str) -> dict[str, str]:
    row = session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
    ).one()
    assert row is not None
    return dict(row.replication)


async def test_a_replication_change_is_applied_and_one_that_cannot_work_is_refused(
    spec: CassandraSpec, session: Session
) -> None:
    first = await ensure_cassandra(spec)
    assert first.replication is None  # made with the spec's replication
    assert replication(session, spec.keyspace)["replication_factor"] == "1"
    dc = str(session.execute("SELECT data_center FROM system.local").one().data_center)

    moved = await ensure_cassandra(dataclasses.replace(spec, local_datacenter=dc))
    assert moved.replication is not None and moved.replication.refused is None
    now = replication(session, spec.keyspace)
    assert now["class"].endswith("NetworkTopologyStrategy") and now[dc] == "1"
    assert "replication changed from {class: SimpleStrategy, replication_factor: 1}" in (
        moved.message
    )
    assert f"run `nodetool repair -full {spec.keyspace}` on every node" in moved.message
    again = await ensure_cassandra(dataclasses.replace(spec, local_datacenter=dc))
    assert again.replication is None

    too_many = dataclasses.replace(spec, local_datacenter=dc, replication_factor=3)
    refused = await ensure_cassandra(too_many)
    assert refused.replication is not None
    assert refused.replication.refused == (
        f"3 replicas asked in {dc}, which has 1 node: writes would fail"
    )
    assert "its replication stays" in refused.message
    assert replication(session, spec.keyspace)[dc] == "1"  # left as it was
