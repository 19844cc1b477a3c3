"""The embedded default's bus: an in-process queue whose log lives in SQLite.

Durable events go into a log table (so an ``ack`` survives SIGKILL: after a restart the
consumer picks up from its committed offset, exactly like a Kafka consumer group);
ephemeral events stay in memory.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from tidings.bus.base import EventHandler, InboxEvent
from tidings.storage._sqlite_worker import SqliteWorker

SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_log (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    event BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_commits (
    consumer TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
);
"""
CONSUMER = "inbox"


class SqliteBus:
    def __init__(self, path: Path | str, *, batch_size: int = 500, synchronous: str = "FULL"):
        self._db = SqliteWorker(path, synchronous=synchronous)
        self._batch_size = batch_size
        self._ephemeral: list[InboxEvent] = []
        self._wakeup = asyncio.Event()

    async def start(self) -> None:
        await self._db.start(SCHEMA)
        self._wakeup.set()  # replay whatever was left uncommitted by the last run

    async def publish(self, events: Sequence[InboxEvent]) -> None:
        rows = [(event.encode(),) for event in events]

        def append(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT INTO bus_log (event) VALUES (?)", rows)

        await self._db.transaction(append)
        self._wakeup.set()

    async def publish_ephemeral(self, events: Sequence[InboxEvent]) -> None:
        self._ephemeral.extend(events)
        self._wakeup.set()

    def _read_batch(self, conn: sqlite3.Connection) -> tuple[int, list[InboxEvent]]:
        row = conn.execute(
            "SELECT offset FROM bus_commits WHERE consumer=?", (CONSUMER,)
        ).fetchone()
        committed = int(row[0]) if row else 0
        rows = conn.execute(
            "SELECT offset, event FROM bus_log WHERE offset>? ORDER BY offset LIMIT ?",
            (committed, self._batch_size),
        ).fetchall()
        last = int(rows[-1][0]) if rows else committed
        return last, [InboxEvent.decode(r[1]) for r in rows]

    async def _commit(self, offset: int) -> None:
        def commit(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO bus_commits (consumer, offset) VALUES (?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET offset=excluded.offset",
                (CONSUMER, offset),
            )
            conn.execute("DELETE FROM bus_log WHERE offset<=?", (offset,))

        await self._db.transaction(commit)

    async def consume(self, handler: EventHandler) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            ephemeral, self._ephemeral = self._ephemeral, []
            if ephemeral:
                await handler(ephemeral)
            while True:
                offset, durable = await self._db.read(self._read_batch)
                if not durable:
                    break
                await handler(durable)
                await self._commit(offset)
                if self._ephemeral:  # keep typing/presence timely under a message flood
                    ephemeral, self._ephemeral = self._ephemeral, []
                    await handler(ephemeral)

    async def close(self) -> None:
        await self._db.close()
