"""The MessageStore on SQLite (the embedded default): group commit, heads in memory.

The embedded default has one process, so it needs no bus between storing a message and
appending it to the members' inboxes: :meth:`SqliteMessageStore.append` stores the
message *and* its inbox rows in the same transaction, one transaction (one fsync) per
batch of sends (:class:`~tidings.storage.sqlite.writer.GroupCommitWriter`). The
``messages`` and ``inbox`` tables are the durable log; there is nothing to replay after a
crash, because a message and its inbox rows commit together or not at all.

Inbox heads live in memory (loaded at open): a batch assigns sequence numbers as it runs,
the event loop sees a head only once it committed (``hello`` answers from that).
Full-text indexing (FTS5) runs just behind the sends, in its own small transactions; a
search first brings the index up to date, so it never misses an acked message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings import metrics
from tidings.core.channel_events import ACTIONS, applied
from tidings.core.model import (
    InboxEntry,
    Message,
    OnlineLease,
    PresenceStatus,
    Watermarks,
    attachments_from_text,
    attachments_to_text,
    json_from_text,
    json_to_text,
    reactions_from_text,
)
from tidings.storage.base import ClientMsgIdReused
from tidings.storage.sqlite.writer import BeforeCommit, GroupCommitWriter

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
_V4_COLUMNS = {
    "reply_to": "INTEGER",
    "event": "TEXT",
    "edited_at": "INTEGER",
    "deleted": "INTEGER NOT NULL DEFAULT 0",
    "reactions": "TEXT",
}
FTS_WATERMARK = "fts_indexed_upto"
FTS_CHUNK = 1000
WATERMARK_CACHE = 100_000

_MESSAGE_COLUMNS = (
    "message_id, channel_id, sender_id, sender_device_id, client_msg_id, body, ts, attachments, "
    "reply_to, event, edited_at, deleted, reactions"
)
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (sender_id, client_msg_id) DO NOTHING"
)
_FIND_SENT = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender_id=? AND client_msg_id=?"
_INSERT_INBOX = "INSERT INTO inbox (user_id, seq, message_id) VALUES (?,?,?)"
_UPSERT_HEAD = (
    "INSERT INTO inbox_heads (user_id, seq) VALUES (?, ?) "
    "ON CONFLICT (user_id) DO UPDATE SET seq=excluded.seq"
)


def _message(row: Sequence[Any]) -> Message:
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


def _row(m: Message) -> tuple[Any, ...]:
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


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def fts_query(text: str) -> str:
    """Turn what a person typed into an FTS5 query: every word must match (as a prefix)."""
    words = [w for w in "".join(c if c.isalnum() else " " for c in text).split() if w]
    return " AND ".join(f'"{w}"*' for w in words)


@dataclass(frozen=True, slots=True)
class Appended:
    """What one ``append`` did: the stored message (the first one, for a resend) and
    the inbox position it got per member (empty for a resend: it was placed before)."""

    message: Message
    seqs: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _InboxAppend:
    user_id: int
    entries: list[InboxEntry]


AppendedListener = Callable[[dict[int, list[InboxEntry]]], None]


class SqliteMessageStore:
    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        self._path = path
        self._synchronous = synchronous
        # Batch state: heads as assigned (the open batch included), their values
        # before the batch (to undo on rollback), and the highest message id written.
        self._heads: dict[int, int] = {}
        self._undo_heads: dict[int, int] = {}
        self._fts_upto = 0
        self._written_upto = 0
        self._batch_messages = 0
        # Event loop only: heads that committed, watermarks recently used.
        self._visible_heads: dict[int, int] = {}
        self._watermarks: OrderedDict[tuple[str, int], Watermarks] = OrderedDict()
        self._unindexed = False
        self.on_appended: AppendedListener | None = None
        self._writer: GroupCommitWriter | None = None

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        before_commit: BeforeCommit | None = None,
    ) -> SqliteMessageStore:
        """``before_commit`` (fault injection in tests) is called after each batch's
        statements, before its COMMIT, with the number of messages the batch stores."""
        store = cls(path, synchronous=synchronous)
        store._writer = GroupCommitWriter(
            path,
            synchronous=synchronous,
            before_commit=(lambda _: before_commit(store._batch_messages))
            if before_commit is not None
            else None,
            after_batch=store._after_batch,
            on_committed=store._on_committed,
        )
        await store._writer.start(store._prepare)
        store._visible_heads = dict(store._heads)
        return store

    @property
    def writer(self) -> GroupCommitWriter:
        assert self._writer is not None, "use SqliteMessageStore.open()"
        return self._writer

    async def close(self) -> None:
        await self.writer.close()

    # --- the writer: schema, batches -----------------------------------------------

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            self._migrate(conn, version)
        self._heads = {
            int(u): int(s) for u, s in conn.execute("SELECT user_id, seq FROM inbox_heads")
        }
        row = conn.execute("SELECT value FROM store_meta WHERE key=?", (FTS_WATERMARK,)).fetchone()
        self._fts_upto = int(row[0]) if row else 0
        top = conn.execute("SELECT MAX(message_id) FROM messages").fetchone()[0]
        self._written_upto = int(top or 0)
        self._unindexed = self._written_upto > self._fts_upto

    @staticmethod
    def _migrate(conn: sqlite3.Connection, version: int) -> None:
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
        for name, kind in _V4_COLUMNS.items():  # made before version 4
            if name not in columns:
                conn.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
        log.info("messages.db schema moved from version %s to %s", version, SCHEMA_VERSION)

    def _assign(self, user_id: int) -> int:
        head = self._heads.get(user_id, 0)
        if user_id not in self._undo_heads:
            self._undo_heads[user_id] = head
        self._heads[user_id] = head + 1
        return head + 1

    def _after_batch(self, conn: sqlite3.Connection, stage: str) -> None:
        if stage == "commit":  # the heads the batch moved go into its transaction
            if self._undo_heads:
                conn.executemany(_UPSERT_HEAD, [(u, self._heads[u]) for u in self._undo_heads])
            return
        if stage == "rolled_back":  # put back the heads it had moved
            for user_id, head in self._undo_heads.items():
                if head:
                    self._heads[user_id] = head
                else:
                    self._heads.pop(user_id, None)
        self._undo_heads.clear()
        self._batch_messages = 0

    def _insert_message(self, conn: sqlite3.Connection, message: Message) -> Message | None:
        """Insert; None when new, else the message that holds (sender, client_msg_id)."""
        if conn.execute(_INSERT_MESSAGE, _row(message)).rowcount:
            if message.message_id > self._written_upto:
                self._written_upto = message.message_id
            elif message.message_id <= self._fts_upto and message.event is None:
                # out of order: index it now (events are never searched)
                conn.execute(
                    "INSERT INTO messages_fts (rowid, body) VALUES (?, ?)",
                    (message.message_id, message.body),
                )
            if message.event is not None and message.event["type"] in ACTIONS:
                self._apply_action(conn, message)
            return None
        return _message(
            conn.execute(_FIND_SENT, (message.sender_id, message.client_msg_id)).fetchone()
        )

    def _apply_action(self, conn: sqlite3.Connection, event: Message) -> None:
        """Change the message an edit, delete or reaction names, in the transaction that
        stores the event (core/channel_events.py); the search index follows."""
        assert event.event is not None
        target_id = int(event.event["message_id"])
        row = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id=? AND channel_id=?",
            (target_id, event.channel_id),
        ).fetchone()
        if row is None:
            return
        target = _message(row)
        after = applied(target, event)
        if after.body != target.body and target_id <= self._fts_upto:
            # An external-content index forgets a row only when told its old text.
            conn.execute(
                "INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', ?, ?)",
                (target_id, target.body),
            )
            if after.body:
                conn.execute(
                    "INSERT INTO messages_fts (rowid, body) VALUES (?, ?)", (target_id, after.body)
                )
        conn.execute(
            "UPDATE messages SET body=?, attachments=?, edited_at=?, deleted=?, reactions=? "
            "WHERE message_id=?",
            (
                after.body,
                attachments_to_text(after.attachments),
                after.edited_at,
                int(after.deleted),
                json_to_text(after.reactions),
                target_id,
            ),
        )

    def _append_op(
        self, message: Message, members: Sequence[int]
    ) -> Callable[[sqlite3.Connection], Appended]:
        def op(conn: sqlite3.Connection) -> Appended:
            existing = self._insert_message(conn, message)
            if existing is not None:
                if not existing.same_send(message):
                    raise ClientMsgIdReused(existing)
                return Appended(existing)
            self._batch_messages += 1
            seqs = {member: self._assign(member) for member in members}
            conn.executemany(
                _INSERT_INBOX, [(member, seq, message.message_id) for member, seq in seqs.items()]
            )
            return Appended(message, seqs)

        return op

    # --- the event loop: after a commit --------------------------------------------

    def _on_committed(self, results: list[Any]) -> None:
        deliveries: dict[int, list[InboxEntry]] = defaultdict(list)
        heads = self._visible_heads
        for result in results:
            if isinstance(result, Appended):
                if not result.seqs:
                    continue
                self._unindexed = True
                for member, seq in result.seqs.items():
                    if seq > heads.get(member, 0):
                        heads[member] = seq
                    deliveries[member].append(InboxEntry(seq, result.message))
            elif isinstance(result, _InboxAppend) and result.entries:
                heads[result.user_id] = max(heads.get(result.user_id, 0), result.entries[-1].seq)
        if deliveries and self.on_appended is not None:
            self.on_appended(deliveries)

    # --- the message log (embedded) -------------------------------------------------

    def submit_append(self, message: Message, members: Sequence[int]) -> asyncio.Future[Appended]:
        """Queue: store ``message`` and place it in every member's inbox, durably, in one
        transaction; a resend of (sender, client_msg_id) gives the first message.

        The future raises :class:`ClientMsgIdReused` when that client_msg_id was used
        for another channel or body. ``on_appended`` hears of the new inbox entries after
        the commit.
        """
        future: asyncio.Future[Appended] = self.writer.submit(self._append_op(message, members))
        return future

    async def append(self, message: Message, members: Sequence[int]) -> Appended:
        return await self.submit_append(message, members)

    # --- messages ------------------------------------------------------------------

    async def save_message(
        self, message: Message, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> Message:
        if fence is not None:
            await fence()

        def op(conn: sqlite3.Connection) -> Message:
            return self._insert_message(conn, message) or message

        saved: Message = await self.writer.submit(op)
        if saved is message:
            self._unindexed = True
        return saved

    async def find_sent(self, sender_id: int, client_msg_id: str) -> Message | None:
        def find(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(_FIND_SENT, (sender_id, client_msg_id)).fetchone()
            return _message(row) if row else None

        return await self.writer.read(find)

    async def history(self, channel_id: str, before: int | None, limit: int) -> list[Message]:
        def query(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE channel_id=? AND message_id<? "
                "ORDER BY message_id DESC LIMIT ?",
                (channel_id, before if before is not None else 2**63 - 1, limit),
            ).fetchall()
            return [_message(r) for r in rows]

        return await self.writer.read(query)

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

        return await self.writer.read(query)

    async def get_message(self, channel_id: str, message_id: int) -> Message | None:
        def query(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id=? AND channel_id=?",
                (message_id, channel_id),
            ).fetchone()
            return _message(row) if row else None

        return await self.writer.read(query)

    async def count_unread(self, channel_id: str, after: int, reader_id: int, limit: int) -> int:
        def query(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM messages WHERE channel_id=? "
                "AND message_id>? AND sender_id!=? AND event IS NULL AND deleted=0 LIMIT ?)",
                (channel_id, after, reader_id, limit),
            ).fetchone()
            return int(row[0])

        return await self.writer.read(query)

    # --- search: indexed just behind the sends --------------------------------------

    def _index_op(self, conn: sqlite3.Connection) -> bool:
        """Index the next chunk of messages; True when the index has caught up."""
        if self._written_upto <= self._fts_upto:
            return True
        # From the table, not memory: a rolled-back batch must not move the watermark.
        row = conn.execute("SELECT value FROM store_meta WHERE key=?", (FTS_WATERMARK,)).fetchone()
        upto = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT MAX(message_id), COUNT(*) FROM (SELECT message_id FROM messages "
            "WHERE message_id > ? ORDER BY message_id LIMIT ?)",
            (upto, FTS_CHUNK),
        ).fetchone()
        if not row[1]:
            return True
        top = int(row[0])
        conn.execute(
            "INSERT INTO messages_fts (rowid, body) SELECT message_id, body FROM messages "
            "WHERE message_id > ? AND message_id <= ? AND event IS NULL AND body != ''",
            (upto, top),
        )
        conn.execute(
            "INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)", (FTS_WATERMARK, top)
        )
        self._fts_upto = top
        return int(row[1]) < FTS_CHUNK

    async def catch_up_index(self) -> None:
        """Bring the full-text index up to every committed message."""
        self._unindexed = False
        while not await self.writer.submit(self._index_op):
            pass

    async def run_indexer(self, interval_s: float = 0.25) -> None:
        """Keep the full-text index at most ``interval_s`` (plus one chunk) behind."""
        while True:
            await asyncio.sleep(interval_s)
            if self._unindexed:
                try:
                    await self.catch_up_index()
                except Exception:
                    log.exception("full-text indexing failed; trying again")
                    self._unindexed = True

    async def search(self, channel_ids: Sequence[str], query: str, limit: int) -> list[Message]:
        ids, match = list(channel_ids), fts_query(query)
        if not ids or not match:
            return []
        await self.catch_up_index()

        def run(conn: sqlite3.Connection) -> list[Message]:
            cols = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
            rows = conn.execute(
                f"SELECT {cols} FROM messages_fts f JOIN messages m ON m.message_id = f.rowid "
                f"WHERE messages_fts MATCH ? AND m.channel_id IN ({_placeholders(len(ids))}) "
                "ORDER BY m.message_id DESC LIMIT ?",
                [match, *ids, limit],
            ).fetchall()
            return [_message(r) for r in rows]

        return await self.writer.read(run)

    # --- inboxes -------------------------------------------------------------------

    async def append_inbox(
        self, user_id: int, messages: Sequence[Message], *, new: Container[int] = ()
    ) -> list[InboxEntry]:
        """Append already-stored messages to one inbox, skipping ids it holds (``new`` is
        not needed here: the lookup is an index probe in the same transaction)."""

        def op(conn: sqlite3.Connection) -> _InboxAppend:
            appended: list[InboxEntry] = []
            for message in messages:
                present = conn.execute(
                    "SELECT 1 FROM inbox WHERE user_id=? AND message_id=?",
                    (user_id, message.message_id),
                ).fetchone()
                if present:
                    continue
                seq = self._assign(user_id)
                conn.execute(_INSERT_INBOX, (user_id, seq, message.message_id))
                appended.append(InboxEntry(seq, message))
            return _InboxAppend(user_id, appended)

        result: _InboxAppend = await self.writer.submit(op)
        return result.entries

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

        return await self.writer.read(query)

    async def inbox_head(self, user_id: int) -> int:
        return self.visible_head(user_id)

    def visible_head(self, user_id: int) -> int:
        """The user's last committed inbox seq, from memory."""
        return self._visible_heads.get(user_id, 0)

    # --- receipts and presence -----------------------------------------------------

    async def get_watermarks(self, channel_id: str, user_id: int) -> Watermarks:
        key = (channel_id, user_id)
        cached = self._watermarks.get(key)
        if cached is not None:
            self._watermarks.move_to_end(key)
            return cached

        def query(conn: sqlite3.Connection) -> Watermarks:
            row = conn.execute(
                "SELECT delivered_upto, read_upto FROM watermarks WHERE channel_id=? AND user_id=?",
                key,
            ).fetchone()
            return Watermarks(int(row[0]), int(row[1])) if row else Watermarks()

        found = await self.writer.read(query)
        return self._remember_watermarks(key, found)

    def _remember_watermarks(self, key: tuple[str, int], seen: Watermarks) -> Watermarks:
        old = self._watermarks.get(key)
        if old is not None:  # forward only, whoever wrote last
            seen = Watermarks(
                max(old.delivered_upto, seen.delivered_upto), max(old.read_upto, seen.read_upto)
            )
        self._watermarks[key] = seen
        self._watermarks.move_to_end(key)
        if len(self._watermarks) > WATERMARK_CACHE:
            self._watermarks.popitem(last=False)
        return seen

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

        await self.writer.submit(save)
        self._remember_watermarks((channel_id, user_id), watermarks)

    async def reset_presence(self) -> None:
        """At start-up nobody is connected: whoever was online when the process stopped
        (or died) is offline since their last_seen."""

        def reset(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE presence SET status='offline' WHERE status='online'")

        await self.writer.submit(reset)

    async def refresh_presence(self, leases: Sequence[OnlineLease]) -> None:
        """Nothing to renew: one process owns everyone, and start-up resets presence."""

    async def online_in_partition(self, partition: int) -> dict[int, int | None]:
        def query(conn: sqlite3.Connection) -> dict[int, int | None]:
            rows = conn.execute("SELECT user_id, last_seen FROM presence WHERE status='online'")
            return {int(r[0]): r[1] for r in rows}

        return await self.writer.read(query)

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

        await self.writer.submit(save)

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

        return await self.writer.read(query)


class StoreMessageLog:
    """The embedded default's :class:`~tidings.chat.ports.MessageLog`: the message and
    every member's inbox row in one transaction (one process owns every inbox, so no bus
    sits between them); ``on_appended`` delivers after the commit."""

    def __init__(self, store: SqliteMessageStore) -> None:
        self.store = store

    def append(self, message: Message, members: Sequence[int]) -> asyncio.Future[Message]:
        """Queued now, in call order; the future is done after the commit."""
        stored: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.store.submit_append(message, members).add_done_callback(
            functools.partial(_settle_append, stored)
        )
        return stored


def _settle_append(stored: asyncio.Future[Message], appended: asyncio.Future[Appended]) -> None:
    if stored.done():
        return
    exc = appended.exception()
    if exc is not None:
        stored.set_exception(exc)
        return
    result = appended.result()
    if result.seqs:
        metrics.MESSAGES_SENT.inc()
    stored.set_result(result.message)
