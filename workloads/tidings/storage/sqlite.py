"""The MessageStore on SQLite (the embedded default), with FTS5 for search."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidings.core.model import InboxEntry, Message, OnlineLease, PresenceStatus, Watermarks
from tidings.storage._sqlite_worker import SqliteWorker

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL,
    sender_id INTEGER NOT NULL,
    sender_device_id INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_messages_channel ON messages (channel_id, message_id);
CREATE UNIQUE INDEX IF NOT EXISTS ux_messages_dedupe ON messages (sender_id, client_msg_id);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5 (
    body, content='messages', content_rowid='message_id', tokenize='unicode61'
);
CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.message_id, new.body);
END;
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
"""

_MESSAGE_COLUMNS = "message_id, channel_id, sender_id, sender_device_id, client_msg_id, body, ts"


def _message(row: Sequence[Any]) -> Message:
    return Message(int(row[0]), row[1], int(row[2]), int(row[3]), row[4], row[5], int(row[6]))


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def fts_query(text: str) -> str:
    """Turn what a person typed into an FTS5 query: every word must match (as a prefix)."""
    words = [w for w in "".join(c if c.isalnum() else " " for c in text).split() if w]
    return " AND ".join(f'"{w}"*' for w in words)


class SqliteMessageStore:
    def __init__(self, worker: SqliteWorker) -> None:
        self._db = worker

    @classmethod
    async def open(cls, path: Path | str, *, synchronous: str = "FULL") -> SqliteMessageStore:
        worker = SqliteWorker(path, synchronous=synchronous)
        await worker.start(SCHEMA)
        return cls(worker)

    async def close(self) -> None:
        await self._db.close()

    # --- messages ------------------------------------------------------------------

    async def save_message(self, message: Message) -> Message:
        m = message

        def save(conn: sqlite3.Connection) -> Message:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender_id=? AND client_msg_id=?",
                (m.sender_id, m.client_msg_id),
            ).fetchone()
            if row is not None:
                return _message(row)
            conn.execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (
                    m.message_id,
                    m.channel_id,
                    m.sender_id,
                    m.sender_device_id,
                    m.client_msg_id,
                    m.body,
                    m.ts,
                ),
            )
            return m

        return await self._db.transaction(save)

    async def find_sent(self, sender_id: int, client_msg_id: str) -> Message | None:
        def find(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender_id=? AND client_msg_id=?",
                (sender_id, client_msg_id),
            ).fetchone()
            return _message(row) if row else None

        return await self._db.read(find)

    async def history(self, channel_id: str, before: int | None, limit: int) -> list[Message]:
        def query(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE channel_id=? AND message_id<? "
                "ORDER BY message_id DESC LIMIT ?",
                (channel_id, before if before is not None else 2**63 - 1, limit),
            ).fetchall()
            return [_message(r) for r in rows]

        return await self._db.read(query)

    async def latest_message_ids(self, channel_ids: Sequence[str]) -> dict[str, int]:
        ids = list(channel_ids)
        if not ids:
            return {}

        def query(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT channel_id, MAX(message_id) FROM messages "
                f"WHERE channel_id IN ({_placeholders(len(ids))}) GROUP BY channel_id",
                ids,
            ).fetchall()
            return {r[0]: int(r[1]) for r in rows}

        return await self._db.read(query)

    async def search(self, channel_ids: Sequence[str], query: str, limit: int) -> list[Message]:
        ids, match = list(channel_ids), fts_query(query)
        if not ids or not match:
            return []

        def run(conn: sqlite3.Connection) -> list[Message]:
            cols = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
            rows = conn.execute(
                f"SELECT {cols} FROM messages_fts f JOIN messages m ON m.message_id = f.rowid "
                f"WHERE messages_fts MATCH ? AND m.channel_id IN ({_placeholders(len(ids))}) "
                "ORDER BY m.message_id DESC LIMIT ?",
                [match, *ids, limit],
            ).fetchall()
            return [_message(r) for r in rows]

        return await self._db.read(run)

    # --- inboxes -------------------------------------------------------------------

    async def append_inbox(self, user_id: int, messages: Sequence[Message]) -> list[InboxEntry]:
        def append(conn: sqlite3.Connection) -> list[InboxEntry]:
            head_row = conn.execute(
                "SELECT seq FROM inbox_heads WHERE user_id=?", (user_id,)
            ).fetchone()
            head = int(head_row[0]) if head_row else 0
            appended: list[InboxEntry] = []
            for message in messages:
                present = conn.execute(
                    "SELECT 1 FROM inbox WHERE user_id=? AND message_id=?",
                    (user_id, message.message_id),
                ).fetchone()
                if present:
                    continue
                head += 1
                conn.execute(
                    "INSERT INTO inbox (user_id, seq, message_id) VALUES (?,?,?)",
                    (user_id, head, message.message_id),
                )
                appended.append(InboxEntry(head, message))
            if appended:
                conn.execute(
                    "INSERT INTO inbox_heads (user_id, seq) VALUES (?, ?) "
                    "ON CONFLICT (user_id) DO UPDATE SET seq=excluded.seq",
                    (user_id, head),
                )
            return appended

        return await self._db.transaction(append)

    async def inbox_after(self, user_id: int, cursor: int, limit: int) -> list[InboxEntry]:
        def query(conn: sqlite3.Connection) -> list[InboxEntry]:
            cols = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
            rows = conn.execute(
                f"SELECT i.seq, {cols} FROM inbox i JOIN messages m "
                "ON m.message_id = i.message_id WHERE i.user_id=? AND i.seq>? "
                "ORDER BY i.seq LIMIT ?",
                (user_id, cursor, limit),
            ).fetchall()
            return [InboxEntry(int(r[0]), _message(r[1:])) for r in rows]

        return await self._db.read(query)

    async def inbox_head(self, user_id: int) -> int:
        def query(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT seq FROM inbox_heads WHERE user_id=?", (user_id,)).fetchone()
            return int(row[0]) if row else 0

        return await self._db.read(query)

    # --- receipts and presence -----------------------------------------------------

    async def get_watermarks(self, channel_id: str, user_id: int) -> Watermarks:
        def query(conn: sqlite3.Connection) -> Watermarks:
            row = conn.execute(
                "SELECT delivered_upto, read_upto FROM watermarks WHERE channel_id=? AND user_id=?",
                (channel_id, user_id),
            ).fetchone()
            return Watermarks(int(row[0]), int(row[1])) if row else Watermarks()

        return await self._db.read(query)

    async def set_watermarks(self, channel_id: str, user_id: int, watermarks: Watermarks) -> None:
        def save(conn: sqlite3.Connection) -> None:
            # MAX() keeps the watermarks forward-only even if two writers race.
            conn.execute(
                "INSERT INTO watermarks (channel_id, user_id, delivered_upto, read_upto) "
                "VALUES (?,?,?,?) ON CONFLICT (channel_id, user_id) DO UPDATE SET "
                "delivered_upto=MAX(delivered_upto, excluded.delivered_upto), "
                "read_upto=MAX(read_upto, excluded.read_upto)",
                (channel_id, user_id, watermarks.delivered_upto, watermarks.read_upto),
            )

        await self._db.transaction(save)

    async def reset_presence(self) -> None:
        """At start-up nobody is connected: whoever was online when the process stopped
        (or died) is offline since their last_seen."""

        def reset(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE presence SET status='offline' WHERE status='online'")

        await self._db.transaction(reset)

    async def refresh_presence(self, leases: Sequence[OnlineLease]) -> None:
        """Nothing to renew: one process owns everyone, and start-up resets presence."""

    async def online_in_partition(self, partition: int) -> dict[int, int | None]:
        def query(conn: sqlite3.Connection) -> dict[int, int | None]:
            rows = conn.execute("SELECT user_id, last_seen FROM presence WHERE status='online'")
            return {int(r[0]): r[1] for r in rows}

        return await self._db.read(query)

    async def set_presence(
        self, user_id: int, presence: PresenceStatus, partition: int = 0
    ) -> None:
        def save(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO presence (user_id, status, last_seen) VALUES (?,?,?) "
                "ON CONFLICT (user_id) DO UPDATE SET status=excluded.status, "
                "last_seen=excluded.last_seen",
                (user_id, presence.status, presence.last_seen),
            )

        await self._db.transaction(save)

    async def get_presence(self, user_ids: Sequence[int]) -> dict[int, PresenceStatus]:
        ids = list(user_ids)
        if not ids:
            return {}

        def query(conn: sqlite3.Connection) -> dict[int, PresenceStatus]:
            rows = conn.execute(
                "SELECT user_id, status, last_seen FROM presence "
                f"WHERE user_id IN ({_placeholders(len(ids))})",
                ids,
            ).fetchall()
            return {int(r[0]): PresenceStatus(r[1], r[2]) for r in rows}

        return await self._db.read(query)
