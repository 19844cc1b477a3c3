"""Group commit on SQLite: one transaction and one fsync per batch of operations.

Operations are queued from the event loop with :meth:`GroupCommitWriter.submit`. At the
end of the loop tick the writer runs everything queued inside one ``BEGIN IMMEDIATE``,
on the loop's own thread (the statements are short: no thread hand-off per statement,
and no fight for the GIL with a writer thread), then hands the ``COMMIT`` — the write
of the WAL frames and the fsync, which release the GIL — to a thread of its own. While
one batch commits, the next one gathers, so the batch grows with the load and the fsync
is shared: one hand-off per batch.

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
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tidings import metrics

T = TypeVar("T")
log = logging.getLogger(__name__)

Operation = Callable[[sqlite3.Connection], Any]
# Called after a batch's statements ran, before its COMMIT (fault injection in tests;
# see TIDINGS_FAULT_KILL_BEFORE_COMMIT_AFTER), with the number of operations in it.
BeforeCommit = Callable[[int], None]
# ``after_batch(conn, stage)``: stage "commit" runs inside the transaction just before
# COMMIT (write what the batch's operations accumulated); "committed" after the COMMIT;
# "rolled_back" after a ROLLBACK (undo what the operations changed in memory).
AfterBatch = Callable[[sqlite3.Connection, str], None]
# Runs after a batch committed and its futures were resolved, with the batch's results
# (exceptions included).
OnCommitted = Callable[[list[Any]], None]
Batch = list[tuple[Operation, "asyncio.Future[Any]"]]


def connect(path: Path | str, synchronous: str) -> sqlite3.Connection:
    """Open the database for the writer: autocommit (the writer says BEGIN), WAL, the given
    ``synchronous`` level and a 30 s busy timeout."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class WriterClosed(Exception):
    """The writer stopped before this operation ran."""


class GroupCommitWriter:
    """Runs queued operations in batches, one transaction and one fsync each (see the module's
    docstring); :meth:`start` it with the schema's preparation, :meth:`close` it to finish."""

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
        self._scheduled = False
        self._committing: asyncio.Future[Any] | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._commit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
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

        await loop.run_in_executor(self._commit_pool, open_writer)

        def open_reader() -> None:
            self._reader = connect(self._path, self._synchronous)

        await loop.run_in_executor(self._reader_pool, open_reader)

    def submit(self, op: Operation) -> asyncio.Future[Any]:
        """Queue ``op``; the future resolves after the batch holding it committed."""
        loop = self._loop
        assert loop is not None, "GroupCommitWriter.start() was not awaited"
        future: asyncio.Future[Any] = loop.create_future()
        if self._closing:
            future.set_exception(WriterClosed("the store is closed"))
            return future
        self._queue.append((op, future))
        if not self._scheduled and self._committing is None:
            self._scheduled = True
            loop.call_soon(self._run_next)
        return future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the reader connection (sees the last commit)."""

        def run() -> T:
            assert self._reader is not None, "GroupCommitWriter.start() was not awaited"
            return fn(self._reader)

        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, run)

    @property
    def pending(self) -> int:
        """Operations queued and not yet taken into a batch."""
        return len(self._queue)

    # --- one batch: statements here, COMMIT on the commit thread --------------------

    def _run_next(self) -> None:
        self._scheduled = False
        if self._committing is not None or not self._queue:
            return
        conn, loop = self._conn, self._loop
        assert conn is not None and loop is not None
        batch: Batch = []
        while self._queue and len(batch) < self._max_batch:
            batch.append(self._queue.popleft())
        started = time.perf_counter()
        try:
            results = self._statements(conn, batch)
        except Exception as exc:  # BEGIN itself failed (the database is unusable)
            log.exception("a SQLite batch failed")
            self._finish(batch, [exc] * len(batch), started)
            return
        if self._before_commit is not None:
            self._before_commit(len(batch))
        committing = loop.run_in_executor(self._commit_pool, conn.execute, "COMMIT")
        self._committing = committing
        committing.add_done_callback(lambda done: self._committed(done, batch, results, started))

    def _statements(self, conn: sqlite3.Connection, batch: Batch) -> list[Any]:
        """Run the batch's operations inside BEGIN; an operation that fails is taken out
        and the rest run again."""
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
                return results
            except _RetryWithout:
                conn.execute("ROLLBACK")
                if self._after_batch is not None:
                    self._after_batch(conn, "rolled_back")

    def _committed(
        self, done: asyncio.Future[Any], batch: Batch, results: list[Any], started: float
    ) -> None:
        self._committing = None
        conn = self._conn
        assert conn is not None
        exc = done.exception() if not done.cancelled() else WriterClosed("closed")
        if exc is not None:  # nothing of the batch holds
            log.error("a SQLite commit failed", exc_info=exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if self._after_batch is not None:
                self._after_batch(conn, "rolled_back")
            results = [exc] * len(batch)
        elif self._after_batch is not None:
            self._after_batch(conn, "committed")
        self._finish(batch, results, started)
        if self._queue and not self._scheduled:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._run_next)

    def _finish(self, batch: Batch, results: list[Any], started: float) -> None:
        metrics.STORE_COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.STORE_BATCH_SIZE.observe(len(batch))
        self.batches += 1
        self.operations += len(batch)
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

    async def close(self) -> None:
        """Finish the batch committing and what is queued, then close."""
        self._closing = True
        while self._committing is not None or self._queue:
            if self._committing is not None:
                await asyncio.wait([self._committing])
                await asyncio.sleep(0)  # let its done callback run
            elif self._queue:
                self._run_next()
        loop = asyncio.get_running_loop()

        def close_writer() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        def close_reader() -> None:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

        await loop.run_in_executor(self._commit_pool, close_writer)
        await loop.run_in_executor(self._reader_pool, close_reader)
        self._commit_pool.shutdown(wait=True)
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
