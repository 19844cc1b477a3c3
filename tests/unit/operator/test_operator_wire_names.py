"""The names and formats the operator shares with the workloads, pinned equal.

The operator and the workloads never import each other at run time; these copies are on
purpose, and this test (which may import both) keeps them equal.
"""

from __future__ import annotations

from tidings.cluster import topics
from tidings.cluster.membership import MemberRecord
from tidings.kafka_config import inbox_topic, members_topic, push_topic
from tidings.settings import Settings
from tidings_operator import members, names, wiring
from tidings_operator.spec import KafkaSpec


def test_topic_names() -> None:
    for prefix in ("tidings", "eu-1.chat"):
        assert names.inbox_topic(prefix) == inbox_topic(prefix)
        assert names.members_topic(prefix) == members_topic(prefix)
        assert names.push_topic(prefix) == push_topic(prefix)


def test_topic_layout_matches_the_workloads_own() -> None:
    spec = KafkaSpec(
        bootstrap_servers="k:9092", topic_prefix="pin", inbox_partitions=24, replication_factor=2
    )
    settings = Settings(  # type: ignore[call-arg]
        kafka_topic_prefix="pin", kafka_inbox_partitions=24, kafka_replication_factor=2
    )
    ours = {p.name: p for p in wiring.topic_plan(spec)}
    theirs = {s.name: s for s in topics.topic_specs(settings)}
    assert ours.keys() == theirs.keys()
    for name, spec_theirs in theirs.items():
        plan = ours[name]
        assert (plan.partitions, plan.replication) == (
            spec_theirs.partitions,
            spec_theirs.replication,
        )
        # ours may add (retention), never contradict
        assert spec_theirs.configs.items() <= plan.configs.items(), name
    assert wiring.MEMBERS_CONFIG == topics.MEMBERS_CONFIG
    assert str(wiring.MAX_RECORD_BYTES) == ours["pin.inbox"].configs["max.message.bytes"]


def test_membership_records_decode() -> None:
    record = MemberRecord(
        server_id="demo-chat-3",
        url="ws://demo-chat-3.demo-chat.ns.svc:8080/v1/ws",
        partitions=(1, 5),
        connections=70_000,
        draining=True,
        ts=1_800_000_000_000,
        partition_count=64,
    )
    decoded = members.decode_member(record.encode())
    assert decoded == members.Member("demo-chat-3", 70_000, True, 1_800_000_000_000)
    assert members.decode_member(b"not json") is None


def test_membership_ttl_is_the_workloads_default() -> None:
    assert Settings.model_fields["membership_ttl_s"].default == members.MEMBER_TTL_S


def test_reader_keeps_the_newest_record_and_forgets_tombstones_and_stale_ones() -> None:
    now = [1_800_000_000.0]
    reader = members.MembershipReader({}, "pin.members", ttl_s=10.0, clock=lambda: now[0])

    def record(sid: str, connections: int, ts_s: float) -> bytes:
        return MemberRecord(sid, "ws://x", connections=connections, ts=int(ts_s * 1000)).encode()

    reader.apply(b"a", record("a", 1, now[0] - 1))
    reader.apply(b"a", record("a", 5, now[0]))
    reader.apply(b"b", record("b", 7, now[0] - 11))  # stale
    reader.apply(b"c", record("c", 9, now[0]))
    reader.apply(b"c", None)  # clean exit
    reader.apply(None, b"ignored")
    reader.apply(b"d", b"garbage")
    assert {sid: m.connections for sid, m in reader.members().items()} == {"a": 5}
