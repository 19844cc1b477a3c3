"""`tidings bench trace`: what one 1:1 message costs the embedded server, counted.

One `tidings up` (this tree, or ``--ref-tree``'s), two users, a sender and a receiver on
WebSockets; the sender sends ``--messages`` 1:1 messages at a fixed ``--rate`` (open loop,
but never more than ``MAX_IN_FLIGHT`` unanswered) in each of these windows, and every
window waits until all of them are delivered (and acked, and echoed to the sender's
device when the server does that):

On the server as it is (nothing loaded into it, nothing attached):

1. ``idle``: a few seconds without messages: the background (heartbeats, timers).
2. ``cpu``: server CPU per message (``/proc/<pid>/stat`` utime + stime, all threads).

Then on a fresh server (new data directory) started with a ``sitecustomize`` first on its
``PYTHONPATH`` that wraps ``sqlite3.connect`` and counts statements through
``set_trace_callback`` (see ``_sqlcount``):

3. ``counts``: SQL statements, and syscalls counted in the kernel by ``perf stat``.
4. ``strace``: ``strace -f -C -y`` attached for the window: fsync/fdatasync (by file),
   sends and receives by socket kind (loopback TCP vs the event loop's self-pipe), futex,
   epoll_wait, pwrite64/pread64. The server runs much slower while traced; only counts are
   taken from this window.
5. ``py-spy``: ``py-spy record --native --format raw`` for the window; samples are sorted
   into stages by frame (see :func:`classify`) and the stages' shares of the on-CPU
   samples are turned into µs with the CPU per message of the ``cpu`` window.

Everything is divided by the messages the server accepted (acked) in that window. One
message here is: one ``send`` in, one ``ack`` and one ``msg`` to the sender's device, one
``msg`` to the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidings.bench import _procstat as procstat
from tidings.bench import _sqlcount
from tidings.bench._accounts import Account, create_accounts
from tidings.bench._histogram import Latency
from tidings.bench._wsclient import WsConn, connect
from tidings.bench.targets import Embedded

if TYPE_CHECKING:
    from tidings.bench._scenarios import Options

log = logging.getLogger(__name__)

SYSCALLS = (
    "fsync",
    "fdatasync",
    "read",
    "write",
    "writev",
    "pwrite64",
    "pread64",
    "sendto",
    "sendmsg",
    "recvfrom",
    "recvmsg",
    "epoll_wait",
    "epoll_pwait",
    "futex",
)
# Counted in the kernel by `perf stat` during the counts window.
PERF_SYSCALLS = (*SYSCALLS, "fcntl")
IDLE_S = 3.0
# Sends not yet answered, at most: a server that stalls (an fsync on a busy disk, a tracer)
# would otherwise refuse the overflow of its per-connection queue (64 frames) with
# rate_limited, and refused sends would distort the counts per message. A send held back
# keeps its intended time, so the stall still shows in the latency.
MAX_IN_FLIGHT = 32
SETTLE_S = 0.3
WARM_MESSAGES = 50


def tool(name: str) -> str | None:
    """Where ``strace`` / ``py-spy`` is (py-spy may live in this venv only)."""
    found = shutil.which(name)
    if found:
        return found
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else None


# --- the clients ---------------------------------------------------------------------


class Side:
    """One WebSocket client: what it received since the last reset."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.user_id = account["user_id"]
        self.conn: WsConn | None = None
        self.ready: asyncio.Future[None] | None = None
        self.sent_at: dict[str, int] = {}
        self.answered = asyncio.Event()  # set on every ack or refusal
        self.reset()

    def reset(self) -> None:
        """Forget what was received since the last reset (counts, latencies, errors) and the
        sends still awaiting an answer."""
        self.received = self.echoes = self.acks = self.refused = 0
        self.latency, self.ack_latency = Latency(), Latency()
        self.errors: Counter[str] = Counter()
        self.sent_at.clear()

    def on_text(self, _conn: WsConn, text: str) -> None:
        """Handle a frame: count deliveries (not the client's own echoes, nor channel events)
        and their latency, acks and refusals of its sends, ``synced`` and errors."""
        frame = json.loads(text)
        kind = frame.get("type")
        now = time.monotonic_ns()
        if kind == "msg":
            if str(frame.get("sender_id")) == self.user_id:
                self.echoes += 1
                return
            if "event" in frame:
                return  # a channel event (a group's creation, a join): not the load
            self.received += 1
            with contextlib.suppress(ValueError):
                self.latency.record_ns(now - int(str(frame["body"]).split("|", 1)[0]))
        elif kind == "ack":
            self.acks += 1
            self.answered.set()
            sent = self.sent_at.pop(str(frame.get("client_msg_id")), None)
            if sent is not None:
                self.ack_latency.record_ns(now - sent)
        elif kind == "synced":
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(None)
        elif kind == "error":
            self.errors[str(frame.get("code"))] += 1
            if self.sent_at.pop(str(frame.get("ref")), None) is not None:
                self.refused += 1  # a send the server answered with an error, not an ack
                self.answered.set()

    async def open(self, url: str) -> None:
        """Connect to ``url`` and say hello from cursor 0; returns once the server said
        ``synced`` (``TimeoutError`` after 30 s)."""
        self.ready = asyncio.get_running_loop().create_future()
        self.conn = await connect(url, self.on_text)
        hello = {"type": "hello", "token": self.account["token"], "cursor": "0"}
        self.conn.send(json.dumps(hello))
        await asyncio.wait_for(self.ready, 30)

    def send(self, frame: dict[str, Any]) -> None:
        """Send ``frame`` as JSON text."""
        assert self.conn is not None
        self.conn.send(json.dumps(frame))


