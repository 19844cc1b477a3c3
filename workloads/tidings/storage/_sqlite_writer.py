"""Group commit on SQLite: one writer thread, one transaction and one fsync per batch.

Operations are queued from the event loop with :meth:`GroupCommitWriter.submit`; the
writer thread takes everything queued since its last commit, runs it inside one
``BEGIN IMMEDIATE ... COMMIT`` and hands every result back to the loop in one hop
(``call_soon_threadsafe`` once per batch, not per statement). While one batch commits,
the next one gathers, so the batch grows with the load and the fsync is shared.

A result is delivered only after its batch committed: a caller that acks on it acks
durable data. An operation that raises is taken out of the batch (the batch is rolled
back and run again without it) and gets its exception; the others are unaffected.

Reads run on a second connection on a thread of their own (WAL: readers see the last
commit and never wait for the writer's fsync).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

Operation = Callable[[sqlite3.Connection], Any]
# Called on the writer thread after a batch's statements ran, before its COMMIT (fault
# injection in tests; see TIDINGS_FAULT_KILL_BEFORE_COMMIT_AFTER).
BeforeCommit = Callable[[int], None]
# ``after_batch(conn, stage)``: stage "commit" runs inside the transaction just before
# COMMIT (write what the batch's operations accumulated); "committed" after the COMMIT;
# "rolled_back" after a ROLLBACK (undo what the operations changed in memory).
AfterBatch = Callable[[sqlite3.Connection, str], None]
# Runs on the event loop after a batch committed and its futures were resolved, with the
# batch's results (exceptions included).
OnCommitted = Callable[[list[Any]], None]


def connect(path: Path | str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class WriterClosed(Exception):
    """The writer stopped before this operation ran."""


class GroupCommitWriter:
    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        max_batch: int = 2000,
        before_commit: BeforeCommit | None = None,
        after_batch: AfterBatch | None = None,
        on_committed: OnCommitted | None = None,
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._before_commit = before_commit
        self._after_batch = after_batch
        self._on_committed = on_committed
        self._queue: deque[tuple[Operation, asyncio.Future[Any]]] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")
        self._reader: sqlite3.Connection | None = None
        self.batches = 0
        self.operations = 0

    async def start(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Open both connections; ``prepare`` runs first on the writer's (schema, loads)."""
        loop = asyncio.get_running_loop()
        self._loop = loop

        def open_writer() -> None:
            self._conn = connect(self._path, self._synchronous)
            prepare(self._conn)

        await loop.run_in_executor(self._reader_pool, open_writer)

        def open_reader() -> None:
            self._reader = connect(self._path, self._synchronous)

        await loop.run_in_executor(self._reader_pool, open_reader)
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()

    # --- the event loop's side -----------------------------------------------------

    def submit(self, op: Operation) -> asyncio.Future[Any]:
        """Queue ``op``; the future resolves after the batch holding it committed."""
        assert self._loop is not None, "GroupCommitWriter.start() was not awaited"
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._closing:
            future.set_exception(WriterClosed("the store is closed"))
            return future
        self._queue.append((op, future))
        self._wake.set()
        return future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the reader connection (sees the last commit)."""

        def run() -> T:
            assert self._reader is not None, "GroupCommitWriter.start() was not awaited"
            return fn(self._reader)

        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, run)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _complete(
        self, batch: list[tuple[Operation, asyncio.Future[Any]]], results: list[Any]
    ) -> None:
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if self._on_committed is not None:
            # After the futures: their waiters (acks) run first in the next loop tick.
            self._on_committed(results)

    # --- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None and self._loop is not None
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: list[tuple[Operation, asyncio.Future[Any]]] = []
                while self._queue and len(batch) < self._max_batch:
                    batch.append(self._queue.popleft())
                results = self._run_batch(conn, batch)
                self.batches += 1
                self.operations += len(batch)
                try:
                    self._loop.call_soon_threadsafe(self._complete, batch, results)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return
            if self._closing and not self._queue:
                return

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[tuple[Operation, asyncio.Future[Any]]]
    ) -> list[Any]:
        failed: dict[int, BaseException] = {}
        while True:
            results: list[Any] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for index, (op, _) in enumerate(batch):
                    if index in failed:
                        results.append(failed[index])
                        continue
                    try:
                        results.append(op(conn))
                    except Exception as exc:
                        failed[index] = exc
                        raise _RetryWithout from exc
                if self._after_batch is not None:
                    self._after_batch(conn, "commit")
                if self._before_commit is not None:
                    self._before_commit(len(batch))
                conn.execute("COMMIT")
                if self._after_batch is not None:
                    self._after_batch(conn, "committed")
                return results
            except _RetryWithout:
                conn.execute("ROLLBACK")
                if self._after_batch is not None:
                    self._after_batch(conn, "rolled_back")
                continue
            except Exception as exc:  # the commit itself failed: nothing of the batch holds
                log.exception("a SQLite batch failed")
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if self._after_batch is not None:
                    self._after_batch(conn, "rolled_back")
                return [exc] * len(batch)

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        for _, future in self._queue:
            if not future.done():
                future.set_exception(WriterClosed("the store is closed"))
        self._queue.clear()

        def close_all() -> None:
            for conn in (self._conn, self._reader):
                if conn is not None:
                    conn.close()
            self._conn = self._reader = None

        await asyncio.get_running_loop().run_in_executor(self._reader_pool, close_all)
        self._reader_pool.shutdown(wait=True)


class _RetryWithout(Exception):
    """An operation failed: roll the batch back and run it again without that one."""


def kill_before_commit_after(messages: int) -> BeforeCommit:
    """Fault injection for tests: SIGKILL this process before the COMMIT of the batch in
    which the ``messages``-th message is written (its statements ran, nothing of the
    batch committed). The hook is called with the number of messages in each batch."""
    seen = [0]

    def hook(in_batch: int) -> None:
        seen[0] += in_batch
        if seen[0] >= messages:
            log.warning("fault injection: SIGKILL before the COMMIT of %d messages", in_batch)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
