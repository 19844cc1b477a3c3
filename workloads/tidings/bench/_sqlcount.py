"""Counting the SQL statements a process runs, without changing its code.

`tidings bench trace` copies this file as ``sitecustomize.py`` into a directory it puts
first on the server's ``PYTHONPATH``; Python imports it at start-up (``site``), and then
:func:`install` wraps ``sqlite3.connect`` so that every connection gets a
``set_trace_callback`` counting what it runs. Both ways the server opens SQLite go through
``sqlite3.connect``: aiosqlite (under SQLAlchemy: the directory) calls it on its own
thread, the message store's worker calls it directly. On SIGUSR1 the counts so far
(cumulative) are written as JSON to ``$TIDINGS_BENCH_SQLCOUNT_OUT``; the orchestrator
asks before and after a window and subtracts.

What the trace callback sees (Python 3.11 passes ``sqlite3_expanded_sql`` of the running
statement, literals inlined) and how it is counted:

- ``top``: a statement the application ran (``BEGIN``, ``SELECT ...``, ``COMMIT``).
- ``trigger``: SQLite calls the callback again when a trigger program starts and for each
  statement in it; Python then passes the *outer* statement's text again. An INSERT,
  UPDATE, DELETE or REPLACE identical to the previous top-level statement on the same
  connection is counted as such a trigger step, not as another statement.
- ``nested``: statements SQLite runs inside a statement, e.g. FTS5 writing its shadow
  tables (``-- REPLACE INTO 'main'.'messages_fts_data' ...``); they come prefixed ``-- ``.

Nothing from the ``tidings`` package is imported here: this file runs before it, and in a
reference tree that has no such module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

ENV_OUT = "TIDINGS_BENCH_SQLCOUNT_OUT"
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
KINDS: tuple[str, ...] = ("SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN", "COMMIT")
KINDS += ("ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA", "WITH", "CREATE", "END")

_lock = threading.RLock()
# (database, how, sql) -> count since the last fold; folded into _folded on each dump.
_raw: Counter[tuple[str, str, str]] = Counter()
_folded: Counter[tuple[str, str, str, str]] = Counter()  # (database, how, kind, normalized)
_connections: Counter[tuple[str, str]] = Counter()  # (database, opener module)
_seq = 0

_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_LIST = re.compile(r"\?(?:\s*,\s*\?)+")
_SPACE = re.compile(r"\s+")


def kind_of(sql: str) -> str:
    """The statement's first keyword (SELECT, INSERT, ...), OTHER if unknown."""
    text = sql[3:] if sql.startswith("-- ") else sql
    word = text.lstrip(" \t\n(").split(None, 1)[:1]
    first = word[0].upper().rstrip(";") if word else ""
    return first if first in KINDS else "OTHER"


def normalize(sql: str) -> str:
    """The statement with its literals (inlined by ``expanded_sql``) replaced by ``?``.
    Nested statements come unexpanded, their quoted strings are table names: kept."""
    text = sql if sql.startswith("--") else _STRING.sub("?", sql)
    text = _NUMBER.sub("?", text)
    text = _LIST.sub("?, ...", text)
    return _SPACE.sub(" ", text).strip()[:300]


def tracer(database: str) -> Callable[[str], None]:
    """The trace callback of one connection (called on that connection's thread)."""
    last = [""]

    def trace(sql: str) -> None:
        if sql.startswith("--"):
            how = "nested"
        elif sql == last[0] and kind_of(sql) in WRITES:
            how = "trigger"
        else:
            how = "top"
            last[0] = sql
        with _lock:
            _raw[(database, how, sql)] += 1

    return trace


def _database(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    where = kwargs.get("database", args[0] if args else "")
    name = os.fspath(where) if isinstance(where, str | bytes | os.PathLike) else str(where)
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    if name.startswith("file:"):
        name = name[5:].split("?", 1)[0]
    return os.path.basename(name) or name or "?"


def _wrap(connect: Callable[..., sqlite3.Connection]) -> Callable[..., sqlite3.Connection]:
    def counted_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        database = _database(args, kwargs)
        caller = sys._getframe(1).f_globals.get("__name__", "?")
        with _lock:
            _connections[(database, str(caller))] += 1
        conn.set_trace_callback(tracer(database))
        return conn

    counted_connect.__wrapped__ = connect  # type: ignore[attr-defined]
    return counted_connect


def _fold() -> None:
    with _lock:
        raw = list(_raw.items())
        _raw.clear()
    for (database, how, sql), n in raw:
        _folded[(database, how, kind_of(sql), normalize(sql))] += n


def snapshot() -> dict[str, Any]:
    """Cumulative counts: connections opened and statements by database, kind and text."""
    _fold()
    tidings = sys.modules.get("tidings")
    return {
        "pid": os.getpid(),
        "seq": _seq,
        "time_ns": time.monotonic_ns(),
        "tidings_file": getattr(tidings, "__file__", None),
        "connections": [
            {"database": d, "opener": o, "count": n} for (d, o), n in sorted(_connections.items())
        ],
        "statements": [
            {"database": d, "how": h, "kind": k, "sql": s, "count": n}
            for (d, h, k, s), n in sorted(_folded.items())
        ],
    }


def dump(path: str) -> None:
    """Write :func:`snapshot` to ``path`` (through a temporary file, replaced at once)."""
    global _seq
    _seq += 1
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(snapshot(), f)
    os.replace(tmp, path)


def install(out: str | None = None) -> bool:
    """Wrap ``sqlite3.connect`` and dump to ``out`` on SIGUSR1; False if not asked to."""
    out = out or os.environ.get(ENV_OUT)
    if not out or getattr(sqlite3.connect, "__wrapped__", None) is not None:
        return False
    import sqlite3.dbapi2 as dbapi2

    sqlite3.connect = _wrap(sqlite3.connect)  # type: ignore[assignment]
    dbapi2.connect = sqlite3.connect
    path = out

    def on_signal(_sig: int, _frame: Any) -> None:
        # Not here: the handler runs on the main thread between two bytecodes, possibly
        # in the middle of a trace callback's update of the counts (statements run on the
        # event loop's thread too); a thread of its own waits for the lock instead.
        threading.Thread(target=dump, args=(path,), name="sqlcount-dump", daemon=True).start()

    signal.signal(signal.SIGUSR1, on_signal)
    return True


def overhead_ns_per_statement(statements: int = 20000) -> float:
    """What the counting adds to one statement, measured here (an estimate for the
    server: same Python, same callback, an in-memory database)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'x')")
    sql = "SELECT b FROM t WHERE a = ?"

    def run() -> int:
        t0 = time.perf_counter_ns()
        for _ in range(statements):
            conn.execute(sql, (1,)).fetchone()
        return time.perf_counter_ns() - t0

    plain = min(run() for _ in range(3))
    conn.set_trace_callback(tracer("overhead-probe"))
    traced = min(run() for _ in range(3))
    conn.set_trace_callback(None)
    conn.close()
    with _lock:
        for key in [k for k in _raw if k[0] == "overhead-probe"]:
            del _raw[key]
    return max(0.0, (traced - plain) / statements)


if __name__ == "sitecustomize":
    install()