# --- the server's side: SQL counts, CPU, strace, py-spy -----------------------------


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of the live threads (threads that ended
    during a window take theirs with them: approximate)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
    return total


def threads(pid: int) -> int:
    """How many threads the process has now (0 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


class SqlCounter:
    """Asks the server's sitecustomize (SIGUSR1) for its cumulative counts."""

    def __init__(self, pid: int, path: Path) -> None:
        self.pid, self.path = pid, path
        self.seq = 0

    async def snapshot(self, within: float = 15.0) -> dict[str, Any]:
        """Signal the server (SIGUSR1) and return its next dump of the SQL counts.

        Raises ``RuntimeError`` when no newer dump appears within ``within`` s."""
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                data: dict[str, Any] = json.loads(_read(self.path))
                if data["seq"] > self.seq:
                    self.seq = data["seq"]
                    return data
            await asyncio.sleep(0.01)
        raise RuntimeError(
            f"the server wrote no SQL counts to {self.path}: is the sitecustomize loaded?"
        )


def sql_delta(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, Any]:
    """Statements run between two snapshots, per message."""

    def key(s: dict[str, Any]) -> tuple[str, str, str, str]:
        return (s["database"], s["how"], s["kind"], s["sql"])

    old = {key(s): int(s["count"]) for s in before["statements"]}
    delta: Counter[tuple[str, str, str, str]] = Counter()
    for s in after["statements"]:
        d = int(s["count"]) - old.get(key(s), 0)
        if d:
            delta[key(s)] = d
    top: Counter[str] = Counter()
    nested: Counter[str] = Counter()
    by_db: Counter[str] = Counter()
    triggers = 0
    for (database, how, kind, _sql), d in delta.items():
        if how == "top":
            top[kind] += d
            by_db[database] += d
        elif how == "trigger":
            triggers += d
        else:
            nested[kind] += d
    per = max(n, 1)
    statements = sum(top.values())
    begins = top.get("BEGIN", 0)
    return {
        "statements": round(statements / per, 3),
        "by_kind": {k: round(v / per, 3) for k, v in sorted(top.items())},
        "by_database": {k: round(v / per, 3) for k, v in sorted(by_db.items())},
        "trigger_steps": round(triggers / per, 3),
        "nested": round(sum(nested.values()) / per, 3),
        "nested_by_kind": {k: round(v / per, 3) for k, v in sorted(nested.items())},
        "total_incl_triggers_and_nested": round(
            (statements + triggers + sum(nested.values())) / per, 3
        ),
        "write_transactions": round(begins / per, 3),
        "commits": round(top.get("COMMIT", 0) / per, 3),
        "rollbacks": round(top.get("ROLLBACK", 0) / per, 3),
        "raw_total": sum(delta.values()),
        "top_statements": [
            {"database": d, "how": h, "kind": k, "sql": s, "per_message": round(c / per, 3)}
            for (d, h, k, s), c in delta.most_common(40)
        ],
    }


_CALL = re.compile(r"^(\d+)\s+([a-z_0-9]+)\((.*)$")
_FD = re.compile(r"^(\d+)<(.*?)>(?:[,) ]|$)")
_SOCKET = re.compile(r"^socket:\[(\d+)\]$")
_RESUMED = re.compile(r"^\d+\s+<\.\.\. ")


def socket_inodes(pid: int) -> dict[str, str]:
    """inode -> 'tcp' or 'unix' for the sockets in the process's network namespace."""
    kinds: dict[str, str] = {}
    for name, column in (("tcp", 9), ("tcp6", 9), ("unix", 6)):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{name}") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) > column:
                    kinds[parts[column]] = "tcp" if name.startswith("tcp") else "unix"
    return kinds


def fd_kind(annotation: str, sockets: dict[str, str]) -> str:
    """What a file descriptor is, from strace's ``-y`` annotation: ``tcp`` or ``unix`` for a
    known socket, the anon inode's kind, ``pipe``, or ``file:<name>``."""
    m = _SOCKET.match(annotation)
    if m:
        return sockets.get(m.group(1), "socket")
    if annotation.startswith("anon_inode:"):
        return annotation.split("[", 1)[-1].rstrip("]") if "[" in annotation else "anon_inode"
    if annotation.startswith("pipe:"):
        return "pipe"
    return "file:" + os.path.basename(annotation)


def parse_strace(text: str, sockets: dict[str, str]) -> dict[str, Any]:
    """Calls by syscall and by what they worked on (``-y`` output), and the ``-C``
    summary table."""
    calls: Counter[str] = Counter()
    by_fd: Counter[tuple[str, str]] = Counter()
    futex_ops: Counter[str] = Counter()
    summary: dict[str, dict[str, float]] = {}
    in_summary = False
    for line in text.splitlines():
        if line.startswith("% time"):
            in_summary = True
            continue
        if in_summary:
            parts = line.split()
            if len(parts) >= 5 and not line.startswith("-") and parts[-1] != "total":
                errors = int(parts[4]) if len(parts) == 6 else 0
                summary[parts[-1]] = {
                    "seconds": float(parts[1]),
                    "calls": int(parts[3]),
                    "errors": errors,
                }
            continue
        if _RESUMED.match(line):
            continue
        m = _CALL.match(line)
        if m is None:
            continue
        name, args = m.group(2), m.group(3)
        calls[name] += 1
        fd = _FD.match(args)
        if fd is not None:
            by_fd[(name, fd_kind(fd.group(2), sockets))] += 1
        if name == "futex":
            op = args.split(",", 2)[1].strip() if args.count(",") >= 1 else ""
            futex_ops["wake" if "WAKE" in op else "wait" if "WAIT" in op else "other"] += 1
    return {
        "calls": dict(calls),
        "by_fd": {f"{s} {k}": n for (s, k), n in sorted(by_fd.items())},
        "futex_ops": dict(futex_ops),
        "summary": summary,
    }


