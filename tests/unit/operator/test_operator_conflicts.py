"""Identity defaults from namespace and name, and two ChatClusters claiming the same."""

from __future__ import annotations

from typing import Any

from tidings_operator.conflicts import Claimant, conflict
from tidings_operator.spec import default_keyspace, default_topic_prefix, parse_spec


def spec(ns: str, name: str, **kafka_cassandra: Any) -> Any:
    raw: dict[str, Any] = {
        "image": "tidings:1",
        "kafka": {"bootstrapServers": "kafka-0:9092,kafka-1:9092"},
        "cassandra": {"contactPoints": ["cass-0"]},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
    }
    for part, fields in kafka_cassandra.items():
        raw[part] = {**raw[part], **fields}
    return parse_spec(raw, cluster=(ns, name))


def claimant(ns: str, name: str, created: str, **fields: Any) -> Claimant:
    return Claimant(ns, name, created, spec(ns, name, **fields))


def test_unset_identities_come_from_namespace_and_name() -> None:
    parsed = spec("chat-prod", "eu-1")
    assert parsed.kafka.topic_prefix == "chat-prod.eu-1"
    assert parsed.cassandra.keyspace == "chat_prod_eu_1"
    assert default_keyspace("9lives", "a") == "t_9lives_a"  # a keyspace starts with a letter
    long = default_keyspace("n" * 63, "c" * 40)
    assert len(long) == 48 and long != default_keyspace("n" * 63, "c" * 39 + "d")
    assert default_topic_prefix("a", "b") == "a.b"
    assert parse_spec(spec_raw := {  # without the cluster: the old defaults
        "image": "x", "kafka": {"bootstrapServers": "k:1"}, "cassandra": {"contactPoints": ["c"]},
        "postgres": {"urlSecretRef": {"name": "p", "key": "u"}},
        "jwtSecretRef": {"name": "j", "key": "s"}}).kafka.topic_prefix == "tidings"  # fmt: skip
    assert spec_raw["kafka"] == {"bootstrapServers": "k:1"}


def test_two_clusters_with_their_defaults_do_not_conflict() -> None:
    first = claimant("team-a", "chat", "2026-12-01T00:00:00Z")
    second = claimant("team-b", "chat", "2026-12-02T00:00:00Z")
    assert conflict(second, [first, second]) is None


def test_the_later_of_two_sharing_topics_is_refused_and_the_first_keeps_them() -> None:
    shared = {"kafka": {"topicPrefix": "tidings"}}
    first = claimant("team-a", "chat", "2026-12-01T00:00:00Z", **shared)
    # Same brokers written in another order and case: the same Kafka.
    later = claimant(
        "team-b",
        "chat",
        "2026-12-02T00:00:00Z",
        kafka={"topicPrefix": "tidings", "bootstrapServers": "KAFKA-1:9092, kafka-0:9092"},
    )
    assert conflict(first, [first, later]) is None
    why = conflict(later, [first, later])
    assert why == (
        "topics tidings.* on Kafka kafka-0:9092,kafka-1:9092 belong to ChatCluster "
        "team-a/chat (created earlier): give this one its own kafka.topicPrefix, "
        "cassandra.keyspace and PostgreSQL database, or delete the other"
    )
    # Another Kafka with the same prefix is no conflict.
    elsewhere = claimant(
        "team-c", "chat", "2026-12-03T00:00:00Z",
        kafka={"topicPrefix": "tidings", "bootstrapServers": "other:9092"},
    )  # fmt: skip
    assert conflict(elsewhere, [first, later, elsewhere]) is None


def test_a_shared_keyspace_is_a_conflict_and_ties_go_by_namespace_and_name() -> None:
    same = {"cassandra": {"keyspace": "Chat"}}
    a = claimant("a", "x", "2026-12-01T00:00:00Z", cassandra={"keyspace": "chat"})
    b = claimant("b", "x", "2026-12-01T00:00:00Z", **same)
    why = conflict(b, [b, a])
    assert why is not None and why.startswith("keyspace chat on Cassandra cass-0 belong")
    assert conflict(a, [b, a]) is None


def test_a_shared_postgresql_database_is_a_conflict_another_database_is_not() -> None:
    from tidings_operator.conflicts import postgres_database

    assert postgres_database("postgresql+asyncpg://u:p@PG.example:6432/chat") == (
        "pg.example:6432",
        "chat",
    )
    assert postgres_database("postgresql://u@pg/tidings") == ("pg:5432", "tidings")
    assert postgres_database("postgresql://u@pg") is None
    assert postgres_database("sqlite:///x.db") is None

    def on(db: str, ns: str, created: str) -> Claimant:
        url = f"postgresql+asyncpg://u:p@pg:5432/{db}"
        return Claimant(ns, "chat", created, spec(ns, "chat"), url)

    first, same, other = (
        on("tidings", "a", "2026-12-01T00:00:00Z"),
        on("tidings", "b", "2026-12-02T00:00:00Z"),
        on("tidings_b", "c", "2026-12-03T00:00:00Z"),
    )
    why = conflict(same, [first, same, other])
    assert why is not None
    assert why.startswith("PostgreSQL database tidings on pg:5432 belong to ChatCluster a/chat")
    assert conflict(other, [first, same, other]) is None
