"""Running as a cluster: Kafka topics, chat-server membership records, partition ownership."""

from tidings.cluster.membership import MemberRecord, MembershipPublisher, MembershipView
from tidings.cluster.ownership import PartitionOwnership
from tidings.cluster.topics import ensure_topics

__all__ = [
    "MemberRecord",
    "MembershipPublisher",
    "MembershipView",
    "PartitionOwnership",
    "ensure_topics",
]
