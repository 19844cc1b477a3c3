"""Upgrading from the SQLite bus: what an older `tidings up` acked but had not yet
appended to inboxes.

Versions before the group-commit store kept a durable bus log in ``bus.db`` between
storing a message and appending it to the members' inboxes. The store now does both in
one transaction, so the log is no longer written; at start-up whatever an older version
left uncommitted in it is appended once (inboxes skip ids they hold), and the file is
renamed ``bus.db.replayed`` so it is never read again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import defaultdict
from pathlib import Path

from tidings.core.model import Message
from tidings.storage.sqlite.store import SqliteMessageStore

log = logging.getLogger(__name__)
CONSUMER = "inbox"


def _retire(path: Path) -> None:
    path.rename(path.with_name(path.name + ".replayed"))
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _pending_events(path: Path) -> dict[int, list[Message]] | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(str(path))
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "bus_log" not in tables:
            return {}
        committed = 0
        if "bus_commits" in tables:
            row = conn.execute(
                "SELECT offset FROM bus_commits WHERE consumer=?", (CONSUMER,)
            ).fetchone()
            committed = int(row[0]) if row else 0
        by_user: dict[int, list[Message]] = defaultdict(list)
        for (raw,) in conn.execute(
            "SELECT event FROM bus_log WHERE offset>? ORDER BY offset", (committed,)
        ):
            event = json.loads(raw)
            if event.get("kind") == "msg":
                by_user[int(event["user_id"])].append(Message.from_wire(event["payload"]))
        return by_user
    finally:
        conn.close()


async def replay_legacy_bus(path: Path, store: SqliteMessageStore) -> int:
    """Append what ``path`` (an old bus.db) holds past its committed offset; returns the
    number of inbox entries added. Does nothing when the file does not exist."""
    pending = await asyncio.to_thread(_pending_events, path)
    if pending is None:
        return 0
    added = 0
    for user_id, messages in pending.items():
        added += len(await store.append_inbox(user_id, messages))
    await asyncio.to_thread(_retire, path)
    log.info("replayed the old bus log", extra={"inbox_entries": added})
    return added