def syscalls_per_message(parsed: dict[str, Any], n: int) -> dict[str, Any]:
    """The calls of :func:`parse_strace`'s result per message (``n`` messages): fsyncs,
    loopback sends and receives, self-pipe wakeups, futexes, epoll waits, pwrites, preads."""
    per = max(n, 1)
    calls: dict[str, int] = parsed["calls"]
    by_fd: dict[str, int] = parsed["by_fd"]

    def fd_sum(syscalls: tuple[str, ...], pred: Any) -> int:
        total = 0
        for key, count in by_fd.items():
            name, kind = key.split(" ", 1)
            if name in syscalls and pred(kind):
                total += count
        return total

    sends = ("sendto", "sendmsg", "write", "writev")
    fsyncs = {
        k.split(" ", 1)[1]: round(v / per, 3)
        for k, v in by_fd.items()
        if k.split(" ", 1)[0] in ("fsync", "fdatasync")
    }
    pwrites = {
        k.split(" ", 1)[1]: round(v / per, 3) for k, v in by_fd.items() if k.startswith("pwrite64 ")
    }
    return {
        "fsync": round((calls.get("fsync", 0) + calls.get("fdatasync", 0)) / per, 3),
        "fsync_by_file": fsyncs,
        "loopback_sends": round(fd_sum(sends, lambda k: k == "tcp") / per, 3),
        "loopback_receives": round(
            fd_sum(("recvfrom", "recvmsg", "read"), lambda k: k == "tcp") / per, 3
        ),
        "self_pipe_wakeups": round(
            fd_sum(sends, lambda k: k in ("unix", "eventfd", "pipe")) / per, 3
        ),
        "futex": round(calls.get("futex", 0) / per, 3),
        "futex_wake": round(parsed["futex_ops"].get("wake", 0) / per, 3),
        "futex_wait": round(parsed["futex_ops"].get("wait", 0) / per, 3),
        "epoll_wait": round((calls.get("epoll_wait", 0) + calls.get("epoll_pwait", 0)) / per, 3),
        "pwrite64": round(calls.get("pwrite64", 0) / per, 3),
        "pwrite64_by_file": pwrites,
        "pread64": round(calls.get("pread64", 0) / per, 3),
        "calls": {k: round(v / per, 3) for k, v in sorted(calls.items())},
    }


# --- py-spy samples into stages ------------------------------------------------------

STAGES = (
    ("sqlcount", "this trace's SQL counting (sitecustomize)"),
    ("json", "JSON parse/encode"),
    ("websocket", "WebSocket framing"),
    ("directory", "directory reads (SQLAlchemy/aiosqlite)"),
    ("store_sql", "message store SQL (sqlite3)"),
    ("handoff", "thread hand-offs"),
    ("asyncio", "asyncio loop/transport"),
    ("logging", "logging/metrics"),
    ("app", "other Tidings code"),
    ("other", "other"),
)

# Off-CPU: the innermost frame py-spy could name (py-spy --native also samples threads
# blocked in these; they cost no CPU and are counted apart).
_WAITS = {
    "epoll_wait": "idle_loop",
    "epoll_pwait": "idle_loop",
    "select_epoll_poll_impl": "idle_loop",
    "poll": "idle_loop",
    "select": "idle_loop",
    "accept4": "idle_loop",
    "pthread_cond_timedwait": "gil_wait",
    "pthread_cond_wait": "gil_wait",
    "__pthread_cond_wait": "gil_wait",
    "__pthread_cond_timedwait": "gil_wait",
    "sem_clockwait": "lock_wait",
    "sem_timedwait": "lock_wait",
    "sem_wait": "lock_wait",
    "do_futex_wait": "lock_wait",
    "__futex_abstimed_wait_common": "lock_wait",
    "PyThread_acquire_lock_timed": "lock_wait",
    "fdatasync": "fsync",
    "fsync": "fsync",
    "nanosleep": "sleep",
    "clock_nanosleep": "sleep",
}
_HANDOFF_NAMES = (
    "run_in_executor",
    "call_soon_threadsafe",
    "_write_to_self",
    "_read_from_self",
    "_process_self_data",
    "_chain_future",
    "_call_set_state",
    "_copy_future_state",
    "_set_concurrent_future_state",
    "wrap_future",
    "take_gil",
    "drop_gil",
    "PyThread_release_lock",
    "PyThread_acquire_lock",
    "sem_post",
    "pthread_cond_signal",
    "pthread_cond_broadcast",
    "_queue_SimpleQueue",
)
_DECISIVE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sqlcount", ("sitecustomize.py",)),
    ("handoff", ("concurrent/futures/", "/threading.py", "/queue.py", "_queuemodule", "ceval_gil")),
    # storage/sql/directory*.py; storage/directory*.py in trees before #21 (--ref-tree)
    (
        "directory",
        (
            "sqlalchemy/",
            "aiosqlite/",
            "greenlet",
            "tidings/storage/sql/directory",
            "tidings/storage/directory",
        ),
    ),
    ("store_sql", ("tidings/storage/", "tidings/bus/sqlite")),
    ("json", ("orjson", "/json/", "_json.c", "tidings/core/frames.py")),
    (
        "websocket",
        ("websockets/", "wsproto/", "uvicorn/protocols/websockets", "tidings/gateway/framing"),
    ),
    ("logging", ("/logging/", "prometheus_client/", "tidings/metrics.py", "tidings/logs.py")),
)
_ASYNCIO = (
    "asyncio/",
    "uvloop",
    "selectors.py",
    "_asynciomodule",
    "selectmodule",
    "socketmodule",
    "/socket.py",
)
_SQL_NATIVE = ("libsqlite3", "_sqlite/", "sqlite3.c")


