"""Versioned, idempotent schema migrations for the Cassandra MessageStore.

:data:`MIGRATIONS` is an ordered list of ``(version, description, statements)``. Running
:func:`migrate` creates the keyspace if it is missing, a ``schema_migrations`` table, and
applies every version not recorded there, in order, recording each one after all its
statements succeeded. Every statement is ``IF NOT EXISTS``, so a run cut short (a crash
between a statement and its record) is safely repeated by the next run. Versions are
append-only: never edit one that has shipped, add a new one.

Run one migrator at a time (``tidings migrate`` as a Job, or the operator): Cassandra 5.0
has no transactional schema changes, and two clients creating the same table at the same
moment can leave the nodes disagreeing about it.

The table layout (``bucket`` is a 30-day time bucket of the Snowflake id, see
:func:`tidings.storage.cassandra.store.bucket_of`):

- ``messages ((channel_id, bucket), message_id DESC)``: the messages, plus ``terms``, the
  normalized words of the body, indexed by SAI for search;
- ``channel_buckets (channel_id, bucket DESC)``: which buckets of a channel hold messages,
  so history walks back without probing empty months;
- ``sent_messages ((sender_id, client_msg_id))``: the dedupe record (a plain write: the
  sender's chat server is its only writer, see docs/architecture.md);
- ``inbox ((user_id, part), seq)`` with the static ``head`` (version 4) and
  ``inbox_ids ((user_id, part), message_id)`` (version 5; same partition key, so an
  append is one batch), ``inbox_heads (user_id)`` (from which part to look for the
  head), ``inbox_by_message ((user_id, bucket), message_id)`` (the index before version
  5, still read): per-user inboxes with gapless sequence numbers;
- ``watermarks ((channel_id, user_id))``: receipt watermarks;
- ``presence (user_id)``: status and last seen.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cassandra.cluster import Session

from tidings.settings import Settings
from tidings.storage.base import StorageUnavailable
from tidings.storage.cassandra.io import Cql, check_identifier, connect

log = logging.getLogger(__name__)

# DDL waits for schema agreement across the cluster; give it more than a data request.
DDL_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its statements run in order, then the version is recorded."""

    version: int
    description: str
    statements: tuple[str, ...]  # CQL with ``{ks}`` for the keyspace (``{{``/``}}`` for braces)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "messages, dedupe records, inboxes, receipt watermarks, presence",
        (
            """CREATE TABLE IF NOT EXISTS {ks}.messages (
                channel_id text,
                bucket int,
                message_id bigint,
                sender_id bigint,
                sender_device_id bigint,
                client_msg_id text,
                body text,
                ts bigint,
                terms set<text>,
                PRIMARY KEY ((channel_id, bucket), message_id)
            ) WITH CLUSTERING ORDER BY (message_id DESC)""",
            """CREATE TABLE IF NOT EXISTS {ks}.channel_buckets (
                channel_id text,
                bucket int,
                PRIMARY KEY (channel_id, bucket)
            ) WITH CLUSTERING ORDER BY (bucket DESC)""",
            """CREATE TABLE IF NOT EXISTS {ks}.sent_messages (
                sender_id bigint,
                client_msg_id text,
                message_id bigint,
                channel_id text,
                sender_device_id bigint,
                ts bigint,
                PRIMARY KEY ((sender_id, client_msg_id))
            )""",
            """CREATE TABLE IF NOT EXISTS {ks}.inbox (
                user_id bigint,
                part bigint,
                seq bigint,
                message_id bigint,
                channel_id text,
                PRIMARY KEY ((user_id, part), seq)
            ) WITH CLUSTERING ORDER BY (seq ASC)""",
            """CREATE TABLE IF NOT EXISTS {ks}.inbox_by_message (
                user_id bigint,
                bucket int,
                message_id bigint,
                seq bigint,
                PRIMARY KEY ((user_id, bucket), message_id)
            )""",
            """CREATE TABLE IF NOT EXISTS {ks}.inbox_heads (
                user_id bigint PRIMARY KEY,
                seq bigint
            )""",
            """CREATE TABLE IF NOT EXISTS {ks}.watermarks (
                channel_id text,
                user_id bigint,
                delivered_upto bigint,
                read_upto bigint,
                PRIMARY KEY ((channel_id, user_id))
            )""",
            """CREATE TABLE IF NOT EXISTS {ks}.presence (
                user_id bigint PRIMARY KEY,
                status text,
                last_seen bigint
            )""",
        ),
    ),
    Migration(
        2,
        "search: storage-attached index on the words of message bodies",
        (
            "CREATE INDEX IF NOT EXISTS messages_terms_idx ON {ks}.messages (values(terms)) "
            "USING 'sai'",
        ),
    ),
    Migration(
        3,
        "presence_online: who is online per inbox partition (rows are leases with a TTL)",
        (
            """CREATE TABLE IF NOT EXISTS {ks}.presence_online (
                partition int,
                user_id bigint,
                last_seen bigint,
                PRIMARY KEY (partition, user_id)
            )""",
        ),
    ),
    Migration(
        4,
        "inbox.head: the head as a static column, written in the entries' own batch",
        ("ALTER TABLE {ks}.inbox ADD IF NOT EXISTS head bigint static",),
    ),
    Migration(
        5,
        "inbox_ids: an inbox part's id -> seq index under the part's own partition key",
        (
            """CREATE TABLE IF NOT EXISTS {ks}.inbox_ids (
                user_id bigint,
                part bigint,
                message_id bigint,
                seq bigint,
                PRIMARY KEY ((user_id, part), message_id)
            )""",
        ),
    ),
    Migration(
        6,
        "messages.attachments: the media sent with a message (JSON; docs/media.md)",
        ("ALTER TABLE {ks}.messages ADD IF NOT EXISTS attachments text",),
    ),
    Migration(
        7,
        "messages: replies, channel events, edits, deletes and reactions (issue #20)",
        (
            "ALTER TABLE {ks}.messages ADD IF NOT EXISTS reply_to bigint",
            "ALTER TABLE {ks}.messages ADD IF NOT EXISTS event text",
            "ALTER TABLE {ks}.messages ADD IF NOT EXISTS edited_at bigint",
            "ALTER TABLE {ks}.messages ADD IF NOT EXISTS deleted boolean",
            # One element per reacting user: each is written alone, so reactions from
            # several chat servers never overwrite each other.
            "ALTER TABLE {ks}.messages ADD IF NOT EXISTS reactions map<bigint, text>",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
# The SAI indexes the store queries; migrate() waits until they are queryable.
SAI_INDEXES = ("messages_terms_idx",)


def _check_migrations(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or not all(v > 0 for v in versions):
        raise ValueError(f"migration versions must be positive and increasing: {versions}")


_check_migrations(MIGRATIONS)


async def applied_versions(session: Session, keyspace: str) -> list[int]:
    """The versions recorded in ``keyspace.schema_migrations`` (empty when there is none)."""
    cql = Cql(session)
    ks = check_identifier(keyspace)
    tables = await cql.rows(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s "
        "AND table_name = 'schema_migrations'",
        (ks,),
        what="read schema",
    )
    if not tables:
        return []
    rows = await cql.rows(f"SELECT version FROM {ks}.schema_migrations", what="read migrations")
    return sorted(int(r["version"]) for r in rows)


async def migrate(
    session: Session,
    keyspace: str,
    replication: str,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    index_timeout_s: float = 300.0,
) -> list[int]:
    """Bring ``keyspace`` to the latest schema; returns every version now applied.

    ``replication`` is a CQL map literal, used only when the keyspace does not exist yet
    (an existing keyspace keeps its replication: changing it needs a repair, which is an
    operator's decision). Safe to run again at any time; a second run applies nothing.
    """
    _check_migrations(migrations)
    ks = check_identifier(keyspace)
    replication = replication.strip()
    if not (replication.startswith("{") and replication.endswith("}")):
        raise ValueError(f"replication must be a CQL map literal, got {replication!r}")
    cql = Cql(session)

    async def ddl(statement: str) -> None:
        what = f"schema change `{' '.join(statement.split()[:6])} ...`"
        await cql.run(statement, request_timeout_s=DDL_TIMEOUT_S, what=what)

    await ddl(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}")
    await ddl(
        f"CREATE TABLE IF NOT EXISTS {ks}.schema_migrations ("
        " version int PRIMARY KEY, description text, applied_at timestamp)"
    )
    done = set(await applied_versions(session, ks))
    for migration in migrations:
        if migration.version in done:
            continue
        log.info(
            "applying schema migration %d to %s: %s", migration.version, ks, migration.description
        )
        for statement in migration.statements:
            await ddl(statement.format(ks=ks))
        await cql.run(
            f"INSERT INTO {ks}.schema_migrations (version, description, applied_at) "
            "VALUES (%s, %s, %s)",
            (migration.version, migration.description, datetime.now(UTC)),
            what="record migration",
        )
        done.add(migration.version)
    await wait_for_indexes(session, ks, SAI_INDEXES, timeout_s=index_timeout_s)
    return sorted(done)


async def wait_for_indexes(
    session: Session, keyspace: str, names: Sequence[str], *, timeout_s: float
) -> None:
    """Wait until SAI indexes are built and queryable (they build in the background)."""
    cql = Cql(session)
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending:
        for name in sorted(pending):
            rows = await cql.rows(
                "SELECT is_queryable, is_building FROM system_views.sai_column_indexes "
                "WHERE keyspace_name = %s AND index_name = %s",
                (keyspace, name),
                what="index status",
            )
            if rows and rows[0]["is_queryable"] and not rows[0]["is_building"]:
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise StorageUnavailable(
                f"SAI indexes {sorted(pending)} in {keyspace} not queryable after {timeout_s}s"
            )
        await asyncio.sleep(0.5)


async def migrate_keyspace(settings: Settings) -> list[int]:
    """Connect with the ``cassandra_*`` settings and migrate ``cassandra_keyspace``."""
    cluster, session = await connect(settings)
    try:
        return await migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    finally:
        await asyncio.to_thread(cluster.shutdown)


@dataclass(frozen=True, slots=True)
class ReplicationChange:
    """A keyspace's replication before and after :func:`set_replication` changed it."""

    keyspace: str
    before: dict[str, str]
    after: dict[str, str]
    refused: str | None = None  # why it was not changed (more replicas than nodes)

    @property
    def repair(self) -> str:
        """What the change needs from whoever runs Cassandra."""
        ks = self.keyspace
        more = _total_replicas(self.after) > _total_replicas(self.before)
        fewer = _total_replicas(self.after) < _total_replicas(self.before)
        if fewer and self.after.get("class") == self.before.get("class"):
            return f"run `nodetool cleanup {ks}` on every node to free the dropped replicas' space"
        why = "the new replicas hold no data until repaired" if more else "replicas moved"
        return (
            f"run `nodetool repair -full {ks}` on every node, one at a time ({why}; reads "
            f"above consistency ONE may miss rows until then), then `nodetool cleanup {ks}`"
        )


def replication_map(literal: str) -> dict[str, str]:
    """A CQL replication map literal (``{'class': 'SimpleStrategy', ...}``) as Cassandra
    reports it in ``system_schema.keyspaces``: strings, the class by its short name."""
    try:
        parsed = ast.literal_eval(literal.strip())
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"replication must be a CQL map literal, got {literal!r}") from exc
    if not isinstance(parsed, dict):
        raise ValueError(f"replication must be a CQL map literal, got {literal!r}")
    return _normal(parsed)


def _normal(replication: dict[object, object]) -> dict[str, str]:
    out = {str(k): str(v) for k, v in replication.items()}
    if "class" in out:
        out["class"] = out["class"].rsplit(".", 1)[-1]
    return out


def _total_replicas(replication: dict[str, str]) -> int:
    return sum(int(v) for k, v in replication.items() if k != "class" and v.isdigit())


async def set_replication(
    session: Session, keyspace: str, replication: str
) -> ReplicationChange | None:
    """Make ``keyspace``'s replication the one ``replication`` (a CQL map literal) says;
    None when it already is. The data is not moved: see :attr:`ReplicationChange.repair`."""
    ks = check_identifier(keyspace)
    wanted = replication_map(replication)
    cql = Cql(session)
    rows = await cql.rows(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
        (ks,),
        what="read keyspace replication",
    )
    if not rows:
        raise ValueError(f"keyspace {ks} does not exist")
    current = _normal(dict(rows[0]["replication"]))
    if current == wanted:
        return None
    short = _too_few_nodes(wanted, await _nodes_by_datacenter(cql))
    if short:
        return ReplicationChange(ks, current, wanted, refused=short)
    log.warning("changing the replication of %s from %s to %s", ks, current, wanted)
    await cql.run(
        f"ALTER KEYSPACE {ks} WITH replication = {replication.strip()}",
        request_timeout_s=DDL_TIMEOUT_S,
        what="alter keyspace replication",
    )
    return ReplicationChange(ks, current, wanted)


async def _nodes_by_datacenter(cql: Cql) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in ("system.local", "system.peers"):
        for row in await cql.rows(f"SELECT data_center FROM {table}", what="read the nodes"):
            dc = str(row["data_center"])
            counts[dc] = counts.get(dc, 0) + 1
    return counts


def _too_few_nodes(wanted: dict[str, str], nodes: dict[str, int]) -> str | None:
    """Why ``wanted`` cannot be served by these nodes (None when it can)."""
    if wanted.get("class") == "SimpleStrategy":
        asked = {"the cluster": int(wanted.get("replication_factor", "0"))}
        have = {"the cluster": sum(nodes.values())}
    else:
        asked = {k: int(v) for k, v in wanted.items() if k != "class" and v.isdigit()}
        have = nodes
    for where, replicas in sorted(asked.items()):
        count = have.get(where, 0)
        if replicas > count:
            return (
                f"{replicas} replicas asked in {where}, which has {count} node"
                f"{'s' if count != 1 else ''}: writes would fail"
            )
    return None


async def wire_keyspace(settings: Settings) -> tuple[list[int], ReplicationChange | None]:
    """The operator's wiring: :func:`migrate` (which creates a missing keyspace), then
    :func:`set_replication` to the ``cassandra_replication`` setting."""
    cluster, session = await connect(settings)
    try:
        keyspace, replication = settings.cassandra_keyspace, settings.cassandra_replication
        versions = await migrate(session, keyspace, replication)
        return versions, await set_replication(session, keyspace, replication)
    finally:
        await asyncio.to_thread(cluster.shutdown)


def apply_migrations(settings: Settings) -> list[int]:
    """``tidings migrate``: migrate the keyspace from a plain (non-async) caller.

    Returns every schema version applied; raises
    :class:`~tidings.storage.base.StorageError` (retriable when it is
    :class:`~tidings.storage.base.StorageUnavailable`) when Cassandra refuses or cannot be
    reached, ``ValueError`` for a bad keyspace name or replication literal.
    """
    return asyncio.run(migrate_keyspace(settings))


__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "ReplicationChange",
    "applied_versions",
    "apply_migrations",
    "migrate",
    "migrate_keyspace",
    "replication_map",
    "set_replication",
    "wait_for_indexes",
    "wire_keyspace",
]
