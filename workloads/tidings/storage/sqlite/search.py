"""Full-text search on SQLite: an FTS5 index of message bodies, kept just behind the sends.

The index (``messages_fts``, external content over ``messages``) is filled in chunks of
:data:`FTS_CHUNK` messages, in small transactions of its own after the sends' batches,
up to a watermark kept in ``store_meta`` (:data:`~tidings.storage.sqlite.schema.FTS_WATERMARK`).
Channel events (edits, reactions, ...) are never indexed; an edit or a delete of an
indexed message tells the index the old text (:func:`replace_body`). The store calls
these functions on its writer's connection (:mod:`tidings.storage.sqlite.store`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tidings.core.model import Message
from tidings.storage.sqlite.schema import (
    FTS_WATERMARK,
    MESSAGE_COLUMNS,
    message_of,
    placeholders,
)

FTS_CHUNK = 1000


def fts_query(text: str) -> str:
    """Turn what a person typed into an FTS5 query: every word must match (as a prefix)."""
    words = [w for w in "".join(c if c.isalnum() else " " for c in text).split() if w]
    return " AND ".join(f'"{w}"*' for w in words)


def indexed_upto(conn: sqlite3.Connection) -> int:
    """The highest message id the index holds, as committed (0 for none)."""
    row = conn.execute("SELECT value FROM store_meta WHERE key=?", (FTS_WATERMARK,)).fetchone()
    return int(row[0]) if row else 0


def index_next_chunk(conn: sqlite3.Connection) -> tuple[int, bool] | None:
    """Index the next chunk of messages after the watermark and move it.

    Returns the new watermark and whether the index has caught up, or None when there
    was nothing to index. The watermark is read from the table, not memory: a rolled-back
    batch must not move it.
    """
    upto = indexed_upto(conn)
    row = conn.execute(
        "SELECT MAX(message_id), COUNT(*) FROM (SELECT message_id FROM messages "
        "WHERE message_id > ? ORDER BY message_id LIMIT ?)",
        (upto, FTS_CHUNK),
    ).fetchone()
    if not row[1]:
        return None
    top = int(row[0])
    conn.execute(
        "INSERT INTO messages_fts (rowid, body) SELECT message_id, body FROM messages "
        "WHERE message_id > ? AND message_id <= ? AND event IS NULL AND body != ''",
        (upto, top),
    )
    conn.execute(
        "INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)", (FTS_WATERMARK, top)
    )
    return top, int(row[1]) < FTS_CHUNK


def index_one(conn: sqlite3.Connection, message_id: int, body: str) -> None:
    """Index one message now (one that arrived below the watermark, out of order)."""
    conn.execute("INSERT INTO messages_fts (rowid, body) VALUES (?, ?)", (message_id, body))


def replace_body(conn: sqlite3.Connection, message_id: int, before: str, after: str) -> None:
    """An indexed message's text changed (an edit, or a delete to ``""``): an external
    content index forgets a row only when told its old text."""
    conn.execute(
        "INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', ?, ?)",
        (message_id, before),
    )
    if after:
        index_one(conn, message_id, after)


def search(
    conn: sqlite3.Connection, channel_ids: Sequence[str], match: str, limit: int
) -> list[Message]:
    """The newest ``limit`` indexed messages of these channels that match an FTS5 query."""
    cols = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
    rows = conn.execute(
        f"SELECT {cols} FROM messages_fts f JOIN messages m ON m.message_id = f.rowid "
        f"WHERE messages_fts MATCH ? AND m.channel_id IN ({placeholders(len(channel_ids))}) "
        "ORDER BY m.message_id DESC LIMIT ?",
        [match, *channel_ids, limit],
    ).fetchall()
    return [message_of(r) for r in rows]