def _frames(stack: str) -> list[tuple[str, str]]:
    """``name (location)`` frames of one raw py-spy line, root first."""
    out = []
    for frame in stack.split(";"):
        name, _, loc = frame.partition(" (")
        out.append((name, loc.rstrip(")")))
    return out


def classify(frames: list[tuple[str, str]]) -> tuple[str, str]:
    """("cpu", stage) or ("wait", kind) for one sample, frames root first.

    Off-CPU first: the innermost named frame is a blocking call (``_WAITS``). Otherwise
    the stack is read from the leaf up and the first frame of a *decisive* stage decides
    (``_DECISIVE``: thread hand-off machinery, SQLAlchemy/aiosqlite/the directory, the
    message store's SQLite code, JSON, WebSocket framing, logging/metrics). Native
    SQLite, asyncio/socket and other Tidings frames only decide when nothing decisive is
    above them, the innermost of them first: native SQLite is the message store's unless
    the directory is above it; a sample in asyncio under Tidings code is the loop's."""
    for name, _loc in reversed(frames):
        if name.startswith("0x"):
            continue
        wait = _WAITS.get(name)
        if wait is not None:
            return "wait", wait
        break
    fallback = ""
    for name, loc in reversed(frames):
        if name.startswith("0x"):
            continue
        if any(h in name for h in _HANDOFF_NAMES):
            return "cpu", "handoff"
        for stage, marks in _DECISIVE:
            if any(m in loc for m in marks):
                return "cpu", stage
        if not fallback:
            if any(m in loc for m in _SQL_NATIVE) or name.startswith(("sqlite3", "pysqlite")):
                fallback = "store_sql"
            elif any(m in loc for m in _ASYNCIO):
                fallback = "asyncio"
            elif "tidings/" in loc:
                fallback = "app"
    return "cpu", fallback or "other"


def thread_of(frames: list[tuple[str, str]]) -> str:
    """Which thread a sample is from, by its outer frames: the event loop, an executor
    worker, aiosqlite's thread, or a thread named by the function its ``run`` calls."""
    names = [name for name, _ in frames]
    if any(m in loc for _, loc in frames[:14] for m in ("aiosqlite/",)):
        return "aiosqlite"
    if any(m in name for name in names[:14] for m in ("run_forever", "uv_run", "Loop__run")):
        return "event_loop"
    if any("concurrent/futures/thread.py" in loc for _, loc in frames[:14]):
        return "executor"
    if "Thread.run" in names:
        i = names.index("Thread.run")
        nxt = [n for n in names[i + 1 :] if not n.startswith("0x")]
        return f"thread {nxt[0]}" if nxt else "thread"
    return "other"


def parse_pyspy(text: str) -> dict[str, Any]:
    """py-spy's collapsed stacks, as sample counts: on CPU by stage and by thread, off CPU
    by what was waited on, and the 25 most frequent leaf functions."""
    stages: Counter[str] = Counter()
    waits: Counter[str] = Counter()
    threads_cpu: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        state, what = classify(frames)
        if state == "wait":
            waits[what] += n
            continue
        stages[what] += n
        threads_cpu[thread_of(frames)] += n
        named = [f"{name} ({loc.rsplit('/', 1)[-1]})" for name, loc in frames if name[:2] != "0x"]
        leaves[named[-1] if named else "?"] += n
    return {
        "on_cpu_samples": sum(stages.values()),
        "off_cpu_samples": dict(waits),
        "stage_samples": dict(stages),
        "on_cpu_samples_by_thread": dict(threads_cpu),
        "top_leaf_functions": leaves.most_common(25),
    }


# --- the run -------------------------------------------------------------------------


