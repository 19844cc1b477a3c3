"""The cluster's Kafka topics, created or brought up to date idempotently.

- ``<prefix>.inbox``: P partitions (``kafka_inbox_partitions``), keyed by user id.
- ``<prefix>.members``: one partition, compacted, keyed by chat-server id.
- ``<prefix>.push``: P partitions, keyed by user id.

Partition counts only ever grow: a topic with more partitions than asked keeps them
(with a warning). Growing the inbox moves users to other partitions (their hash is taken
modulo P), which is why P is chosen once, at cluster creation.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from tidings.bus.kafka import MAX_RECORD_BYTES
from tidings.kafka_config import inbox_topic, kafka_client_options, members_topic, push_topic
from tidings.settings import Settings

__all__ = ["TopicSpec", "ensure_topics", "topic_specs"]

log = logging.getLogger(__name__)

# DescribeConfigs' config_source for an override set on the topic itself.
_DYNAMIC_TOPIC_CONFIG = 1

MEMBERS_CONFIG = {
    "cleanup.policy": "compact",
    # Roll segments often so the log cleaner can compact them (it never touches the
    # active segment); keep tombstones an hour.
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(60 * 60 * 1000),
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    prefix = settings.kafka_topic_prefix
    rf = settings.kafka_replication_factor
    p = settings.kafka_inbox_partitions
    big = {"max.message.bytes": str(MAX_RECORD_BYTES)}
    return [
        TopicSpec(inbox_topic(prefix), p, rf, dict(big)),
        TopicSpec(members_topic(prefix), 1, rf, dict(MEMBERS_CONFIG)),
        TopicSpec(push_topic(prefix), p, rf, dict(big)),
    ]


async def ensure_topics(settings: Settings) -> None:
    """Create the three topics, or raise their partition counts and fix their configs."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        specs = topic_specs(settings)
        # list_topics asks for all topics, which never auto-creates one (a metadata
        # request naming a missing topic may, on brokers with auto.create.topics.enable).
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            await _create(admin, missing)
        for spec in specs:
            if spec.name in existing:
                await _reconcile_partitions(admin, spec)
                await _reconcile_configs(admin, spec)
        await _wait_visible(admin, specs)
    finally:
        await admin.close()


async def _create(admin: Any, specs: list[TopicSpec]) -> None:
    response = await admin.create_topics(
        [
            NewTopic(spec.name, spec.partitions, spec.replication, topic_configs=spec.configs)
            for spec in specs
        ]
    )
    by_name = {spec.name: spec for spec in specs}
    for topic, code, message in _topic_errors(response):
        if code == 0:
            log.info(
                "created topic", extra={"topic": topic, "partitions": by_name[topic].partitions}
            )
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:  # another process won the race
            await _reconcile_partitions(admin, by_name[topic])
            await _reconcile_configs(admin, by_name[topic])
            continue
        raise error(f"could not create topic {topic}: {message}")


async def _wait_visible(admin: Any, specs: list[TopicSpec], timeout_s: float = 30.0) -> None:
    """Return once the broker's metadata lists every topic with at least its partitions.

    (Creating a topic or partitions returns when the controller committed it; brokers
    learn of it a moment later.)
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        topics = {t["topic"]: t for t in await admin.describe_topics(None)}
        lagging = [
            spec.name
            for spec in specs
            if spec.name not in topics or len(topics[spec.name]["partitions"]) < spec.partitions
        ]
        if not lagging:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"topics not visible in the broker's metadata: {lagging}")
        await asyncio.sleep(0.2)


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out: list[tuple[str, int, str | None]] = []
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        out.append((topic, code, entry[2] if len(entry) > 2 else None))
    return out


async def _partition_count(admin: Any, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    if described["error_code"]:
        raise for_code(described["error_code"])(f"cannot describe topic {topic}")
    return len(described["partitions"])


async def _reconcile_partitions(admin: Any, spec: TopicSpec) -> None:
    have = await _partition_count(admin, spec.name)
    if have == spec.partitions:
        return
    if have > spec.partitions:
        log.warning(
            "topic has more partitions than configured; keeping them (partitions never shrink)",
            extra={"topic": spec.name, "partitions": have, "configured": spec.partitions},
        )
        return
    log.warning(
        "raising the topic's partition count; keys hash to new partitions from now on",
        extra={"topic": spec.name, "partitions": have, "configured": spec.partitions},
    )
    try:
        await admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
    except KafkaError:
        # Raced with another process raising it: fine if it got there.
        if await _partition_count(admin, spec.name) < spec.partitions:
            raise


async def _reconcile_configs(admin: Any, spec: TopicSpec) -> None:
    """Set our config overrides, keeping any other override an operator set by hand.

    (AlterConfigs replaces a topic's overrides as a whole; aiokafka has no
    IncrementalAlterConfigs, so merge first.)
    """
    resource = ConfigResource(ConfigResourceType.TOPIC, spec.name, None)
    (response,) = await admin.describe_configs([resource])
    (described,) = response.resources
    if described[0]:
        raise for_code(described[0])(f"cannot describe configs of {spec.name}: {described[1]}")
    overrides: dict[str, str] = {}
    for entry in described[4]:
        name, value, source = entry[0], entry[1], entry[3]
        if source == _DYNAMIC_TOPIC_CONFIG and value is not None:
            overrides[name] = value
    if all(overrides.get(key) == value for key, value in spec.configs.items()):
        return
    merged = {**overrides, **spec.configs}
    log.info("updating topic configs", extra={"topic": spec.name, "configs": spec.configs})
    (altered,) = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, merged)]
    )
    for code, message, *_ in altered.resources:
        if code:
            raise for_code(code)(f"cannot alter configs of {spec.name}: {message}")
