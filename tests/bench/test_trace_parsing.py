"""How `tidings bench trace` reads what it collects: SQLite trace callbacks (with an FTS5
trigger), strace output and py-spy stacks. No server, no tracer: recorded shapes."""

from __future__ import annotations

import sqlite3

from tidings.bench import _sqlcount
from tidings.bench._trace import classify, parse_strace, sql_delta, syscalls_per_message


def test_sql_counting_tells_statements_trigger_steps_and_fts5_internals_apart() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(
        """
        CREATE TABLE m (id INTEGER PRIMARY KEY, body TEXT);
        CREATE VIRTUAL TABLE f USING fts5 (body, content='m', content_rowid='id');
        CREATE TRIGGER t AFTER INSERT ON m BEGIN
            INSERT INTO f (rowid, body) VALUES (new.id, new.body);
        END;
        """
    )
    before = _sqlcount.snapshot()
    conn.set_trace_callback(_sqlcount.tracer("probe.db"))
    for body in ("hello world", "it's me"):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO m (body) VALUES (?)", (body,))
        conn.execute("SELECT body FROM m WHERE id = ?", (1,)).fetchone()
        conn.execute("SELECT body FROM m WHERE id = ?", (1,)).fetchone()
        conn.execute("COMMIT")
    conn.set_trace_callback(None)
    delta = sql_delta(before, _sqlcount.snapshot(), 2)
    assert delta["by_kind"] == {"BEGIN": 1.0, "COMMIT": 1.0, "INSERT": 1.0, "SELECT": 2.0}
    assert delta["by_database"] == {"probe.db": 5.0}
    assert delta["write_transactions"] == 1.0
    assert delta["trigger_steps"] > 0
    assert delta["nested"] > 0  # FTS5 writing its shadow tables
    total = delta["statements"] + delta["trigger_steps"] + delta["nested"]
    assert delta["total_incl_triggers_and_nested"] == round(total, 3)
    texts = {s["sql"] for s in delta["top_statements"] if s["how"] == "top"}
    assert "INSERT INTO m (body) VALUES (?)" in texts  # literals normalized away
    assert any("'main'.'f_" in s["sql"] for s in delta["top_statements"] if s["how"] == "nested")


def test_statement_kinds_and_normalizing() -> None:
    assert _sqlcount.kind_of("  select 1") == "SELECT"
    assert _sqlcount.kind_of("-- REPLACE INTO 'main'.'f_data' VALUES(?,?)") == "REPLACE"
    assert _sqlcount.kind_of("VACUUM") == "OTHER"
    assert (
        _sqlcount.normalize("SELECT a FROM t WHERE id IN (1, 2, 3) AND b = 'x''y'")
        == "SELECT a FROM t WHERE id IN (?, ...) AND b = ?"
    )


STRACE = """\
100 epoll_wait(3<anon_inode:[eventpoll]>,  <unfinished ...>
101 fdatasync(7</d/messages.db-wal> <unfinished ...>
100 <... epoll_wait resumed>[{events=EPOLLIN, data={u32=9, u64=9}}], 8, 10) = 1
100 recvfrom(9<socket:[555]>, "\\x81\\x8a", 65536, 0, NULL, NULL) = 20
101 <... fdatasync resumed>)              = 0
100 sendto(9<socket:[555]>, "\\x81~", 120, 0, NULL, 0) = 120
101 sendto(5<socket:[777]>, "\\0", 1, 0, NULL, 0) = 1
101 futex(0x55f067a21270, FUTEX_WAKE_PRIVATE, 1) = 1
100 futex(0x55f067a21274, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL, FUTEX_BITSET_MATCH_ANY) = 0
100 write(11<anon_inode:[eventfd]>, "\\1\\0\\0\\0\\0\\0\\0\\0", 8) = 8
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.000600         300         2           futex
 40.00    0.000400         400         1           fdatasync
------ ----------- ----------- --------- --------- ----------------
100.00    0.001000         333         3           total
"""


def test_strace_counts_by_what_the_calls_worked_on() -> None:
    parsed = parse_strace(STRACE, {"555": "tcp", "777": "unix"})
    assert parsed["calls"] == {
        "epoll_wait": 1,
        "fdatasync": 1,
        "recvfrom": 1,
        "sendto": 2,
        "futex": 2,
        "write": 1,
    }
    assert parsed["by_fd"]["fdatasync file:messages.db-wal"] == 1
    assert parsed["summary"]["futex"] == {"seconds": 0.0006, "calls": 2, "errors": 0}
    per = syscalls_per_message(parsed, 1)
    assert per["fsync"] == 1
    assert per["fsync_by_file"] == {"file:messages.db-wal": 1.0}
    assert per["loopback_sends"] == 1
    assert per["loopback_receives"] == 1
    assert per["self_pipe_wakeups"] == 2  # the socketpair and the eventfd
    assert (per["futex_wake"], per["futex_wait"]) == (1, 1)


def frames(*spec: str) -> list[tuple[str, str]]:
    return [tuple(f.split("@", 1)) for f in spec]  # type: ignore[misc]


def test_samples_go_to_stages() -> None:
    loop = ("_run_once@/py/asyncio/base_events.py:1", "Handle._run@/py/asyncio/events.py:80")
    sqlite_thread = (
        "Thread.run@/py/threading.py:982",
        "_worker@/py/concurrent/futures/thread.py:83",
        "run@/w/tidings/storage/_sqlite_worker.py:50",
        "save@/w/tidings/storage/sqlite/store.py:91",
    )
    directory = (*loop, "SqlDirectory.get_user@/w/tidings/storage/sql/directory.py:82")
    assert classify(frames(*sqlite_thread, "sqlite3VdbeExec@/lib/libsqlite3.so", "0x7f00@")) == (
        "cpu",
        "store_sql",
    )
    aiosqlite = ("Thread.run@/py/threading.py:982", "run@/v/aiosqlite/core.py:100")
    assert classify(frames(*aiosqlite, "sqlite3_step@/lib/libsqlite3.so")) == ("cpu", "directory")
    assert classify(frames(*directory, "expect@/v/sqlalchemy/sql/coercions.py:424")) == (
        "cpu",
        "directory",
    )
    # The directory's own code, in this tree and in a --ref-tree from before storage/sql/.
    assert classify(frames(*directory)) == ("cpu", "directory")
    before = (*loop, "SqlDirectory.get_user@/ref/tidings/storage/directory.py:82")
    assert classify(frames(*before)) == ("cpu", "directory")
    assert classify(frames(*loop, "dumps@/v/orjson.so")) == ("cpu", "json")
    assert classify(frames(*loop, "Frame.parse@/v/websockets/frames.py:299")) == (
        "cpu",
        "websocket",
    )
    assert classify(frames(*loop, "call_soon_threadsafe@/py/asyncio/base_events.py:1")) == (
        "cpu",
        "handoff",
    )
    assert classify(frames(*loop, "Gateway.send@/w/tidings/gateway/gateway.py:1")) == (
        "cpu",
        "app",
    )
    transport = ("Conn.send@/w/tidings/gateway/connection.py:1", "write@/v/uvloop/loop.so")
    assert classify(frames(*loop, *transport, "write@/lib/libc.so.6")) == ("cpu", "asyncio")
    assert classify(frames(*loop, "epoll_wait@/lib/libc.so.6")) == ("wait", "idle_loop")
    assert classify(frames(*sqlite_thread, "fdatasync@/lib/libc.so.6")) == ("wait", "fsync")
    assert classify(frames(*sqlite_thread, "pthread_cond_timedwait@/lib/libc.so.6", "0x1@")) == (
        "wait",
        "gil_wait",
    )
