"""The Directory on SQLAlchemy 2 async: one implementation for SQLite and PostgreSQL.

Every write also appends what it changed to ``directory_changes`` in the same transaction
(kinds in :data:`CHANGE_KINDS`), and after it tells this process's listeners, so a
:class:`~tidings.storage.sql.directory_cache.CachedDirectory` drops exactly those entries at once
here and, by following the table, in every other process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tidings.core.login_throttle import BucketRule
from tidings.storage.base import (
    Channel,
    Device,
    FriendOutcome,
    GroupFull,
    Invite,
    User,
    UsernameTaken,
)
from tidings.storage.sql import directory_schema
from tidings.storage.sql.tables import (
    blocks,
    channel_members,
    channels,
    devices,
    directory_changes,
    directory_readers,
    friend_requests,
    friends,
    group_invites,
    throttle_buckets,
    usage_events,
    users,
)

log = logging.getLogger(__name__)

# What a change row names (its key is the id as text):
#   user          the user row (made)
#   device        the device row (made, push token set or cleared)
#   user_devices  the list of a user's devices
#   channel       the channel row and its members
#   audience      a user's presence audience (friends either way, peers in shared groups)
#   blocks        whom a user blocked and who blocked them (schema version 4)
CHANGE_KINDS = frozenset({"user", "device", "user_devices", "channel", "audience", "blocks"})

# The schema versions that have directory_changes and directory_readers.
CHANGE_LOG_VERSION = 2
READERS_VERSION = 3

# The greatest seq the last logged write of the current task got (0: none since reset).
_written_seq: ContextVar[int] = ContextVar("directory_written_seq", default=0)


def written_seq() -> int:
    """The greatest change seq written by the current task's writes since
    :func:`reset_written_seq` (0 when none logged anything)."""
    return _written_seq.get()


def reset_written_seq() -> None:
    """Start counting the current task's logged writes afresh (see :func:`written_seq`)."""
    _written_seq.set(0)


Change = tuple[str, str]
ChangeListener = Callable[[Sequence[Change]], None]


