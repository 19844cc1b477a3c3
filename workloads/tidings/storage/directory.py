"""The Directory on SQLAlchemy 2 async: one implementation for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tidings.storage import directory_schema
from tidings.storage.base import Channel, Device, GroupFull, User, UsernameTaken
from tidings.storage.tables import channel_members, channels, devices, friends, users


def make_engine(url: str) -> AsyncEngine:
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


def _user(row: Any) -> User:
    return User(row.user_id, row.username, row.display_name, row.password_hash, row.created_at)


def _device(row: Any) -> Device:
    return Device(
        row.device_id, row.user_id, row.name, row.platform, row.push_provider, row.push_token
    )


class SqlDirectory:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> SqlDirectory:
        """Connect; with ``migrate`` (the embedded default) bring the schema up to date."""
        engine = make_engine(url)
        if migrate:
            await directory_schema.migrate(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- users ---------------------------------------------------------------------

    async def create_user(
        self, user_id: int, username: str, password_hash: str, display_name: str, now: int
    ) -> User:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(users).values(
                        user_id=user_id,
                        username=username,
                        display_name=display_name,
                        password_hash=password_hash,
                        created_at=now,
                    )
                )
        except IntegrityError as exc:
            raise UsernameTaken(username) from exc
        return User(user_id, username, display_name, password_hash, now)

    async def get_user(self, user_id: int) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.user_id == user_id))).first()
        return _user(row) if row else None

    async def get_user_by_name(self, username: str) -> User | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        return _user(row) if row else None

    async def get_users(self, user_ids: Iterable[int]) -> list[User]:
        ids = list(set(user_ids))
        if not ids:
            return []
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(users).where(users.c.user_id.in_(ids)))
        return [_user(row) for row in rows]

    # --- devices -------------------------------------------------------------------

    async def create_device(
        self, device_id: int, user_id: int, name: str, platform: str | None, now: int
    ) -> Device:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(devices).values(
                    device_id=device_id,
                    user_id=user_id,
                    name=name,
                    platform=platform,
                    created_at=now,
                )
            )
        return Device(device_id, user_id, name, platform)

    async def get_device(self, device_id: int) -> Device | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(devices).where(devices.c.device_id == device_id))
            ).first()
        return _device(row) if row else None

    async def list_devices(self, user_id: int) -> list[Device]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(devices).where(devices.c.user_id == user_id).order_by(devices.c.device_id)
            )
        return [_device(row) for row in rows]

    async def set_push_token(self, device_id: int, provider: str, token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(devices)
                .where(devices.c.device_id == device_id)
                .values(push_provider=provider, push_token=token)
            )

    async def clear_push_token(self, device_id: int, token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(devices)
                .where(devices.c.device_id == device_id, devices.c.push_token == token)
                .values(push_provider=None, push_token=None)
            )

    # --- friends -------------------------------------------------------------------

    async def add_friend(self, user_id: int, friend_id: int) -> None:
        async with self.engine.begin() as conn:
            exists = (
                await conn.execute(
                    select(friends.c.user_id).where(
                        friends.c.user_id == user_id, friends.c.friend_id == friend_id
                    )
                )
            ).first()
            if not exists:
                await conn.execute(insert(friends).values(user_id=user_id, friend_id=friend_id))

    async def remove_friend(self, user_id: int, friend_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(friends).where(
                    friends.c.user_id == user_id, friends.c.friend_id == friend_id
                )
            )

    async def list_friends(self, user_id: int) -> list[User]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(users)
                .join(friends, friends.c.friend_id == users.c.user_id)
                .where(friends.c.user_id == user_id)
                .order_by(users.c.username)
            )
        return [_user(row) for row in rows]

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
        audience.discard(user_id)
        return set(sorted(audience)[:limit])

    # --- channels ------------------------------------------------------------------

    async def ensure_dm(self, channel_id: str, user_a: int, user_b: int, now: int) -> None:
        async with self.engine.begin() as conn:
            exists = (
                await conn.execute(
                    select(channels.c.channel_id).where(channels.c.channel_id == channel_id)
                )
            ).first()
            if exists:
                return
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        insert(channels).values(channel_id=channel_id, kind="dm", created_at=now)
                    )
                    await conn.execute(
                        insert(channel_members),
                        [
                            {"channel_id": channel_id, "user_id": user_a},
                            {"channel_id": channel_id, "user_id": user_b},
                        ],
                    )
            except IntegrityError:
                pass  # made at the same moment by another request

    async def create_group(
        self, channel_id: str, name: str, owner_id: int, member_ids: Sequence[int], now: int
    ) -> Channel:
        members = sorted(set(member_ids) | {owner_id})
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(channels).values(
                    channel_id=channel_id,
                    kind="group",
                    name=name,
                    owner_id=owner_id,
                    created_at=now,
                )
            )
            await conn.execute(
                insert(channel_members),
                [{"channel_id": channel_id, "user_id": uid} for uid in members],
            )
        return Channel(channel_id, "group", name, owner_id, members)

    async def get_channel(self, channel_id: str) -> Channel | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(channels).where(channels.c.channel_id == channel_id))
            ).first()
            if row is None:
                return None
            members = await conn.execute(
                select(channel_members.c.user_id)
                .where(channel_members.c.channel_id == channel_id)
                .order_by(channel_members.c.user_id)
            )
            return Channel(
                row.channel_id, row.kind, row.name, row.owner_id, [m[0] for m in members]
            )

    async def add_member(self, channel_id: str, user_id: int, max_members: int) -> None:
        async with self.engine.begin() as conn:
            present = (
                await conn.execute(
                    select(channel_members.c.user_id).where(
                        channel_members.c.channel_id == channel_id,
                        channel_members.c.user_id == user_id,
                    )
                )
            ).first()
            if present:
                return
            count = (
                await conn.execute(
                    select(func.count()).where(channel_members.c.channel_id == channel_id)
                )
            ).scalar_one()
            if count >= max_members:
                raise GroupFull(channel_id)
            await conn.execute(
                insert(channel_members).values(channel_id=channel_id, user_id=user_id)
            )

    async def remove_member(self, channel_id: str, user_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(channel_members).where(
                    channel_members.c.channel_id == channel_id,
                    channel_members.c.user_id == user_id,
                )
            )

    async def list_channels(self, user_id: int) -> list[Channel]:
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
                select(channel_members.c.channel_id, channel_members.c.user_id)
                .where(channel_members.c.channel_id.in_(mine))
                .order_by(channel_members.c.user_id)
            )
            members: dict[str, list[int]] = {}
            for channel_id, uid in member_rows:
                members.setdefault(channel_id, []).append(uid)
        return [
            Channel(r.channel_id, r.kind, r.name, r.owner_id, members.get(r.channel_id, []))
            for r in rows
        ]
