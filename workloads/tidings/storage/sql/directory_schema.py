"""Versioned, idempotent migrations of the relational schema (SQLite and PostgreSQL).

Each migration runs once, in order, inside a transaction, and is recorded in
``schema_migrations``; a run that finds every version recorded changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.storage.sql.tables import (
    V1_TABLES,
    V4_TABLES,
    V6_TABLES,
    V8_TABLES,
    directory_changes,
    directory_readers,
    friend_requests,
    friends,
    metadata,
    throttle_buckets,
)

_bookkeeping = MetaData()
schema_migrations = Table(
    "schema_migrations",
    _bookkeeping,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One version of the relational schema, applied in a transaction and recorded."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    metadata.create_all(conn, tables=V1_TABLES, checkfirst=True)


def _change_log(conn: Connection) -> None:
    # checkfirst: a database made by an earlier build of this version may have it already.
    metadata.create_all(conn, tables=[directory_changes], checkfirst=True)


def _readers(conn: Connection) -> None:
    metadata.create_all(conn, tables=[directory_readers], checkfirst=True)


def _consent_and_sessions(conn: Connection) -> None:
    # A database made by version 1 of this code has devices without these columns; one
    # made since has them (create_all builds the table as it is defined now).
    have = {column["name"] for column in inspect(conn).get_columns("devices")}
    if "token_version" not in have:
        conn.execute(
            text("ALTER TABLE devices ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0")
        )
    if "last_seen" not in have:
        conn.execute(text("ALTER TABLE devices ADD COLUMN last_seen BIGINT"))
    metadata.create_all(conn, tables=V4_TABLES, checkfirst=True)
    # Friendship was one-sided ("A added B") and made without B's consent: a pair added
    # both ways stays friends; a one-sided add becomes a request B may accept.
    mine, theirs = friends.alias("mine"), friends.alias("theirs")
    one_sided = select(mine.c.user_id, mine.c.friend_id).where(
        ~select(theirs.c.user_id)
        .where(theirs.c.user_id == mine.c.friend_id, theirs.c.friend_id == mine.c.user_id)
        .exists()
    )
    pairs = conn.execute(one_sided).all()
    now = int(time.time() * 1000)
    for user_id, friend_id in pairs:
        conn.execute(
            friend_requests.insert().values(from_id=user_id, to_id=friend_id, created_at=now)
        )
        conn.execute(
            friends.delete().where(friends.c.user_id == user_id, friends.c.friend_id == friend_id)
        )


def _throttle_buckets(conn: Connection) -> None:
    metadata.create_all(conn, tables=[throttle_buckets], checkfirst=True)


def _key_directory(conn: Connection) -> None:
    metadata.create_all(conn, tables=V6_TABLES, checkfirst=True)


def _channel_modes(conn: Connection) -> None:
    # A database made since has the column (create_all builds the table as defined now).
    have = {column["name"] for column in inspect(conn).get_columns("channels")}
    if "e2e" not in have:
        conn.execute(text("ALTER TABLE channels ADD COLUMN e2e BOOLEAN NOT NULL DEFAULT false"))


def _media(conn: Connection) -> None:
    metadata.create_all(conn, tables=V8_TABLES, checkfirst=True)


def _group_roles(conn: Connection) -> None:
    # A database made since has the columns (create_all builds the tables as defined now).
    have = {column["name"] for column in inspect(conn).get_columns("channels")}
    if "members_can_add" not in have:
        conn.execute(
            text("ALTER TABLE channels ADD COLUMN members_can_add BOOLEAN NOT NULL DEFAULT true")
        )
    have = {column["name"] for column in inspect(conn).get_columns("channel_members")}
    if "admin" not in have:
        conn.execute(
            text("ALTER TABLE channel_members ADD COLUMN admin BOOLEAN NOT NULL DEFAULT false")
        )
    # Each group's owner (its creator) is its first admin.
    conn.execute(
        text(
            "UPDATE channel_members SET admin = true WHERE EXISTS (SELECT 1 FROM channels c "
            "WHERE c.channel_id = channel_members.channel_id AND c.kind = 'group' "
            "AND c.owner_id = channel_members.user_id)"
        )
    )


MIGRATIONS: list[Migration] = [
    Migration(1, "users, devices, friends, channels, channel_members", _initial),
    Migration(2, "directory_changes: the change log the directory caches follow", _change_log),
    Migration(3, "directory_readers: where each directory cache stands in the log", _readers),
    Migration(
        4,
        "consent and sessions: friend requests, blocks, group invites, usage events; "
        "devices.token_version and last_seen",
        _consent_and_sessions,
    ),
    Migration(5, "throttle_buckets: failed logins counted by every API process", _throttle_buckets),
    Migration(
        6,
        "device_keys, one_time_prekeys: the key directory of end-to-end encryption",
        _key_directory,
    ),
    Migration(7, "channels.e2e: a channel is end-to-end or not, from its creation", _channel_modes),
    Migration(8, "media, media_refs: uploads and the channels they were sent to", _media),
    Migration(9, "group roles: channel_members.admin, channels.members_can_add", _group_roles),
]


# pg_advisory_xact_lock key of the schema migrations (any constant the app uses nowhere else).
_LOCK_KEY = 0x7469_6469_6E67  # "tiding"


async def migrate(engine: AsyncEngine, *, upto: int | None = None) -> list[int]:
    """Apply the migrations not yet applied (up to version ``upto``, default all);
    returns the versions applied now."""

    def run(conn: Connection) -> list[int]:
        _bookkeeping.create_all(conn, checkfirst=True)
        done = set(conn.execute(select(schema_migrations.c.version)).scalars())
        applied = []
        for migration in MIGRATIONS:
            if migration.version in done or (upto is not None and migration.version > upto):
                continue
            migration.apply(conn)
            conn.execute(
                schema_migrations.insert().values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=int(time.time() * 1000),
                )
            )
            applied.append(migration.version)
        return applied

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several migrators at once (every api pod runs one before it starts): one at
            # a time, the others then find the versions applied. Released at commit.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        return await conn.run_sync(run)


async def applied_versions(engine: AsyncEngine) -> set[int]:
    """The versions recorded in ``schema_migrations`` (empty for a bare database)."""

    def run(conn: Connection) -> set[int]:
        if not inspect(conn).has_table(schema_migrations.name):
            return set()
        return set(conn.execute(select(schema_migrations.c.version)).scalars())

    async with engine.connect() as conn:
        return await conn.run_sync(run)