def make_engine(url: str) -> AsyncEngine:
    """An async engine for a SQLite or PostgreSQL url (SQLite: WAL and a 30 s busy timeout on
    every connection)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)


def _either_way(first: Any, second: Any, a: int, b: int) -> ColumnElement[bool]:
    """A row pairing ``a`` and ``b`` in these two columns, in either order."""
    return or_(and_(first == a, second == b), and_(first == b, second == a))


def _channel(row: Any, members: Sequence[tuple[int, bool]]) -> Channel:
    """A channel from its row and its (member, admin) rows, members in id order."""
    return Channel(
        row.channel_id,
        row.kind,
        row.name,
        row.owner_id,
        [uid for uid, _ in members],
        bool(row.e2e),
        [uid for uid, admin in members if admin],
        bool(row.members_can_add),
    )


def _user(row: Any) -> User:
    return User(row.user_id, row.username, row.display_name, row.password_hash, row.created_at)


def _device(row: Any) -> Device:
    return Device(
        row.device_id,
        row.user_id,
        row.name,
        row.platform,
        row.push_provider,
        row.push_token,
        row.token_version,
        row.created_at,
        row.last_seen,
    )


class _Write:
    """One write transaction and the changes it makes."""

    __slots__ = ("changes", "conn")

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.changes: list[Change] = []

    def changed(self, kind: str, *keys: int | str) -> None:
        self.changes.extend((kind, str(key)) for key in keys)


class SqlDirectory:
    """The :class:`~tidings.storage.base.Directory` on SQLAlchemy; every write logs what it
    changed (see the module's docstring)."""

    def __init__(
        self, engine: AsyncEngine, *, log_changes: bool = True, has_readers: bool = True
    ) -> None:
        self.engine = engine
        # Off only for a database not yet at schema version 2 / 3 (see open()).
        self.log_changes = log_changes
        self.has_readers = has_readers
        self._listeners: list[ChangeListener] = []

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> SqlDirectory:
        """Connect; with ``migrate`` (the embedded default) bring the schema up to date.

        Without ``migrate`` a database still at version 1 works as before, but its writes
        are not logged for the caches of other processes (a warning says so): run
        ``tidings migrate``.
        """
        engine = make_engine(url)
        if migrate:
            await directory_schema.migrate(engine)
            return cls(engine)
        versions = await directory_schema.applied_versions(engine)
        opened = cls(engine)
        opened.note_versions(versions)
        if not opened.log_changes or not opened.has_readers:
            log.warning(
                "directory schema is behind: other processes' caches see this process's "
                "writes late or not at all until `tidings migrate` has run",
                extra={"versions": sorted(versions)},
            )
        return opened

    def note_versions(self, versions: set[int]) -> None:
        """Use what the schema at these versions has."""
        self.log_changes = CHANGE_LOG_VERSION in versions
        self.has_readers = READERS_VERSION in versions

    async def close(self) -> None:
        """Dispose of the engine's connections."""
        await self.engine.dispose()

    # --- change log ----------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener`` with the changes of every write made through this object,
        after its transaction ends (also when it failed: dropping a cache entry is
        always safe)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        """Stop calling a listener added with :meth:`add_listener`."""
        self._listeners.remove(listener)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[_Write]:
        """A write transaction: its changes are logged in it and told to the listeners."""
        write: _Write | None = None
        try:
            async with self.engine.begin() as conn:
                write = _Write(conn)
                yield write
                if write.changes and self.log_changes:
                    at = int(time.time() * 1000)
                    seqs = await conn.execute(
                        insert(directory_changes).returning(directory_changes.c.seq),
                        [{"kind": k, "key": key, "at": at} for k, key in write.changes],
                    )
                    top = max(seqs.scalars())
                    if top > _written_seq.get():
                        _written_seq.set(top)
        finally:
            if write is not None and write.changes:
                for listener in self._listeners:
                    listener(write.changes)

    async def change_position(self, hole_window_ms: int, scan: int) -> tuple[int, list[int]]:
        """Where the change log ends now: the greatest seq (0 when empty) and the seqs
        below it, allocated within ``hole_window_ms`` and at most ``scan`` back, that have
        no row (transactions still open or rolled back)."""
        cutoff = int(time.time() * 1000) - hole_window_ms
        seq = directory_changes.c.seq
        async with self.engine.connect() as conn:
            top, old = (
                await conn.execute(
                    select(
                        select(func.max(seq)).scalar_subquery(),
                        select(func.max(seq))
                        .where(directory_changes.c.at < cutoff)
                        .scalar_subquery(),
                    )
                )
            ).one()
            if top is None:
                return 0, []
            low = max(old or 0, top - scan)
            present = set((await conn.execute(select(seq).where(seq > low, seq <= top))).scalars())
        return top, [s for s in range(low + 1, top + 1) if s not in present]

    async def changes_after(
        self, after: int, also: Iterable[int], limit: int
    ) -> list[tuple[int, str, str]]:
        """Change rows with seq > ``after`` or in ``also``, in seq order, at most ``limit``."""
        seq = directory_changes.c.seq
        extra = list(also)
        cond = seq > after if not extra else (seq > after) | seq.in_(extra)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(seq, directory_changes.c.kind, directory_changes.c.key)
                .where(cond)
                .order_by(seq)
                .limit(limit)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    async def oldest_change(self) -> int | None:
        """The smallest seq still in the change log."""
        async with self.engine.connect() as conn:
            value = (
                await conn.execute(select(func.min(directory_changes.c.seq)))
            ).scalar_one_or_none()
        return int(value) if value is not None else None

    async def report_reader(self, reader: str, safe_seq: int, now_ms: int) -> None:
        """Record that ``reader`` has applied every change up to ``safe_seq``."""
        values = {"safe_seq": safe_seq, "seen_at": now_ms}
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(directory_readers)
                .where(directory_readers.c.reader == reader)
                .values(**values)
            )
            if not result.rowcount:
                await conn.execute(insert(directory_readers).values(reader=reader, **values))

    async def remove_reader(self, reader: str) -> None:
        """Forget a reader of the change log (a process that follows it, gone)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(directory_readers).where(directory_readers.c.reader == reader)
            )

    async def readers_behind(self, seq: int, seen_after_ms: int, exclude: str) -> int:
        """How many readers other than ``exclude``, heard from after ``seen_after_ms``,
        have not applied every change up to ``seq`` yet."""
        r = directory_readers.c
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            r.reader != exclude, r.seen_at > seen_after_ms, r.safe_seq < seq
                        )
                    )
                ).scalar_one()
            )

    async def trim_changes(self, older_than_ms: int) -> int:
        """Delete change rows written before ``older_than_ms`` (epoch ms), always keeping
        the newest row so the log's end stays known. Idempotent; any process may run it."""
        seq = directory_changes.c.seq
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(directory_changes).where(
                    directory_changes.c.at < older_than_ms,
                    seq < select(func.max(seq)).scalar_subquery(),
                )
            )
        return max(result.rowcount, 0)

    # --- users ---------------------------------------------------------------------

    async def create_user(
        self, user_id: int, username: str, password_hash: str, display_name: str, now: int
    ) -> User:
        """Create a user; :class:`~tidings.storage.base.UsernameTaken` if the name is."""
        try:
            async with self._write() as write:
                await write.conn.execute(
                    insert(users).values(
                        user_id=user_id,
                        username=username,
                        display_name=display_name,
                        password_hash=password_hash,
                        created_at=now,
                    )
                )
                write.changed("user", user_id)
        except IntegrityError as exc:
            if await self.get_user_by_name(username) is None:
                raise  # the id was taken (random ids collide once in ~10^18 sign-ups)
            raise UsernameTaken(username) from exc
        return User(user_id, username, display_name, password_hash, now)

    async def get_user(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.user_id == user_id))).first()
        return _user(row) if row else None

    async def get_user_by_name(self, username: str) -> User | None:
        """The user with this username, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        return _user(row) if row else None

    async def get_users(self, user_ids: Iterable[int]) -> list[User]:
        """The users among these ids that exist, in no particular order."""
        ids = list(set(user_ids))
        if not ids:
            return []
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(users).where(users.c.user_id.in_(ids)))
        return [_user(row) for row in rows]

    async def set_display_name(self, user_id: int, display_name: str) -> None:
        """Change a user's display name."""
        async with self._write() as write:
            await write.conn.execute(
                update(users).where(users.c.user_id == user_id).values(display_name=display_name)
            )
            write.changed("user", user_id)

    # --- devices -------------------------------------------------------------------

    async def create_device(
        self, device_id: int, user_id: int, name: str, platform: str | None, now: int
    ) -> Device:
        """Register a new device of a user."""
        async with self._write() as write:
            await write.conn.execute(
                insert(devices).values(
                    device_id=device_id,
                    user_id=user_id,
                    name=name,
                    platform=platform,
                    created_at=now,
                )
            )
            write.changed("device", device_id)
            write.changed("user_devices", user_id)
        return Device(device_id, user_id, name, platform, created_at=now)

    async def newest_devices(self, limit: int) -> list[Device]:
        """Up to ``limit`` devices, the newest first (to warm a cache at start-up)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(devices).order_by(devices.c.device_id.desc()).limit(limit)
            )
        return [_device(row) for row in rows]

    async def get_device(self, device_id: int) -> Device | None:
        """The device with this id, or None."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(devices).where(devices.c.device_id == device_id))
            ).first()
        return _device(row) if row else None

    async def list_devices(self, user_id: int) -> list[Device]:
        """A user's devices, by id."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(devices).where(devices.c.user_id == user_id).order_by(devices.c.device_id)
            )
        return [_device(row) for row in rows]

    async def list_devices_now(self, user_id: int) -> list[Device]:
        """A user's devices as stored now (the same as :meth:`list_devices` here: nothing is
        cached)."""
        return await self.list_devices(user_id)

    async def set_push_token(self, device_id: int, provider: str, token: str) -> None:
        """Set the push provider and token a device is reached through."""
        async with self._write() as write:
            owner = (
                await write.conn.execute(
                    update(devices)
                    .where(devices.c.device_id == device_id)
                    .values(push_provider=provider, push_token=token)
                    .returning(devices.c.user_id)
                )
            ).scalar_one_or_none()
            if owner is not None:
                write.changed("device", device_id)
                write.changed("user_devices", owner)

    async def clear_push_token(self, device_id: int, token: str) -> None:
        """Forget a device's push token, if it still is ``token`` (a provider said it is dead)."""
        async with self._write() as write:
            owner = (
                await write.conn.execute(
                    update(devices)
                    .where(devices.c.device_id == device_id, devices.c.push_token == token)
                    .values(push_provider=None, push_token=None)
                    .returning(devices.c.user_id)
                )
            ).scalar_one_or_none()
            if owner is not None:
                write.changed("device", device_id)
                write.changed("user_devices", owner)

    async def bump_token_version(self, device_id: int) -> int | None:
        """Make the device's tokens so far invalid; its new token version, or None for no such
        device."""
        async with self._write() as write:
            row = (
                await write.conn.execute(
                    update(devices)
                    .where(devices.c.device_id == device_id)
                    .values(token_version=devices.c.token_version + 1)
                    .returning(devices.c.user_id, devices.c.token_version)
                )
            ).first()
            if row is None:
                return None
            write.changed("device", device_id)
            write.changed("user_devices", row.user_id)
            return int(row.token_version)

    async def delete_device(self, device_id: int) -> bool:
        """Remove a device (unlinked); whether it existed."""
        async with self._write() as write:
            owner = (
                await write.conn.execute(
                    delete(devices)
                    .where(devices.c.device_id == device_id)
                    .returning(devices.c.user_id)
                )
            ).scalar_one_or_none()
            if owner is None:
                return False
            write.changed("device", device_id)
            write.changed("user_devices", owner)
            return True

    async def touch_devices(self, seen: Mapping[int, int]) -> None:
        """Record when devices were last seen (device id -> ms)."""
        if not seen:
            return
        # Not logged: nothing cached depends on last_seen (the device list reads it here).
        async with self.engine.begin() as conn:
            await conn.execute(
                update(devices)
                .where(devices.c.device_id == bindparam("id"))
                .values(last_seen=bindparam("at")),
                [{"id": device_id, "at": at} for device_id, at in seen.items()],
            )

    # --- friends -------------------------------------------------------------------

    @staticmethod
    async def _blocked_between(conn: AsyncConnection, a: int, b: int) -> bool:
        row = await conn.execute(
            select(blocks.c.user_id).where(_either_way(blocks.c.user_id, blocks.c.blocked_id, a, b))
        )
        return row.first() is not None

    @staticmethod
    async def _unfriend(write: _Write, a: int, b: int) -> None:
        """Remove the friendship and any request between the two."""
        conn = write.conn
        gone = await conn.execute(
            delete(friends).where(_either_way(friends.c.user_id, friends.c.friend_id, a, b))
        )
        await conn.execute(
            delete(friend_requests).where(
                _either_way(friend_requests.c.from_id, friend_requests.c.to_id, a, b)
            )
        )
        if gone.rowcount:
            write.changed("audience", a, b)

    @staticmethod
    async def _befriend(write: _Write, a: int, b: int) -> None:
        await SqlDirectory._unfriend(write, a, b)
        await write.conn.execute(
            insert(friends), [{"user_id": a, "friend_id": b}, {"user_id": b, "friend_id": a}]
        )
        write.changed("audience", a, b)

    async def add_friend(self, user_id: int, friend_id: int) -> None:
        """Make two users friends, whatever requests there were."""
        async with self._write() as write:
            if not await self._friends(write.conn, user_id, friend_id):
                await self._befriend(write, user_id, friend_id)

    @staticmethod
    async def _friends(conn: AsyncConnection, a: int, b: int) -> bool:
        row = await conn.execute(
            select(friends.c.user_id).where(friends.c.user_id == a, friends.c.friend_id == b)
        )
        return row.first() is not None

    async def request_friend(self, user_id: int, friend_id: int, now: int) -> str:
        """Ask to be friends: friends at once if the other asked already (FRIENDS), a pending
        request (REQUESTED), or nothing at all if either blocks the other (IGNORED)."""
        async with self._write() as write:
            conn = write.conn
            if await self._blocked_between(conn, user_id, friend_id):
                return FriendOutcome.IGNORED
            if await self._friends(conn, user_id, friend_id):
                return FriendOutcome.FRIENDS
            asked = await conn.execute(
                select(friend_requests.c.from_id).where(
                    friend_requests.c.from_id == friend_id, friend_requests.c.to_id == user_id
                )
            )
            if asked.first() is not None:
                await self._befriend(write, user_id, friend_id)
                return FriendOutcome.FRIENDS
            pending = await conn.execute(
                select(friend_requests.c.from_id).where(
                    friend_requests.c.from_id == user_id, friend_requests.c.to_id == friend_id
                )
            )
            if pending.first() is None:
                await conn.execute(
                    insert(friend_requests).values(from_id=user_id, to_id=friend_id, created_at=now)
                )
            return FriendOutcome.REQUESTED

    async def remove_friend(self, user_id: int, friend_id: int) -> None:
        """End a friendship (and any requests between the two)."""
        async with self._write() as write:
            await self._unfriend(write, user_id, friend_id)

    async def list_friends(self, user_id: int) -> list[User]:
        """A user's friends, by username."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(users)
                .join(friends, friends.c.friend_id == users.c.user_id)
                .where(friends.c.user_id == user_id)
                .order_by(users.c.username)
            )
        return [_user(row) for row in rows]

    async def friend_requests(self, user_id: int) -> tuple[list[User], list[User]]:
        """The friend requests a user has received and sent, oldest first."""
        async with self.engine.connect() as conn:
            incoming = await conn.execute(
                select(users)
                .join(friend_requests, friend_requests.c.from_id == users.c.user_id)
                .where(friend_requests.c.to_id == user_id)
                .order_by(friend_requests.c.created_at)
            )
            ins = [_user(row) for row in incoming]
            outgoing = await conn.execute(
                select(users)
                .join(friend_requests, friend_requests.c.to_id == users.c.user_id)
                .where(friend_requests.c.from_id == user_id)
                .order_by(friend_requests.c.created_at)
            )
            return ins, [_user(row) for row in outgoing]

    async def is_friend(self, user_id: int, other_id: int) -> bool:
        """Whether the two users are friends."""
        async with self.engine.connect() as conn:
            return await self._friends(conn, user_id, other_id)

    async def related(self, user_id: int, other_id: int) -> bool:
        """Whether ``other_id`` is the user, a friend, asked or was asked to be one, shares a
        channel with the user, or invited or was invited by the user."""
        if user_id == other_id:
            return True
        mine = select(channel_members.c.channel_id).where(channel_members.c.user_id == user_id)
        checks = [
            select(friends.c.user_id).where(
                friends.c.user_id == user_id, friends.c.friend_id == other_id
            ),
            select(friend_requests.c.from_id).where(
                _either_way(friend_requests.c.from_id, friend_requests.c.to_id, user_id, other_id)
            ),
            select(channel_members.c.user_id).where(
                channel_members.c.user_id == other_id, channel_members.c.channel_id.in_(mine)
            ),
            select(group_invites.c.user_id).where(
                _either_way(group_invites.c.user_id, group_invites.c.inviter_id, user_id, other_id)
            ),
        ]
        async with self.engine.connect() as conn:
            for check in checks:
                if (await conn.execute(check.limit(1))).first() is not None:
                    return True
        return False

    # --- blocks --------------------------------------------------------------------

    async def block(self, user_id: int, blocked_id: int, now: int) -> None:
        """Block a user: the friendship and requests between them end, and the blocked user's
        invites to this one go."""
        async with self._write() as write:
            conn = write.conn
            exists = await conn.execute(
                select(blocks.c.user_id).where(
                    blocks.c.user_id == user_id, blocks.c.blocked_id == blocked_id
                )
            )
            if exists.first() is None:
                await conn.execute(
                    insert(blocks).values(user_id=user_id, blocked_id=blocked_id, created_at=now)
                )
            await self._unfriend(write, user_id, blocked_id)
            await conn.execute(
                delete(group_invites).where(
                    group_invites.c.user_id == user_id, group_invites.c.inviter_id == blocked_id
                )
            )
            # Neither sees the other's presence any more, even as group peers.
            write.changed("blocks", user_id, blocked_id)
            write.changed("audience", user_id, blocked_id)

    async def unblock(self, user_id: int, blocked_id: int) -> None:
        """Unblock a user (no friendship comes back)."""
        async with self._write() as write:
            gone = await write.conn.execute(
                delete(blocks).where(blocks.c.user_id == user_id, blocks.c.blocked_id == blocked_id)
            )
            if gone.rowcount:
                write.changed("blocks", user_id, blocked_id)
                write.changed("audience", user_id, blocked_id)

    async def list_blocked(self, user_id: int) -> list[User]:
        """The users this user blocks, by username."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(users)
                .join(blocks, blocks.c.blocked_id == users.c.user_id)
                .where(blocks.c.user_id == user_id)
                .order_by(users.c.username)
            )
        return [_user(row) for row in rows]

    async def block_set(self, user_id: int) -> frozenset[int]:
        """The ids this user blocks or is blocked by."""
        async with self.engine.connect() as conn:
            return await self._block_set(conn, user_id)

    async def all_blocks(self) -> dict[int, frozenset[int]]:
        """Every user's :meth:`block_set` that is not empty, from one read."""
        found: dict[int, set[int]] = {}
        async with self.engine.connect() as conn:
            for a, b in await conn.execute(select(blocks.c.user_id, blocks.c.blocked_id)):
                found.setdefault(a, set()).add(b)
                found.setdefault(b, set()).add(a)
        return {user: frozenset(peers) for user, peers in found.items()}

    @staticmethod
    async def _block_set(conn: AsyncConnection, user_id: int) -> frozenset[int]:
        theirs = await conn.execute(select(blocks.c.blocked_id).where(blocks.c.user_id == user_id))
        found = {row[0] for row in theirs}
        mine = await conn.execute(select(blocks.c.user_id).where(blocks.c.blocked_id == user_id))
        found.update(row[0] for row in mine)
        return frozenset(found)

    # --- group invites -------------------------------------------------------------

    async def invite(self, channel_id: str, user_id: int, inviter_id: int, now: int) -> None:
        """Invite a user to a group, unless either blocks the other, they are a member, or an
        invite is pending."""
        async with self._write() as write:
            conn = write.conn
            if await self._blocked_between(conn, user_id, inviter_id):
                return
            if user_id in await self._members(conn, channel_id):
                return
            pending = await conn.execute(
                select(group_invites.c.user_id).where(
                    group_invites.c.channel_id == channel_id, group_invites.c.user_id == user_id
                )
            )
            if pending.first() is None:
                await conn.execute(
                    insert(group_invites).values(
                        channel_id=channel_id,
                        user_id=user_id,
                        inviter_id=inviter_id,
                        created_at=now,
                    )
                )

    async def list_invites(self, user_id: int) -> list[Invite]:
        """A user's pending group invites, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(group_invites, channels.c.name)
                .join(channels, channels.c.channel_id == group_invites.c.channel_id)
                .where(group_invites.c.user_id == user_id)
                .order_by(group_invites.c.created_at)
            )
            return [
                Invite(r.channel_id, r.name, r.user_id, r.inviter_id, r.created_at) for r in rows
            ]

    async def accept_invite(self, channel_id: str, user_id: int, max_members: int) -> bool:
        """Join the group an invite is for; False if there was no such invite;
        :class:`~tidings.storage.base.GroupFull` at ``max_members``."""
        async with self._write() as write:
            gone = await write.conn.execute(
                delete(group_invites).where(
                    group_invites.c.channel_id == channel_id, group_invites.c.user_id == user_id
                )
            )
            if not gone.rowcount:
                return False
            await self._add_member(write, channel_id, user_id, max_members)
            return True

    async def decline_invite(self, channel_id: str, user_id: int) -> None:
        """Drop an invite."""
        async with self.engine.begin() as conn:  # nothing cached depends on invites
            await conn.execute(
                delete(group_invites).where(
                    group_invites.c.channel_id == channel_id, group_invites.c.user_id == user_id
                )
            )

    # --- throttles -------------------------------------------------------------------

    async def bucket_levels(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        """The stored (tokens, at) of these login-throttle buckets (a key without a row is a full
        bucket)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(throttle_buckets).where(throttle_buckets.c.key.in_(list(keys)))
            )
            return {row.key: (row.tokens, row.at) for row in rows}

    async def spend_bucket(self, key: str, burst: float, per_s: float, now: float) -> None:
        """Take a failure's token from a login-throttle bucket, refilled at ``per_s`` up to
        ``burst`` since it was last spent."""
        rule = BucketRule(burst, per_s)
        where = throttle_buckets.c.key == key
        async with self.engine.begin() as conn:
            # Idle for a day: full again long since (no row means a full bucket).
            await conn.execute(delete(throttle_buckets).where(throttle_buckets.c.at < now - 86400))
            query = select(throttle_buckets.c.tokens, throttle_buckets.c.at).where(where)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # two API processes failing it at once
            row = (await conn.execute(query)).first()
            tokens, at = rule.after_failure((row.tokens, row.at) if row else None, now)
            if row is None:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            insert(throttle_buckets).values(key=key, tokens=tokens, at=at)
                        )
                    return
                except IntegrityError:
                    pass  # made at the same moment by another process: spend from it
            await conn.execute(update(throttle_buckets).where(where).values(tokens=tokens, at=at))

    # --- allowances ------------------------------------------------------------------

    async def use_allowance(
        self, user_id: int, kind: str, now: int, window_ms: int, limit: int, cost: int = 1
    ) -> int:
        """Spend ``cost`` of a user's ``limit`` per ``window_ms`` of ``kind``: 0 when spent, else
        the ms until enough is free again."""
        since = now - window_ms
        mine = and_(usage_events.c.user_id == user_id, usage_events.c.kind == kind)
        async with self.engine.begin() as conn:
            await conn.execute(delete(usage_events).where(mine, usage_events.c.at <= since))
            used = (
                await conn.execute(
                    select(func.count(), func.min(usage_events.c.at)).where(
                        mine, usage_events.c.at > since
                    )
                )
            ).one()
            if used[0] + cost > limit:
                oldest = int(used[1]) if used[1] is not None else now
                return max(1, oldest + window_ms - now)
            await conn.execute(
                insert(usage_events), [{"user_id": user_id, "kind": kind, "at": now}] * cost
            )
            return 0

    async def presence_audience(self, user_id: int, limit: int) -> set[int]:
        """Friends (either direction) and members of groups shared with the user."""
        my_groups = (
            select(channel_members.c.channel_id)
            .join(channels, channels.c.channel_id == channel_members.c.channel_id)
            .where(channel_members.c.user_id == user_id, channels.c.kind == "group")
        )
        async with self.engine.connect() as conn:
            audience: set[int] = set()
            for query in (
                select(friends.c.friend_id).where(friends.c.user_id == user_id),
                select(friends.c.user_id).where(friends.c.friend_id == user_id),
                select(channel_members.c.user_id)
                .where(channel_members.c.channel_id.in_(my_groups))
                .distinct(),
            ):
                rows = await conn.execute(query.limit(limit))
                audience.update(row[0] for row in rows)
            audience -= await self._block_set(conn, user_id)
        audience.discard(user_id)
        return set(sorted(audience)[:limit])

    async def all_audiences(self) -> dict[int, set[int]]:
        """Every user's presence audience (friends either way, group peers), whole, in two
        reads (to warm a cache at start-up; :meth:`presence_audience` for one user)."""
        audiences: dict[int, set[int]] = {}
        members: dict[str, list[int]] = {}
        async with self.engine.connect() as conn:
            for a, b in await conn.execute(select(friends.c.user_id, friends.c.friend_id)):
                audiences.setdefault(a, set()).add(b)
                audiences.setdefault(b, set()).add(a)
            rows = await conn.execute(
                select(channel_members.c.channel_id, channel_members.c.user_id)
                .join(channels, channels.c.channel_id == channel_members.c.channel_id)
                .where(channels.c.kind == "group")
            )
            for channel_id, uid in rows:
                members.setdefault(channel_id, []).append(uid)
            blocked = (await conn.execute(select(blocks.c.user_id, blocks.c.blocked_id))).all()
        for group in members.values():
            for uid in group:
                audiences.setdefault(uid, set()).update(group)
        for a, b in blocked:
            audiences.get(a, set()).discard(b)
            audiences.get(b, set()).discard(a)
        for uid, audience in audiences.items():
            audience.discard(uid)
        return audiences

    # --- channels ------------------------------------------------------------------

    async def ensure_dm(
        self, channel_id: str, user_a: int, user_b: int, now: int, e2e: bool = False
    ) -> bool:
        """Make the DM between two users if it does not exist; the DM's e2e mode (an existing DM
        keeps its own)."""
        async with self._write() as write:
            conn = write.conn
            exists = (
                await conn.execute(
                    select(channels.c.e2e).where(channels.c.channel_id == channel_id)
                )
            ).first()
            if exists:
                return bool(exists.e2e)
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        insert(channels).values(
                            channel_id=channel_id, kind="dm", created_at=now, e2e=e2e
                        )
                    )
                    await conn.execute(
                        insert(channel_members),
                        [
                            {"channel_id": channel_id, "user_id": user_a},
                            {"channel_id": channel_id, "user_id": user_b},
                        ],
                    )
            except IntegrityError:
                # Made at the same moment by another request (which logged it): its mode.
                made = await conn.execute(
                    select(channels.c.e2e).where(channels.c.channel_id == channel_id)
                )
                return bool(made.scalar_one())
            # A DM is in nobody's presence audience (only friends and groups are).
            write.changed("channel", channel_id)
            return e2e

    async def create_group(
        self,
        channel_id: str,
        name: str,
        owner_id: int,
        member_ids: Sequence[int],
        now: int,
        e2e: bool = False,
    ) -> Channel:
        """Create a group of its owner (an admin) and these members."""
        members = sorted(set(member_ids) | {owner_id})
        async with self._write() as write:
            await write.conn.execute(
                insert(channels).values(
                    channel_id=channel_id,
                    kind="group",
                    name=name,
                    owner_id=owner_id,
                    created_at=now,
                    e2e=e2e,
                )
            )
            await write.conn.execute(
                insert(channel_members),
                [
                    {"channel_id": channel_id, "user_id": uid, "admin": uid == owner_id}
                    for uid in members
                ],
            )
            write.changed("channel", channel_id)
            write.changed("audience", *members)
        return Channel(channel_id, "group", name, owner_id, members, e2e, [owner_id])

    async def get_channel(self, channel_id: str) -> Channel | None:
        """The channel with its members and admins, or None."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(channels).where(channels.c.channel_id == channel_id))
            ).first()
            if row is None:
                return None
            members = await conn.execute(
                select(channel_members.c.user_id, channel_members.c.admin)
                .where(channel_members.c.channel_id == channel_id)
                .order_by(channel_members.c.user_id)
            )
            return _channel(row, list(members))

    async def _members(self, conn: AsyncConnection, channel_id: str) -> list[int]:
        rows = await conn.execute(
            select(channel_members.c.user_id).where(channel_members.c.channel_id == channel_id)
        )
        return [row[0] for row in rows]

    async def add_member(self, channel_id: str, user_id: int, max_members: int) -> None:
        """Add a member (and drop their invite); :class:`~tidings.storage.base.GroupFull` at
        ``max_members``."""
        async with self._write() as write:
            await self._add_member(write, channel_id, user_id, max_members)

    async def _add_member(
        self, write: _Write, channel_id: str, user_id: int, max_members: int
    ) -> None:
        members = await self._members(write.conn, channel_id)
        if user_id in members:
            return
        if len(members) >= max_members:
            raise GroupFull(channel_id)
        await write.conn.execute(
            insert(channel_members).values(channel_id=channel_id, user_id=user_id)
        )
        await write.conn.execute(
            delete(group_invites).where(
                group_invites.c.channel_id == channel_id, group_invites.c.user_id == user_id
            )
        )
        # The newcomer now sees every member and every member sees the newcomer.
        write.changed("channel", channel_id)
        write.changed("audience", user_id, *members)

    async def remove_member(self, channel_id: str, user_id: int) -> int | None:
        """Remove a member; if no admin is left, the member with the lowest id becomes one: that
        id, or None (None too when the user was not a member)."""
        async with self._write() as write:
            rows = (
                await write.conn.execute(
                    select(channel_members.c.user_id, channel_members.c.admin).where(
                        channel_members.c.channel_id == channel_id
                    )
                )
            ).all()
            members = [uid for uid, _ in rows]
            if user_id not in members:
                return None
            await write.conn.execute(
                delete(channel_members).where(
                    channel_members.c.channel_id == channel_id,
                    channel_members.c.user_id == user_id,
                )
            )
            staying = sorted(uid for uid, admin in rows if uid != user_id)
            promoted = None
            if staying and not any(admin for uid, admin in rows if uid != user_id):
                promoted = staying[0]
                await self._set_admin(write, channel_id, promoted, True)
            write.changed("channel", channel_id)
            write.changed("audience", *members)
            return promoted

    async def update_group(
        self, channel_id: str, *, name: str | None = None, members_can_add: bool | None = None
    ) -> None:
        """Rename a group or change whether members may add others (what is given)."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if members_can_add is not None:
            values["members_can_add"] = members_can_add
        if not values:
            return
        async with self._write() as write:
            await write.conn.execute(
                update(channels).where(channels.c.channel_id == channel_id).values(**values)
            )
            write.changed("channel", channel_id)

    async def set_admin(self, channel_id: str, user_id: int, admin: bool) -> None:
        """Make a member an admin of the group, or not."""
        async with self._write() as write:
            await self._set_admin(write, channel_id, user_id, admin)
            write.changed("channel", channel_id)

    @staticmethod
    async def _set_admin(write: _Write, channel_id: str, user_id: int, admin: bool) -> None:
        await write.conn.execute(
            update(channel_members)
            .where(channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id)
            .values(admin=admin)
        )

    async def list_channels(self, user_id: int) -> list[Channel]:
        """The channels a user is a member of, with their members, by id."""
        mine = select(channel_members.c.channel_id).where(channel_members.c.user_id == user_id)
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(channels)
                    .where(channels.c.channel_id.in_(mine))
                    .order_by(channels.c.channel_id)
                )
            ).all()
            member_rows = await conn.execute(
                select(
                    channel_members.c.channel_id, channel_members.c.user_id, channel_members.c.admin
                )
                .where(channel_members.c.channel_id.in_(mine))
                .order_by(channel_members.c.user_id)
            )
            members: dict[str, list[tuple[int, bool]]] = {}
            for channel_id, uid, admin in member_rows:
                members.setdefault(channel_id, []).append((uid, admin))
        return [_channel(r, members.get(r.channel_id, [])) for r in rows]
