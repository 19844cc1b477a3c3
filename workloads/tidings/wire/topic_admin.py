"""Creating the cluster's topics, or bringing them up to date, idempotently.

For each :class:`~tidings.wire.topics.TopicSpec`: a missing topic is created; an existing
one keeps its partitions when it has more (partitions never shrink: a user's partition is
their hash modulo the count) and grows when it has fewer; our config overrides are set,
keeping any other override an operator set by hand; its replication factor is never
changed (that needs a partition reassignment) but reported. Another process creating or
growing the same topics at the same time is fine.

Used by the chat servers' ``tidings migrate`` (``tidings.cluster.topics``) and by the
operator's wiring (``tidings_operator.wiring``), each with its own admin client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from tidings.wire.topics import TopicSpec

__all__ = ["TopicState", "ensure_topics"]

log = logging.getLogger(__name__)

# DescribeConfigs' config_source for an override set on the topic itself.
_DYNAMIC_TOPIC_CONFIG = 1


@dataclass(frozen=True, slots=True)
class TopicState:
    """What :func:`ensure_topics` found and did for one topic."""

    name: str
    created: bool  # by this call
    had_partitions: int  # before this call (the spec's count when it created the topic)
    partitions: int  # now: the spec's, or more when the topic had more
    replicas: frozenset[int]  # the replication factors of its partitions
    restored: tuple[str, ...] = ()  # our config overrides that differed and were set


async def ensure_topics(admin: Any, specs: Sequence[TopicSpec]) -> list[TopicState]:
    """Create or bring up to date every topic of ``specs`` (see the module docstring)
    with a started aiokafka admin client; returns once the brokers' metadata shows them.

    A topic another process created meanwhile and the metadata does not show yet is left
    out of the answer (it is waited for all the same)."""
    # Describing all topics never auto-creates one (a metadata request naming a missing
    # topic may, on brokers with auto.create.topics.enable).
    existing = await _describe_all(admin)
    missing = [spec for spec in specs if spec.name not in existing]
    created: set[str] = set()
    if missing:
        raced = await _create(admin, missing)
        created = {spec.name for spec in missing} - raced
        if raced:
            existing = await _describe_all(admin)
    states: list[TopicState] = []
    for spec in specs:
        if spec.name in created:
            replicas = frozenset({spec.replication})
            states.append(TopicState(spec.name, True, spec.partitions, spec.partitions, replicas))
            continue
        described = existing.get(spec.name)
        if described is None:
            continue
        partitions = described.get("partitions") or []
        have = len(partitions)
        now = await _grow_partitions(admin, spec, have)
        replicas = frozenset(len(p.get("replicas") or []) for p in partitions)
        restored = await _reconcile_configs(admin, spec)
        states.append(TopicState(spec.name, False, have, now, replicas, tuple(restored)))
    await _wait_visible(admin, specs)
    return states


async def _describe_all(admin: Any) -> dict[str, Any]:
    return {t["topic"]: t for t in await admin.describe_topics(None)}


async def _create(admin: Any, specs: Sequence[TopicSpec]) -> set[str]:
    """Create topics; returns those another process created first."""
    response = await admin.create_topics(
        [
            NewTopic(spec.name, spec.partitions, spec.replication, topic_configs=spec.configs)
            for spec in specs
        ]
    )
    by_name = {spec.name: spec for spec in specs}
    raced: set[str] = set()
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == 0:
            partitions = by_name[topic].partitions
            log.info("created topic %s", topic, extra={"topic": topic, "partitions": partitions})
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            raced.add(topic)
            continue
        raise error(f"could not create topic {topic}: {message}")
    return raced


async def _partition_count(admin: Any, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    if described["error_code"]:
        raise for_code(described["error_code"])(f"cannot describe topic {topic}")
    return len(described["partitions"])


async def _grow_partitions(admin: Any, spec: TopicSpec, have: int) -> int:
    """Grow the topic to the spec's partitions if it has fewer; returns its count."""
    if have >= spec.partitions:
        if have > spec.partitions:
            log.warning(
                "topic %s has more partitions than configured; keeping them "
                "(partitions never shrink)",
                spec.name,
                extra={"topic": spec.name, "partitions": have, "configured": spec.partitions},
            )
        return have
    log.warning(
        "raising the partition count of %s; keys hash to new partitions from now on",
        spec.name,
        extra={"topic": spec.name, "partitions": have, "configured": spec.partitions},
    )
    try:
        await admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
    except KafkaError:
        # Raced with another process raising it: fine if it got there.
        if await _partition_count(admin, spec.name) < spec.partitions:
            raise
    return spec.partitions


async def _reconcile_configs(admin: Any, spec: TopicSpec) -> list[str]:
    """Set our config overrides, keeping any other override an operator set by hand;
    returns the keys that differed.

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
    differ = sorted(key for key, value in spec.configs.items() if overrides.get(key) != value)
    if not differ:
        return []
    log.info("updating the configs of %s", spec.name, extra={"configs": spec.configs})
    (altered,) = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, {**overrides, **spec.configs})]
    )
    for code, message, *_ in altered.resources:
        if code:
            raise for_code(code)(f"cannot alter configs of {spec.name}: {message}")
    return differ


async def _wait_visible(admin: Any, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> None:
    """Return once the brokers' metadata lists every topic, without an error, with at
    least its partitions. (Creating a topic or partitions returns when the controller
    committed it; brokers learn of it a moment later.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        topics = await _describe_all(admin)
        lagging = [
            spec.name
            for spec in specs
            if spec.name not in topics
            or topics[spec.name]["error_code"]
            or len(topics[spec.name]["partitions"]) < spec.partitions
        ]
        if not lagging:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"topics not visible in the broker's metadata: {lagging}")
        await asyncio.sleep(0.2)
