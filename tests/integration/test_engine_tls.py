"""TLS to Kafka and Cassandra with a private CA, against the test environment's engines.

e2e/env/tls-ca.sh makes the CA (TIDINGS_TEST_TLS_CA_FILE) and the engines' certificate
(SANs 127.0.0.1, localhost, the pod bridge's address); Kafka has an SSL listener
(TIDINGS_TEST_KAFKA_SSL_BOOTSTRAP) that asks for a client certificate and checks any it
gets, and Cassandra's native port takes TLS and plaintext clients alike. Each test checks
what an adopter relies on: the servers' clients connect with the CA file, and refuse
(promptly, saying why) a server their CA did not sign.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from behaviour._certs import TestCA
from tidings.bus.base import InboxEvent
from tidings.bus.kafka import BusUnavailable, KafkaBus
from tidings.cluster.topics import ensure_topics
from tidings.core.ids import min_id_at, timestamp_ms
from tidings.core.model import Message
from tidings.kafka_config import inbox_topic, members_topic, push_topic
from tidings.settings import Settings
from tidings.storage.base import StorageError
from tidings.storage.cassandra import io as cassandra_io
from tidings.storage.cassandra import io_async as cassandra_io_async
from tidings.storage.cassandra.schema import MIGRATIONS, migrate_keyspace
from tidings.storage.cassandra.store import CassandraMessageStore

pytestmark = pytest.mark.timeout(180)

WAIT_S = 60.0  # any one step; a refused handshake must fail well within it


async def bounded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, WAIT_S)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed nothing the engines present."""
    return TestCA.new("not the engines' CA").write(tmp_path_factory.mktemp("other") / "ca.crt")


@pytest.fixture
def test_ca(testenv: Any) -> Path:
    return Path(testenv["TIDINGS_TEST_TLS_CA_FILE"])


# --- Kafka ---------------------------------------------------------------------------------


def kafka_settings(testenv: Any, prefix: str, **tls: Any) -> Settings:
    return Settings(
        kafka_bootstrap=testenv["TIDINGS_TEST_KAFKA_SSL_BOOTSTRAP"],
        kafka_security_protocol="SSL",
        kafka_topic_prefix=prefix,
        kafka_inbox_partitions=2,
        kafka_request_timeout_s=15.0,
        server_id="pytest-tls",
        **tls,
    )


@pytest.fixture
async def prefix(testenv: Any) -> AsyncIterator[str]:
    """A topic prefix of this test's own; its topics are deleted afterwards (plaintext)."""
    name = f"tls-{uuid.uuid4().hex[:12]}"
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
    await bounded(admin.start())
    try:
        existing = set(await bounded(admin.list_topics()))
        mine = {inbox_topic(name), members_topic(name), push_topic(name)} & existing
        if mine:
            await bounded(admin.delete_topics(sorted(mine)))
    finally:
        await admin.close()


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.kafka
async def test_the_bus_publishes_and_consumes_over_tls_with_the_private_ca(
    testenv: Any, test_ca: Path, prefix: str
) -> None:
    settings = kafka_settings(testenv, prefix, kafka_ssl_cafile=str(test_ca))
    await bounded(ensure_topics(settings))
    bus = KafkaBus(settings, group_id=f"{prefix}.chat", session_timeout_s=6.0)
    await bounded(bus.start())
    got: list[InboxEvent] = []

    async def handler(events: list[InboxEvent]) -> None:
        got.extend(events)

    consuming = asyncio.create_task(bus.consume(handler))
    try:
        sent = [InboxEvent(uid, "msg", {"n": uid}) for uid in range(1, 21)]
        await bounded(bus.publish(sent))
        await wait_until(lambda: len(got) >= len(sent), "the events back over TLS")
        assert sorted(got, key=repr) == sorted(sent, key=repr)
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await bounded(bus.close())


@pytest.mark.kafka
@pytest.mark.parametrize("trusted", ["another CA", "the system's CAs"])
async def test_a_broker_the_ca_did_not_sign_is_refused_promptly(
    testenv: Any, other_ca: Path, prefix: str, trusted: str, caplog: pytest.LogCaptureFixture
) -> None:
    cafile = str(other_ca) if trusted == "another CA" else None
    bus = KafkaBus(kafka_settings(testenv, prefix, kafka_ssl_cafile=cafile))
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(BusUnavailable):
        await bounded(bus.start())
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text  # what the operator of it reads


@pytest.mark.kafka
async def test_mutual_tls_offers_the_client_certificate(
    testenv: Any, test_ca: Path, prefix: str, tmp_path: Path
) -> None:
    """The broker asks for a client certificate and checks one it gets: the test CA's
    client certificate gets in, one from another CA is turned away, so the files set
    in kafka_ssl_certfile/keyfile are what the client presents."""
    tls_dir = test_ca.parent
    accepted = kafka_settings(
        testenv,
        prefix,
        kafka_ssl_cafile=str(test_ca),
        kafka_ssl_certfile=str(tls_dir / "client.crt"),
        kafka_ssl_keyfile=str(tls_dir / "client.key"),
    )
    await bounded(ensure_topics(accepted))
    bus = KafkaBus(accepted)
    await bounded(bus.start())
    try:
        await bounded(bus.publish([InboxEvent(1, "msg", {"n": 1})]))
    finally:
        await bounded(bus.close())

    TestCA.new("a stranger's CA").issue("tidings").write(
        tmp_path / "stranger.crt", tmp_path / "stranger.key"
    )
    stranger = kafka_settings(
        testenv,
        prefix,
        kafka_ssl_cafile=str(test_ca),
        kafka_ssl_certfile=str(tmp_path / "stranger.crt"),
        kafka_ssl_keyfile=str(tmp_path / "stranger.key"),
    )
    with pytest.raises(BusUnavailable):
        await bounded(KafkaBus(stranger).start())


