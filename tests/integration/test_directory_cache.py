"""CachedDirectory on the test environment's PostgreSQL, as in a cluster: several
processes (here, engines) write the same database and each cache follows the change log."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import func, insert, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tidings.storage.sql.directory import SqlDirectory
from tidings.storage.sql.directory_cache import MISSING, CachedDirectory
from tidings.storage.sql.directory_schema import MIGRATIONS, applied_versions, migrate
from tidings.storage.sql.tables import devices, directory_changes, directory_readers, friends

ALL = [m.version for m in MIGRATIONS]  # every schema version, in order

pytestmark = pytest.mark.postgres

Engines = Callable[[], AsyncEngine]


@pytest.fixture
async def engines(testenv: dict[str, str]) -> AsyncIterator[Engines]:
    """Engines on one fresh schema (each one a separate 'process' with its own pool)."""
    url = testenv["TIDINGS_TEST_POSTGRES_URL"]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    made: list[AsyncEngine] = []

    def engine() -> AsyncEngine:
        made.append(
            create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
        )
        return made[-1]

    yield engine
    for one in made:
        await one.dispose()
    async with admin.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    await admin.dispose()


@pytest.fixture
async def pair(engines: Engines) -> AsyncIterator[tuple[CachedDirectory, CachedDirectory]]:
    """Two processes' caches on the same migrated database, with users 1-4, device 10 of
    user 1 and group g:1 of 1 and 2."""
    first = engines()
    await migrate(first)
    async with AsyncExitStack() as stack:
        caches = []
        for engine in (first, engines()):
            cache = CachedDirectory(SqlDirectory(engine))
            stack.push_async_callback(cache.close)
            caches.append(cache)
        a, b = caches
        for uid in range(1, 5):
            await a.create_user(uid, f"u{uid}", "h", f"U{uid}", 0)
        await a.create_device(10, 1, "phone", "ios", 0)
        await a.create_group("g:1", "club", 1, [2], 0)
        await a.refresh()
        await b.refresh()
        yield a, b


async def test_a_write_through_one_process_is_seen_by_the_other(
    pair: tuple[CachedDirectory, CachedDirectory],
) -> None:
    a, b = pair
    for d in (a, b):
        assert await d.get_user(1) is not None
        assert await d.get_user(5) is None
        assert (await d.get_channel("g:1")).member_ids == [1, 2]  # type: ignore[union-attr]
        assert await d.presence_audience(3, 100) == set()
        assert (await d.list_devices(1))[0].push_token is None
        assert await d.get_channel("dm:1:3") is None
    await a.create_user(5, "u5", "h", "U5", 0)
    await a.add_member("g:1", 3, 10)
    await a.set_push_token(10, "apns", "tok")
    await b.ensure_dm("dm:1:3", 1, 3, 0)
    await b.add_friend(3, 4)

    # Each sees its own writes at once and the other's only after a refresh.
    assert await a.get_user(5) is not None and await b.get_user(5) is None
    assert await b.get_channel("dm:1:3") is not None and await a.get_channel("dm:1:3") is None
    assert await a.refresh() > 0 and await b.refresh() > 0
    for d in (a, b):
        assert await d.get_user(5) is not None
        assert (await d.get_channel("g:1")).member_ids == [1, 2, 3]  # type: ignore[union-attr]
        assert await d.presence_audience(3, 100) == {1, 2, 4}
        assert (await d.list_devices(1))[0].push_token == "tok"
        device = await d.get_device(10)
        assert device is not None and device.push_token == "tok"
        assert await d.get_channel("dm:1:3") is not None
        assert d.peek_user(1) is not MISSING  # nothing else was dropped


async def test_a_commit_that_lands_after_a_later_seq_is_not_missed(
    pair: tuple[CachedDirectory, CachedDirectory], engines: Engines
) -> None:
    """PostgreSQL hands out seq n to a transaction that commits after the one with n+1;
    the poller sees n+1 first and must still see n when it commits."""
    a, b = pair
    slow = engines()
    async with slow.connect() as conn:
        txn = await conn.begin()
        await conn.execute(
            update(devices).where(devices.c.device_id == 10).values(push_token="late")
        )
        await conn.execute(
            insert(directory_changes),
            [
                {"kind": "device", "key": "10", "at": int(time.time() * 1000)},
                {"kind": "user_devices", "key": "1", "at": int(time.time() * 1000)},
            ],
        )
        await a.create_user(5, "u5", "h", "U5", 0)  # a later seq, committed first
        assert await b.refresh() == 1
        assert b._holes  # the open transaction's seqs
        device = await b.get_device(10)  # cached from before the late commit
        assert device is not None and device.push_token is None
        await txn.commit()
    assert await b.refresh() == 2
    assert b._holes == {}
    device = await b.get_device(10)
    assert device is not None and device.push_token == "late"
    assert (await b.list_devices(1))[0].push_token == "late"


async def test_rows_trimmed_before_a_process_read_them_flush_its_cache(
    pair: tuple[CachedDirectory, CachedDirectory],
) -> None:
    a, b = pair
    for uid in range(1, 5):
        await b.get_user(uid)
    await a.add_friend(1, 2)
    await a.add_friend(3, 4)
    await a.refresh()  # a reads the log up to its end, b does not
    # Both trim at once (idempotent); all but the newest row go.
    future = int(time.time() * 1000) + 60_000
    trimmed = await asyncio.gather(a.inner.trim_changes(future), b.inner.trim_changes(future))
    assert sum(trimmed) > 0
    async with a.engine.connect() as conn:
        left = (await conn.execute(select(func.count()).select_from(directory_changes))).scalar()
    assert left == 1
    await b.refresh()
    assert b.sizes() == dict.fromkeys(b.sizes(), 0)
    assert await b.presence_audience(1, 100) == {2}
    # a was up to date: the kept newest row is where it stands, so no flush.
    await a.get_user(1)
    await a.refresh()
    assert a.peek_user(1) is not MISSING
    # The trim by age keeps recent rows.
    await a.add_friend(2, 3)
    assert await a.trim() == 0


async def test_the_refresher_meets_its_bound(
    pair: tuple[CachedDirectory, CachedDirectory],
) -> None:
    a, b = pair
    b.refresh_s = 0.1
    task = asyncio.create_task(b.run_refresher())
    try:
        latencies = []
        for uid in range(10, 20):
            assert await b.get_user(uid) is None
            await a.create_user(uid, f"u{uid}", "h", "U", 0)
            written = time.monotonic()
            while await b.get_user(uid) is None:
                assert time.monotonic() - written < 5, "never seen"
                await asyncio.sleep(0.005)
            latencies.append(time.monotonic() - written)
        # Bound: the interval plus one query (generous for a shared, loaded machine).
        assert max(latencies) < 0.1 + 1.0, latencies
    finally:
        await b.close()
        await asyncio.wait_for(task, 5)


async def test_migrations_2_and_3_apply_to_a_version_1_database(engines: Engines) -> None:
    engine = engines()
    assert await migrate(engine, upto=1) == [1]

    def has_log(conn: object) -> bool:
        return inspect(conn).has_table("directory_changes")

    async with engine.connect() as conn:
        assert not await conn.run_sync(has_log)
    old = SqlDirectory(engine, log_changes=False, has_readers=False)  # open(migrate=False)
    await old.create_user(1, "u1", "h", "U1", 0)
    assert await applied_versions(engine) == {1}

    # `tidings migrate` from several pods at once: one applies the rest, the others find them.
    results = await asyncio.gather(*(migrate(engines()) for _ in range(3)))
    assert sorted(results) == [[], [], ALL[1:]]
    assert await applied_versions(engine) == set(ALL)
    async with engine.connect() as conn:
        assert await conn.run_sync(has_log)
    new = SqlDirectory(engine)
    await new.create_user(2, "u2", "h", "U2", 0)
    assert await new.get_user(1) is not None
    async with engine.connect() as conn:
        rows = (await conn.execute(select(directory_changes.c.kind, directory_changes.c.key))).all()
    assert [tuple(r) for r in rows] == [("user", "2")]


async def test_a_database_at_version_2_gets_the_readers_table(engines: Engines) -> None:
    engine = engines()
    assert await migrate(engine, upto=2) == [1, 2]
    behind = SqlDirectory(engine, has_readers=False)
    await behind.create_user(1, "u1", "h", "U1", 0)  # logged, not confirmed
    assert await migrate(engine) == ALL[2:]
    assert await applied_versions(engine) == set(ALL)
    await behind.report_reader("r", 1, 0)
    assert await behind.readers_behind(2, -1, "other") == 1


async def test_version_4_makes_one_sided_friendships_requests(engines: Engines) -> None:
    """Friendship was one-sided and made without consent before version 4: a pair added
    both ways stays friends, a one-sided add becomes a request the other may accept. A
    devices table without the session columns gets them."""
    engine = engines()
    assert await migrate(engine, upto=3) == [1, 2, 3]
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE devices DROP COLUMN token_version"))
        await conn.execute(text("ALTER TABLE devices DROP COLUMN last_seen"))
    old = SqlDirectory(engine)
    for uid in (1, 2, 3):
        await old.create_user(uid, f"u{uid}", "h", "U", 0)
    async with engine.begin() as conn:
        await conn.execute(
            insert(friends),
            [
                {"user_id": 1, "friend_id": 2},
                {"user_id": 2, "friend_id": 1},
                {"user_id": 3, "friend_id": 1},
            ],
        )
        await conn.execute(
            text("INSERT INTO devices (device_id, user_id, name, created_at) VALUES (9, 1, 'p', 0)")
        )
    assert await migrate(engine) == ALL[3:]
    new = SqlDirectory(engine)
    assert [u.user_id for u in await new.list_friends(1)] == [2]
    assert await new.list_friends(3) == []
    incoming, outgoing = await new.friend_requests(1)
    assert ([u.user_id for u in incoming], outgoing) == ([3], [])
    device = await new.get_device(9)
    assert device is not None and (device.token_version, device.last_seen) == (0, None)


async def test_blocks_and_sessions_made_in_one_process_reach_the_other(
    pair: tuple[CachedDirectory, CachedDirectory],
) -> None:
    """The chat server holds the blocks table in memory and hears of device changes:
    a block made through the API is seen by its next 1:1 check, and a logout is told to
    its gateway (which closes the device's sockets)."""
    api, chat = pair
    assert await chat.block_set(1) == frozenset()  # loads the (empty) table
    changed: list[int] = []
    chat.device_listeners.append(changed.append)
    await api.block(1, 2, 0)
    await api.delete_device(10)
    await chat.refresh()
    assert await chat.block_set(2) == frozenset({1})
    assert await chat.block_set(1) == frozenset({2})
    assert changed == [10]
    assert await chat.get_device(10) is None
    await api.unblock(1, 2)
    await chat.refresh()
    assert await chat.block_set(2) == frozenset()
    chat.flush()  # a gap in the log: everything is read again
    await api.block(3, 4, 0)
    assert await chat.block_set(4) == frozenset({3})


async def reported(d: CachedDirectory, reader_id: str, within: float = 10.0) -> None:
    """Wait until ``reader_id`` is in the readers table, as ``d`` reads it."""
    deadline = time.monotonic() + within
    while True:
        async with d.engine.connect() as conn:
            readers = (await conn.execute(select(directory_readers.c.reader))).scalars().all()
        if reader_id in readers:
            return
        assert time.monotonic() < deadline, f"{reader_id} did not report within {within}s"
        await asyncio.sleep(0.02)


async def test_a_confirmed_write_is_applied_by_every_reader_when_it_returns(
    pair: tuple[CachedDirectory, CachedDirectory], engines: Engines
) -> None:
    """The API adds a member; the chat server's cache has it before the 204 goes out."""
    api, chat = pair
    api.confirm_s = 5.0
    chat.refresh_s = 0.3
    refresher = asyncio.create_task(chat.run_refresher())
    try:
        group = await chat.get_channel("g:1")
        assert group is not None and group.member_ids == [1, 2]
        await reported(api, chat.reader_id)  # the reader has reported where it stands
        for member in (3, 4):
            started = time.monotonic()
            await api.add_member("g:1", member, 10)
            took = time.monotonic() - started
            assert chat.peek_channel("g:1") is MISSING  # dropped before add_member returned
            group = await chat.get_channel("g:1")
            assert group is not None and member in group.member_ids
            assert took < 0.3 + 1.0, took  # one interval and a few queries
        await api.remove_member("g:1", 3)
        assert 3 not in (await chat.get_channel("g:1")).member_ids  # type: ignore[union-attr]
        await api.set_push_token(10, "fcm", "tok")
        assert (await chat.list_devices(1))[0].push_token == "tok"
    finally:
        await chat.close()
        await asyncio.wait_for(refresher, 5)
    # A closed reader is not waited for.
    started = time.monotonic()
    await api.add_friend(1, 2)
    assert time.monotonic() - started < 0.5


async def test_a_block_check_during_a_reread_waits_for_it(
    pair: tuple[CachedDirectory, CachedDirectory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sends from two devices check the same user while their entry is read again after
    an unblock: neither gets the entry from before the unblock, and a change that comes
    during the read is read once more (a send after a block is refused)."""
    api, chat = pair
    await api.block(1, 2, 0)
    await chat.refresh()
    assert await chat.block_set(2) == frozenset({1})
    await api.unblock(1, 2)
    await chat.refresh()
    gate = asyncio.Event()
    read_now = chat.inner.block_set

    async def slow_read(user_id: int) -> frozenset[int]:
        found = await read_now(user_id)
        await gate.wait()
        return found

    monkeypatch.setattr(chat.inner, "block_set", slow_read)
    first = asyncio.create_task(chat.block_set(2))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(chat.block_set(2))
    await asyncio.sleep(0.05)
    assert not second.done()  # waits for the read under way, not the entry before it
    gate.set()
    assert (await first, await second) == (frozenset(), frozenset())

    gate.clear()
    await api.block(2, 3, 0)
    await chat.refresh()
    third = asyncio.create_task(chat.block_set(2))  # reads 2's entry again ...
    await asyncio.sleep(0.05)
    await api.block(1, 2, 0)  # ... and this comes after that read saw the table
    await chat.refresh()
    gate.set()
    assert await third == frozenset({1, 3})
    monkeypatch.undo()
    assert await chat.block_set(2) == frozenset({1, 3})
