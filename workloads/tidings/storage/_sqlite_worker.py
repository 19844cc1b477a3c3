"""One SQLite connection on one thread; each call runs a whole transaction there.

Running a transaction as one synchronous function on the connection's own thread keeps
concurrent coroutines from interleaving inside it and costs one thread hop per call.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteWorker:
    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._path = str(path)
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        self._conn = conn

    async def start(self, schema: str) -> None:
        await self._run_raw(self._connect)
        await self.read(lambda conn: conn.executescript(schema))

    async def _run_raw(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside BEGIN IMMEDIATE ... COMMIT (rolled back if it raises)."""

        def run() -> T:
            conn = self._conn
            assert conn is not None, "SqliteWorker.start() was not awaited"
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run_raw(run)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._conn is not None, "SqliteWorker.start() was not awaited"
            return fn(self._conn)

        return await self._run_raw(run)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run_raw(close)
        self._executor.shutdown(wait=True)
