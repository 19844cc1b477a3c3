"""Wiring a ChatCluster to its engines: the Kafka topics and the Cassandra keyspace.

Kafka (aiokafka's admin client; the topics and how they are brought up to date are the
workloads' own, :mod:`tidings.wire.topics` and :mod:`tidings.wire.topic_admin`):

- ``<prefix>.inbox`` and ``<prefix>.push`` with ``inboxPartitions`` partitions and
  ``retentionHours`` of retention; ``<prefix>.members`` compacted, one partition; all with
  ``replicationFactor`` replicas;
- existing topics are brought up to date: partitions grow but never shrink (a topic with
  more partitions keeps them, and the cluster is configured with the real count), config
  overrides are merged (other overrides an operator set by hand stay), a replication
  factor is never changed (that needs a partition reassignment: reported, not done).

Cassandra: the workloads' own migrations (``tidings.storage.cassandra.schema``, the one
source of truth for the schema; the operator runs in the same image), which create the
keyspace if it is missing and apply every schema version not yet applied; then the
keyspace's replication is made the spec's (``ALTER KEYSPACE``; the repair or cleanup it
needs is said in the condition and an Event), unless the datacenter has fewer nodes than
the replicas asked for (then it is reported and left).

Errors come in two kinds, which the handlers turn into kopf's:

- :class:`EngineUnavailable`: the engine cannot be reached or answered "not now"
  (connection refused, timeouts, not enough replicas, not authorized yet): retry later;
- :class:`EngineRejected`: the engine says the spec cannot work (more replicas than
  brokers, an invalid config or keyspace option): nothing will change until the spec does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationAssignmentError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    PolicyViolationError,
)
from aiokafka.helpers import create_ssl_context

from tidings.wire import topic_admin
from tidings.wire.topics import TopicSpec, topic_specs
from tidings_operator import names
from tidings_operator.spec import CassandraSpec, KafkaSpec

if TYPE_CHECKING:  # the workloads' storage is imported when wiring, not at start-up
    from tidings.storage.cassandra.schema import ReplicationChange

__all__ = [
    "CassandraOutcome",
    "EngineRejected",
    "EngineUnavailable",
    "KafkaOutcome",
    "ensure_cassandra",
    "ensure_kafka",
    "kafka_options",
    "topic_plan",
]

log = logging.getLogger(__name__)

KAFKA_REQUEST_TIMEOUT_S = 15.0
KAFKA_TIMEOUT_S = 90.0
CASSANDRA_TIMEOUT_S = 360.0

_REJECTED = (
    InvalidReplicationFactorError,
    InvalidPartitionsError,
    InvalidReplicationAssignmentError,
    InvalidConfigurationError,
    InvalidTopicError,
    PolicyViolationError,
)


class EngineUnavailable(Exception):
    """Kafka or Cassandra cannot do it now; trying again later may work."""

    def __init__(self, engine: str, message: str) -> None:
        super().__init__(message)
        self.engine = engine
        self.message = message


class EngineRejected(Exception):
    """Kafka or Cassandra says the spec cannot work; the message says what to change."""

    def __init__(self, engine: str, message: str) -> None:
        super().__init__(message)
        self.engine = engine
        self.message = message


@dataclass(slots=True)
class KafkaOutcome:
    inbox_partitions: int
    created: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        parts = [f"topics ready; the inbox has {self.inbox_partitions} partitions"]
        if self.created:
            parts.append(f"created {', '.join(self.created)}")
        return "; ".join(parts + self.notes)


@dataclass(frozen=True, slots=True)
class CassandraOutcome:
    keyspace: str
    versions: tuple[int, ...]
    replication: ReplicationChange | None = None  # the spec's replication differed

    @property
    def message(self) -> str:
        latest = max(self.versions) if self.versions else 0
        text = f"keyspace {self.keyspace} at schema version {latest}"
        change = self.replication
        if change is None:
            return text
        if change.refused:
            return (
                f"{text}; its replication stays {_cql_map(change.before)}: the spec asks for "
                f"{_cql_map(change.after)}, but {change.refused}"
            )
        return (
            f"{text}; replication changed from {_cql_map(change.before)} to "
            f"{_cql_map(change.after)}: {change.repair}"
        )


def _cql_map(replication: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(replication.items())) + "}"


def topic_plan(spec: KafkaSpec) -> list[TopicSpec]:
    """The topics a cluster needs, with their partitions, replication and config overrides."""
    return topic_specs(
        spec.topic_prefix,
        partitions=spec.inbox_partitions,
        replication=spec.replication_factor,
        retention_ms=spec.retention_hours * 3600 * 1000,
    )


def kafka_options(
    spec: KafkaSpec, auth: Mapping[str, str] | None = None, *, ca: str | None = None
) -> dict[str, Any]:
    """aiokafka client options: the bootstrap servers, and security from the auth Secret.

    The Secret's keys are the workloads' environment variables
    (``TIDINGS_KAFKA_SECURITY_PROTOCOL``, ``TIDINGS_KAFKA_SASL_MECHANISM``,
    ``TIDINGS_KAFKA_SASL_USERNAME``, ``TIDINGS_KAFKA_SASL_PASSWORD``), so the same Secret
    serves the pods (``envFrom``) and the operator. ``spec.tls`` without an auth Secret is
    ``SSL``; ``ca``: the PEM of ``spec.tls.caSecretRef`` (else the system's CAs).
    """
    auth = auth or {}
    default = "SSL" if spec.tls is not None else "PLAINTEXT"
    protocol = auth.get("TIDINGS_KAFKA_SECURITY_PROTOCOL", default)
    options: dict[str, Any] = {
        "bootstrap_servers": spec.bootstrap_servers,
        "client_id": names.FIELD_MANAGER,
        "request_timeout_ms": int(KAFKA_REQUEST_TIMEOUT_S * 1000),
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cadata=ca) if ca else create_ssl_context()
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = auth.get("TIDINGS_KAFKA_SASL_MECHANISM", "PLAIN")
        options["sasl_plain_username"] = auth.get("TIDINGS_KAFKA_SASL_USERNAME")
        options["sasl_plain_password"] = auth.get("TIDINGS_KAFKA_SASL_PASSWORD")
    return options


def _kafka_error(exc: BaseException, spec: KafkaSpec) -> Exception:
    where = f"Kafka at {spec.bootstrap_servers}"
    if isinstance(exc, EngineRejected | EngineUnavailable):
        return exc
    if isinstance(exc, _REJECTED):
        return EngineRejected("kafka", f"{where} refused the topics: {exc}")
    if isinstance(exc, TimeoutError):
        return EngineUnavailable("kafka", f"{where} did not answer in time")
    return EngineUnavailable("kafka", f"cannot reach {where}: {exc}")


async def ensure_kafka(
    spec: KafkaSpec, auth: Mapping[str, str] | None = None, *, ca: str | None = None
) -> KafkaOutcome:
    """Create or bring up to date the cluster's topics; see the module docstring."""
    try:
        return await asyncio.wait_for(_ensure_kafka(spec, auth, ca), KAFKA_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError, EngineRejected, EngineUnavailable) as exc:
        raise _kafka_error(exc, spec) from exc


async def _ensure_kafka(
    spec: KafkaSpec, auth: Mapping[str, str] | None, ca: str | None
) -> KafkaOutcome:
    try:
        options = kafka_options(spec, auth, ca=ca)
    except ssl.SSLError as exc:
        raise EngineRejected(
            "kafka", f"spec.kafka.tls.caSecretRef holds no usable CA: {exc}"
        ) from exc
    admin = AIOKafkaAdminClient(**options)
    try:
        try:
            await admin.start()
        except KafkaConnectionError as exc:
            context = options.get("ssl_context")
            why = await _tls_refusal(spec.bootstrap_servers, context) if context else None
            if why is None:
                raise
            raise EngineUnavailable(
                "kafka", f"Kafka at {spec.bootstrap_servers}: TLS refused: {why}"
            ) from exc
        cluster = await admin.describe_cluster()
        brokers = len(cluster.get("brokers") or [])
        if brokers and spec.replication_factor > brokers:
            raise EngineRejected(
                "kafka",
                f"spec.kafka.replicationFactor is {spec.replication_factor} but the Kafka "
                f"cluster at {spec.bootstrap_servers} has {brokers} broker"
                f"{'s' if brokers != 1 else ''}: lower it, or add brokers and change the spec",
            )
        plans = {plan.name: plan for plan in topic_plan(spec)}
        outcome = KafkaOutcome(inbox_partitions=spec.inbox_partitions)
        states = await topic_admin.ensure_topics(admin, list(plans.values()))
        outcome.created = [state.name for state in states if state.created]
        for state in states:
            if state.name == names.inbox_topic(spec.topic_prefix):
                outcome.inbox_partitions = state.partitions
            if not state.created:
                outcome.notes.extend(_notes(state, plans[state.name]))
        return outcome
    finally:
        await admin.close()


def _notes(state: topic_admin.TopicState, plan: TopicSpec) -> list[str]:
    """What the condition says of an existing topic that differed from the spec."""
    notes: list[str] = []
    name, wanted, rf = state.name, plan.partitions, plan.replication
    if state.had_partitions > wanted:
        notes.append(
            f"{name} keeps its {state.had_partitions} partitions (asked for {wanted}; "
            "partitions never shrink)"
        )
    elif state.had_partitions < wanted:
        notes.append(f"{name} grew from {state.had_partitions} to {wanted} partitions")
    if state.replicas and state.replicas != {rf}:
        notes.append(
            f"{name} keeps replication {sorted(state.replicas)} "
            f"(changing it to {rf} needs a partition reassignment)"
        )
    if state.restored:
        notes.append(f"{name}: {', '.join(state.restored)} set back to the spec")
    return notes


async def _tls_refusal(bootstrap: str, context: ssl.SSLContext) -> str | None:
    """Why a TLS handshake with the first bootstrap server fails (aiokafka says only
    "Unable to bootstrap"); None when it does not, or the server cannot be reached."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=context, server_hostname=host), 10
        )
    except ssl.SSLCertVerificationError as exc:
        return (
            f"{exc.verify_message} (is spec.kafka.tls.caSecretRef the CA that signed the "
            "brokers' certificates, and do they name the bootstrap address?)"
        )
    except ssl.SSLError as exc:
        return str(exc)
    except (OSError, ValueError, TimeoutError):
        return None
    writer.close()
    return None


async def ensure_cassandra(
    spec: CassandraSpec, auth: Mapping[str, str] | None = None, *, ca: str | None = None
) -> CassandraOutcome:
    """Create the keyspace if missing and apply the workloads' schema migrations (over
    TLS with ``spec.tls``: ``ca`` is the PEM of its caSecretRef)."""
    with tempfile.TemporaryDirectory(prefix="tidings-cassandra-ca-") as private:
        cafile = None
        if spec.tls is not None and ca is not None:
            cafile = os.path.join(private, "ca.crt")  # the drivers read a file (0700 dir)
            await asyncio.to_thread(Path(cafile).write_text, ca, encoding="utf-8")
        return await _ensure_cassandra(spec, auth, cafile)


async def _ensure_cassandra(
    spec: CassandraSpec, auth: Mapping[str, str] | None, cafile: str | None
) -> CassandraOutcome:
    # The workloads' migrations are the one source of truth for the schema: the operator
    # runs them from the same image instead of keeping a copy.
    from tidings.settings import Settings, SettingsError
    from tidings.storage.cassandra.schema import wire_keyspace

    auth = auth or {}
    values: dict[str, Any] = {
        "cassandra_contact_points": list(spec.contact_points),
        "cassandra_port": spec.port,
        "cassandra_keyspace": spec.keyspace,
        "cassandra_username": auth.get("username") or None,
        "cassandra_password": auth.get("password") or None,
        "cassandra_local_dc": spec.local_datacenter,
        "cassandra_consistency": spec.consistency,
        "cassandra_replication": spec.replication(),
        "cassandra_request_timeout_s": 10.0,
        "cassandra_ssl": spec.tls is not None,
        "cassandra_ssl_cafile": cafile,
        "cassandra_ssl_verify_hostname": spec.tls is not None and spec.tls.verify_hostname,
        "server_id": names.FIELD_MANAGER,
    }
    settings = Settings(**values)
    where = f"Cassandra at {', '.join(spec.contact_points)}:{spec.port}"
    try:
        versions, change = await asyncio.wait_for(wire_keyspace(settings), CASSANDRA_TIMEOUT_S)
    except TimeoutError as exc:
        raise EngineUnavailable(
            "cassandra", f"{where}: migrating {spec.keyspace} took too long"
        ) from exc
    except (ValueError, SettingsError) as exc:  # SettingsError: a CA that cannot be loaded
        raise EngineRejected("cassandra", f"{where}: {exc}") from exc
    except Exception as exc:
        # tidings.storage.base.StorageError: `retriable` says whether waiting may help
        # (unreachable, timeouts, too few replicas) or not (an invalid option).
        if getattr(exc, "retriable", True):
            raise EngineUnavailable("cassandra", f"{where}: {exc}") from exc
        raise EngineRejected("cassandra", f"{where}: {exc}") from exc
    return CassandraOutcome(spec.keyspace.lower(), tuple(versions), change)