class Trace:
    """The windows on one running server; ``sql_out`` is None on the server that runs
    without the counting sitecustomize (the clean CPU window)."""

    def __init__(
        self,
        target: Embedded,
        accounts: list[Account],
        opts: Options,
        workdir: Path,
        sql_out: Path | None,
    ) -> None:
        self.target, self.opts = target, opts
        self.pid = target.server_pids[0]
        self.sender, self.receiver = Side(accounts[0]), Side(accounts[1])
        self.sql = SqlCounter(self.pid, sql_out) if sql_out is not None else None
        self.expect_echo = False
        self.dir = workdir
        self.n = opts.messages
        self.wait_s = max(opts.drain_s, 60.0)
        self.heartbeats = 0
        self.traced_rate = opts.traced_rate or opts.rate

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(max(self.opts.heartbeat_s, 0.5))
            for side in (self.sender, self.receiver):
                if side.conn is not None and side.conn.is_open:
                    side.conn.send('{"type":"heartbeat"}')
                    self.heartbeats += 1

    async def send(self, n: int, tag: str, rate: float) -> dict[str, Any]:
        """``n`` messages at a fixed rate (open loop), then wait until every one is
        answered (ack or error) and every accepted one delivered."""
        s, r = self.sender, self.receiver
        s.reset()
        r.reset()
        beats0 = self.heartbeats
        interval = 1e9 / rate
        start = time.monotonic_ns() + 20_000_000
        pad = "x" * self.opts.body_bytes
        t0 = time.monotonic()
        held = 0
        for i in range(n):
            due = start + int(i * interval)
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            if i - s.acks - s.refused >= MAX_IN_FLIGHT:
                held += 1  # the server stalled: wait rather than overflow its queue
                while i - s.acks - s.refused >= MAX_IN_FLIGHT:
                    s.answered.clear()
                    await s.answered.wait()
            ref = f"{tag}-{i}-{due}"
            s.sent_at[ref] = due
            s.send({"type": "send", "client_msg_id": ref, "to": r.user_id, "body": f"{due}|{pad}"})
        send_s = time.monotonic() - t0
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            answered = s.acks + s.refused >= n
            if answered and r.received >= s.acks and (s.echoes >= s.acks or not self.expect_echo):
                break
            await asyncio.sleep(0.02)
        return {
            "sent": n,
            "accepted": s.acks,
            "refused": s.refused,
            "delivered": r.received,
            "acked": s.acks,
            "echoes": s.echoes,
            "complete": r.received >= n and s.acks >= n,
            "rate": rate,
            "held_back": held,
            "send_s": round(send_s, 3),
            "until_delivered_s": round(time.monotonic() - t0, 3),
            "heartbeats": self.heartbeats - beats0,
            "errors": dict(s.errors + r.errors),
            "latency": r.latency.summary(),
            "ack_latency": s.ack_latency.summary(),
        }

    async def window(self, name: str, rate: float, sql: bool = True) -> dict[str, Any]:
        """One window: counts and CPU around ``send`` (tracers are started outside).
        ``sql``: ask for the SQL counts before and after (not under a tracer: the dump
        itself would be traced)."""
        sql = sql and self.sql is not None
        sql0 = await self.snapshot() if sql else {}
        cpu0, ctx0 = procstat.cpu_seconds(self.pid), context_switches(self.pid)
        wall0 = time.monotonic()
        threads0 = threads(self.pid)
        stats = await self.send(self.n, name, rate)
        await asyncio.sleep(SETTLE_S)
        cpu = procstat.cpu_seconds(self.pid) - cpu0
        wall = time.monotonic() - wall0
        ctx = context_switches(self.pid) - ctx0
        per = max(stats["accepted"], 1)
        if sql:
            stats["sql"] = sql_delta(sql0, await self.snapshot(), per)
        return {
            **stats,
            "wall_s": round(wall, 3),
            "server_cpu_s": round(cpu, 3),
            "server_cores": round(cpu / max(wall, 1e-9), 3),
            "server_cpu_us_per_message": round(cpu * 1e6 / per, 1),
            "context_switches_per_message": round(ctx / per, 2),
            "threads": [threads0, threads(self.pid)],
        }

    async def snapshot(self) -> dict[str, Any]:
        """The server's SQL counts now (:meth:`SqlCounter.snapshot`)."""
        assert self.sql is not None
        return await self.sql.snapshot()

    async def idle(self) -> dict[str, Any]:
        """The server's CPU (µs per second) over ``IDLE_S`` s in which nothing is sent."""
        cpu0, t0 = procstat.cpu_seconds(self.pid), time.monotonic()
        await asyncio.sleep(IDLE_S)
        cpu, wall = procstat.cpu_seconds(self.pid) - cpu0, time.monotonic() - t0
        return {"wall_s": round(wall, 3), "server_cpu_us_per_s": round(cpu * 1e6 / wall, 1)}

    async def connected(self) -> None:
        """Open the sender's and the receiver's connections."""
        await self.sender.open(self.target.ws_url)
        await self.receiver.open(self.target.ws_url)

    async def warm_up(self) -> dict[str, Any]:
        """Send up to ``WARM_MESSAGES`` messages first (and learn whether the sender gets echoes);
        their counts."""
        warm = await self.send(min(WARM_MESSAGES, self.n), "warm", self.opts.rate)
        self.expect_echo = warm["echoes"] > 0
        await asyncio.sleep(1.0)
        return {k: warm[k] for k in ("sent", "delivered", "acked", "echoes")}

    async def run_clean(self) -> dict[str, Any]:
        """The server without the SQL counting and without tracers: idle CPU, then the
        CPU per message."""
        await self.connected()
        beats = asyncio.ensure_future(self._heartbeats())
        try:
            result = {"warm_up": await self.warm_up(), "idle": await self.idle()}
            result["cpu"] = await self.window("cpu", self.opts.rate, sql=False)
        finally:
            beats.cancel()
            self.close()
        return result

    def close(self) -> None:
        """Close both clients' connections."""
        for side in (self.sender, self.receiver):
            if side.conn is not None:
                side.conn.close()

    async def perf_window(self, binary: str) -> dict[str, Any]:
        """The counts window with ``perf stat`` counting syscalls in the kernel (the
        ``syscalls:sys_enter_*`` tracepoints: no stop per call, unlike strace)."""
        out, log_path = self.dir / "perf-stat.csv", self.dir / "perf-stat.log"
        events = ",".join(f"syscalls:sys_enter_{name}" for name in PERF_SYSCALLS)
        argv = [binary, "stat", "-x", ",", "-o", str(out), "-e", events, "-p", str(self.pid)]
        proc = _spawn(argv, log_path)
        try:
            await asyncio.sleep(0.5)
            if proc.poll() is not None:
                raise RuntimeError(f"perf stat exited ({proc.returncode}): {_read(log_path)}")
            stats = await self.window("counts", self.opts.rate)
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        calls: dict[str, int] = {}
        for line in _read(out).splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
                with contextlib.suppress(ValueError):
                    calls[parts[2][len("syscalls:sys_enter_") :]] = int(parts[0])
        if not calls:
            raise RuntimeError(f"perf stat counted nothing:\n{_read(out)}\n{_read(log_path)}")
        per = max(stats["accepted"], 1)
        stats["syscalls"] = {
            "command": " ".join(argv),
            "per_message": {k: round(v / per, 3) for k, v in sorted(calls.items())},
            "fsync": round((calls.get("fsync", 0) + calls.get("fdatasync", 0)) / per, 3),
            "futex": round(calls.get("futex", 0) / per, 3),
            "epoll_wait": round(
                (calls.get("epoll_wait", 0) + calls.get("epoll_pwait", 0)) / per, 3
            ),
            "sends": round(sum(calls.get(k, 0) for k in ("sendto", "sendmsg")) / per, 3),
        }
        return stats

    async def strace_window(self, binary: str) -> dict[str, Any]:
        """The window under ``strace -f -C -y`` at the traced rate: the syscalls per message,
        by what they worked on, and strace's summary."""
        out, err = self.dir / "strace.txt", self.dir / "strace.err"
        argv = [binary, "-f", "-C", "-y", "-o", str(out), "-e", "trace=" + ",".join(SYSCALLS)]
        argv += ["-p", str(self.pid)]
        proc = _spawn(argv, err)
        try:
            attached = await _wait_for_text(err, "attached", proc, 20.0)
            m = re.search(r"attached with (\d+) threads", attached)
            stats = await self.window("strace", self.traced_rate, sql=False)
            sockets = socket_inodes(self.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
        parsed = parse_strace(out.read_text(errors="replace"), sockets)
        return {
            "command": " ".join(argv),
            "threads_attached": int(m.group(1)) if m else None,
            "window": {k: v for k, v in stats.items() if k != "sql"},
            "per_message": syscalls_per_message(parsed, stats["accepted"]),
            "by_fd": parsed["by_fd"],
            "summary": parsed["summary"],
            "output": str(out),
        }

    async def profile_window(
        self, binary: str, clean_cpu_us: float, counted_cpu_us: float
    ) -> dict[str, Any]:
        """Stages in µs: each stage's share of the on-CPU samples (the SQL counting's own
        samples left out) times the clean server's CPU per message; the counting's own
        share times the CPU per message of the counted server."""
        out, log_path = self.dir / "py-spy.raw.txt", self.dir / "py-spy.log"
        argv = [binary, "record", "--pid", str(self.pid), "--native", "--format", "raw"]
        argv += ["--full-filenames", "--rate", str(self.opts.pyspy_rate), "-o", str(out)]
        proc = _spawn(argv, log_path)
        try:
            await _wait_for_text(log_path, "Sampling process", proc, 20.0)
            stats = await self.window("py-spy", self.traced_rate, sql=False)
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 120)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile:\n{log_path.read_text()[-2000:]}")
        parsed = parse_pyspy(out.read_text(errors="replace"))
        samples: dict[str, int] = parsed["stage_samples"]
        on_cpu = max(parsed["on_cpu_samples"], 1)
        served = max(on_cpu - samples.get("sqlcount", 0), 1)
        stage_us = {
            stage: round(samples.get(stage, 0) / served * clean_cpu_us, 1)
            for stage, _ in STAGES
            if stage != "sqlcount"
        }
        stage_us["sqlcount"] = round(samples.get("sqlcount", 0) / on_cpu * counted_cpu_us, 1)
        return {
            "command": " ".join(argv),
            "window": {k: v for k, v in stats.items() if k != "sql"},
            "stage_us_per_message": stage_us,
            "stage_share": {
                stage: round(parsed["stage_samples"].get(stage, 0) / on_cpu, 4)
                for stage, _ in STAGES
            },
            "rate_hz": self.opts.pyspy_rate,
            # py-spy pauses the process for every sample; when it cannot keep up it says
            # so, and the server ran slower than that (see the window's latency/refused).
            "behind_s": max(
                (float(x) for x in re.findall(r"([\d.]+)s behind in sampling", _read(log_path))),
                default=0.0,
            ),
            **parsed,
            "output": str(out),
        }

    async def run(self, clean_cpu_us: float) -> dict[str, Any]:
        """The server with the SQL counting: the counts window (with perf), then the
        strace and py-spy windows."""
        await self.connected()
        beats = asyncio.ensure_future(self._heartbeats())
        tools = self.opts.trace_tools
        result: dict[str, Any] = {}
        try:
            result["warm_up_counted"] = await self.warm_up()
            perf = tool("perf") if "perf" in tools else None
            if perf is not None:
                counts = await self.perf_window(perf)
            else:
                counts = await self.window("counts", self.opts.rate)
                if "perf" in tools:
                    counts["syscalls"] = {"error": "perf not found: `make bench-tools`"}
            result["counts"] = counts
            if "strace" in tools:
                await asyncio.sleep(1.0)
                binary = tool("strace")
                result["strace"] = (
                    await self.strace_window(binary)
                    if binary
                    else {"error": "strace not found: `make bench-tools` installs it"}
                )
            if "py-spy" in tools:
                await asyncio.sleep(1.0)
                binary = tool("py-spy")
                result["profile"] = (
                    await self.profile_window(
                        binary, clean_cpu_us, counts["server_cpu_us_per_message"]
                    )
                    if binary
                    else {"error": "py-spy not found: `make bench-tools` installs it"}
                )
        finally:
            beats.cancel()
            self.close()
        return result


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _spawn(argv: list[str], output: Path) -> subprocess.Popen[bytes]:
    """A tracer, its stdout and stderr into ``output``."""
    with output.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


