"""The topics both sides create: the chat servers from their settings (``tidings migrate``)
and the operator from a ChatCluster's spec, through the one layout in tidings.wire."""

from __future__ import annotations

from tidings.cluster.topics import topic_specs
from tidings.settings import Settings
from tidings.wire.topics import MAX_RECORD_BYTES, MEMBERS_CONFIG
from tidings_operator.spec import KafkaSpec
from tidings_operator.wiring import topic_plan


def test_the_three_topics_and_their_layout() -> None:
    settings = Settings(  # type: ignore[call-arg]
        kafka_topic_prefix="eu-1.chat", kafka_inbox_partitions=24, kafka_replication_factor=3
    )
    specs = {s.name: s for s in topic_specs(settings)}
    assert list(specs) == ["eu-1.chat.inbox", "eu-1.chat.members", "eu-1.chat.push"]
    inbox, members, push = specs.values()
    assert (inbox.partitions, members.partitions, push.partitions) == (24, 1, 24)
    assert {s.replication for s in specs.values()} == {3}
    assert members.configs == MEMBERS_CONFIG
    assert members.configs["cleanup.policy"] == "compact"
    big = {"max.message.bytes": str(MAX_RECORD_BYTES)}
    assert inbox.configs == push.configs == big  # the brokers' retention: none set


def test_the_operator_creates_the_same_topics_with_the_spec_s_retention() -> None:
    spec = KafkaSpec(
        bootstrap_servers="k:9092",
        topic_prefix="pin",
        inbox_partitions=24,
        replication_factor=2,
        retention_hours=48,
    )
    settings = Settings(  # type: ignore[call-arg]
        kafka_topic_prefix="pin", kafka_inbox_partitions=24, kafka_replication_factor=2
    )
    ours = topic_plan(spec)
    theirs = topic_specs(settings)
    assert [(p.name, p.partitions, p.replication) for p in ours] == [
        (s.name, s.partitions, s.replication) for s in theirs
    ]
    retention = str(48 * 3600 * 1000)
    for plan, spec_theirs in zip(ours, theirs, strict=True):
        extra = {k: v for k, v in plan.configs.items() if k not in spec_theirs.configs}
        assert spec_theirs.configs.items() <= plan.configs.items()
        assert extra == ({} if plan.name == "pin.members" else {"retention.ms": retention})
