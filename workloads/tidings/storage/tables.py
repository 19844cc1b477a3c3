"""The relational schema, shared by SQLite (embedded) and PostgreSQL (cluster)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("username", String(32), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, ForeignKey("users.user_id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("platform", String(16)),
    Column("push_provider", String(16)),
    Column("push_token", String(4096)),
    Column("created_at", BigInteger, nullable=False),
)

friends = Table(
    "friends",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Column("friend_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Index("ix_friends_friend_id", "friend_id"),
)

channels = Table(
    "channels",
    metadata,
    Column("channel_id", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("name", String(128)),
    Column("owner_id", BigInteger),
    Column("created_at", BigInteger, nullable=False),
)

channel_members = Table(
    "channel_members",
    metadata,
    Column("channel_id", String(64), ForeignKey("channels.channel_id"), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Index("ix_channel_members_user_id", "user_id"),
)
