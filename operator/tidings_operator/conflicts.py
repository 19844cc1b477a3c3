"""Two ChatClusters must not share topics or a keyspace (like Strimzi's ``ResourceConflict``).

Each ChatCluster claims its Kafka topics (the bootstrap servers and the topic prefix) and
its Cassandra keyspace (the contact points, the port and the keyspace). When two claim the
same, the one created first keeps it; every later one is refused before anything is wired
or applied, with a condition naming the owner, and is looked at again later (it may go
ahead once the owner is deleted). A ChatCluster that cannot be parsed claims nothing.

Claims compare the addresses as written, as a set (order and case do not matter): two
spellings of one cluster (a different subset of its brokers, a Service name and its IP) are
not recognised as the same. The defaults from namespace and name (spec.py) already keep
ChatClusters that set neither field apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tidings_operator.spec import ClusterSpec

__all__ = ["Claimant", "claims", "conflict"]


@dataclass(frozen=True, slots=True)
class Claimant:
    namespace: str
    name: str
    created: str  # metadata.creationTimestamp (RFC 3339, which sorts as text)
    spec: ClusterSpec

    @property
    def order(self) -> tuple[str, str, str]:
        return (self.created, self.namespace, self.name)


def _hosts(addresses: Iterable[str]) -> str:
    return ",".join(sorted({a.strip().lower() for a in addresses if a.strip()}))


def claims(spec: ClusterSpec) -> dict[str, str]:
    """What a spec claims: a key per resource, and how to say it."""
    kafka, cassandra = spec.kafka, spec.cassandra
    brokers = _hosts(kafka.bootstrap_servers.split(","))
    nodes = _hosts(f"{host}:{cassandra.port}" for host in cassandra.contact_points)
    keyspace = cassandra.keyspace.lower()  # unquoted CQL names are case-insensitive
    return {
        f"kafka|{brokers}|{kafka.topic_prefix}": (
            f"topics {kafka.topic_prefix}.* on Kafka {kafka.bootstrap_servers}"
        ),
        f"cassandra|{nodes}|{keyspace}": (
            f"keyspace {keyspace} on Cassandra {', '.join(cassandra.contact_points)}"
        ),
    }


def conflict(me: Claimant, others: Iterable[Claimant]) -> str | None:
    """Why ``me`` may not be wired (None if it may): something it claims is claimed by a
    ChatCluster created before it (ties: by namespace and name)."""
    mine = claims(me.spec)
    for other in sorted(others, key=lambda c: c.order):
        if (other.namespace, other.name) == (me.namespace, me.name):
            continue
        if other.order >= me.order:
            break
        shared = [what for key, what in claims(other.spec).items() if key in mine]
        if shared:
            return (
                f"{' and '.join(shared)} belong to ChatCluster {other.namespace}/{other.name} "
                "(created earlier): give this one its own kafka.topicPrefix and "
                "cassandra.keyspace, or delete the other"
            )
    return None