async def _wait_for_text(
    path: Path, text: str, proc: subprocess.Popen[bytes], within: float
) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        content = _read(path)
        if text in content:
            await asyncio.sleep(0.3)  # the rest of the threads
            return _read(path)
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}):\n{content[-2000:]}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} did not start within {within}s")


def trace(target: Embedded, opts: Options) -> dict[str, Any]:
    """Run the windows on ``target`` and return the result: first on a server started
    as it is (the clean CPU), then on a fresh one with the SQL counting loaded."""
    slug = re.sub(r"[^a-z0-9]+", "-", target.name.lower()).strip("-")
    site = opts.workdir / "trace" / slug
    site.mkdir(parents=True, exist_ok=True)
    target.start()
    try:
        accounts = create_accounts(target.api_url, 2)
        windows = asyncio.run(Trace(target, accounts, opts, site, None).run_clean())
    finally:
        target.stop()
    clean_cpu_us = float(windows["cpu"]["server_cpu_us_per_message"])

    shutil.copyfile(Path(_sqlcount.__file__), site / "sitecustomize.py")
    sql_out = site / "sqlcount.json"
    target.pythonpath = [site, *target.pythonpath]
    target.env = {**target.env, _sqlcount.ENV_OUT: str(sql_out)}
    target.data_dir = target.data_dir.with_name(target.data_dir.name + "-counted")
    overhead_ns = _sqlcount.overhead_ns_per_statement()
    target.start()
    try:
        accounts = create_accounts(target.api_url, 2)
        trace = Trace(target, accounts, opts, site, sql_out)
        windows.update(asyncio.run(trace.run(clean_cpu_us)))
        seen = json.loads(sql_out.read_text())
    finally:
        target.stop()
    return assemble(target, opts, windows, seen, overhead_ns)


