"""The SQLite message store's tables (``messages.db``), their migrations, and how a row
of ``messages`` maps to a :class:`~tidings.core.model.Message`.

:data:`SCHEMA` creates what is missing; :func:`migrate` brings a file written by an
older version up to :data:`SCHEMA_VERSION` (``PRAGMA user_version``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from tidings.core.model import (
    Message,
    attachments_from_text,
    attachments_to_text,
    json_from_text,
    json_to_text,
    reactions_from_text,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL,
    sender_id INTEGER NOT NULL,
    sender_device_id INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL,
    attachments TEXT,
    reply_to INTEGER,
    event TEXT,
    edited_at INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0,
    reactions TEXT
);
CREATE INDEX IF NOT EXISTS ix_messages_channel ON messages (channel_id, message_id);
CREATE UNIQUE INDEX IF NOT EXISTS ux_messages_dedupe ON messages (sender_id, client_msg_id);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5 (
    body, content='messages', content_rowid='message_id', tokenize='unicode61'
);
CREATE TABLE IF NOT EXISTS inbox (
    user_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS ux_inbox_message ON inbox (user_id, message_id);
CREATE TABLE IF NOT EXISTS inbox_heads (
    user_id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS watermarks (
    channel_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    delivered_upto INTEGER NOT NULL,
    read_upto INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS presence (
    user_id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    last_seen INTEGER
);
CREATE TABLE IF NOT EXISTS store_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
# 1: FTS kept by a trigger on insert; 2: indexed just behind the sends; 3: attachments;
# 4: replies, channel events, edits, deletes and reactions (issue #20)
SCHEMA_VERSION = 4
V4_COLUMNS = {
    "reply_to": "INTEGER",
    "event": "TEXT",
    "edited_at": "INTEGER",
    "deleted": "INTEGER NOT NULL DEFAULT 0",
    "reactions": "TEXT",
}
FTS_WATERMARK = "fts_indexed_upto"

MESSAGE_COLUMNS = (
    "message_id, channel_id, sender_id, sender_device_id, client_msg_id, body, ts, attachments, "
    "reply_to, event, edited_at, deleted, reactions"
)


def message_of(row: Sequence[Any]) -> Message:
    """The Message a row of ``messages`` (its :data:`MESSAGE_COLUMNS`, in order) holds."""
    return Message(
        int(row[0]),
        row[1],
        int(row[2]),
        int(row[3]),
        row[4],
        row[5],
        int(row[6]),
        attachments_from_text(row[7]),
        row[8],
        json_from_text(row[9]),
        row[10],
        bool(row[11]),
        reactions_from_text(row[12]),
    )


def row_of(m: Message) -> tuple[Any, ...]:
    """A Message as the values of :data:`MESSAGE_COLUMNS`, in order."""
    return (
        m.message_id,
        m.channel_id,
        m.sender_id,
        m.sender_device_id,
        m.client_msg_id,
        m.body,
        m.ts,
        attachments_to_text(m.attachments),
        m.reply_to,
        json_to_text(m.event),
        m.edited_at,
        int(m.deleted),
        json_to_text(m.reactions),
    )


def placeholders(n: int) -> str:
    """``?,?,...``: ``n`` parameters of an ``IN (...)``."""
    return ",".join("?" * n)


def prepare(conn: sqlite3.Connection) -> None:
    """Create the tables that are missing and migrate an older file to this version."""
    conn.executescript(SCHEMA)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        migrate(conn, version)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Move a file at schema ``version`` to :data:`SCHEMA_VERSION`, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    trigger = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='trigger' AND name='messages_fts_insert'"
    ).fetchone()
    if trigger is not None:
        # Written by a version that indexed on insert: everything so far is indexed.
        conn.execute("DROP TRIGGER messages_fts_insert")
        conn.execute(
            "INSERT OR REPLACE INTO store_meta (key, value) "
            "SELECT ?, COALESCE(MAX(message_id), 0) FROM messages",
            (FTS_WATERMARK,),
        )
    columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    if "attachments" not in columns:  # made before version 3
        conn.execute("ALTER TABLE messages ADD COLUMN attachments TEXT")
    for name, kind in V4_COLUMNS.items():  # made before version 4
        if name not in columns:
            conn.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    conn.execute("COMMIT")
    log.info("messages.db schema moved from version %s to %s", version, SCHEMA_VERSION)
