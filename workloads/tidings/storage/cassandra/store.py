"""The MessageStore on Cassandra 5.0 (the cluster backend).

Behaves like :class:`tidings.storage.sqlite.store.SqliteMessageStore`; the same contract
tests run against both (``tests/integration/test_message_store_contract.py``). The schema lives
in :mod:`tidings.storage.cassandra.schema` and is applied by ``tidings migrate``; opening
a store checks that the keyspace is at the version this code needs.

Every statement is prepared once when the store opens and runs on ScyllaDB's C++ driver
through acsylla (:mod:`tidings.storage.cassandra.io_async`: why, and the routing,
consistency and retry rules); driver errors come out as
:class:`~tidings.storage.base.StorageUnavailable` (retriable) or
:class:`~tidings.storage.base.StorageError`.

The inbox methods are in :mod:`tidings.storage.cassandra.inbox`, search in
:mod:`tidings.storage.cassandra.search` (mixins of :class:`CassandraMessageStore`).

Where Cassandra differs from SQLite, and how this store makes up for it:

- No multi-row transactions. Each method writes in an order that leaves nothing visible
  half-done after a crash (see :meth:`CassandraMessageStore.save_message` and
  :meth:`~tidings.storage.cassandra.inbox.InboxPart.append_inbox`); the callers' retries
  complete the work.
- Messages live in ``(channel_id, bucket)`` partitions (30-day buckets of the Snowflake
  timestamp, :func:`~tidings.storage.cassandra.layout.bucket_of`) so no partition grows
  forever; ``channel_buckets`` lists the buckets a channel has, newest first, for history
  to walk back through.
- Search: Cassandra 5.0's SAI has no tokenizing analyzer (``index_analyzer`` and the
  ``:`` operator arrive after 5.0), so the store tokenizes bodies itself into the
  ``terms`` set (the rules of SQLite's ``unicode61``: letters and digits, lower case,
  diacritics removed) and indexes it with SAI. Every word of a query must match, as in
  SQLite, but as a whole word: SQLite's FTS5 also matches prefixes (``hel`` finds
  ``hello``), this store does not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from tidings.core.channel_events import ACTIONS, DELETE, EDIT
from tidings.core.model import (
    Message,
    OnlineLease,
    PresenceStatus,
    Watermarks,
    attachments_to_text,
    json_to_text,
)
from tidings.settings import Settings
from tidings.storage.base import StorageError
from tidings.storage.cassandra.inbox import InboxPart
from tidings.storage.cassandra.io import check_identifier
from tidings.storage.cassandra.io_async import AsyncCql, PartitionWrites, connect
from tidings.storage.cassandra.layout import (
    BATCH_ROWS,
    COLUMNS,
    MAX_BIGINT,
    bucket_of,
    grouped,
    message_of,
)
from tidings.storage.cassandra.schema import LATEST_VERSION
from tidings.storage.cassandra.search import SearchPart, search_terms

log = logging.getLogger(__name__)


_KNOWN_BUCKETS_MAX = 100_000

_WHERE_MESSAGE = "WHERE channel_id = ? AND bucket = ? AND message_id = ?"

_STATEMENTS: dict[str, str] = {
    # messages and dedupe
    "insert_sent": (
        "INSERT INTO {ks}.sent_messages (sender_id, client_msg_id, message_id, channel_id, "
        "sender_device_id, ts) VALUES (?, ?, ?, ?, ?, ?)"
    ),
    "select_sent": (
        "SELECT message_id, channel_id, sender_device_id, ts FROM {ks}.sent_messages "
        "WHERE sender_id = ? AND client_msg_id = ?"
    ),
    "insert_bucket": "INSERT INTO {ks}.channel_buckets (channel_id, bucket) VALUES (?, ?)",
    "select_buckets": (
        "SELECT bucket FROM {ks}.channel_buckets WHERE channel_id = ? AND bucket <= ?"
    ),
    "insert_message": (
        "INSERT INTO {ks}.messages (channel_id, bucket, message_id, sender_id, "
        "sender_device_id, client_msg_id, body, ts, terms, attachments, reply_to, event) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    # what an edit, delete or reaction does to the message it names (issue #20)
    "edit_message": (
        "UPDATE {ks}.messages SET body = ?, terms = ?, edited_at = ? " + _WHERE_MESSAGE
    ),
    "delete_message": (
        "UPDATE {ks}.messages SET body = '', terms = null, attachments = null, "
        "reactions = null, edited_at = null, deleted = true " + _WHERE_MESSAGE
    ),
    "set_reaction": "UPDATE {ks}.messages SET reactions[?] = ? " + _WHERE_MESSAGE,
    "unset_reaction": "DELETE reactions[?] FROM {ks}.messages " + _WHERE_MESSAGE,
    "select_unread": (
        "SELECT sender_id, event, deleted FROM {ks}.messages "
        "WHERE channel_id = ? AND bucket = ? AND message_id > ? LIMIT ?"
    ),
    "select_message": (
        f"SELECT {COLUMNS} FROM {{ks}}.messages "
        "WHERE channel_id = ? AND bucket = ? AND message_id = ?"
    ),
    "select_messages_in": (
        f"SELECT {COLUMNS} FROM {{ks}}.messages "
        "WHERE channel_id = ? AND bucket = ? AND message_id IN ?"
    ),
    "select_history": (
        f"SELECT {COLUMNS} FROM {{ks}}.messages "
        "WHERE channel_id = ? AND bucket = ? AND message_id < ? LIMIT ?"
    ),
    "select_latest": (
        "SELECT message_id FROM {ks}.messages WHERE channel_id = ? AND bucket = ? LIMIT 1"
    ),
    # inboxes: the head is the static column of the partition its seq is in, written in
    # the same batch as the entries; inbox_heads only says from which part to look
    "select_head": "SELECT seq FROM {ks}.inbox_heads WHERE user_id = ?",
    "upsert_head": "INSERT INTO {ks}.inbox_heads (user_id, seq) VALUES (?, ?)",
    "select_part_head": "SELECT head FROM {ks}.inbox WHERE user_id = ? AND part = ? LIMIT 1",
    "set_part_head": "UPDATE {ks}.inbox SET head = ? WHERE user_id = ? AND part = ?",
    "insert_inbox": (
        "INSERT INTO {ks}.inbox (user_id, part, seq, message_id, channel_id) VALUES (?, ?, ?, ?, ?)"
    ),
    "select_inbox_range": (
        "SELECT seq, message_id, channel_id FROM {ks}.inbox "
        "WHERE user_id = ? AND part = ? AND seq > ? AND seq <= ?"
    ),
    "select_inbox_seqs": (
        "SELECT seq, message_id FROM {ks}.inbox WHERE user_id = ? AND part = ? AND seq IN ?"
    ),
    # the id -> seq index of an inbox part, under the same partition key as the part's
    # entries: written in the entries' own batch (schema version 5)
    "insert_inbox_id": (
        "INSERT INTO {ks}.inbox_ids (user_id, part, message_id, seq) VALUES (?, ?, ?, ?)"
    ),
    "select_inbox_ids": (
        "SELECT message_id, seq FROM {ks}.inbox_ids WHERE user_id = ? AND part = ? "
        "AND message_id IN ?"
    ),
    # the index before version 5 (still read, never written)
    "select_inbox_by_message": (
        "SELECT message_id, seq FROM {ks}.inbox_by_message "
        "WHERE user_id = ? AND bucket = ? AND message_id IN ?"
    ),
    # receipts and presence
    "select_watermarks": (
        "SELECT delivered_upto, read_upto FROM {ks}.watermarks WHERE channel_id = ? AND user_id = ?"
    ),
    "upsert_watermarks": (
        "INSERT INTO {ks}.watermarks (channel_id, user_id, delivered_upto, read_upto) "
        "VALUES (?, ?, ?, ?)"
    ),
    "upsert_presence": ("INSERT INTO {ks}.presence (user_id, status, last_seen) VALUES (?, ?, ?)"),
    # "online" is a lease: the owner refreshes it; it lapses when the owner dies. last_seen
    # is written apart, without a TTL, so it outlives the lease.
    "lease_online": "UPDATE {ks}.presence USING TTL ? SET status = 'online' WHERE user_id = ?",
    "update_last_seen": "UPDATE {ks}.presence SET last_seen = ? WHERE user_id = ?",
    "lease_online_index": (
        "INSERT INTO {ks}.presence_online (partition, user_id, last_seen) VALUES (?, ?, ?) "
        "USING TTL ?"
    ),
    "delete_online_index": "DELETE FROM {ks}.presence_online WHERE partition = ? AND user_id = ?",
    "select_online_index": (
        "SELECT user_id, last_seen FROM {ks}.presence_online WHERE partition = ?"
    ),
    "select_presence": "SELECT status, last_seen FROM {ks}.presence WHERE user_id = ?",
}
# No lightweight transaction anywhere: every statement is a read or an upsert of the same
# values, safe to retry (IdempotentWriteRetryPolicy) or to run speculatively.


# How much longer than the lease a user stays findable in presence_online after their
# server stopped renewing: covers the consumer group's failover and the new owner's wait.
ORPHAN_WINDOW_S = 120


class CassandraMessageStore(InboxPart, SearchPart):
    """Messages, inboxes, receipts, presence and search in one Cassandra keyspace.

    Open with :meth:`open` (own cluster connection from settings) or :meth:`attach`
    (a session someone else owns and closes).
    """

    def __init__(
        self,
        session: Any,
        keyspace: str,
        statements: dict[str, Any],
        *,
        presence_lease_s: int = 60,
    ) -> None:
        self._presence_lease_s = presence_lease_s
        self._session: Any = session
        self._cql = AsyncCql(session)
        self._writes = PartitionWrites(self._cql, max_rows=BATCH_ROWS)
        # Saves under way in this process by (sender, client_msg_id): a second save of
        # the same key waits for the first instead of racing it (see save_message).
        self._saving: dict[tuple[int, str], asyncio.Future[Message]] = {}
        self._ks = keyspace
        self._q = statements
        self._search_statements: dict[tuple[int, bool], Any] = {}
        self._known_buckets: set[tuple[str, int]] = set()
        # Inbox heads of the users this process writes (a chat server, for its owned
        # partitions): None in processes that only read (the API), which must not cache.
        self._heads: dict[int, int] | None = None

    def cache_heads(self) -> None:
        """This process is the single writer of the inboxes it appends to (a chat server):
        keep their heads in memory, so ``hello`` and catch-up read no head row."""
        if self._heads is None:
            self._heads = {}

    def forget_heads(self) -> None:
        """Partitions moved: heads of users another server may have written are stale."""
        if self._heads is not None:
            self._heads.clear()

    @classmethod
    async def open(
        cls, settings: Settings, *, keyspace: str | None = None
    ) -> CassandraMessageStore:
        """Connect with the ``cassandra_*`` settings (:meth:`close` disconnects); refuses
        a keyspace that is not migrated to this version."""
        ks = check_identifier(keyspace or settings.cassandra_keyspace)
        session = await connect(settings)
        try:
            cql = AsyncCql(session)
            versions = await _applied_versions(cql, ks)
            if not versions or max(versions) < LATEST_VERSION:
                at = max(versions) if versions else "no"
                raise StorageError(
                    f"keyspace {ks} is at {at} schema version, this build needs "
                    f"{LATEST_VERSION}: run `tidings migrate`"
                )
            prepared = await cql.prepare(
                {name: cql_text.format(ks=ks) for name, cql_text in _STATEMENTS.items()}
            )
        except BaseException:
            await session.close()
            raise
        return cls(session, ks, prepared, presence_lease_s=settings.presence_lease_s)

    async def close(self) -> None:
        """Close the session this store opened (a no-op the second time)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- messages ------------------------------------------------------------------

    async def save_message(
        self, message: Message, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> Message:
        """Store a message once per (sender, client_msg_id); a resend returns the first.

        No lightweight transaction: this rests on the sender's chat server being the only
        one that stores that sender's messages (the owner of the sender's inbox
        partition; the argument, and what happens when ownership moves, is in
        docs/architecture.md, "Dedupe without Paxos"). Within this process, saves of the
        same (sender, client_msg_id) run one at a time: a second waits for the first and
        gets its answer. Then:

        1. one plain read of the dedupe record (``sent_messages``);
        2. none: write the record, then the message (the record goes first, so a
           message never exists without its record; the channel's bucket is listed
           alongside the record, before the message);
        3. a record: the first message is returned. A record without its message (a save
           cut short by a crash or a timeout) is finished here with the record's id,
           device and time and this resend's body, when the resend names the record's
           channel (a resend to another channel is a reuse, refused by the caller: it
           writes nothing).

        ``fence`` is awaited before each write and may raise to stop the save (the chat
        server's check that the sender is still its own). Only a message whose
        ``save_message`` returned is acked, so no reader relies on a half-done save.
        """
        key = (message.sender_id, message.client_msg_id)
        while (running := self._saving.get(key)) is not None:
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                if not running.cancelled():
                    raise  # this caller was cancelled
                # the first save was (the loop is closing): try again, or be cancelled too
        saving: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._saving[key] = saving
        try:
            saved = await self._save(message, fence)
        except asyncio.CancelledError:
            saving.cancel()
            raise
        except BaseException as exc:
            saving.set_exception(exc)
            saving.exception()  # waiters (if any) see it; nobody else must
            raise
        finally:
            del self._saving[key]
        saving.set_result(saved)
        return saved

    async def _save(self, m: Message, fence: Callable[[], Awaitable[None]] | None) -> Message:
        row = await self._cql.first(
            self._q["select_sent"], (m.sender_id, m.client_msg_id), what="save message (dedupe)"
        )
        if row is not None:
            first = dataclasses.replace(
                m,
                message_id=int(row["message_id"]),
                channel_id=row["channel_id"],
                sender_device_id=int(row["sender_device_id"]),
                ts=int(row["ts"]),
            )
            stored = await self._read_message(first.channel_id, first.message_id)
            if stored is not None:
                return stored
            if first.channel_id != m.channel_id:
                return first  # a reuse: the caller refuses it, nothing is written
            if fence is not None:
                await fence()
            await self._list_bucket(first)
            await self._apply_action(first)
            await self._insert_message(first)
            return first
        if fence is not None:
            await fence()
        await self._cql.gather(
            [
                self._cql.run(
                    self._q["insert_sent"],
                    (
                        m.sender_id,
                        m.client_msg_id,
                        m.message_id,
                        m.channel_id,
                        m.sender_device_id,
                        m.ts,
                    ),
                    what="save message (dedupe)",
                ),
                self._list_bucket(m),
            ]
        )
        if fence is not None:
            await fence()
        # The action first: the message row says "saved", and a resend re-applies it.
        await self._apply_action(m)
        await self._insert_message(m)
        return m

    async def _apply_action(self, event: Message) -> None:
        """What an edit, delete or reaction does to the message it names: plain upserts
        of the target's row, idempotent (a reaction is its user's element of the map)."""
        action = event.event
        if action is None or action["type"] not in ACTIONS:
            return
        target = int(action["message_id"])
        where = (event.channel_id, bucket_of(target), target)
        kind, what = action["type"], "apply " + action["type"]
        if kind == EDIT:
            terms = search_terms(event.body)
            await self._cql.run(
                self._q["edit_message"], (event.body, terms, event.ts, *where), what=what
            )
        elif kind == DELETE:
            await self._cql.run(self._q["delete_message"], where, what=what)
        elif action.get("emoji"):
            await self._cql.run(
                self._q["set_reaction"], (event.sender_id, action["emoji"], *where), what=what
            )
        else:
            await self._cql.run(self._q["unset_reaction"], (event.sender_id, *where), what=what)

    async def _list_bucket(self, m: Message) -> None:
        """List the message's bucket in ``channel_buckets`` (once per process): whoever
        can see a message can find its bucket."""
        key = (m.channel_id, bucket_of(m.message_id))
        if key in self._known_buckets:
            return
        await self._cql.run(self._q["insert_bucket"], key, what="save message (bucket)")
        if len(self._known_buckets) >= _KNOWN_BUCKETS_MAX:
            self._known_buckets.clear()
        self._known_buckets.add(key)

    async def _insert_message(self, m: Message) -> None:
        """Write the message; writes to one (channel, bucket) partition in the same loop
        tick go out as one unlogged single-partition batch (:class:`PartitionWrites`)."""
        bucket = bucket_of(m.message_id)
        await self._writes.write(
            self._q["insert_message"],
            (
                m.channel_id,
                bucket,
                m.message_id,
                m.sender_id,
                m.sender_device_id,
                m.client_msg_id,
                m.body,
                m.ts,
                search_terms(m.body) if m.event is None else [],  # events are not searched
                attachments_to_text(m.attachments),
                m.reply_to,
                json_to_text(m.event),
            ),
            ("messages", m.channel_id, bucket),
            size=200 + 2 * len(m.body.encode()),  # the body twice: itself and its words
            what="save message",
        )

    async def _read_message(self, channel_id: str, message_id: int) -> Message | None:
        row = await self._cql.first(
            self._q["select_message"],
            (channel_id, bucket_of(message_id), message_id),
            what="read message",
        )
        return message_of(row) if row else None

    async def find_sent(self, sender_id: int, client_msg_id: str) -> Message | None:
        """The message a sender sent with this client_msg_id, once it is fully saved."""
        row = await self._cql.first(
            self._q["select_sent"], (sender_id, client_msg_id), what="find sent message"
        )
        if row is None:
            return None
        return await self._read_message(row["channel_id"], int(row["message_id"]))

    async def _buckets(self, channel_id: str, upto: int) -> list[int]:
        """The buckets of a channel that may hold messages, newest first, up to ``upto``."""
        rows = await self._cql.rows(
            self._q["select_buckets"], (channel_id, upto), what="list buckets"
        )
        return [int(r["bucket"]) for r in rows]

    async def history(self, channel_id: str, before: int | None, limit: int) -> list[Message]:
        """Messages with ids below ``before``, newest first, walking buckets backwards."""
        upper = MAX_BIGINT if before is None else min(before, MAX_BIGINT)
        if limit <= 0 or upper <= 0:
            return []
        found: list[Message] = []
        for bucket in await self._buckets(channel_id, bucket_of(upper)):
            rows = await self._cql.rows(
                self._q["select_history"],
                (channel_id, bucket, upper, limit - len(found)),
                what="history",
            )
            found.extend(message_of(r) for r in rows)
            if len(found) >= limit:
                break
        return found

    async def latest_message_ids(self, channel_ids: Sequence[str]) -> dict[str, int]:
        """The newest message id of each of these channels that has any (each channel's buckets
        walked back from the newest)."""

        async def latest(channel_id: str) -> tuple[str, int | None]:
            for bucket in await self._buckets(channel_id, bucket_of(MAX_BIGINT)):
                row = await self._cql.first(
                    self._q["select_latest"], (channel_id, bucket), what="latest message"
                )
                if row is not None:
                    return channel_id, int(row["message_id"])
            return channel_id, None

        found = await self._cql.gather(latest(c) for c in dict.fromkeys(channel_ids))
        return {channel_id: mid for channel_id, mid in found if mid is not None}

    async def get_message(self, channel_id: str, message_id: int) -> Message | None:
        """One message of a channel as it is now (edited, deleted, reactions)."""
        return await self._read_message(channel_id, message_id)

    async def count_unread(self, channel_id: str, after: int, reader_id: int, limit: int) -> int:
        """Messages from others after ``after`` that count as unread, up to ``limit``:
        a walk of the channel's buckets newest first down to ``after``'s."""
        counted, oldest = 0, bucket_of(after)
        for bucket in await self._buckets(channel_id, bucket_of(MAX_BIGINT)):
            if bucket < oldest:
                break
            rows = await self._cql.rows(
                self._q["select_unread"], (channel_id, bucket, after, limit), what="unread"
            )
            counted += sum(
                1
                for r in rows
                if int(r["sender_id"]) != reader_id and r["event"] is None and not r["deleted"]
            )
            if counted >= limit:
                return limit
        return counted

    # --- inboxes -------------------------------------------------------------------

    def _batches(self, name: str, partitions: Iterable[list[tuple[Any, ...]]]) -> list[Any]:
        """Each partition's rows as unlogged single-partition batches of at most
        ``BATCH_ROWS`` (one round trip each, applied atomically), to run at once."""
        statement = self._q[name]
        return [
            self._cql.run(
                self._cql.batch((statement, row) for row in rows[start : start + BATCH_ROWS]),
                what=name,
            )
            for rows in partitions
            for start in range(0, len(rows), BATCH_ROWS)
        ]

    # --- receipts and presence -----------------------------------------------------

    async def get_watermarks(self, channel_id: str, user_id: int) -> Watermarks:
        """How far this user has received and read in this channel."""
        row = await self._cql.first(
            self._q["select_watermarks"], (channel_id, user_id), what="read watermarks"
        )
        if row is None:
            return Watermarks()
        return Watermarks(int(row["delivered_upto"] or 0), int(row["read_upto"] or 0))

    async def set_watermarks(self, channel_id: str, user_id: int, watermarks: Watermarks) -> None:
        """Move the watermarks forward only (each one becomes the max of stored and new).

        Read, then write: receipts of one (channel, user) are handled by the owner of the
        user's inbox partition, one at a time, so no other writer races in between. (Two
        racing writers could at worst move a watermark back to the slower one's value;
        the next receipt moves it forward again.)
        """
        current = await self.get_watermarks(channel_id, user_id)
        merged = Watermarks(
            delivered_upto=max(current.delivered_upto, watermarks.delivered_upto),
            read_upto=max(current.read_upto, watermarks.read_upto),
        )
        if merged == current:
            return
        await self._cql.run(
            self._q["upsert_watermarks"],
            (channel_id, user_id, merged.delivered_upto, merged.read_upto),
            what="save watermarks",
        )

    async def set_presence(
        self, user_id: int, presence: PresenceStatus, partition: int = 0
    ) -> None:
        """Record a user's presence: "online" is a lease in this inbox partition's index
        (:meth:`refresh_presence`), anything else a plain row, out of the index."""
        if presence.status == "online":
            await self.refresh_presence([OnlineLease(user_id, partition, presence.last_seen)])
            return
        await self._cql.gather(
            [
                self._cql.run(
                    self._q["upsert_presence"],
                    (user_id, presence.status, presence.last_seen),
                    what="save presence",
                ),
                self._cql.run(
                    self._q["delete_online_index"], (partition, user_id), what="save presence"
                ),
            ]
        )

    async def refresh_presence(self, leases: Sequence[OnlineLease]) -> None:
        """Renew the "online" lease of users this server serves.

        The status cell lives ``presence_lease_s``, so a dead server's users read as
        offline once it lapses. Their row in ``presence_online`` lives
        ``ORPHAN_WINDOW_S`` longer, long enough for the new owner of the partition
        (after the consumer group's failover) to find them and announce them offline to
        their friends. last_seen has no TTL.
        """
        ttl = self._presence_lease_s
        calls = []
        for lease in leases:  # each user's status and last_seen: one partition, one batch
            status = (self._q["lease_online"], (ttl, lease.user_id))
            if lease.last_seen is None:
                calls.append(self._cql.run(*status, what="lease presence"))
            else:
                seen = (self._q["update_last_seen"], (lease.last_seen, lease.user_id))
                calls.append(self._cql.run(self._cql.batch([status, seen]), what="lease presence"))
        index_rows = grouped(
            (
                lease.partition,
                (lease.partition, lease.user_id, lease.last_seen, ttl + ORPHAN_WINDOW_S),
            )
            for lease in leases
        )
        calls.extend(self._batches("lease_online_index", index_rows.values()))
        await self._cql.gather(calls)

    async def online_in_partition(self, partition: int) -> dict[int, int | None]:
        """The users whose online lease in this inbox partition has not lapsed, with their
        last_seen."""
        rows = await self._cql.rows(
            self._q["select_online_index"], (partition,), what="read presence"
        )
        return {int(row["user_id"]): row["last_seen"] for row in rows}

    async def get_presence(self, user_ids: Sequence[int]) -> dict[int, PresenceStatus]:
        """The presence of those of these users who have any (never seen: left out); a lapsed
        online lease reads as offline."""
        ids = list(dict.fromkeys(user_ids))
        rows = await self._cql.gather(
            self._cql.first(self._q["select_presence"], (uid,), what="read presence") for uid in ids
        )
        return {
            uid: PresenceStatus(row["status"] or "offline", row["last_seen"])
            for uid, row in zip(ids, rows, strict=True)
            if row is not None
        }


async def _applied_versions(cql: AsyncCql, keyspace: str) -> list[int]:
    """The schema versions recorded in ``keyspace.schema_migrations`` (none: empty)."""
    find = await cql.prepare(
        {
            "tables": "SELECT table_name FROM system_schema.tables "
            "WHERE keyspace_name = ? AND table_name = 'schema_migrations'"
        }
    )
    if not await cql.rows(find["tables"], (keyspace,), what="read schema"):
        return []
    read = await cql.prepare({"versions": f"SELECT version FROM {keyspace}.schema_migrations"})
    return sorted(int(r["version"]) for r in await cql.rows(read["versions"], what="read schema"))