# --- Cassandra ---------------------------------------------------------------------------


def cassandra_settings(
    testenv: Any, cafile: Path, *, host: str | None = None, verify_hostname: bool = False
) -> Settings:
    return Settings(
        cassandra_contact_points=[host or testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",")[0]],
        cassandra_port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
        cassandra_keyspace=f"t_tls_{uuid.uuid4().hex[:12]}",
        cassandra_request_timeout_s=30.0,
        cassandra_ssl=True,
        cassandra_ssl_cafile=str(cafile),
        cassandra_ssl_verify_hostname=verify_hostname,
    )


async def connects_with_both_drivers(settings: Settings) -> None:
    """A query through cassandra-driver (migrations) and through acsylla (the store)."""
    cluster, session = await cassandra_io.connect(settings)
    try:
        rows = await bounded(
            cassandra_io.Cql(session).rows("SELECT cluster_name FROM system.local")
        )
        assert rows == [{"cluster_name": "tidings-test"}]
    finally:
        await asyncio.to_thread(cluster.shutdown)
    acsylla_session = await bounded(cassandra_io_async.connect(settings))
    try:
        cql = cassandra_io_async.AsyncCql(acsylla_session)
        prepared = await cql.prepare({"q": "SELECT cluster_name FROM system.local"})
        assert await bounded(cql.rows(prepared["q"])) == [{"cluster_name": "tidings-test"}]
    finally:
        await acsylla_session.close()


@pytest.mark.cassandra
async def test_migrate_and_the_message_store_over_tls(testenv: Any, test_ca: Path) -> None:
    """`tidings migrate`'s code path (cassandra-driver) and the message store (acsylla)."""
    settings = cassandra_settings(testenv, test_ca)
    try:
        assert await bounded(migrate_keyspace(settings)) == [m.version for m in MIGRATIONS]
        store = await bounded(CassandraMessageStore.open(settings))
        try:
            message_id = min_id_at(int(time.time() * 1000))
            sent = Message(
                message_id=message_id,
                channel_id=f"g:{uuid.uuid4().hex}",
                sender_id=1,
                sender_device_id=7,
                client_msg_id="tls-1",
                body="over TLS",
                ts=timestamp_ms(message_id),
            )
            assert await bounded(store.save_message(sent)) == sent
            assert await bounded(store.history(sent.channel_id, None, 10)) == [sent]
        finally:
            await bounded(store.close())
    finally:
        plain = Settings(
            cassandra_contact_points=testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(","),
            cassandra_port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
        )
        cluster, session = await cassandra_io.connect(plain)
        try:
            await asyncio.to_thread(
                session.execute, f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", None, 120
            )
        finally:
            await asyncio.to_thread(cluster.shutdown)


@pytest.fixture
def bundle(test_ca: Path, other_ca: Path, tmp_path: Path) -> Path:
    """Another CA, then the test CA, in one file."""
    path = tmp_path / "bundle.crt"
    path.write_bytes(other_ca.read_bytes() + test_ca.read_bytes())
    return path


@pytest.mark.cassandra
async def test_a_bundle_is_trusted_whole_by_both_drivers(testenv: Any, bundle: Path) -> None:
    """The test CA second in the bundle: a driver that read only the first certificate
    (older C++ drivers did) would refuse the node."""
    await connects_with_both_drivers(cassandra_settings(testenv, bundle))


@pytest.mark.cassandra
async def test_a_node_the_ca_did_not_sign_is_refused_by_both_drivers(
    testenv: Any, other_ca: Path
) -> None:
    settings = cassandra_settings(testenv, other_ca)
    with pytest.raises(StorageError, match=r"(?i)certificate verify failed"):
        await bounded(cassandra_io.connect(settings))
    with pytest.raises(StorageError, match=r"(?i)invalid peer certificate"):
        await bounded(cassandra_io_async.connect(settings))


@pytest.mark.cassandra
async def test_hostname_verification_checks_the_address_in_both_drivers(
    testenv: Any, test_ca: Path
) -> None:
    """The node's certificate names 127.0.0.1 (not 127.0.0.2, where the node listens
    too when it listens on every address: with the pod bridge, as in CI)."""
    assert testenv["TIDINGS_TEST_CASSANDRA_POD_HOST"]  # listening on 0.0.0.0
    await connects_with_both_drivers(
        cassandra_settings(testenv, test_ca, host="127.0.0.1", verify_hostname=True)
    )
    elsewhere = cassandra_settings(testenv, test_ca, host="127.0.0.2", verify_hostname=True)
    with pytest.raises(StorageError, match=r"(?i)mismatch"):
        await bounded(cassandra_io.connect(elsewhere))
    with pytest.raises(StorageError, match=r"(?i)identity|peer"):
        await bounded(cassandra_io_async.connect(elsewhere))
    # Without hostname verification the chain alone is checked: 127.0.0.2 is fine.
    await connects_with_both_drivers(cassandra_settings(testenv, test_ca, host="127.0.0.2"))
