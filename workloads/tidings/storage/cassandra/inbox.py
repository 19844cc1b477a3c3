"""Inboxes in the Cassandra message store: gapless per-user sequences, one writer each.

An inbox is split into partitions of :data:`INBOX_PART_SEQS` consecutive seqs,
``(user_id, part)``; each holds its entries, its id -> seq index (``inbox_ids``) and, as a
static column, its head. Only the owner of the user's inbox partition appends, so the head
needs no lightweight transaction (docs/architecture.md, "The cluster send path").
"""

from __future__ import annotations

import logging
from collections.abc import Container, Sequence
from typing import Any

from tidings.core.model import InboxEntry, Message
from tidings.storage.cassandra.io_async import AsyncCql
from tidings.storage.cassandra.layout import BATCH_ROWS, bucket_of, grouped, message_of

log = logging.getLogger(__name__)

HEAD_CACHE_SIZE = 1_000_000

# Part of the on-disk layout: changing it for an existing keyspace loses data.
INBOX_PART_SEQS = 1 << 16  # inbox partition: 65,536 consecutive seqs of one user


def _part_of(seq: int) -> int:
    """The inbox partition a seq is in."""
    return seq // INBOX_PART_SEQS


def _last_seq_of(part: int) -> int:
    """The last seq an inbox partition holds."""
    return (part + 1) * INBOX_PART_SEQS - 1


