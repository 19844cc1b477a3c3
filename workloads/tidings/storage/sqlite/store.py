"""The MessageStore on SQLite (the embedded default): group commit, heads in memory.

The embedded default has one process, so it needs no bus between storing a message and
appending it to the members' inboxes: :meth:`SqliteMessageStore.append` stores the
message *and* its inbox rows in the same transaction, one transaction (one fsync) per
batch of sends (:class:`~tidings.storage.sqlite.writer.GroupCommitWriter`). The
``messages`` and ``inbox`` tables are the durable log; there is nothing to replay after a
crash, because a message and its inbox rows commit together or not at all.

Inbox heads live in memory (loaded at open): a batch assigns sequence numbers as it runs,
the event loop sees a head only once it committed (``hello`` answers from that).
Full-text indexing (FTS5, :mod:`tidings.storage.sqlite.search`) runs just behind the
sends, in its own small transactions; a search first brings the index up to date, so it
never misses an acked message. The tables and their migrations are in
:mod:`tidings.storage.sqlite.schema`.
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
    attachments_to_text,
    json_to_text,
)
from tidings.storage.base import ClientMsgIdReused
from tidings.storage.sqlite import schema, search
from tidings.storage.sqlite.schema import MESSAGE_COLUMNS, message_of, placeholders, row_of
from tidings.storage.sqlite.writer import BeforeCommit, GroupCommitWriter

log = logging.getLogger(__name__)

WATERMARK_CACHE = 100_000

_INSERT_MESSAGE = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (sender_id, client_msg_id) DO NOTHING"
)
_FIND_SENT = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id=? AND client_msg_id=?"
_INSERT_INBOX = "INSERT INTO inbox (user_id, seq, message_id) VALUES (?,?,?)"
_UPSERT_HEAD = (
    "INSERT INTO inbox_heads (user_id, seq) VALUES (?, ?) "
    "ON CONFLICT (user_id) DO UPDATE SET seq=excluded.seq"
)


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
    """The :class:`~tidings.storage.base.MessageStore` on one SQLite file; open it with
    :meth:`open` (its group-commit writer starts there) and :meth:`close` it."""

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
        """The group-commit writer every statement goes through (opened by :meth:`open`)."""
        assert self._writer is not None, "use SqliteMessageStore.open()"
        return self._writer

    async def close(self) -> None:
        """Stop the writer once what is queued has committed, and close the file."""
        await self.writer.close()

    # --- the writer: schema, batches -----------------------------------------------

    def _prepare(self, conn: sqlite3.Connection) -> None:
        schema.prepare(conn)
        self._heads = {
            int(u): int(s) for u, s in conn.execute("SELECT user_id, seq FROM inbox_heads")
        }
        self._fts_upto = search.indexed_upto(conn)
        top = conn.execute("SELECT MAX(message_id) FROM messages").fetchone()[0]
        self._written_upto = int(top or 0)
        self._unindexed = self._written_upto > self._fts_upto

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
        if conn.execute(_INSERT_MESSAGE, row_of(message)).rowcount:
            if message.message_id > self._written_upto:
                self._written_upto = message.message_id
            elif message.message_id <= self._fts_upto and message.event is None:
                # out of order: index it now (events are never searched)
                search.index_one(conn, message.message_id, message.body)
            if message.event is not None and message.event["type"] in ACTIONS:
                self._apply_action(conn, message)
            return None
        return message_of(
            conn.execute(_FIND_SENT, (message.sender_id, message.client_msg_id)).fetchone()
        )

    def _apply_action(self, conn: sqlite3.Connection, event: Message) -> None:
        """Change the message an edit, delete or reaction names, in the transaction that
        stores the event (core/channel_events.py); the search index follows."""
        assert event.event is not None
        target_id = int(event.event["message_id"])
        row = conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id=? AND channel_id=?",
            (target_id, event.channel_id),
        ).fetchone()
        if row is None:
            return
        target = message_of(row)
        after = applied(target, event)
        if after.body != target.body and target_id <= self._fts_upto:
            search.replace_body(conn, target_id, target.body, after.body)
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
        """Store a message and append it to its members' inboxes in one batch (the embedded
        message log); a resend gets the first message and no new entries."""
        return await self.submit_append(message, members)

    # --- messages ------------------------------------------------------------------

    async def save_message(
        self, message: Message, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> Message:
        """Store a message once per (sender, client_msg_id); a resend returns the first.
        ``fence`` is awaited before the write and may raise to stop it."""
        if fence is not None:
            await fence()

        def op(conn: sqlite3.Connection) -> Message:
            return self._insert_message(conn, message) or message

        saved: Message = await self.writer.submit(op)
        if saved is message:
            self._unindexed = True
        return saved

    async def find_sent(self, sender_id: int, client_msg_id: str) -> Message | None:
        """The message this sender stored under ``client_msg_id``, if any."""

        def find(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(_FIND_SENT, (sender_id, client_msg_id)).fetchone()
            return message_of(row) if row else None

        return await self.writer.read(find)

    async def history(self, channel_id: str, before: int | None, limit: int) -> list[Message]:
        """A channel's messages before ``before`` (all, if None), newest first, at most
        ``limit``."""

        def query(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id=? AND message_id<? "
                "ORDER BY message_id DESC LIMIT ?",
                (channel_id, before if before is not None else 2**63 - 1, limit),
            ).fetchall()
            return [message_of(r) for r in rows]

        return await self.writer.read(query)

    async def latest_message_ids(self, channel_ids: Sequence[str]) -> dict[str, int]:
        """The newest message id of each of these channels that has any."""
        ids = list(channel_ids)
        if not ids:
            return {}

        def query(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT channel_id, MAX(message_id) FROM messages "
                f"WHERE channel_id IN ({placeholders(len(ids))}) GROUP BY channel_id",
                ids,
            ).fetchall()
            return {r[0]: int(r[1]) for r in rows}

        return await self.writer.read(query)

    async def get_message(self, channel_id: str, message_id: int) -> Message | None:
        """One message of a channel as it is now (edited, deleted, reactions)."""

        def query(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id=? AND channel_id=?",
                (message_id, channel_id),
            ).fetchone()
            return message_of(row) if row else None

        return await self.writer.read(query)

    async def count_unread(self, channel_id: str, after: int, reader_id: int, limit: int) -> int:
        """How many messages of others (not events, not deleted) come after ``after``,
        counted up to ``limit``."""

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
        indexed = search.index_next_chunk(conn)
        if indexed is None:
            return True
        self._fts_upto, caught_up = indexed
        return caught_up

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
        """The newest ``limit`` messages of these channels with every word of ``query``
        (as a prefix); the index first catches up, so an acked message is never missed."""
        ids, match = list(channel_ids), search.fts_query(query)
        if not ids or not match:
            return []
        await self.catch_up_index()
        return await self.writer.read(lambda conn: search.search(conn, ids, match, limit))

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
        """A user's inbox entries with seq above ``cursor``, in order, at most ``limit``."""

        def query(conn: sqlite3.Connection) -> list[InboxEntry]:
            cols = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
            rows = conn.execute(
                f"SELECT i.seq, {cols} FROM inbox i JOIN messages m "
                "ON m.message_id = i.message_id WHERE i.user_id=? AND i.seq>? "
                "ORDER BY i.seq LIMIT ?",
                (user_id, cursor, limit),
            ).fetchall()
            return [InboxEntry(int(r[0]), message_of(r[1:])) for r in rows]

        return await self.writer.read(query)

    async def inbox_head(self, user_id: int) -> int:
        """The highest seq of a user's inbox that has committed (0 for an empty inbox)."""
        return self.visible_head(user_id)

    def visible_head(self, user_id: int) -> int:
        """The user's last committed inbox seq, from memory."""
        return self._visible_heads.get(user_id, 0)

    # --- receipts and presence -----------------------------------------------------

    async def get_watermarks(self, channel_id: str, user_id: int) -> Watermarks:
        """How far this user has received and read in this channel."""
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
        """Move this user's receipt watermarks in this channel (they only go forward)."""

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
        """The users online in an inbox partition, with their last_seen (one process: every
        online user)."""

        def query(conn: sqlite3.Connection) -> dict[int, int | None]:
            rows = conn.execute("SELECT user_id, last_seen FROM presence WHERE status='online'")
            return {int(r[0]): r[1] for r in rows}

        return await self.writer.read(query)

    async def set_presence(
        self, user_id: int, presence: PresenceStatus, partition: int = 0
    ) -> None:
        """Record a user's presence (status and last_seen); one process: no partition index."""

        def save(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO presence (user_id, status, last_seen) VALUES (?,?,?) "
                "ON CONFLICT (user_id) DO UPDATE SET status=excluded.status, "
                "last_seen=excluded.last_seen",
                (user_id, presence.status, presence.last_seen),
            )

        await self.writer.submit(save)

    async def get_presence(self, user_ids: Sequence[int]) -> dict[int, PresenceStatus]:
        """The presence of those of these users who have any (never seen: left out)."""
        ids = list(user_ids)
        if not ids:
            return {}

        def query(conn: sqlite3.Connection) -> dict[int, PresenceStatus]:
            rows = conn.execute(
                "SELECT user_id, status, last_seen FROM presence "
                f"WHERE user_id IN ({placeholders(len(ids))})",
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
