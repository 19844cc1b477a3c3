"""An in-memory cache in front of the Directory, so the message path does no SELECT.

:class:`CachedDirectory` implements the whole :class:`~tidings.storage.base.Directory`
protocol around a :class:`~tidings.storage.sql.directory.SqlDirectory`. Reads look in bounded
LRU caches first — users, devices and device lists and presence audiences by user,
channels with their members, the DMs known to exist — and a miss reads through and fills.
Unknown users, devices and channels are cached too (in smaller LRUs of their own), so
asking for ids that do not exist cannot make every lookup a query. ``ensure_dm`` of a DM
known to exist does nothing at all.

Writes go through to the SqlDirectory, which names what each one changed (kinds
``user``, ``device``, ``user_devices``, ``channel``, ``audience`` and an id) and tells this
cache after its transaction ends, so exactly those entries are dropped before the write
returns. A read that misses runs once per key however many ask at the same moment
(single flight); if the key is dropped while that read runs, its result goes to the ones
who asked but is not kept (a per-key epoch), so a value read before a write never lands
after it.

Other processes (api pods, chat servers, the push worker) write the same PostgreSQL. Each
write appends its changes to ``directory_changes`` in its own transaction, and
:meth:`CachedDirectory.refresh` reads the rows after the last one seen and drops those
keys. :meth:`CachedDirectory.run_refresher` calls it every ``directory_cache_refresh_s``.

**The bound**: a write committed through any process is seen by every CachedDirectory
within one refresh interval plus one query (0.5 s plus a round trip by default), while
the database answers. A process that cannot read the log keeps serving what it has and
catches up when it can; one that finds rows it has not seen already trimmed (away longer
than ``directory_change_retention_s``), a first poll, a log it cannot follow (an unknown
kind, a database not yet migrated to the log) or too many rows at once flushes everything.

**Confirmed writes**: the bound alone would let a client add a member through one api pod
and send at once through a chat server whose cache still has the old member list. So
every process running the refresher reports in ``directory_readers`` the seq up to which
it has applied every change (``safe_seq``), and a write that changes memberships,
friends or push tokens — ``create_group``, ``add_member``, ``remove_member``,
``add_friend``, ``remove_friend``, ``set_push_token``, ``clear_push_token`` — returns
only once every other reader heard from in the last :data:`READER_SILENT_S` (or ten
intervals) has reached its seq, waiting at most ``confirm_s`` (``directory_write_confirm_s``,
5 s; then it returns with a warning). Such a write takes about half an interval longer;
new users and devices are not confirmed (nobody has them cached), nor are writes that
change nothing. A reader that dies without closing is waited for until it falls silent.

Sequence numbers are handed out when a transaction inserts its change rows (its last
statement) but become visible when it commits, so on PostgreSQL a later seq can be seen
before an earlier one. The poller keeps seqs it skipped over as *holes* and asks for them
again on every poll for :data:`HOLE_TIMEOUT_S` (a transaction rolled back leaves one
forever). A transaction that takes longer than that from its insert to its commit is the
one case the bound does not cover; its entries age out of the LRUs or the next flush.

Old rows are trimmed now and then by whoever polls (idempotent, the newest row is always
kept so the end of the log stays known). In the embedded default (`tidings up`, one
process) every write goes through the one CachedDirectory, so the runtime needs no
refresher; writes then trim the log themselves.

Memory: roughly half a kilobyte per cached user, device or channel entry (a group's
members and an audience add 8 bytes or so per id), so the defaults can reach a few hundred
MB on a server that sees millions of distinct users.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from tidings import metrics
from tidings.settings import Settings
from tidings.storage.base import Channel, Device, Invite, User
from tidings.storage.sql import directory_schema
from tidings.storage.sql.directory import (
    CHANGE_LOG_VERSION,
    Change,
    SqlDirectory,
    reset_written_seq,
    written_seq,
)

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

# A seq skipped over by the poller is asked for again for this long (see the docstring).
HOLE_TIMEOUT_S = 60.0
# At most this many seqs below the end of the log are taken as holes at once.
HOLE_SCAN = 1000
# More holes than this (a storm of rolled-back writes) flushes instead.
MAX_HOLES = 10_000
# A poll reads the log in batches of this many rows...
POLL_BATCH = 5000
# ...and one that finds more than this flushes and starts from the end of the log.
POLL_MAX_ROWS = 100_000
# Trim the log at most this often (and at most every tenth of the retention).
TRIM_EVERY_S = 300.0
# close() waits this long for a poll under way before closing the engine anyway.
CLOSE_WAIT_S = 5.0
# A reader (a refresher) not heard from for this long (and 10 intervals) is taken as gone;
# it reports at least every quarter of it.
READER_SILENT_S = 5.0
# A confirming write asks where the readers stand this often, at first, then less often.
CONFIRM_POLL_S = (0.01, 0.05)


class Missing(enum.Enum):
    """Not in the cache (``None`` from a peek means: cached as not existing)."""

    MISSING = "missing"


MISSING = Missing.MISSING


class _Lru(Generic[K, V]):
    __slots__ = ("_data", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | Missing:
        try:
            value = self._data[key]
        except KeyError:
            return MISSING
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self.capacity:
            data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


class _Flight(Generic[V]):
    """One read in progress; ``stale`` once its key was dropped after it started."""

    __slots__ = ("stale", "task")

    def __init__(self, task: asyncio.Task[V]) -> None:
        self.task = task
        self.stale = False


class _Cache(Generic[K, V]):
    """A read-through LRU with single flight and a per-key epoch.

    With ``negatives`` > 0, ``None`` values (does not exist) live in an LRU of that size of
    their own, so unknown ids cannot push out the known ones.
    """

    def __init__(self, name: str, capacity: int, negatives: int = 0) -> None:
        self.name = name
        self._values: _Lru[K, V] = _Lru(capacity)
        # Holds only None values (V includes None for such a cache).
        self._absent: _Lru[K, V] | None = _Lru(negatives) if negatives > 0 else None
        self._flights: dict[K, _Flight[V]] = {}
        # Bumped by every drop: a batch read fills only if it did not move meanwhile.
        self.version = 0
        self._hit = metrics.DIRECTORY_CACHE.labels(name, "hit")
        self._miss = metrics.DIRECTORY_CACHE.labels(name, "miss")

    def peek(self, key: K) -> V | Missing:
        value = self._values.get(key)
        if isinstance(value, Missing) and self._absent is not None:
            return self._absent.get(key)
        return value

    def lookup(self, key: K) -> V | Missing:
        """The cached value (counted as a hit) or MISSING (counted as a miss)."""
        value = self.peek(key)
        if isinstance(value, Missing):
            self._miss.inc()
        else:
            self._hit.inc()
        return value

    def put(self, key: K, value: V) -> None:
        if value is None and self._absent is not None:
            self._values.pop(key)
            self._absent.put(key, value)
            return
        if self._absent is not None:
            self._absent.pop(key)
        self._values.put(key, value)

    def put_if(self, version: int, key: K, value: V) -> None:
        """Fill from a read that started at ``version``, unless anything was dropped since
        or a single-flight read of the key is under way."""
        if version == self.version and key not in self._flights:
            self.put(key, value)

    async def load(self, key: K, loader: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """Read ``key`` through: joins the read of it in progress unless that one is stale."""
        flight = self._flights.get(key)
        if flight is None or flight.stale:
            flight = _Flight(asyncio.get_running_loop().create_task(loader()))
            self._flights[key] = flight
            # Registered first, so it runs before the callers waiting on the task resume.
            flight.task.add_done_callback(functools.partial(self._landed, key, flight))
        # Shielded: a caller cancelled does not cancel the read the others wait on.
        return await asyncio.shield(flight.task)

    def _landed(self, key: K, flight: _Flight[V], task: asyncio.Task[V]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if task.cancelled() or task.exception() is not None:
            return  # exception() also marks it retrieved when nobody waits any more
        if not flight.stale:
            self.put(key, task.result())

    def invalidate(self, key: K) -> None:
        self._values.pop(key)
        if self._absent is not None:
            self._absent.pop(key)
        flight = self._flights.get(key)
        if flight is not None:
            flight.stale = True
        self.version += 1

    def clear(self) -> None:
        self._values.clear()
        if self._absent is not None:
            self._absent.clear()
        for flight in self._flights.values():
            flight.stale = True
        self.version += 1

    def __len__(self) -> int:
        return len(self._values) + (len(self._absent) if self._absent is not None else 0)


_NO_BLOCKS: frozenset[int] = frozenset()


def _audience_within(entry: tuple[int, frozenset[int]], limit: int) -> set[int] | None:
    """A cached audience read with ``entry[0]`` as its limit, cut to ``limit``; None when it
    may lack members a larger limit would find."""
    cached_limit, members = entry
    # Fewer than limit - 1 (the user's own id may take a place) means nothing was cut.
    if limit > cached_limit and len(members) >= cached_limit - 1:
        return None
    if len(members) <= limit:
        return set(members)
    return set(sorted(members)[:limit])


class CachedDirectory:
    """The Directory with an in-memory cache in front (see the module docstring).

    The runtime: ``await CachedDirectory.open(url, ...)`` (or wrap an opened SqlDirectory
    and ``await refresh()`` once), run :meth:`run_refresher` as a task in every process of
    a cluster, and :meth:`close` at the end (which also ends the refresher).
    """

    def __init__(
        self,
        inner: SqlDirectory,
        *,
        users: int = 200_000,
        channels: int = 100_000,
        refresh_s: float = 0.5,
        retention_s: float = 3600.0,
        confirm_s: float = 0.0,
    ) -> None:
        self.inner = inner
        self.refresh_s = refresh_s
        self.retention_s = retention_s
        self.confirm_s = confirm_s
        self.reader_id = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._silent_ms = int(max(READER_SILENT_S, 10 * refresh_s) * 1000)
        self._reported: tuple[int, float] | None = None  # (safe_seq, monotonic time)
        self._versions_checked = float("-inf")
        absent_users = max(1, users // 4)
        self._users: _Cache[int, User | None] = _Cache("users", users, absent_users)
        self._devices: _Cache[int, Device | None] = _Cache("devices", users, absent_users)
        self._user_devices: _Cache[int, tuple[Device, ...]] = _Cache("user_devices", users)
        self._audiences: _Cache[int, tuple[int, frozenset[int]]] = _Cache("audiences", users)
        # Blocks are few: the whole table is held (loaded on first use or by
        # warm_blocks()), so a 1:1 send never waits for a query to learn there is none.
        self._blocks: dict[int, frozenset[int]] | None = None
        self._blocks_stale: set[int] = set()  # users whose entry a change named
        self._blocks_load: asyncio.Task[dict[int, frozenset[int]]] | None = None
        self._block_reads: dict[int, asyncio.Task[frozenset[int]]] = {}  # re-reads under way
        # Called with a device id whenever the device changed, here or in another process
        # (the gateway closes sockets whose session ended).
        self.device_listeners: list[Callable[[int], None]] = []
        # Called when changes may have been missed (a gap in the log): every device may
        # have changed.
        self.flush_listeners: list[Callable[[], None]] = []
        self._channels: _Cache[str, Channel | None] = _Cache(
            "channels", channels, max(1, channels // 4)
        )
        self._dms: _Lru[str, bool] = _Lru(channels)
        self.warmed_users: list[int] = []  # whose devices warm_devices() loaded
        self._dm_hit = metrics.DIRECTORY_CACHE.labels("dms", "hit")
        self._dm_miss = metrics.DIRECTORY_CACHE.labels("dms", "miss")
        # Where this process is in the change log; None until the first poll.
        self._last: int | None = None
        self._holes: dict[int, float] = {}  # seq -> monotonic deadline
        self._refresh_lock = asyncio.Lock()
        self._last_trim = float("-inf")
        self._stop = asyncio.Event()
        self._refresher_running = False
        inner.add_listener(self._on_changes)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        users: int = 200_000,
        channels: int = 100_000,
        refresh_s: float = 0.5,
        retention_s: float = 3600.0,
        confirm_s: float = 0.0,
    ) -> CachedDirectory:
        """Open the SqlDirectory (see :meth:`SqlDirectory.open`) and find the end of the
        change log, so the refresher starts from there."""
        inner = await SqlDirectory.open(url, migrate=migrate)
        cached = cls(
            inner,
            users=users,
            channels=channels,
            refresh_s=refresh_s,
            retention_s=retention_s,
            confirm_s=confirm_s,
        )
        try:
            await cached.refresh()
        except BaseException:
            await cached.close()
            raise
        return cached

    @property
    def engine(self) -> AsyncEngine:
        """The directory database's engine (the key directory and the media rows share it)."""
        return self.inner.engine

    @classmethod
    async def from_settings(
        cls, url: str, settings: Settings, *, migrate: bool = True
    ) -> CachedDirectory:
        """:meth:`open` with the ``directory_cache_*`` and retention settings."""
        return await cls.open(
            url,
            migrate=migrate,
            users=settings.directory_cache_users,
            channels=settings.directory_cache_channels,
            refresh_s=settings.directory_cache_refresh_s,
            retention_s=settings.directory_change_retention_s,
            confirm_s=settings.directory_write_confirm_s,
        )

    async def close(self) -> None:
        """End :meth:`run_refresher` (after the poll under way, waiting at most
        :data:`CLOSE_WAIT_S` for it) and close the SqlDirectory."""
        self._stop.set()
        try:
            await asyncio.wait_for(self._refresh_lock.acquire(), CLOSE_WAIT_S)
            locked = True
        except TimeoutError:
            locked = False
        try:
            with contextlib.suppress(ValueError):
                self.inner.remove_listener(self._on_changes)
            if self._reported is not None:
                try:  # writers need not wait for this one any more
                    await asyncio.wait_for(self.inner.remove_reader(self.reader_id), CLOSE_WAIT_S)
                except Exception:
                    log.warning("directory cache: could not remove its reader row", exc_info=True)
            await self.inner.close()
        finally:
            if locked:
                self._refresh_lock.release()

    # --- what is cached ------------------------------------------------------------

    def peek_user(self, user_id: int) -> User | Missing | None:
        """Synchronous: the cached user, None if cached as unknown, else MISSING."""
        return self._users.peek(user_id)

    def peek_device(self, device_id: int) -> Device | Missing | None:
        """What the cache holds for a device, without loading: the device, None (known not to
        exist) or MISSING."""
        return self._devices.peek(device_id)

    def peek_channel(self, channel_id: str) -> Channel | Missing | None:
        """The cached channel (share it, do not change it), None if unknown, else MISSING."""
        return self._channels.peek(channel_id)

    def dm_known(self, channel_id: str) -> bool:
        """Whether this DM is known to exist (``ensure_dm`` of it then does nothing)."""
        return channel_id in self._dms

    def flush(self) -> None:
        """Drop every entry (reads under way will not fill)."""
        for cache in (
            self._users,
            self._devices,
            self._user_devices,
            self._audiences,
            self._channels,
        ):
            cache.clear()
        self._blocks = None
        self._blocks_load = None  # a load under way read before what made this flush
        self._dms.clear()

    def sizes(self) -> dict[str, int]:
        """How many entries each cache holds (for the metrics)."""
        return {
            "users": len(self._users),
            "devices": len(self._devices),
            "user_devices": len(self._user_devices),
            "audiences": len(self._audiences),
            "blocks": len(self._blocks or ()),
            "channels": len(self._channels),
            "dms": len(self._dms),
        }

    def _invalidate(self, kind: str, key: str) -> bool:
        """Drop what a change names; False for a change this version cannot place."""
        if kind == "channel":
            self._channels.invalidate(key)
            return True
        try:
            number = int(key)
        except ValueError:
            return False
        if kind == "user":
            self._users.invalidate(number)
        elif kind == "device":
            self._devices.invalidate(number)
            for listener in self.device_listeners:
                listener(number)
        elif kind == "user_devices":
            self._user_devices.invalidate(number)
        elif kind == "audience":
            self._audiences.invalidate(number)
        elif kind == "blocks":
            self._blocks_stale.add(number)
        else:
            return False
        return True

    def _on_changes(self, changes: Sequence[Change]) -> None:
        """A write through this process ended: drop what it changed."""
        for kind, key in changes:
            if not self._invalidate(kind, key):
                self.flush()
                return

    # --- the change log --------------------------------------------------------------

    async def refresh(self) -> int:
        """Read the change log after the last row seen and drop what it names; returns
        the number of rows read. The first call (and any that finds a gap) flushes
        everything and starts from the end of the log."""
        async with self._refresh_lock:
            return await self._refresh()

    async def _refresh(self) -> int:
        """:meth:`refresh` with the lock held."""
        inner = self.inner
        if not inner.log_changes:
            # A database not yet migrated to the log: nothing to follow, so nothing
            # cached may outlive one interval; follow it once migrated.
            versions = await directory_schema.applied_versions(inner.engine)
            if CHANGE_LOG_VERSION not in versions:
                self.flush()
                return 0
            inner.note_versions(versions)
            self._last = None
        if self._last is None:
            await self._reposition()
            return 0
        now = time.monotonic()
        if any(deadline <= now for deadline in self._holes.values()):
            self._holes = {s: d for s, d in self._holes.items() if d > now}
        total = 0
        while True:
            rows = await inner.changes_after(self._last, self._holes, POLL_BATCH)
            total += len(rows)
            if not await self._apply(rows, now):
                return total
            if len(rows) < POLL_BATCH:
                return total
            if total >= POLL_MAX_ROWS:
                log.info("directory cache: too many changes at once, flushing")
                await self._reposition()
                return total

    async def _apply(self, rows: list[tuple[int, str, str]], now: float) -> bool:
        """Drop what ``rows`` (in seq order) name and move past them; False when this
        flushed instead (a gap, an unknown kind, too many holes)."""
        last = self._last
        assert last is not None
        fresh_start = next((i for i, row in enumerate(rows) if row[0] > last), len(rows))
        if fresh_start < len(rows) and rows[fresh_start][0] > last + 1:
            # Seqs skipped: open or rolled-back transactions, or rows trimmed before
            # this process read them.
            oldest = await self.inner.oldest_change()
            if oldest is None or oldest > last + 1:
                log.warning(
                    "directory cache: change log trimmed past this process, flushing",
                    extra={"last_seq": last, "oldest_seq": oldest},
                )
                await self._reposition()
                return False
        deadline = now + HOLE_TIMEOUT_S
        known = True
        previous = last
        for seq, kind, key in rows:
            if seq > last:
                if seq > previous + 1:
                    for hole in range(max(previous + 1, seq - HOLE_SCAN), seq):
                        self._holes[hole] = deadline
                previous = seq
            else:
                self._holes.pop(seq, None)
            known = self._invalidate(kind, key) and known
        self._last = previous
        if len(self._holes) > MAX_HOLES:
            log.warning("directory cache: too many holes in the change log, flushing")
            await self._reposition()
            return False
        if not known:
            log.warning("directory cache: a change of an unknown kind, flushing")
            self._lost_track()
        return True

    async def _reposition(self) -> None:
        top, holes = await self.inner.change_position(int(HOLE_TIMEOUT_S * 1000), HOLE_SCAN)
        self._last = top
        deadline = time.monotonic() + HOLE_TIMEOUT_S
        self._holes = dict.fromkeys(holes, deadline)
        # After reading the position: whatever was read before it is dropped, and reads
        # under way do not fill.
        self._lost_track()

    def _lost_track(self) -> None:
        """Changes may have been missed: drop everything, and tell whoever acts on device
        changes that any device may have changed."""
        self.flush()
        for listener in self.flush_listeners:
            listener()

    async def trim(self) -> int:
        """Delete change rows older than the retention (any process may; idempotent)."""
        self._last_trim = time.monotonic()
        cutoff = int((time.time() - self.retention_s) * 1000)
        return await self.inner.trim_changes(cutoff)

    async def _maybe_trim(self) -> None:
        every = min(TRIM_EVERY_S, self.retention_s / 10)
        if self.inner.log_changes and time.monotonic() - self._last_trim >= every:
            await self.trim()

    def safe_seq(self) -> int | None:
        """Every change up to this seq has been applied here (None before the first poll)."""
        if self._last is None:
            return None
        if self._holes:
            return min(min(self._holes) - 1, self._last)
        return self._last

    async def _report(self) -> None:
        """Tell confirming writers where this reader stands: when it moved, and at least
        every quarter of the silence after which a reader is taken as gone."""
        safe = self.safe_seq()
        if safe is None:
            return
        now = time.monotonic()
        if not self.inner.has_readers:
            # A schema behind version 3: look again now and then.
            if now - self._versions_checked < READER_SILENT_S:
                return
            self._versions_checked = now
            self.inner.note_versions(await directory_schema.applied_versions(self.engine))
            if not self.inner.has_readers:
                return
        reported = self._reported
        if (
            reported is None
            or reported[0] != safe
            or (now - reported[1]) * 1000 >= self._silent_ms / 4
        ):
            await self.inner.report_reader(self.reader_id, safe, int(time.time() * 1000))
            self._reported = (safe, now)

    async def _confirm(self) -> None:
        """After a write of this task: wait until every other live reader has applied it,
        at most ``confirm_s`` (then go on, with a warning)."""
        seq = written_seq()
        if seq <= 0 or self.confirm_s <= 0 or not self.inner.has_readers:
            return
        deadline = time.monotonic() + self.confirm_s
        pause, longest = CONFIRM_POLL_S
        while True:
            seen_after = int(time.time() * 1000) - self._silent_ms
            try:
                behind = await self.inner.readers_behind(seq, seen_after, self.reader_id)
            except Exception:
                log.warning("directory cache: could not confirm a write", exc_info=True)
                return
            if not behind:
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "directory cache: a write not yet seen by every reader",
                    extra={"seq": seq, "readers_behind": behind},
                )
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)

    async def _confirmed(self, write: Awaitable[T]) -> T:
        """Run a write other processes' hot paths depend on (memberships, friends, push
        tokens) and, with ``confirm_s``, return once every live reader has applied it:
        a client told "done" then finds it done on every server."""
        reset_written_seq()
        try:
            result = await write
        finally:
            await self._after_write()
        await self._confirm()
        return result

    async def _after_write(self) -> None:
        """Without a refresher (the embedded default) writes trim the log now and then."""
        if self._refresher_running:
            return
        try:
            await self._maybe_trim()
        except Exception:
            log.warning("directory change log trim failed", exc_info=True)

    async def run_refresher(self) -> None:
        """Follow the change log until :meth:`close`: :meth:`refresh` every ``refresh_s``
        and trim now and then. Failures are logged and tried again at the next tick."""
        self._refresher_running = True
        try:
            while not self._stop.is_set():
                async with self._refresh_lock:
                    if self._stop.is_set():
                        break  # closed while waiting for the lock
                    try:
                        await self._refresh()
                        await self._report()
                        await self._maybe_trim()
                    except Exception:
                        log.warning("directory cache refresh failed", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.refresh_s)
        finally:
            self._refresher_running = False

    # --- users -----------------------------------------------------------------------

    async def create_user(
        self, user_id: int, username: str, password_hash: str, display_name: str, now: int
    ) -> User:
        """As :meth:`SqlDirectory.create_user`."""
        try:
            return await self.inner.create_user(user_id, username, password_hash, display_name, now)
        finally:
            await self._after_write()

    async def get_user(self, user_id: int) -> User | None:
        """The user, from the cache, else read through (an unknown id is cached too)."""
        user = self._users.lookup(user_id)
        if not isinstance(user, Missing):
            return user
        return await self._users.load(user_id, lambda: self.inner.get_user(user_id))

    async def get_user_by_name(self, username: str) -> User | None:
        """The user with this name, read from the database (and cached by id)."""
        version = self._users.version
        user = await self.inner.get_user_by_name(username)
        if user is not None:
            self._users.put_if(version, user.user_id, user)
        return user

    async def get_users(self, user_ids: Iterable[int]) -> list[User]:
        """These users, from the cache, reading the missing ones in one query."""
        found: list[User] = []
        missing: list[int] = []
        for user_id in set(user_ids):
            user = self._users.lookup(user_id)
            if isinstance(user, Missing):
                missing.append(user_id)
            elif user is not None:
                found.append(user)
        if missing:
            version = self._users.version
            loaded = await self.inner.get_users(missing)
            by_id = {user.user_id: user for user in loaded}
            for user_id in missing:
                self._users.put_if(version, user_id, by_id.get(user_id))
            found.extend(loaded)
        return found

    # --- devices ---------------------------------------------------------------------

    async def create_device(
        self, device_id: int, user_id: int, name: str, platform: str | None, now: int
    ) -> Device:
        """As :meth:`SqlDirectory.create_device`."""
        try:
            return await self.inner.create_device(device_id, user_id, name, platform, now)
        finally:
            await self._after_write()

    async def warm_devices(self, limit: int) -> int:
        """Load up to ``limit`` devices (the newest) and every such user's device list in
        one read, so the ``hello``s of a reconnect storm after a restart find them in
        memory instead of each waiting for a query. Returns how many were loaded."""
        version = (self._devices.version, self._user_devices.version)
        found = await self.inner.newest_devices(limit)
        if version != (self._devices.version, self._user_devices.version):
            return 0  # something changed meanwhile: leave it to the read-through path
        by_user: dict[int, list[Device]] = {}
        for device in found:
            self._devices.put(device.device_id, device)
            by_user.setdefault(device.user_id, []).append(device)
        self.warmed_users = list(by_user)  # for warm_audiences()
        if len(found) < limit:  # every device was read: the lists are whole
            for user_id, owned in by_user.items():
                self._user_devices.put(user_id, tuple(sorted(owned, key=lambda d: d.device_id)))
        return len(found)

    async def get_device(self, device_id: int) -> Device | None:
        """The device, from the cache, else read through (an unknown id is cached too)."""
        device = self._devices.lookup(device_id)
        if not isinstance(device, Missing):
            return device
        return await self._devices.load(device_id, lambda: self.inner.get_device(device_id))

    async def list_devices(self, user_id: int) -> list[Device]:
        """A user's devices, from the cache, else read through."""
        devices = self._user_devices.lookup(user_id)
        if isinstance(devices, Missing):
            devices = await self._user_devices.load(user_id, lambda: self._load_devices(user_id))
        return list(devices)

    async def _load_devices(self, user_id: int) -> tuple[Device, ...]:
        return tuple(await self.inner.list_devices(user_id))

    async def set_push_token(self, device_id: int, provider: str, token: str) -> None:
        """As :meth:`SqlDirectory.set_push_token`; with ``confirm_s``, returns once every live
        reader has applied it."""
        await self._confirmed(self.inner.set_push_token(device_id, provider, token))

    async def clear_push_token(self, device_id: int, token: str) -> None:
        """As :meth:`SqlDirectory.clear_push_token`; with ``confirm_s``, returns once every live
        reader has applied it."""
        await self._confirmed(self.inner.clear_push_token(device_id, token))

    async def bump_token_version(self, device_id: int) -> int | None:
        """As :meth:`SqlDirectory.bump_token_version`; with ``confirm_s``, returns once every
        live reader has applied it."""
        return await self._confirmed(self.inner.bump_token_version(device_id))

    async def delete_device(self, device_id: int) -> bool:
        """As :meth:`SqlDirectory.delete_device`; with ``confirm_s``, returns once every live
        reader has applied it."""
        return await self._confirmed(self.inner.delete_device(device_id))

    async def touch_devices(self, seen: Mapping[int, int]) -> None:
        """As :meth:`SqlDirectory.touch_devices` (not cached: not on the message path)."""
        await self.inner.touch_devices(seen)

    async def list_devices_now(self, user_id: int) -> list[Device]:
        """The user's devices as stored now, with last_seen (the device list's read)."""
        return await self.inner.list_devices(user_id)

    # --- friends ---------------------------------------------------------------------

    async def add_friend(self, user_id: int, friend_id: int) -> None:
        """As :meth:`SqlDirectory.add_friend`; with ``confirm_s``, returns once every live reader
        has applied it."""
        await self._confirmed(self.inner.add_friend(user_id, friend_id))

    async def request_friend(self, user_id: int, friend_id: int, now: int) -> str:
        """As :meth:`SqlDirectory.request_friend`; with ``confirm_s``, returns once every live
        reader has applied it."""
        return await self._confirmed(self.inner.request_friend(user_id, friend_id, now))

    async def remove_friend(self, user_id: int, friend_id: int) -> None:
        """As :meth:`SqlDirectory.remove_friend`; with ``confirm_s``, returns once every live
        reader has applied it."""
        await self._confirmed(self.inner.remove_friend(user_id, friend_id))

    # The API's reads, not the hot path's: straight to the database.

    async def list_friends(self, user_id: int) -> list[User]:
        """As :meth:`SqlDirectory.list_friends` (not cached: not on the message path)."""
        return await self.inner.list_friends(user_id)

    async def friend_requests(self, user_id: int) -> tuple[list[User], list[User]]:
        """As :meth:`SqlDirectory.friend_requests` (not cached: not on the message path)."""
        return await self.inner.friend_requests(user_id)

    async def is_friend(self, user_id: int, other_id: int) -> bool:
        """As :meth:`SqlDirectory.is_friend` (not cached: not on the message path)."""
        return await self.inner.is_friend(user_id, other_id)

    async def related(self, user_id: int, other_id: int) -> bool:
        """As :meth:`SqlDirectory.related` (not cached: not on the message path)."""
        return await self.inner.related(user_id, other_id)

    # --- blocks ----------------------------------------------------------------------

    async def block(self, user_id: int, blocked_id: int, now: int) -> None:
        """As :meth:`SqlDirectory.block`; with ``confirm_s``, returns once every live reader has
        applied it."""
        await self._confirmed(self.inner.block(user_id, blocked_id, now))

    async def unblock(self, user_id: int, blocked_id: int) -> None:
        """As :meth:`SqlDirectory.unblock`; with ``confirm_s``, returns once every live reader
        has applied it."""
        await self._confirmed(self.inner.unblock(user_id, blocked_id))

    async def list_blocked(self, user_id: int) -> list[User]:
        """As :meth:`SqlDirectory.list_blocked` (not cached: not on the message path)."""
        return await self.inner.list_blocked(user_id)

    async def block_set(self, user_id: int) -> frozenset[int]:
        """From memory (a 1:1 send checks it); a user a change named is read again, and a
        check that comes while that read is under way waits for it (never the old entry)."""
        blocks = self._blocks
        if blocks is None:
            blocks = await self.warm_blocks()
        if not self._blocks_stale and not self._block_reads:
            return blocks.get(user_id, _NO_BLOCKS)
        while True:
            read = self._block_reads.get(user_id)
            if read is None:
                if user_id not in self._blocks_stale:
                    return (self._blocks or blocks).get(user_id, _NO_BLOCKS)
                self._blocks_stale.discard(user_id)
                read = asyncio.ensure_future(self._reread_block_set(user_id))
                self._block_reads[user_id] = read
            found = await asyncio.shield(read)
            if user_id not in self._blocks_stale:  # no change named them during the read
                return found

    async def _reread_block_set(self, user_id: int) -> frozenset[int]:
        table = self._blocks
        try:
            found = await self.inner.block_set(user_id)
        except BaseException:
            self._blocks_stale.add(user_id)  # still unknown: the next check reads again
            raise
        finally:
            self._block_reads.pop(user_id, None)
        if table is not None and self._blocks is table:  # not flushed meanwhile
            if found:
                table[user_id] = found
            else:
                table.pop(user_id, None)
        return found

    async def warm_blocks(self) -> dict[int, frozenset[int]]:
        """Load the whole blocks table (one read, shared by concurrent callers)."""
        load = self._blocks_load
        if load is None:
            self._blocks_stale.clear()  # the whole table is read after this point
            load = self._blocks_load = asyncio.ensure_future(self._load_blocks())
        return await asyncio.shield(load)

    async def _load_blocks(self) -> dict[int, frozenset[int]]:
        me = asyncio.current_task()
        try:
            blocks = await self.inner.all_blocks()
        except BaseException:
            if self._blocks_load is me:
                self._blocks_load = None
            raise
        if self._blocks_load is me:  # a flush meanwhile leaves the table to a newer load
            self._blocks, self._blocks_load = blocks, None
        return blocks

    # --- invites and allowances ------------------------------------------------------

    async def invite(self, channel_id: str, user_id: int, inviter_id: int, now: int) -> None:
        """As :meth:`SqlDirectory.invite` (not cached: not on the message path)."""
        await self.inner.invite(channel_id, user_id, inviter_id, now)

    async def list_invites(self, user_id: int) -> list[Invite]:
        """As :meth:`SqlDirectory.list_invites` (not cached: not on the message path)."""
        return await self.inner.list_invites(user_id)

    async def accept_invite(self, channel_id: str, user_id: int, max_members: int) -> bool:
        """As :meth:`SqlDirectory.accept_invite`; with ``confirm_s``, returns once every live
        reader has applied it."""
        return await self._confirmed(self.inner.accept_invite(channel_id, user_id, max_members))

    async def decline_invite(self, channel_id: str, user_id: int) -> None:
        """As :meth:`SqlDirectory.decline_invite` (not cached: not on the message path)."""
        await self.inner.decline_invite(channel_id, user_id)

    async def bucket_levels(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        """As :meth:`SqlDirectory.bucket_levels` (not cached: not on the message path)."""
        return await self.inner.bucket_levels(keys)

    async def spend_bucket(self, key: str, burst: float, per_s: float, now: float) -> None:
        """As :meth:`SqlDirectory.spend_bucket` (not cached: not on the message path)."""
        await self.inner.spend_bucket(key, burst, per_s, now)

    async def use_allowance(
        self, user_id: int, kind: str, now: int, window_ms: int, limit: int, cost: int = 1
    ) -> int:
        """As :meth:`SqlDirectory.use_allowance` (not cached: not on the message path)."""
        return await self.inner.use_allowance(user_id, kind, now, window_ms, limit, cost)

    async def presence_audience(self, user_id: int, limit: int) -> set[int]:
        """Who sees this user's presence (friends and group peers, at most ``limit``), from the
        cache, else read through."""
        entry = self._audiences.lookup(user_id)
        if not isinstance(entry, Missing):
            audience = _audience_within(entry, limit)
            if audience is not None:
                return audience
        entry = await self._audiences.load(user_id, lambda: self._load_audience(user_id, limit))
        audience = _audience_within(entry, limit)
        if audience is None:  # joined a read made with a smaller limit
            return await self.inner.presence_audience(user_id, limit)
        return audience

    async def warm_audiences(self, user_ids: Iterable[int], limit: int) -> int:
        """Fill the presence audiences of ``user_ids`` (cut to ``limit``, as
        :meth:`presence_audience` would) from one read of the whole table, so a reconnect
        storm's presence fan-out finds them in memory. Returns how many were filled."""
        version = self._audiences.version
        everyone = await self.inner.all_audiences()
        if version != self._audiences.version:
            return 0  # something changed meanwhile: leave it to the read-through path
        filled = 0
        for user_id in user_ids:
            audience = everyone.get(user_id, set())
            cut = audience if len(audience) <= limit else set(sorted(audience)[:limit])
            self._audiences.put(user_id, (limit, frozenset(cut)))
            filled += 1
        return filled

    async def _load_audience(self, user_id: int, limit: int) -> tuple[int, frozenset[int]]:
        return limit, frozenset(await self.inner.presence_audience(user_id, limit))

    # --- channels --------------------------------------------------------------------

    async def ensure_dm(
        self, channel_id: str, user_a: int, user_b: int, now: int, e2e: bool = False
    ) -> bool:
        """As :meth:`SqlDirectory.ensure_dm`; nothing at all for a DM known to exist (a DM is
        never removed, its mode never changes)."""
        known = self._dms.get(channel_id)
        if not isinstance(known, Missing):
            self._dm_hit.inc()
            return bool(known)  # a DM, once made, is never removed; its mode never changes
        self._dm_miss.inc()
        try:
            mode = await self.inner.ensure_dm(channel_id, user_a, user_b, now, e2e)
        finally:
            await self._after_write()
        self._dms.put(channel_id, mode)
        return mode

    async def create_group(
        self,
        channel_id: str,
        name: str,
        owner_id: int,
        member_ids: Sequence[int],
        now: int,
        e2e: bool = False,
    ) -> Channel:
        """As :meth:`SqlDirectory.create_group`; with ``confirm_s``, returns once every live
        reader has applied it."""
        return await self._confirmed(
            self.inner.create_group(channel_id, name, owner_id, member_ids, now, e2e)
        )

    async def get_channel(self, channel_id: str) -> Channel | None:
        """The channel, from the cache, else read through; a copy of its member lists."""
        channel = self._channels.lookup(channel_id)
        if isinstance(channel, Missing):
            channel = await self._channels.load(
                channel_id, lambda: self.inner.get_channel(channel_id)
            )
        if channel is None:
            return None
        # A copy of the members: the cached one is shared.
        return dataclasses.replace(
            channel, member_ids=list(channel.member_ids), admin_ids=list(channel.admin_ids)
        )

    async def add_member(self, channel_id: str, user_id: int, max_members: int) -> None:
        """As :meth:`SqlDirectory.add_member`; with ``confirm_s``, returns once every live reader
        has applied it."""
        await self._confirmed(self.inner.add_member(channel_id, user_id, max_members))

    async def remove_member(self, channel_id: str, user_id: int) -> int | None:
        """As :meth:`SqlDirectory.remove_member`; with ``confirm_s``, returns once every live
        reader has applied it."""
        return await self._confirmed(self.inner.remove_member(channel_id, user_id))

    async def update_group(
        self, channel_id: str, *, name: str | None = None, members_can_add: bool | None = None
    ) -> None:
        """As :meth:`SqlDirectory.update_group`; with ``confirm_s``, returns once every live
        reader has applied it."""
        await self._confirmed(
            self.inner.update_group(channel_id, name=name, members_can_add=members_can_add)
        )

    async def set_admin(self, channel_id: str, user_id: int, admin: bool) -> None:
        """As :meth:`SqlDirectory.set_admin`; with ``confirm_s``, returns once every live reader
        has applied it."""
        await self._confirmed(self.inner.set_admin(channel_id, user_id, admin))

    async def set_display_name(self, user_id: int, display_name: str) -> None:
        """As :meth:`SqlDirectory.set_display_name`; with ``confirm_s``, returns once every live
        reader has applied it."""
        await self._confirmed(self.inner.set_display_name(user_id, display_name))

    async def list_channels(self, user_id: int) -> list[Channel]:
        """As :meth:`SqlDirectory.list_channels` (not cached: not on the message path)."""
        return await self.inner.list_channels(user_id)  # the API's, not the hot path's


if TYPE_CHECKING:
    from tidings.storage.base import Directory

    def _implements_directory(cached: CachedDirectory) -> Directory:
        return cached
