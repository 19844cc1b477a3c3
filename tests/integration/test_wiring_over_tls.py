"""The operator's own wiring over TLS with a private CA (spec.kafka.tls, spec.cassandra.tls):
topics made through the test Kafka's SSL listener and the keyspace migrated through the
test Cassandra's TLS port, trusting only the CA from the Secret; a CA that signed neither
is refused with a message that says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from behaviour._certs import TestCA
from tidings_operator.spec import CassandraSpec, EngineTls, KafkaSpec, SecretKeyRef
from tidings_operator.wiring import (
    EngineRejected,
    EngineUnavailable,
    ensure_cassandra,
    ensure_kafka,
    kafka_options,
)

pytestmark = [pytest.mark.kafka, pytest.mark.cassandra, pytest.mark.timeout(300)]

CA = EngineTls(SecretKeyRef("my-cluster-cluster-ca-cert", "ca.crt"))


@pytest.fixture
def ca_pem(testenv: Any) -> str:
    return Path(testenv["TIDINGS_TEST_TLS_CA_FILE"]).read_text()


@pytest.fixture(scope="module")
def other_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = TestCA.new("signed nothing here").write(tmp_path_factory.mktemp("ca") / "ca.crt")
    return path.read_text()


def kafka(testenv: Any, prefix: str) -> KafkaSpec:
    return KafkaSpec(
        bootstrap_servers=testenv["TIDINGS_TEST_KAFKA_SSL_BOOTSTRAP"],
        topic_prefix=prefix,
        inbox_partitions=2,
        replication_factor=1,
        tls=CA,
    )


def cassandra(testenv: Any, keyspace: str) -> CassandraSpec:
    return CassandraSpec(
        contact_points=tuple(testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",")),
        port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
        keyspace=keyspace,
        replication_factor=1,
        consistency="LOCAL_ONE",
        tls=CA,
    )


async def test_topics_are_made_over_tls_trusting_the_secrets_ca(
    testenv: Any, prefix: str, ca_pem: str, other_pem: str
) -> None:
    spec = kafka(testenv, prefix)
    assert kafka_options(spec, ca=ca_pem)["security_protocol"] == "SSL"
    outcome = await ensure_kafka(spec, ca=ca_pem)
    assert outcome.created == [f"{prefix}.inbox", f"{prefix}.members", f"{prefix}.push"]
    with pytest.raises(EngineUnavailable, match="TLS refused: unable to get local issuer"):
        await ensure_kafka(spec, ca=other_pem)
    with pytest.raises(EngineRejected, match="caSecretRef holds no usable CA"):
        await ensure_kafka(spec, ca="not a certificate")


async def test_the_keyspace_is_migrated_over_tls_trusting_the_secrets_ca(
    testenv: Any, keyspace: str, ca_pem: str, other_pem: str
) -> None:
    spec = cassandra(testenv, keyspace)
    outcome = await ensure_cassandra(spec, ca=ca_pem)
    assert outcome.versions and outcome.keyspace == keyspace
    with pytest.raises(EngineUnavailable):
        await ensure_cassandra(spec, ca=other_pem)
    with pytest.raises(EngineRejected, match="cannot load CA certificates"):
        await ensure_cassandra(spec, ca="not a certificate")
