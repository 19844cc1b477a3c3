"""The Cassandra message store's on-disk layout: partitions, columns, a row as a Message.

Shared by the store's parts (:mod:`~tidings.storage.cassandra.store`,
:mod:`~tidings.storage.cassandra.inbox`, :mod:`~tidings.storage.cassandra.search`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any

from tidings.core.ids import EPOCH_MS, timestamp_ms
from tidings.core.model import Message, attachments_from_text, json_from_text
from tidings.storage.cassandra.io_async import Row

# Part of the on-disk layout: changing it for an existing keyspace loses data.
BUCKET_MS = 30 * 24 * 3600 * 1000  # messages partition: 30 days of one channel

MAX_BIGINT = 2**63 - 1
BATCH_ROWS = 50  # single-partition unlogged batches stay well under the 50 KiB limit

COLUMNS = (
    "channel_id, message_id, sender_id, sender_device_id, client_msg_id, body, ts, attachments, "
    "reply_to, event, edited_at, deleted, reactions"
)


def bucket_of(message_id: int) -> int:
    """The 30-day time bucket of a Snowflake id (0 is the id epoch's first 30 days)."""
    return max(timestamp_ms(message_id) - EPOCH_MS, 0) // BUCKET_MS


def message_of(row: Row) -> Message:
    """The Message a row of ``messages`` (its :data:`COLUMNS`) holds."""
    return Message(
        message_id=int(row["message_id"]),
        channel_id=row["channel_id"],
        sender_id=int(row["sender_id"]),
        sender_device_id=int(row["sender_device_id"]),
        client_msg_id=row["client_msg_id"],
        body=row["body"],
        ts=int(row["ts"]),
        attachments=attachments_from_text(row["attachments"]),
        reply_to=row["reply_to"],
        event=json_from_text(row["event"]),
        edited_at=row["edited_at"],
        deleted=bool(row["deleted"]),
        reactions={int(u): e for u, e in (row["reactions"] or {}).items()},
    )


def grouped(items: Iterable[tuple[Hashable, Any]]) -> dict[Any, list[Any]]:
    """Values by key, keys in order of first appearance."""
    groups: dict[Any, list[Any]] = defaultdict(list)
    for key, value in items:
        groups[key].append(value)
    return groups