class InboxPart:
    """The inbox half of :class:`~tidings.storage.cassandra.store.CassandraMessageStore`
    (a mixin: the store owns the connection, the prepared statements and the heads)."""

    _cql: AsyncCql
    _q: dict[str, Any]
    _heads: dict[int, int] | None

    async def append_inbox(
        self, user_id: int, messages: Sequence[Message], *, new: Container[int] = ()
    ) -> list[InboxEntry]:
        """Append to a user's inbox with the next gapless seqs; present ids are skipped.

        Only the owner of the user's partition calls this (single writer), so the head
        needs no lightweight transaction. The head (a static column) and the id index
        (``inbox_ids``) share the partition key ``(user_id, part)`` of the entries, so
        an append is **one** unlogged batch of one partition key: one request, applied
        atomically, and readers (who read only up to the head, :meth:`inbox_after`) see
        all of it or none of it.

        1. read the head ``h``; find which ids are already in the inbox at a seq ``<= h``
           (ids in ``new`` are known not to be: no lookup for them);
        2. write the new entries ``h+1 .. h+n``, their index rows and the head in one
           batch (:meth:`_write_entries`).

        An append of more entries than one batch takes, or one that crosses into the
        next inbox partition, writes the extra batches first, without the head: a crash
        leaves them beyond the head, invisible to readers and overwritten by the next
        append; their index rows then point at seqs holding other messages, so step 1
        trusts an index row only when the entry at that seq holds the same id.
        """
        first_of: dict[int, Message] = {}
        for m in messages:
            first_of.setdefault(m.message_id, m)  # a repeated id is appended once
        unique = list(first_of.values())
        if not unique:
            return []
        head = await self.inbox_head(user_id)
        unknown = [m for m in unique if m.message_id not in new]
        present = await self._present_in_inbox(user_id, unknown, head) if unknown else set()
        entries = [
            InboxEntry(head + 1 + i, m)
            for i, m in enumerate(m for m in unique if m.message_id not in present)
        ]
        if not entries:
            return []
        await self._write_entries(user_id, entries)
        last = entries[-1].seq
        if _part_of(last) != _part_of(head):
            # Readers look for the head from this part on (see inbox_head).
            await self._cql.run(self._q["upsert_head"], (user_id, last), what="move inbox head")
        if self._heads is not None:
            self._heads[user_id] = last
        return entries

    async def _write_entries(self, user_id: int, entries: Sequence[InboxEntry]) -> None:
        """Each inbox partition's entries and index rows, with its head: a partition's
        last batch carries its head (the last seq written there) and goes only after
        the partition's other batches succeeded; partitions in order. So the head never
        names a missing entry, and a head in a full partition sends readers on to the
        next one."""
        per_batch = BATCH_ROWS // 2  # an entry and its index row each
        for part, in_part in grouped((_part_of(e.seq), e) for e in entries).items():
            chunks = [in_part[i : i + per_batch] for i in range(0, len(in_part), per_batch)]
            await self._cql.gather(
                self._cql.run(
                    self._cql.batch(self._entry_rows(user_id, part, chunk)), what="append inbox"
                )
                for chunk in chunks[:-1]
            )
            head = (self._q["set_part_head"], (chunks[-1][-1].seq, user_id, part))
            final = self._cql.batch([*self._entry_rows(user_id, part, chunks[-1]), head])
            await self._cql.run(final, what="append inbox")

    def _entry_rows(
        self, user_id: int, part: int, entries: Sequence[InboxEntry]
    ) -> list[tuple[Any, tuple[Any, ...]]]:
        """The ``inbox`` and ``inbox_ids`` rows of entries of one inbox partition."""
        entry, index = self._q["insert_inbox"], self._q["insert_inbox_id"]
        rows: list[tuple[Any, tuple[Any, ...]]] = []
        for e in entries:
            mid = e.message.message_id
            rows.append((entry, (user_id, part, e.seq, mid, e.message.channel_id)))
            rows.append((index, (user_id, part, mid, e.seq)))
        return rows

    async def _present_in_inbox(
        self, user_id: int, messages: Sequence[Message], head: int
    ) -> set[int]:
        """The ids among ``messages`` already in the inbox at a seq up to ``head``: the
        index of every part up to the head's (nearly always just one), and the index
        written before schema version 5 (``inbox_by_message``, by time bucket)."""
        if head <= 0:
            return set()
        ids = [m.message_id for m in messages]
        by_bucket = grouped((bucket_of(m.message_id), m.message_id) for m in messages)
        pages = await self._cql.gather(
            [
                *(
                    self._cql.rows(
                        self._q["select_inbox_ids"], (user_id, part, ids), what="inbox lookup"
                    )
                    for part in range(_part_of(head) + 1)
                ),
                *(
                    self._cql.rows(
                        self._q["select_inbox_by_message"],
                        (user_id, bucket, bucket_ids),
                        what="inbox lookup",
                    )
                    for bucket, bucket_ids in by_bucket.items()
                ),
            ]
        )
        claimed = {
            int(r["message_id"]): int(r["seq"])
            for page in pages
            for r in page
            if int(r["seq"]) <= head
        }
        if not claimed:
            return set()
        by_part = grouped((_part_of(seq), seq) for seq in claimed.values())
        pages = await self._cql.gather(
            self._cql.rows(self._q["select_inbox_seqs"], (user_id, part, seqs), what="inbox lookup")
            for part, seqs in by_part.items()
        )
        return {
            int(r["message_id"])
            for page in pages
            for r in page
            if claimed.get(int(r["message_id"])) == int(r["seq"])
        }

    async def inbox_after(self, user_id: int, cursor: int, limit: int) -> list[InboxEntry]:
        """Entries with seq above ``cursor``, in order, never past the head.

        The head moves only after the entries below it were written (at the same
        consistency level), so everything up to the head is there: no gaps. Entries a
        crashed append left beyond the head are never returned.
        """
        if limit <= 0:
            return []
        low = max(cursor, 0)  # seqs start at 1
        upto = min(await self.inbox_head(user_id), low + limit)
        if upto <= low:
            return []
        pages = await self._cql.gather(
            self._cql.rows(
                self._q["select_inbox_range"], (user_id, part, low, upto), what="read inbox"
            )
            for part in range(_part_of(low + 1), _part_of(upto) + 1)
        )
        slots = sorted((r for page in pages for r in page), key=lambda r: int(r["seq"]))
        wanted = grouped(
            ((r["channel_id"], bucket_of(int(r["message_id"]))), int(r["message_id"]))
            for r in slots
        )
        found = await self._cql.gather(
            self._cql.rows(
                self._q["select_messages_in"], (channel, bucket, ids), what="read inbox messages"
            )
            for (channel, bucket), ids in wanted.items()
        )
        by_id = {int(r["message_id"]): message_of(r) for page in found for r in page}
        entries: list[InboxEntry] = []
        for r in slots:
            message = by_id.get(int(r["message_id"]))
            if message is None:  # never saved: cannot happen for an acked message
                log.warning(
                    "inbox of user %d: message %s at seq %s is missing",
                    user_id,
                    r["message_id"],
                    r["seq"],
                )
                continue
            entries.append(InboxEntry(int(r["seq"]), message))
        return entries

    async def inbox_head(self, user_id: int) -> int:
        """The highest seq whose entry (and every one below it) is written.

        Each inbox partition holds its own static ``head``. Nearly every user's inbox is
        in its first partition (65,536 entries), so that head is read first and, when the
        partition is not full, is the answer: one read. Otherwise ``inbox_heads`` names a
        seq at or below the head (it moves when an append enters a new partition; before
        schema version 4 it was the head itself), and from that partition on each
        partition's head is read; a full partition's head is its last seq, and then the
        next partition may hold more.
        """
        heads = self._heads
        if heads is not None and (cached := heads.get(user_id)) is not None:
            return cached
        first = await self._part_head(user_id, 0)
        if first is not None and first < _last_seq_of(0):
            head = first
        else:
            row = await self._cql.first(self._q["select_head"], (user_id,), what="inbox head")
            head = max(int(row["seq"]) if row and row["seq"] is not None else 0, first or 0)
            part = _part_of(head)
            while True:
                part_head = first if part == 0 else await self._part_head(user_id, part)
                if part_head is None:
                    break
                head = max(head, part_head)
                if head < _last_seq_of(part):
                    break
                part += 1
        if heads is not None:
            if len(heads) >= HEAD_CACHE_SIZE:
                heads.clear()  # crude but bounded; refilled one read per user
            heads[user_id] = head
        return head

    async def _part_head(self, user_id: int, part: int) -> int | None:
        row = await self._cql.first(self._q["select_part_head"], (user_id, part), what="inbox head")
        return int(row["head"]) if row is not None and row["head"] is not None else None
