"""Two ChatClusters must not share topics or a keyspace (like Strimzi's ``ResourceConflict``).

Each ChatCluster claims its Kafka topics (the bootstrap servers and the topic prefix), its
Cassandra keyspace (the contact points, the port and the keyspace) and its PostgreSQL
database (host, port and database of the URL in its Secret: two clusters on one directory
would share accounts, and the Snowflake worker ids of their api and chat pods). When two claim the
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
from urllib.parse import urlsplit

from tidings_operator.spec import ClusterSpec

__all__ = ["Claimant", "claims", "conflict", "postgres_database"]


@dataclass(frozen=True, slots=True)
class Claimant:
    namespace: str
    name: str
    created: str  # metadata.creationTimestamp (RFC 3339, which sorts as text)
    spec: ClusterSpec
    postgres_url: str | None = None  # from postgres.urlSecretRef, when it could be read

    @property
    def order(self) -> tuple[str, str, str]:
        return (self.created, self.namespace, self.name)


def _hosts(addresses: Iterable[str]) -> str:
    return ",".join(sorted({a.strip().lower() for a in addresses if a.strip()}))


def postgres_database(url: str) -> tuple[str, str] | None:
    """``(host:port, database)`` of a PostgreSQL URL (SQLAlchemy's form, or libpq's
    ``postgresql://``); None when it names none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    database = parts.path.lstrip("/")
    if not parts.scheme.startswith("postgres") or not database:
        return None
    try:
        port = parts.port or 5432
    except ValueError:
        return None
    return f"{(parts.hostname or 'localhost').lower()}:{port}", database


def claims(spec: ClusterSpec, postgres_url: str | None = None) -> dict[str, str]:
    """What a spec claims: a key per resource, and how to say it."""
    kafka, cassandra = spec.kafka, spec.cassandra
    brokers = _hosts(kafka.bootstrap_servers.split(","))
    nodes = _hosts(f"{host}:{cassandra.port}" for host in cassandra.contact_points)
    keyspace = cassandra.keyspace.lower()  # unquoted CQL names are case-insensitive
    found = {
        f"kafka|{brokers}|{kafka.topic_prefix}": (
            f"topics {kafka.topic_prefix}.* on Kafka {kafka.bootstrap_servers}"
        ),
        f"cassandra|{nodes}|{keyspace}": (
            f"keyspace {keyspace} on Cassandra {', '.join(cassandra.contact_points)}"
        ),
    }
    database = postgres_database(postgres_url) if postgres_url else None
    if database is not None:
        where, name = database
        found[f"postgres|{where}|{name}"] = f"PostgreSQL database {name} on {where}"
    return found


def conflict(me: Claimant, others: Iterable[Claimant]) -> str | None:
    """Why ``me`` may not be wired (None if it may): something it claims is claimed by a
    ChatCluster created before it (ties: by namespace and name)."""
    mine = claims(me.spec, me.postgres_url)
    for other in sorted(others, key=lambda c: c.order):
        if (other.namespace, other.name) == (me.namespace, me.name):
            continue
        if other.order >= me.order:
            break
        shared = [
            what for key, what in claims(other.spec, other.postgres_url).items() if key in mine
        ]
        if shared:
            return (
                f"{' and '.join(shared)} belong to ChatCluster {other.namespace}/{other.name} "
                "(created earlier): give this one its own kafka.topicPrefix, "
                "cassandra.keyspace and PostgreSQL database, or delete the other"
            )
    return None
