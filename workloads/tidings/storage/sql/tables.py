"""The relational schema, shared by SQLite (embedded) and PostgreSQL (cluster)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    true,
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
    # Schema version 4: tokens carry the version they were issued at; logging the device
    # in again bumps it, so earlier tokens stop working. last_seen: when it last connected
    # or disconnected (epoch ms, to the minute; not in the change log).
    Column("token_version", Integer, nullable=False, server_default="0"),
    Column("last_seen", BigInteger),
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
    # Schema version 7: end-to-end (messages are per-device envelopes; docs/e2ee.md).
    Column("e2e", Boolean, nullable=False, server_default=false()),
    # Schema version 9: whether members who are not admins may add others (issue #20).
    Column("members_can_add", Boolean, nullable=False, server_default=true()),
)

channel_members = Table(
    "channel_members",
    metadata,
    Column("channel_id", String(64), ForeignKey("channels.channel_id"), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    # Schema version 9: group admins (the creator first; docs/protocol.md, issue #20).
    Column("admin", Boolean, nullable=False, server_default=false()),
    Index("ix_channel_members_user_id", "user_id"),
)

# Schema version 4: consent. A friend request waits here until the other side accepts
# (both rows then go into ``friends``) or declines; ``friends`` holds accepted pairs only,
# one row each way.
friend_requests = Table(
    "friend_requests",
    metadata,
    Column("from_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Column("to_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_friend_requests_to_id", "to_id"),
)

blocks = Table(
    "blocks",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Column("blocked_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_blocks_blocked_id", "blocked_id"),
)

group_invites = Table(
    "group_invites",
    metadata,
    Column("channel_id", String(64), ForeignKey("channels.channel_id"), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Column("inviter_id", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_group_invites_user_id", "user_id"),
)

# Rate-limited actions per user over a sliding window (groups made, friend requests,
# look-ups), shared by every API process: kind names the action, at is epoch ms.
usage_events = Table(
    "usage_events",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_usage_events_user_kind_at", "user_id", "kind", "at"),
)

# Schema version 5: leaky buckets shared by every API process (failed logins per account
# and per address; core/login_throttle.py): the tokens left as of at (epoch seconds). No
# row is a full bucket; rows idle for a day are trimmed.
throttle_buckets = Table(
    "throttle_buckets",
    metadata,
    Column("key", String(160), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_throttle_buckets_at", "at"),
)

# Every Directory write appends what it changed here, in its own transaction (schema
# version 2), so caches in other processes can drop exactly those entries
# (storage/sql/directory_cache.py). kind: user | device | user_devices | channel | audience;
# key: the id (as text). Rows older than the retention are trimmed.
directory_changes = Table(
    "directory_changes",
    metadata,
    # INTEGER on SQLite so the column is the rowid; AUTOINCREMENT so a seq is never reused,
    # even after every row has been trimmed.
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_directory_changes_at", "at"),
    sqlite_autoincrement=True,
)

# Where each process's directory cache stands in the change log (schema version 3): a
# write that must be seen everywhere before it returns waits until every live reader's
# safe_seq (every change up to it applied) has reached the write's seq. seen_at is the
# reader's clock (epoch ms) at its last report; a reader silent for long is taken as gone.
directory_readers = Table(
    "directory_readers",
    metadata,
    Column("reader", String(128), primary_key=True),
    Column("safe_seq", BigInteger, nullable=False),
    Column("seen_at", BigInteger, nullable=False),
)

# Schema version 6, end-to-end encryption's key directory (storage/sql/keys.py): a device's
# public keys — its identity (Curve25519) and signing (Ed25519) keys and a signed prekey
# (its signature checked on upload) — and its one-time prekeys, each handed out once.
device_keys = Table(
    "device_keys",
    metadata,
    Column(
        "device_id",
        BigInteger,
        ForeignKey("devices.device_id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("user_id", BigInteger, nullable=False, index=True),
    Column("identity_key", String(64), nullable=False),
    Column("signing_key", String(64), nullable=False),
    Column("signed_prekey_id", String(32), nullable=False),
    Column("signed_prekey", String(64), nullable=False),
    Column("signed_prekey_signature", String(128), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

one_time_prekeys = Table(
    "one_time_prekeys",
    metadata,
    Column(
        "device_id",
        BigInteger,
        ForeignKey("devices.device_id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("key_id", String(32), primary_key=True),
    Column("public_key", String(64), nullable=False),
)

# Schema version 8: media uploads (docs/media.md). A row per upload slot: pending until
# completed (the store's multipart upload id meanwhile), then ready with what the server
# measured; media_refs are the channels a message sent it to (who may download it).
# referenced_at: the first send that named it (null: the sweeper deletes it after
# media_unreferenced_ttl_s from created_at).
media = Table(
    "media",
    metadata,
    Column("media_id", String(32), primary_key=True),
    Column("owner_id", BigInteger, nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("e2e", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("referenced_at", BigInteger),
    Column("upload_id", String(1024)),
    Column("width", Integer),
    Column("height", Integer),
    Column("thumbnail", Boolean, nullable=False, server_default=false()),
    Index("ix_media_owner_created", "owner_id", "created_at"),
    Index("ix_media_unreferenced", "referenced_at", "created_at"),
)

media_refs = Table(
    "media_refs",
    metadata,
    Column("media_id", String(32), primary_key=True),
    Column("channel_id", String(64), primary_key=True),
)

# The tables of schema version 1 (devices as version 4 left it: see directory_schema).
V1_TABLES = [users, devices, friends, channels, channel_members]
V4_TABLES = [friend_requests, blocks, group_invites, usage_events]
V6_TABLES = [device_keys, one_time_prekeys]
V8_TABLES = [media, media_refs]
