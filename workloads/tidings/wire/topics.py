"""The cluster's Kafka topics: their names, partitions and config overrides.

- ``<prefix>.inbox``: P partitions, keyed by the recipient's user id;
- ``<prefix>.members``: one partition, compacted, keyed by chat-server id;
- ``<prefix>.push``: P partitions, keyed by user id.

The chat servers (``tidings migrate``) and the operator create them from
:func:`topic_specs`; the operator adds a retention (``spec.kafka.retentionHours``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_RECORD_BYTES",
    "MEMBERS_CONFIG",
    "TopicSpec",
    "inbox_topic",
    "members_topic",
    "push_topic",
    "topic_specs",
]

# A 100,000-character body is up to ~1.2 MB of JSON once non-ASCII characters are escaped;
# the inbox and push topics' max.message.bytes is this bound.
MAX_RECORD_BYTES = 8 << 20

MEMBERS_CONFIG = {
    "cleanup.policy": "compact",
    # Roll segments often so the log cleaner can compact them (it never touches the
    # active segment); keep tombstones an hour.
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(60 * 60 * 1000),
}


def inbox_topic(prefix: str) -> str:
    """Inbox events, keyed by the recipient's user id; P partitions."""
    return f"{prefix}.inbox"


def members_topic(prefix: str) -> str:
    """Chat-server membership records, keyed by server id; compacted, one partition."""
    return f"{prefix}.members"


def push_topic(prefix: str) -> str:
    """Push requests for offline devices, keyed by user id."""
    return f"{prefix}.push"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as it should be: its name, partitions, replicas and config overrides."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


def topic_specs(
    prefix: str, *, partitions: int, replication: int, retention_ms: int | None = None
) -> list[TopicSpec]:
    """The three topics of a cluster whose inbox has ``partitions`` partitions; with
    ``retention_ms``, the inbox and push topics keep records that long (else the
    broker's default)."""
    retained = {"max.message.bytes": str(MAX_RECORD_BYTES)}
    if retention_ms is not None:
        retained["retention.ms"] = str(retention_ms)
    return [
        TopicSpec(inbox_topic(prefix), partitions, replication, dict(retained)),
        TopicSpec(members_topic(prefix), 1, replication, dict(MEMBERS_CONFIG)),
        TopicSpec(push_topic(prefix), partitions, replication, dict(retained)),
    ]
