"""The Directory's behaviour, the same on SQLite (embedded) and PostgreSQL (cluster), with
and without the cache in front (CachedDirectory)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from tidings.storage.base import FriendOutcome, GroupFull, Invite, UsernameTaken
from tidings.storage.sql.directory import SqlDirectory, make_engine
from tidings.storage.sql.directory_cache import CachedDirectory
from tidings.storage.sql.directory_schema import MIGRATIONS, migrate
from tidings.storage.sql.tables import directory_changes

AnyDirectory = SqlDirectory | CachedDirectory


async def _wrap(store: SqlDirectory, cached: bool) -> AnyDirectory:
    if not cached:
        return store
    wrapped = CachedDirectory(store)
    await wrapped.refresh()
    return wrapped


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite-cached",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-cached", marks=pytest.mark.postgres),
    ]
)
async def directory(
    request: pytest.FixtureRequest, tmp_path: Path, testenv: dict[str, str]
) -> AsyncIterator[AnyDirectory]:
    backend, _, cached = request.param.partition("-")
    if backend == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}")
        await migrate(engine)
        store = await _wrap(SqlDirectory(engine), bool(cached))
        yield store
        await store.close()
        return
    url = testenv["TIDINGS_TEST_POSTGRES_URL"]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    await migrate(engine)
    store = await _wrap(SqlDirectory(engine), bool(cached))
    yield store
    await store.close()
    async with admin.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    await admin.dispose()


async def test_migrations_apply_once(directory: AnyDirectory) -> None:
    assert await migrate(directory.engine) == []  # the fixture applied them all
    assert MIGRATIONS[-1].version >= 1


async def test_usernames_are_unique(directory: AnyDirectory) -> None:
    await directory.create_user(1, "ann", "h", "Ann", 0)
    with pytest.raises(UsernameTaken):
        await directory.create_user(2, "ann", "h", "Other", 0)
    user = await directory.get_user_by_name("ann")
    assert user is not None and (user.user_id, user.display_name) == (1, "Ann")
    assert await directory.get_user(404) is None


async def test_devices_and_push_tokens(directory: AnyDirectory) -> None:
    await directory.create_user(1, "ann", "h", "Ann", 0)
    await directory.create_device(10, 1, "phone", "ios", 0)
    await directory.create_device(11, 1, "laptop", "web", 0)
    await directory.set_push_token(10, "apns", "tok")
    devices = await directory.list_devices(1)
    assert [(d.device_id, d.push_provider, d.push_token) for d in devices] == [
        (10, "apns", "tok"),
        (11, None, None),
    ]
    await directory.clear_push_token(10, "other-token")  # a stale report changes nothing
    assert (await directory.get_device(10)).push_token == "tok"  # type: ignore[union-attr]
    await directory.clear_push_token(10, "tok")
    assert (await directory.get_device(10)).push_token is None  # type: ignore[union-attr]


async def test_friends_and_presence_audience(directory: AnyDirectory) -> None:
    for uid, name in [(1, "ann"), (2, "bob"), (3, "cat"), (4, "dan"), (5, "eve")]:
        await directory.create_user(uid, name, "h", name, 0)
    await directory.add_friend(1, 2)
    await directory.add_friend(1, 2)  # idempotent
    assert await directory.request_friend(3, 1, 0) == FriendOutcome.REQUESTED  # cat asks ann
    await directory.create_group("g:9", "club", 4, [1, 4], 0)
    assert [u.user_id for u in await directory.list_friends(1)] == [2]
    assert [u.user_id for u in await directory.list_friends(2)] == [1]  # both ways
    assert await directory.presence_audience(1, 100) == {2, 4}  # a request is no friendship
    assert await directory.presence_audience(5, 100) == set()
    incoming, outgoing = await directory.friend_requests(1)
    assert ([u.user_id for u in incoming], outgoing) == ([3], [])
    assert await directory.request_friend(1, 3, 0) == FriendOutcome.FRIENDS  # ann accepts
    assert await directory.friend_requests(1) == ([], [])
    assert await directory.presence_audience(3, 100) == {1}
    await directory.remove_friend(1, 2)
    assert [u.user_id for u in await directory.list_friends(1)] == [3]
    assert await directory.list_friends(2) == []


async def test_blocks_end_friendship_and_hide_presence(directory: AnyDirectory) -> None:
    for uid, name in [(1, "ann"), (2, "bob"), (3, "cat")]:
        await directory.create_user(uid, name, "h", name, 0)
    await directory.add_friend(1, 2)
    await directory.create_group("g:1", "club", 3, [1, 2], 0)
    await directory.invite("g:1", 1, 2, 0)  # (a member already: no invite)
    await directory.block(1, 2, 0)
    await directory.block(1, 2, 0)  # idempotent
    assert await directory.block_set(1) == frozenset({2})
    assert await directory.block_set(2) == frozenset({1})
    assert await directory.list_friends(1) == []
    assert await directory.presence_audience(1, 100) == {3}  # a group peer, not bob
    assert await directory.presence_audience(2, 100) == {3}
    assert await directory.request_friend(2, 1, 0) == FriendOutcome.IGNORED
    assert await directory.friend_requests(1) == ([], [])
    assert [u.user_id for u in await directory.list_blocked(1)] == [2]
    assert await directory.related(1, 3)  # group peers are related
    await directory.unblock(1, 2)
    assert await directory.block_set(1) == frozenset()
    assert await directory.presence_audience(1, 100) == {2, 3}


async def test_group_invites(directory: AnyDirectory) -> None:
    for uid, name in [(1, "ann"), (2, "bob"), (3, "cat")]:
        await directory.create_user(uid, name, "h", name, 0)
    await directory.create_group("g:1", "club", 1, [1], 0)
    assert not await directory.related(1, 2)
    await directory.invite("g:1", 2, 1, 5)
    await directory.invite("g:1", 2, 1, 6)  # once
    assert await directory.related(2, 1)
    assert await directory.list_invites(2) == [Invite("g:1", "club", 2, 1, 5)]
    assert await directory.accept_invite("g:1", 2, 100)
    assert not await directory.accept_invite("g:1", 2, 100)  # used up
    channel = await directory.get_channel("g:1")
    assert channel is not None and channel.member_ids == [1, 2]
    await directory.invite("g:1", 3, 1, 7)
    with pytest.raises(GroupFull):
        await directory.accept_invite("g:1", 3, 2)
    await directory.decline_invite("g:1", 3)
    assert await directory.list_invites(3) == []
    await directory.block(3, 1, 0)
    await directory.invite("g:1", 3, 1, 8)  # from someone cat blocked: dropped
    assert await directory.list_invites(3) == []


async def test_device_sessions_and_last_seen(directory: AnyDirectory) -> None:
    await directory.create_user(1, "ann", "h", "ann", 0)
    await directory.create_device(10, 1, "phone", "ios", 100)
    assert (await directory.get_device(10)).token_version == 0  # type: ignore[union-attr]
    assert await directory.bump_token_version(10) == 1
    assert (await directory.get_device(10)).token_version == 1  # type: ignore[union-attr]
    assert await directory.bump_token_version(404) is None
    await directory.touch_devices({10: 12345})
    (listed,) = await directory.list_devices_now(1)
    assert (listed.created_at, listed.last_seen, listed.platform) == (100, 12345, "ios")
    assert await directory.delete_device(10)
    assert not await directory.delete_device(10)
    assert await directory.get_device(10) is None
    assert await directory.list_devices(1) == []


async def test_allowances_count_a_sliding_window(directory: AnyDirectory) -> None:
    assert await directory.use_allowance(1, "group", 1_000, 100, 2) == 0
    assert await directory.use_allowance(1, "group", 1_050, 100, 2) == 0
    assert await directory.use_allowance(1, "group", 1_060, 100, 2) == 40  # 1_000 + 100
    assert await directory.use_allowance(2, "group", 1_060, 100, 2) == 0  # per user
    assert await directory.use_allowance(1, "lookup", 1_060, 100, 2) == 0  # per kind
    assert await directory.use_allowance(1, "group", 1_101, 100, 2) == 0  # the first aged out


async def test_groups_members_and_the_cap(directory: AnyDirectory) -> None:
    for uid in range(1, 5):
        await directory.create_user(uid, f"u{uid}", "h", f"u{uid}", 0)
    group = await directory.create_group("g:1", "trio", 1, [2, 3], 0)
    assert (group.owner_id, group.member_ids) == (1, [1, 2, 3])
    with pytest.raises(GroupFull):
        await directory.add_member("g:1", 4, max_members=3)
    await directory.add_member("g:1", 4, max_members=4)
    await directory.add_member("g:1", 4, max_members=4)  # already in: no error
    await directory.remove_member("g:1", 2)
    channel = await directory.get_channel("g:1")
    assert channel is not None and channel.member_ids == [1, 3, 4]


async def test_group_roles_settings_and_names(directory: AnyDirectory) -> None:
    """Issue #20: the creator is the first admin; admins come and go; the last admin's
    leaving makes the lowest remaining member admin; settings and names are stored."""
    for uid in range(1, 5):
        await directory.create_user(uid, f"r{uid}", "h", f"r{uid}", 0)
    group = await directory.create_group("g:7", "roles", 2, [1, 3, 4], 0)
    assert (group.admin_ids, group.members_can_add) == ([2], True)
    await directory.set_admin("g:7", 4, True)
    await directory.update_group("g:7", name="renamed", members_can_add=False)
    channel = await directory.get_channel("g:7")
    assert channel is not None
    assert (channel.name, channel.admin_ids, channel.members_can_add) == ("renamed", [2, 4], False)
    assert await directory.remove_member("g:7", 2) is None  # 4 is still an admin
    assert await directory.remove_member("g:7", 4) == 1  # no admin left: the lowest id
    assert await directory.remove_member("g:7", 4) is None  # not a member: nothing
    (listed,) = [c for c in await directory.list_channels(3) if c.channel_id == "g:7"]
    assert (listed.member_ids, listed.admin_ids) == ([1, 3], [1])
    await directory.set_display_name(3, "Three")
    user = await directory.get_user(3)
    assert user is not None and user.display_name == "Three"


async def test_dm_channels_are_made_once_and_listed(directory: AnyDirectory) -> None:
    for uid in (1, 2):
        await directory.create_user(uid, f"u{uid}", "h", f"u{uid}", 0)
    await directory.ensure_dm("dm:1:2", 1, 2, 0)
    await directory.ensure_dm("dm:1:2", 1, 2, 0)
    await directory.create_group("g:5", "pair", 2, [1], 0)
    listed = await directory.list_channels(1)
    assert [(c.channel_id, c.kind, c.member_ids) for c in listed] == [
        ("dm:1:2", "dm", [1, 2]),
        ("g:5", "group", [1, 2]),
    ]


async def _changes_since(directory: AnyDirectory, after: int) -> list[tuple[str, str]]:
    async with directory.engine.connect() as conn:
        rows = await conn.execute(
            select(directory_changes.c.kind, directory_changes.c.key)
            .where(directory_changes.c.seq > after)
            .order_by(directory_changes.c.seq)
        )
        return [(r[0], r[1]) for r in rows]


async def _last_seq(directory: AnyDirectory) -> int:
    async with directory.engine.connect() as conn:
        value = (await conn.execute(select(func.max(directory_changes.c.seq)))).scalar()
    return int(value or 0)


async def test_writes_log_what_they_change(directory: AnyDirectory) -> None:
    async def logged(write: Awaitable[object]) -> set[tuple[str, str]]:
        before = await _last_seq(directory)
        await write
        return set(await _changes_since(directory, before))

    assert await logged(directory.create_user(1, "ann", "h", "Ann", 0)) == {("user", "1")}
    for uid in (2, 3, 4):
        await directory.create_user(uid, f"u{uid}", "h", "U", 0)
    assert await logged(directory.create_device(10, 1, "phone", None, 0)) == {
        ("device", "10"),
        ("user_devices", "1"),
    }
    token = directory.set_push_token(10, "apns", "t")
    assert await logged(token) == {("device", "10"), ("user_devices", "1")}
    assert await logged(directory.set_push_token(404, "apns", "t")) == set()
    assert await logged(directory.clear_push_token(10, "stale")) == set()
    clear = directory.clear_push_token(10, "t")
    assert await logged(clear) == {("device", "10"), ("user_devices", "1")}
    friend = {("audience", "1"), ("audience", "2")}
    assert await logged(directory.add_friend(1, 2)) == friend
    assert await logged(directory.add_friend(1, 2)) == set()
    assert await logged(directory.remove_friend(1, 2)) == friend
    assert await logged(directory.remove_friend(1, 2)) == set()
    assert await logged(directory.ensure_dm("dm:1:2", 1, 2, 0)) == {("channel", "dm:1:2")}
    assert await logged(directory.ensure_dm("dm:1:2", 1, 2, 0)) == set()
    assert await logged(directory.create_group("g:1", "g", 1, [2], 0)) == {
        ("channel", "g:1"),
        ("audience", "1"),
        ("audience", "2"),
    }
    assert await logged(directory.add_member("g:1", 3, 10)) == {
        ("channel", "g:1"),
        ("audience", "1"),
        ("audience", "2"),
        ("audience", "3"),
    }
    assert await logged(directory.add_member("g:1", 3, 10)) == set()
    assert await logged(directory.remove_member("g:1", 2)) == {
        ("channel", "g:1"),
        ("audience", "1"),
        ("audience", "2"),
        ("audience", "3"),
    }
    assert await logged(directory.remove_member("g:1", 2)) == set()
    before = await _last_seq(directory)
    with pytest.raises(UsernameTaken):  # rolled back: nothing logged
        await directory.create_user(5, "ann", "h", "Ann", 0)
    assert await _changes_since(directory, before) == []


async def test_throttle_buckets_are_shared_and_refill(directory: AnyDirectory) -> None:
    assert await directory.bucket_levels(["a", "b"]) == {}  # no row: full
    await directory.spend_bucket("a", 2, 0.5, 100.0)
    await directory.spend_bucket("a", 2, 0.5, 100.0)
    assert await directory.bucket_levels(["a", "b"]) == {"a": (0.0, 100.0)}
    await directory.spend_bucket("a", 2, 0.5, 101.0)  # refilled 0.5, then spent: none left
    assert await directory.bucket_levels(["a"]) == {"a": (0.0, 101.0)}
    await directory.spend_bucket("b", 2, 0.5, 200_000.0)  # a day on: "a" is trimmed
    assert await directory.bucket_levels(["a", "b"]) == {"b": (1.0, 200_000.0)}