def assemble(
    target: Embedded,
    opts: Options,
    windows: dict[str, Any],
    seen: dict[str, Any],
    overhead_ns: float,
) -> dict[str, Any]:
    """The trace scenario's result: the per-message figures gathered from the windows,
    with warnings for windows where the server did not keep up."""
    counts = windows["counts"]
    sql = counts["sql"]
    kinds = sql["by_kind"]
    main = ("SELECT", "INSERT", "UPDATE", "DELETE")
    per: dict[str, Any] = {
        "server_cpu_us": windows["cpu"]["server_cpu_us_per_message"],
        "server_cpu_us_sql_counted": counts["server_cpu_us_per_message"],
        "sql_statements": sql["statements"],
        "sql_select": kinds.get("SELECT", 0.0),
        "sql_insert": round(kinds.get("INSERT", 0.0) + kinds.get("REPLACE", 0.0), 3),
        "sql_update": kinds.get("UPDATE", 0.0),
        "sql_delete": kinds.get("DELETE", 0.0),
        "sql_other": round(
            sum(
                (v for k, v in kinds.items() if k not in (*main, "REPLACE", "BEGIN", "COMMIT")),
                0.0,
            ),
            3,
        ),
        "sql_total_incl_triggers_fts": sql["total_incl_triggers_and_nested"],
        "write_transactions": sql["write_transactions"],
        "commits": sql["commits"],
        "sql_by_database": sql["by_database"],
        "sql_count_overhead_us_est": round(
            overhead_ns * sql["total_incl_triggers_and_nested"] / 1000, 1
        ),
    }
    perf = counts.get("syscalls") or {}
    if "per_message" in perf:
        calls = perf["per_message"]
        per["fsync"] = perf["fsync"]
        per["futex"] = perf["futex"]
        per["epoll_wait"] = perf["epoll_wait"]
        per["pwrite64"] = calls.get("pwrite64")
        per["fcntl"] = calls.get("fcntl")
        per["syscalls_total"] = round(sum(calls.values()), 3)
    strace = windows.get("strace") or {}
    if "per_message" in strace:
        sc = strace["per_message"]
        for key in ("loopback_sends", "loopback_receives", "self_pipe_wakeups", "futex_wake"):
            per[key] = sc[key]
        for key in ("fsync", "futex", "epoll_wait", "pwrite64"):
            per.setdefault(key, sc[key])
        per["fsync_by_file"] = sc["fsync_by_file"]
    profile = windows.get("profile") or {}
    if "stage_us_per_message" in profile:
        per["stage_us"] = profile["stage_us_per_message"]
    warnings = []
    for name, window in (
        ("cpu", windows["cpu"]),
        ("counts", counts),
        ("strace", strace.get("window")),
        ("py-spy", profile.get("window")),
    ):
        if not window:
            continue
        if window["refused"] or not window["complete"]:
            warnings.append(
                f"{name} window: {window['refused']} of {window['sent']} sends refused "
                f"({window['errors']}), {window['delivered']} delivered: the server did not "
                f"keep up at {window['rate']:g}/s; its figures are per accepted message and "
                "distorted (lower --rate / --traced-rate)"
            )
    connections = [(c["database"], c["opener"]) for c in seen.get("connections", [])]
    return {
        "target": target.describe(),
        "imported_from": seen.get("tidings_file"),
        "sqlite_connections": seen.get("connections", []),
        "sql_seen_through": sorted({o for _, o in connections}),
        "messages": opts.messages,
        "rate": opts.rate,
        "traced_rate": opts.traced_rate or opts.rate,
        "body_bytes": opts.body_bytes,
        "per_message": per,
        "warnings": warnings,
        "windows": windows,
        "sql_count_overhead_ns_per_statement": round(overhead_ns, 1),
        "one_message_is": "1 send in; 1 ack and 1 msg (echo) to the sender's device, 1 msg "
        "to the receiver",
        "sources": {
            "server_cpu_us": f"cpu window at {opts.rate:g}/s on a server without the SQL "
            "counting and without tracers",
            "server_cpu_us_sql_counted, sql_*": f"counts window at {opts.rate:g}/s on a fresh "
            "server with the SQL counting loaded, perf stat attached",
            "fsync, futex, epoll_wait, pwrite64, fcntl": "perf stat in the counts window "
            "(strace window if perf is missing)",
            "loopback_*, self_pipe_wakeups, futex_wake, fsync_by_file": "strace window at "
            f"{opts.traced_rate or opts.rate:g}/s",
            "stage_us": "py-spy window's on-CPU shares (without the counting's own) x "
            "server_cpu_us; stage_us.sqlcount: its share x server_cpu_us_sql_counted",
        },
    }


