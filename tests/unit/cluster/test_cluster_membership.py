"""The membership view's bookkeeping, driven without Kafka (records fed to _apply)."""

from __future__ import annotations

import ssl

import pytest
from pydantic import ValidationError

from tidings.cluster.membership import MemberRecord, MembershipView
from tidings.kafka_config import inbox_topic, kafka_client_options, members_topic, push_topic
from tidings.settings import Settings

NOW = 1_800_000_000.0


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"membership_ttl_s": 10.0, "kafka_inbox_partitions": 8}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def record(
    server_id: str, partitions: tuple[int, ...], *, age_s: float = 0.0, **kw: object
) -> bytes:
    return MemberRecord(
        server_id=server_id,
        url=f"ws://{server_id}/v1/ws",
        partitions=partitions,
        ts=int((NOW - age_s) * 1000),
        **kw,  # type: ignore[arg-type]
    ).encode()


def test_record_round_trips_through_json() -> None:
    original = MemberRecord("chat-3", "wss://x/v1/ws", (5, 1), 12, True, 1234, 64)
    decoded = MemberRecord.decode(original.encode())
    assert decoded == MemberRecord("chat-3", "wss://x/v1/ws", (1, 5), 12, True, 1234, 64)


def test_newest_record_per_server_wins_and_partitions_move_with_it() -> None:
    view = MembershipView(settings(), clock=Clock())
    view._apply(b"a", record("a", (0, 1)))
    view._apply(b"a", record("a", (1, 2), connections=5))
    assert view.owner_url(0) is None
    assert view.owner_url(2) == "ws://a/v1/ws"
    assert view.total_connections() == 5


def test_tombstones_and_stale_records_are_ignored() -> None:
    clock = Clock()
    view = MembershipView(settings(), clock=clock)
    view._apply(b"a", record("a", (0,)))
    view._apply(b"b", record("b", (1,), age_s=11))  # older than the TTL already
    view._apply(b"c", record("c", (2,)))
    view._apply(b"c", None)
    assert [m.server_id for m in view.members()] == ["a"]
    assert view.owner_url(1) is None and view.owner_url(2) is None
    clock.now += 10.5
    assert view.members() == [] and view.owner_url(0) is None


def test_a_dead_servers_users_are_sent_to_a_live_server_once_its_record_is_stale() -> None:
    """/v1/discover answers owner_url or else any_url: after the TTL a SIGKILLed server
    is named no more, and its users go to a live server (which says reconnect until the
    partition has its new owner)."""
    clock = Clock()
    view = MembershipView(settings(membership_ttl_s=3.0), clock=clock)
    view._apply(b"dead", record("dead", (0, 1)))
    view._apply(b"live", record("live", (2, 3), connections=50))
    assert view.owner_url(0) == "ws://dead/v1/ws"
    assert view.any_url() == "ws://dead/v1/ws"  # the least loaded, while it seems alive
    clock.now += 3.5
    view._apply(b"live", record("live", (2, 3), age_s=-3.5, connections=50))  # republished
    assert view.owner_url(0) is None
    assert view.any_url() == "ws://live/v1/ws"


def test_claims_on_one_partition_prefer_not_draining_then_newest() -> None:
    view = MembershipView(settings(), clock=Clock())
    view._apply(b"old", record("old", (0,), age_s=1, draining=True))
    view._apply(b"new", record("new", (0,), age_s=2))
    assert view.owner_url(0) == "ws://new/v1/ws"
    view._apply(b"newer", record("newer", (0,), age_s=0.5))
    assert view.owner_url(0) == "ws://newer/v1/ws"


def test_unreadable_records_are_skipped() -> None:
    view = MembershipView(settings(), clock=Clock())
    view._apply(b"x", b"not json")
    view._apply(None, record("y", (0,)))
    assert view.members() == []


def test_partition_count_comes_from_the_servers_or_the_settings() -> None:
    view = MembershipView(settings(), clock=Clock())
    assert view.partition_count() == 8
    view._apply(b"a", record("a", (0,), partition_count=16))
    assert view.partition_count() == 16


def test_topic_names() -> None:
    assert inbox_topic("t") == "t.inbox"
    assert members_topic("t") == "t.members"
    assert push_topic("t") == "t.push"


def test_client_options_follow_the_security_settings() -> None:
    plain = kafka_client_options(settings(kafka_bootstrap="k:9092", server_id="chat-1"))
    assert plain["bootstrap_servers"] == "k:9092"
    assert plain["client_id"] == "chat-1"
    assert plain["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in plain and "sasl_mechanism" not in plain

    scram = kafka_client_options(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert isinstance(scram["ssl_context"], ssl.SSLContext)
    assert scram["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (scram["sasl_plain_username"], scram["sasl_plain_password"]) == ("u", "p")

    sasl_plain = kafka_client_options(settings(kafka_security_protocol="SASL_PLAINTEXT"))
    assert sasl_plain["sasl_mechanism"] == "PLAIN" and "ssl_context" not in sasl_plain


def test_discovery_forgets_a_dead_server_before_kafka_moves_its_partitions() -> None:
    """The defaults: a record goes stale within the consumer group's session timeout
    (discovery then names a live server, which says reconnect until the partition has
    its new owner), and a live server publishes several times per TTL."""
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.membership_ttl_s <= defaults.kafka_session_timeout_s
    assert defaults.membership_ttl_s >= 3 * defaults.membership_interval_s
    assert defaults.kafka_session_timeout_s == 6.0  # any stock broker accepts it


def test_a_heartbeat_too_slow_for_the_session_is_refused() -> None:
    assert settings(kafka_session_timeout_s=3, kafka_heartbeat_interval_s=1)
    with pytest.raises(ValidationError, match="kafka_heartbeat_interval_s"):
        settings(kafka_session_timeout_s=3, kafka_heartbeat_interval_s=1.5)
