"""CachedDirectory on SQLite: hits do no SQL, writes drop exactly what they change,
unknown ids are cached, a read racing a write never keeps the old value, the LRUs hold
their bound, and a second process sees writes through the change log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from tidings.storage.base import GroupFull, User
from tidings.storage.sql import directory_cache
from tidings.storage.sql.directory import SqlDirectory
from tidings.storage.sql.directory_cache import MISSING, CachedDirectory
from tidings.storage.sql.directory_schema import MIGRATIONS, migrate
from tidings.storage.sql.tables import directory_changes, directory_readers


class Statements:
    """Counts the SQL statements an engine runs."""

    def __init__(self, directory: CachedDirectory) -> None:
        self.seen: list[str] = []
        engine = directory.engine.sync_engine

        @event.listens_for(engine, "before_cursor_execute")
        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            self.seen.append(statement)

    @contextmanager
    def none(self) -> Iterator[None]:
        before = len(self.seen)
        yield
        assert self.seen[before:] == []

    def during(self) -> _Window:
        return _Window(self)


class _Window:
    def __init__(self, statements: Statements) -> None:
        self.statements = statements
        self.start = len(statements.seen)

    @property
    def count(self) -> int:
        return len(self.statements.seen) - self.start


def url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def cached(tmp_path: Path) -> AsyncIterator[CachedDirectory]:
    directory = await CachedDirectory.open(url(tmp_path / "directory.db"))
    yield directory
    await directory.close()


async def reader_reports(d: CachedDirectory) -> dict[str, int]:
    """What every reader has reported to the shared table: reader id, safe seq."""
    async with d.engine.connect() as conn:
        rows = (await conn.execute(select(directory_readers))).all()
    return {r.reader: r.safe_seq for r in rows}


async def reported(
    d: CachedDirectory, reader_id: str, safe_seq: int | None = None, within: float = 5.0
) -> None:
    """Wait until ``reader_id`` has reported where it stands (``safe_seq``, if given)."""
    deadline = time.monotonic() + within
    while True:
        reports = await reader_reports(d)
        if reader_id in reports and safe_seq in (None, reports[reader_id]):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{reader_id} did not report {safe_seq or 'at all'} within {within}s: {reports}"
            )
        await asyncio.sleep(0.01)


async def seed(d: CachedDirectory) -> None:
    """Users 1-5; devices 10, 11 of user 1 and 20 of user 2; group g:1 of 1, 2, 3; a DM
    of 1 and 2; 1 and 5 are friends."""
    for uid in range(1, 6):
        await d.create_user(uid, f"u{uid}", "h", f"U{uid}", 0)
    await d.create_device(10, 1, "phone", "ios", 0)
    await d.create_device(11, 1, "laptop", "web", 0)
    await d.create_device(20, 2, "phone", "android", 0)
    await d.create_group("g:1", "club", 1, [2, 3], 0)
    await d.ensure_dm("dm:1:2", 1, 2, 0)
    await d.add_friend(1, 5)


async def warm(d: CachedDirectory) -> None:
    for uid in range(1, 8):  # 6 and 7 do not exist
        await d.get_user(uid)
        await d.list_devices(uid)
        await d.presence_audience(uid, 100)
    for did in (10, 11, 20, 99):
        await d.get_device(did)
    for cid in ("g:1", "g:2", "dm:1:2", "dm:1:3"):
        await d.get_channel(cid)


async def test_hits_run_no_sql(cached: CachedDirectory) -> None:
    await seed(cached)
    sql = Statements(cached)
    first = sql.during()
    await warm(cached)
    assert first.count > 0
    with sql.none():
        await warm(cached)
        user = await cached.get_user(1)
        assert user is not None and user.username == "u1"
        assert await cached.get_user(6) is None
        assert [d.device_id for d in await cached.list_devices(1)] == [10, 11]
        device = await cached.get_device(20)
        assert device is not None and device.user_id == 2
        channel = await cached.get_channel("g:1")
        assert channel is not None and channel.member_ids == [1, 2, 3]
        assert await cached.get_channel("g:2") is None
        assert await cached.presence_audience(1, 100) == {2, 3, 5}
        assert await cached.presence_audience(1, 2) == {2, 3}  # cut from the cached one
        assert await cached.presence_audience(1, 1000) == {2, 3, 5}  # it was complete
        await cached.ensure_dm("dm:1:2", 1, 2, 0)  # made by seed: known
        assert sorted(u.user_id for u in await cached.get_users([1, 2, 6])) == [1, 2]


async def test_ensure_dm_is_free_once_known(cached: CachedDirectory) -> None:
    await seed(cached)
    sql = Statements(cached)
    window = sql.during()
    await cached.ensure_dm("dm:1:3", 1, 3, 0)
    assert window.count > 0
    assert cached.dm_known("dm:1:3")
    with sql.none():
        for _ in range(3):
            await cached.ensure_dm("dm:1:3", 1, 3, 0)
    channel = await cached.get_channel("dm:1:3")
    assert channel is not None and channel.member_ids == [1, 3]


async def test_returned_values_are_copies(cached: CachedDirectory) -> None:
    await seed(cached)
    channel = await cached.get_channel("g:1")
    assert channel is not None
    channel.member_ids.append(99)
    (await cached.list_devices(1)).clear()
    (await cached.presence_audience(1, 100)).add(99)
    again = await cached.get_channel("g:1")
    assert again is not None and again.member_ids == [1, 2, 3]
    assert len(await cached.list_devices(1)) == 2
    assert await cached.presence_audience(1, 100) == {2, 3, 5}


def audience_cached(d: CachedDirectory, uid: int) -> bool:
    return not isinstance(d._audiences.peek(uid), type(MISSING))


def devices_cached(d: CachedDirectory, uid: int) -> bool:
    return not isinstance(d._user_devices.peek(uid), type(MISSING))


async def test_writes_drop_exactly_what_they_change(cached: CachedDirectory) -> None:
    d = cached
    await seed(d)

    await warm(d)
    await d.add_member("g:1", 4, max_members=10)
    assert d.peek_channel("g:1") is MISSING
    assert [audience_cached(d, u) for u in range(1, 6)] == [False] * 4 + [True]
    assert d.peek_channel("dm:1:2") is not MISSING and d.peek_user(1) is not MISSING
    assert all(devices_cached(d, u) for u in range(1, 6))
    assert await d.presence_audience(4, 100) == {1, 2, 3}
    group = await d.get_channel("g:1")
    assert group is not None and group.member_ids == [1, 2, 3, 4]

    await warm(d)
    await d.add_member("g:1", 4, max_members=10)  # already in: nothing changes
    with pytest.raises(GroupFull):
        await d.add_member("g:1", 5, max_members=4)
    assert d.peek_channel("g:1") is not MISSING
    assert all(audience_cached(d, u) for u in range(1, 6))

    await d.remove_member("g:1", 2)
    assert d.peek_channel("g:1") is MISSING
    assert [audience_cached(d, u) for u in range(1, 6)] == [False] * 4 + [True]
    assert await d.presence_audience(2, 100) == set()

    await warm(d)
    await d.create_device(12, 1, "tablet", None, 0)
    assert not devices_cached(d, 1) and devices_cached(d, 2)
    assert d.peek_device(10) is not MISSING
    assert [x.device_id for x in await d.list_devices(1)] == [10, 11, 12]

    await warm(d)
    await d.set_push_token(10, "apns", "tok")
    assert d.peek_device(10) is MISSING and not devices_cached(d, 1)
    assert d.peek_device(11) is not MISSING and devices_cached(d, 2)
    device = await d.get_device(10)
    assert device is not None and device.push_token == "tok"
    assert [x.push_token for x in await d.list_devices(1)] == ["tok", None, None]

    await warm(d)
    await d.clear_push_token(10, "stale")  # changes nothing, drops nothing
    assert d.peek_device(10) is not MISSING and devices_cached(d, 1)
    await d.clear_push_token(10, "tok")
    assert d.peek_device(10) is MISSING and not devices_cached(d, 1)
    assert (await d.list_devices(1))[0].push_token is None

    await warm(d)
    await d.add_friend(2, 4)
    assert [audience_cached(d, u) for u in range(1, 6)] == [True, False, True, False, True]
    assert await d.presence_audience(4, 100) == {1, 2, 3}
    assert await d.presence_audience(2, 100) == {4}
    await warm(d)
    await d.add_friend(2, 4)  # idempotent: nothing dropped
    assert audience_cached(d, 2) and audience_cached(d, 4)
    await d.remove_friend(2, 4)
    assert [audience_cached(d, u) for u in range(1, 6)] == [True, False, True, False, True]
    assert await d.presence_audience(4, 100) == {1, 3}
    await warm(d)
    await d.remove_friend(2, 4)  # not friends: nothing dropped
    assert audience_cached(d, 2) and audience_cached(d, 4)

    await warm(d)
    assert d.peek_user(6) is None  # cached as unknown
    await d.create_user(6, "u6", "h", "U6", 0)
    assert d.peek_user(6) is MISSING and d.peek_user(7) is None
    assert (await d.get_user(6)) is not None

    await warm(d)
    assert d.peek_channel("g:2") is None
    await d.create_group("g:2", "pair", 4, [5], 0)
    assert d.peek_channel("g:2") is MISSING and d.peek_channel("g:1") is not MISSING
    assert [audience_cached(d, u) for u in range(1, 6)] == [True, True, True, False, False]
    assert await d.presence_audience(5, 100) == {1, 4}

    await warm(d)
    assert d.peek_channel("dm:1:3") is None
    await d.ensure_dm("dm:1:3", 1, 3, 0)
    assert d.peek_channel("dm:1:3") is MISSING
    assert all(audience_cached(d, u) for u in range(1, 6))  # a DM is nobody's audience


async def test_unknown_ids_are_cached_and_bounded(tmp_path: Path) -> None:
    d = await CachedDirectory.open(url(tmp_path / "d.db"), users=40, channels=40)
    try:
        await seed(d)
        sql = Statements(d)
        window = sql.during()
        for _ in range(5):
            assert await d.get_user(404) is None
            assert await d.get_device(404) is None
            assert await d.get_channel("g:404") is None
        assert window.count == 3
        await d.get_user(1)
        for uid in range(1000, 1200):  # a client asking for ids that do not exist
            assert await d.get_user(uid) is None
        assert len(d._users._absent or ()) == 10  # a quarter of the users' bound
        assert d.peek_user(1) is not MISSING  # the known ones stay
        assert d.peek_user(1199) is None and d.peek_user(1000) is MISSING
    finally:
        await d.close()


async def test_lru_keeps_the_most_recently_used(tmp_path: Path) -> None:
    d = await CachedDirectory.open(url(tmp_path / "d.db"), users=3, channels=2)
    try:
        await seed(d)
        for uid in (1, 2, 3):
            await d.get_user(uid)
        await d.get_user(1)  # used again: now the newest
        await d.get_user(4)  # pushes out 2, the least recently used
        assert [d.peek_user(u) is MISSING for u in (1, 2, 3, 4)] == [False, True, False, False]
        for cid in ("g:1", "dm:1:2"):
            await d.get_channel(cid)
        await d.ensure_dm("dm:1:3", 1, 3, 0)
        await d.ensure_dm("dm:1:4", 1, 4, 0)
        await d.ensure_dm("dm:1:5", 1, 5, 0)
        assert d.sizes()["channels"] <= 2 + 1 and d.sizes()["dms"] == 2
        assert not d.dm_known("dm:1:3") and d.dm_known("dm:1:5")
    finally:
        await d.close()


class Gate:
    """Wraps a SqlDirectory read: it reads, then waits for ``release`` before returning
    (a read whose answer is still on the way when a write lands)."""

    def __init__(self, read: Callable[..., Awaitable[Any]]) -> None:
        self.read = read
        self.calls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, *args: Any) -> Any:
        self.calls += 1
        value = await self.read(*args)
        self.entered.set()
        await self.release.wait()
        return value


async def test_a_read_that_races_a_write_does_not_keep_the_old_value(
    cached: CachedDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = cached
    await seed(d)
    gate = Gate(d.inner.get_user)
    monkeypatch.setattr(d.inner, "get_user", gate)
    reader = asyncio.create_task(d.get_user(6))
    await gate.entered.wait()  # it has read "no user 6"
    await d.create_user(6, "u6", "h", "U6", 0)
    gate.release.set()
    assert await reader is None  # what it read, to who asked before the write ended
    assert d.peek_user(6) is MISSING  # but not kept
    monkeypatch.undo()
    user = await d.get_user(6)
    assert user is not None and user.username == "u6"


async def test_a_read_that_races_a_refresh_does_not_keep_the_old_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await CachedDirectory.open(url(tmp_path / "d.db"))
    b = await CachedDirectory.open(url(tmp_path / "d.db"))
    try:
        await seed(a)
        await b.refresh()
        gate = Gate(b.inner.get_channel)
        monkeypatch.setattr(b.inner, "get_channel", gate)
        reader = asyncio.create_task(b.get_channel("g:1"))
        await gate.entered.wait()
        await a.add_member("g:1", 4, 10)
        assert await b.refresh() > 0
        gate.release.set()
        old = await reader
        assert old is not None and old.member_ids == [1, 2, 3]
        assert b.peek_channel("g:1") is MISSING
        monkeypatch.undo()
        new = await b.get_channel("g:1")
        assert new is not None and new.member_ids == [1, 2, 3, 4]
    finally:
        await a.close()
        await b.close()


async def test_concurrent_misses_share_one_read(
    cached: CachedDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(cached)
    gate = Gate(cached.inner.get_device)
    monkeypatch.setattr(cached.inner, "get_device", gate)
    readers = [asyncio.create_task(cached.get_device(10)) for _ in range(20)]
    await gate.entered.wait()
    gate.release.set()
    devices = await asyncio.gather(*readers)
    assert gate.calls == 1 and {x.device_id for x in devices if x} == {10}
    assert cached.peek_device(10) is not MISSING


async def test_a_cancelled_reader_does_not_cancel_the_others(
    cached: CachedDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(cached)
    gate = Gate(cached.inner.get_user)
    monkeypatch.setattr(cached.inner, "get_user", gate)
    first = asyncio.create_task(cached.get_user(1))
    await gate.entered.wait()
    second = asyncio.create_task(cached.get_user(1))
    await asyncio.sleep(0)
    first.cancel()
    gate.release.set()
    user = await second
    assert user is not None and user.user_id == 1 and gate.calls == 1
    assert cached.peek_user(1) is not MISSING


async def test_a_failed_read_is_not_cached(
    cached: CachedDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_user_id: int) -> User | None:
        raise OSError("connection lost")

    monkeypatch.setattr(cached.inner, "get_user", broken)
    with pytest.raises(OSError):
        await cached.get_user(1)
    assert cached.peek_user(1) is MISSING


# --- other processes: the change log -------------------------------------------------


async def test_another_process_sees_a_write_after_refresh(tmp_path: Path) -> None:
    a = await CachedDirectory.open(url(tmp_path / "d.db"))
    await seed(a)
    b = await CachedDirectory.open(url(tmp_path / "d.db"))
    try:
        await warm(b)
        await a.add_member("g:1", 4, 10)
        await a.set_push_token(20, "fcm", "t")
        await a.add_friend(2, 4)
        await a.create_user(6, "u6", "h", "U6", 0)
        await a.ensure_dm("dm:1:3", 1, 3, 0)
        # Before refresh b still answers from its cache...
        stale = await b.get_channel("g:1")
        assert stale is not None and stale.member_ids == [1, 2, 3]
        assert await b.get_user(6) is None
        # ...after it, from the database.
        assert await b.refresh() > 0
        fresh = await b.get_channel("g:1")
        assert fresh is not None and fresh.member_ids == [1, 2, 3, 4]
        device = await b.get_device(20)
        assert device is not None and device.push_token == "t"
        assert [x.push_token for x in await b.list_devices(2)] == ["t"]
        assert await b.presence_audience(4, 100) == {1, 2, 3}
        assert await b.get_user(6) is not None
        assert await b.get_channel("dm:1:3") is not None
        # Untouched entries stay cached.
        assert b.peek_device(10) is not MISSING and b.peek_user(1) is not MISSING
        assert await b.refresh() == 0
    finally:
        await a.close()
        await b.close()


async def test_the_push_worker_writing_without_a_cache_is_seen(tmp_path: Path) -> None:
    b = await CachedDirectory.open(url(tmp_path / "d.db"))
    await seed(b)
    plain = await SqlDirectory.open(url(tmp_path / "d.db"), migrate=False)
    try:
        await b.refresh()
        await b.set_push_token(10, "apns", "dead")
        assert (await b.list_devices(1))[0].push_token == "dead"
        await plain.clear_push_token(10, "dead")  # the provider said the token is dead
        await b.refresh()
        assert (await b.list_devices(1))[0].push_token is None
    finally:
        await plain.close()
        await b.close()


async def test_a_trimmed_gap_flushes_everything(tmp_path: Path) -> None:
    a = await CachedDirectory.open(url(tmp_path / "d.db"))
    await seed(a)
    b = await CachedDirectory.open(url(tmp_path / "d.db"))
    try:
        await warm(b)
        await a.create_user(6, "u6", "h", "U6", 0)
        await a.create_user(7, "u7", "h", "U7", 0)
        # Every row but the newest is trimmed before b polls (b was away).
        assert await a.inner.trim_changes(int(time.time() * 1000) + 10_000) > 0
        async with a.engine.connect() as conn:
            assert (
                await conn.execute(select(func.count()).select_from(directory_changes))
            ).scalar() == 1
        assert b.peek_user(1) is not MISSING
        await b.refresh()
        assert all(b.peek_user(u) is MISSING for u in range(1, 8))
        assert b.sizes() == dict.fromkeys(b.sizes(), 0)
        assert (await b.get_user(6)) is not None
        # The newest row is kept, so a process up to date finds no gap after a trim.
        await warm(b)
        await a.inner.trim_changes(int(time.time() * 1000) + 10_000)
        await b.refresh()
        assert b.peek_user(1) is not MISSING
    finally:
        await a.close()
        await b.close()


async def test_a_late_commit_below_a_seen_seq_is_not_missed(tmp_path: Path) -> None:
    """PostgreSQL can commit seq n+1 before seq n: n is kept as a hole and asked again."""
    b = await CachedDirectory.open(url(tmp_path / "d.db"))
    await seed(b)
    try:
        await b.refresh()
        await warm(b)
        last = b._last
        assert last is not None
        now = int(time.time() * 1000)
        async with b.engine.begin() as conn:
            await conn.execute(
                insert(directory_changes).values(seq=last + 2, kind="user", key="2", at=now)
            )
        await b.refresh()
        assert b.peek_user(2) is MISSING and b.peek_user(1) is not MISSING
        assert set(b._holes) == {last + 1}
        async with b.engine.begin() as conn:  # the transaction holding last + 1 commits
            await conn.execute(
                insert(directory_changes).values(seq=last + 1, kind="user", key="1", at=now)
            )
        assert await b.refresh() == 1
        assert b.peek_user(1) is MISSING and b._holes == {}
    finally:
        await b.close()


async def test_a_burst_of_changes_is_read_in_batches_and_a_flood_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_cache, "POLL_BATCH", 4)
    monkeypatch.setattr(directory_cache, "POLL_MAX_ROWS", 12)
    a = await CachedDirectory.open(url(tmp_path / "d.db"))
    await seed(a)
    b = await CachedDirectory.open(url(tmp_path / "d.db"))
    try:
        await warm(b)
        for uid in range(10, 15):
            assert await b.get_user(uid) is None
        for uid in range(10, 15):  # 5 rows: two batches
            await a.create_user(uid, f"u{uid}", "h", "U", 0)
        assert await b.refresh() == 5
        assert b.peek_user(1) is not MISSING  # not flushed
        assert all(b.peek_user(uid) is MISSING for uid in range(10, 15))
        for uid in range(20, 40):  # 20 rows: more than a refresh reads
            await a.create_user(uid, f"u{uid}", "h", "U", 0)
        await b.refresh()
        assert b.peek_user(1) is MISSING  # flushed
        await b.get_user(1)
        assert await b.refresh() == 0  # and it stands at the end of the log
        assert b.peek_user(1) is not MISSING
    finally:
        await a.close()
        await b.close()


async def test_an_unknown_change_kind_flushes(cached: CachedDirectory) -> None:
    await seed(cached)
    await cached.refresh()
    await warm(cached)
    async with cached.engine.begin() as conn:
        await conn.execute(insert(directory_changes).values(kind="reaction", key="1", at=0))
    told: list[str] = []
    cached.flush_listeners.append(lambda: told.append("any device may have changed"))
    await cached.refresh()
    assert cached.sizes() == dict.fromkeys(cached.sizes(), 0)
    assert told == ["any device may have changed"]  # the gateway checks every session


async def test_the_refresher_follows_the_log_until_close(tmp_path: Path) -> None:
    a = await CachedDirectory.open(url(tmp_path / "d.db"))
    await seed(a)
    b = await CachedDirectory.open(url(tmp_path / "d.db"), refresh_s=0.05)
    task = asyncio.create_task(b.run_refresher())
    try:
        assert await b.get_user(6) is None
        await a.create_user(6, "u6", "h", "U6", 0)
        written = time.monotonic()
        while await b.get_user(6) is None:
            assert time.monotonic() - written < 2.0, "not seen within the bound"
            await asyncio.sleep(0.01)
    finally:
        await b.close()
        await asyncio.wait_for(task, 2.0)  # close() ends it
        await a.close()


async def test_writes_trim_the_log_without_a_refresher(tmp_path: Path) -> None:
    d = await CachedDirectory.open(url(tmp_path / "d.db"), retention_s=0.001)
    try:
        for uid in range(1, 30):
            await d.create_user(uid, f"u{uid}", "h", "U", 0)
            await asyncio.sleep(0.002)  # let the rows age past the (tiny) retention
        async with d.engine.connect() as conn:
            left = (
                await conn.execute(select(func.count()).select_from(directory_changes))
            ).scalar()
        assert left is not None and left < 29
    finally:
        await d.close()


async def test_a_database_at_version_1_is_migrated_and_followed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = await SqlDirectory.open(url(path), migrate=False)  # a bare database
    assert await migrate(old.engine, upto=1) == [1]
    await old.create_user(1, "u1", "h", "U1", 0)
    await old.close()

    # Opened without migrating (a cluster before `tidings migrate`): works, logs nothing,
    # and a cache on it keeps nothing past a refresh.
    plain = await SqlDirectory.open(url(path), migrate=False)
    assert not plain.log_changes
    await plain.create_user(2, "u2", "h", "U2", 0)
    cached = await CachedDirectory.open(url(path), migrate=False)
    try:
        assert await cached.get_user(1) is not None
        await cached.refresh()
        assert cached.peek_user(1) is MISSING
        # `tidings migrate` runs: from then on the cache follows the log.
        assert await migrate(plain.engine) == [m.version for m in MIGRATIONS[1:]]
        await cached.refresh()
        assert cached.inner.log_changes
        await cached.get_user(1)
        await cached.refresh()
        assert cached.peek_user(1) is not MISSING
    finally:
        await cached.close()
        await plain.close()


# --- confirmed writes: done for the client means done on every server ----------------


async def test_a_confirmed_write_waits_for_the_other_readers(tmp_path: Path) -> None:
    a = await CachedDirectory.open(url(tmp_path / "d.db"), confirm_s=5.0)
    await seed(a)
    b = await CachedDirectory.open(url(tmp_path / "d.db"), refresh_s=0.2)
    refresher = asyncio.create_task(b.run_refresher())
    try:
        assert (await b.get_channel("g:1")).member_ids == [1, 2, 3]  # type: ignore[union-attr]
        await reported(a, b.reader_id)  # b has reported where it stands
        await a.add_member("g:1", 4, 10)
        assert b.peek_channel("g:1") is MISSING  # b applied it before add_member returned
        assert 4 in (await b.get_channel("g:1")).member_ids  # type: ignore[union-attr]
        assert await a.presence_audience(4, 100) == await b.presence_audience(4, 100)
        # A write that changes nothing confirms nothing: no wait even for a stuck reader.
        await a.inner.report_reader("stuck", 0, int(time.time() * 1000))
        started = time.monotonic()
        await a.add_member("g:1", 4, 10)
        await a.add_friend(1, 5)  # friends already
        assert time.monotonic() - started < 0.2
        # Unconfirmed writes (new users and devices: nobody has them cached) do not wait.
        await a.create_user(6, "u6", "h", "U6", 0)
        await a.create_device(60, 6, "phone", None, 0)
        assert time.monotonic() - started < 0.2
    finally:
        await b.close()
        await asyncio.wait_for(refresher, 2)
        await a.close()


async def test_a_reader_that_does_not_keep_up_is_waited_for_then_given_up_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = await CachedDirectory.open(url(tmp_path / "d.db"), confirm_s=0.3)
    try:
        await seed(d)
        now = int(time.time() * 1000)
        await d.inner.report_reader("stuck", 0, now)  # heard from, never moving
        await d.inner.report_reader("gone", 0, now - 60_000)  # silent: not waited for
        await d.inner.report_reader(d.reader_id, 0, now)  # itself: not waited for
        started = time.monotonic()
        await d.add_friend(2, 3)
        assert 0.3 <= time.monotonic() - started < 1.0
        assert "not yet seen by every reader" in caplog.text
        d.confirm_s = 0  # off: returns at once
        started = time.monotonic()
        await d.remove_friend(2, 3)
        assert time.monotonic() - started < 0.2
    finally:
        await d.close()


async def test_a_reader_reports_only_what_it_has_applied(tmp_path: Path) -> None:
    d = await CachedDirectory.open(url(tmp_path / "d.db"), refresh_s=0.05)
    await seed(d)
    await d.refresh()
    last = d._last
    assert last is not None and d.safe_seq() == last
    d._holes = {last - 3: time.monotonic() + 60}  # a transaction still open below
    assert d.safe_seq() == last - 4
    d._holes = {}
    refresher = asyncio.create_task(d.run_refresher())
    await reported(d, d.reader_id, last)
    assert await reader_reports(d) == {d.reader_id: last}
    await d.close()
    await asyncio.wait_for(refresher, 2)
    plain = await SqlDirectory.open(url(tmp_path / "d.db"))
    try:
        async with plain.engine.connect() as conn:
            assert (await conn.execute(select(directory_readers))).all() == []  # removed
    finally:
        await plain.close()


async def test_warming_loads_every_device_so_hellos_after_a_restart_run_no_sql(
    tmp_path: Path,
) -> None:
    first = await CachedDirectory.open(url(tmp_path / "directory.db"))
    await seed(first)
    await first.close()
    restarted = await CachedDirectory.open(url(tmp_path / "directory.db"))
    try:
        assert await restarted.warm_devices(1000) == 3
        # ... and names their users, whose presence audiences tidings up warms next.
        assert sorted(restarted.warmed_users) == [1, 2]
        sql = Statements(restarted)
        with sql.none():
            device = await restarted.get_device(11)
            assert device is not None and device.user_id == 1
            assert [d.device_id for d in await restarted.list_devices(1)] == [10, 11]
            assert [d.device_id for d in await restarted.list_devices(2)] == [20]
        # A partial warm-up (the cache is smaller than the table) keeps no device lists:
        # a list made of the newest devices alone could miss a user's older ones.
        partial = await CachedDirectory.open(url(tmp_path / "directory.db"))
        try:
            assert await partial.warm_devices(2) == 2
            sql = Statements(partial)
            window = sql.during()
            assert [d.device_id for d in await partial.list_devices(1)] == [10, 11]
            assert window.count > 0
        finally:
            await partial.close()
    finally:
        await restarted.close()


async def test_warmed_audiences_match_the_read_through_ones(tmp_path: Path) -> None:
    first = await CachedDirectory.open(url(tmp_path / "directory.db"))
    await seed(first)
    expected = {uid: await first.inner.presence_audience(uid, 100) for uid in range(1, 6)}
    await first.close()
    restarted = await CachedDirectory.open(url(tmp_path / "directory.db"))
    try:
        assert await restarted.warm_audiences(range(1, 6), 100) == 5
        sql = Statements(restarted)
        with sql.none():
            for uid in range(1, 6):
                assert await restarted.presence_audience(uid, 100) == expected[uid], uid
            assert await restarted.presence_audience(1, 2) == {2, 3}  # cut like a read
    finally:
        await restarted.close()