# --- the table -----------------------------------------------------------------------

ROWS: tuple[tuple[str, str], ...] = (
    ("server_cpu_us", "server CPU µs (no SQL counting, no tracer; /proc utime+stime)"),
    ("server_cpu_us_sql_counted", "server CPU µs with the SQL counting loaded"),
    ("sql_statements", "SQL statements run by the server (top level)"),
    ("sql_select", "… SELECT"),
    ("sql_insert", "… INSERT (incl. REPLACE)"),
    ("sql_update", "… UPDATE"),
    ("sql_delete", "… DELETE"),
    ("write_transactions", "… write transactions (BEGIN)"),
    ("commits", "… COMMIT"),
    ("sql_other", "… other (PRAGMA, SAVEPOINT, …)"),
    ("sql_total_incl_triggers_fts", "SQL incl. trigger steps and FTS5-internal statements"),
    ("fsync", "fsync + fdatasync (perf)"),
    ("pwrite64", "pwrite64 (perf)"),
    ("futex", "futex (perf)"),
    ("epoll_wait", "epoll_wait + epoll_pwait (perf)"),
    ("syscalls_total", "syscalls counted (perf: the set in PERF_SYSCALLS)"),
    ("loopback_sends", "loopback TCP sends: send*/write on TCP sockets (strace)"),
    ("loopback_receives", "loopback TCP receives: recv*/read on TCP sockets (strace)"),
    (
        "self_pipe_wakeups",
        "event-loop wake-ups by other threads (self-pipe/eventfd, strace)",
    ),
    ("futex_wake", "FUTEX_WAKE: one thread waking another (strace)"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    return str(value)


def markdown(results: list[dict[str, Any]]) -> str:
    """Per-message figures, one column per traced target."""
    ok = [r for r in results if "per_message" in r]
    if not ok:
        return ""
    head = "| per 1:1 message | " + " | ".join(r["target"]["name"] for r in ok) + " |"
    lines = [head, "| --- |" + " ---: |" * len(ok)]
    for key, label in ROWS:
        cells = [_cell(r["per_message"].get(key)) for r in ok]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    databases = sorted({d for r in ok for d in r["per_message"]["sql_by_database"]})
    for database in databases:
        cells = [_cell(r["per_message"]["sql_by_database"].get(database)) for r in ok]
        lines.append(f"| SQL statements on {database} | " + " | ".join(cells) + " |")
    for stage, label in STAGES:
        cells = [_cell(r["per_message"].get("stage_us", {}).get(stage)) for r in ok]
        lines.append(f"| µs in {label} (py-spy share x CPU) | " + " | ".join(cells) + " |")
    lat = [r["windows"]["cpu"]["latency"] for r in ok]
    lines.append(
        "| delivery p50 / p99 ms at the offered rate (cpu window) | "
        + " | ".join(f"{_cell(x['p50_ms'])} / {_cell(x['p99_ms'])}" for x in lat)
        + " |"
    )
    lines.append(
        "| messages per window; offered rate (untraced / strace and py-spy windows) | "
        + " | ".join(f"{r['messages']}; {r['rate']:g}/s / {r['traced_rate']:g}/s" for r in ok)
        + " |"
    )
    refused = []
    for r in ok:
        w = r["windows"]
        counts = [w["cpu"], w["counts"]]
        counts += [w[k]["window"] for k in ("strace", "profile") if "window" in w.get(k, {})]
        refused.append(
            " / ".join(f"{c.get('refused', '-')}, {c.get('held_back', '-')}" for c in counts)
        )
    lines.append(
        "| sends refused, held back by the in-flight cap (cpu / counts / strace / py-spy) | "
        + " | ".join(refused)
        + " |"
    )
    return "\n".join(lines)
