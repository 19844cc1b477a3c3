"""The storage interfaces the core is written against."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tidings.core.media import MediaRecord
from tidings.core.model import InboxEntry, Message, OnlineLease, PresenceStatus, Watermarks


class StorageError(Exception):
    """Base of the storage errors; ``retriable`` says whether trying again may help."""

    retriable = False


class UsernameTaken(StorageError):
    pass


class GroupFull(StorageError):
    pass


class StorageUnavailable(StorageError):
    retriable = True


class ClientMsgIdReused(StorageError):
    """A sender used a client_msg_id again for another channel or body; ``existing`` is
    the message that holds it."""

    def __init__(self, existing: Message) -> None:
        super().__init__(f"client_msg_id {existing.client_msg_id!r} is taken")
        self.existing = existing


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    username: str
    display_name: str
    password_hash: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Device:
    device_id: int
    user_id: int
    name: str
    platform: str | None
    push_provider: str | None = None
    push_token: str | None = None
    token_version: int = 0
    created_at: int = 0
    last_seen: int | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    channel_id: str
    kind: str  # "dm" | "group"
    name: str | None
    owner_id: int | None
    member_ids: list[int] = field(default_factory=list)
    # End-to-end: messages are envelopes per device (docs/e2ee.md); fixed at creation.
    e2e: bool = False
    # Groups: who may manage it (the creator first), and whether members who are not
    # admins may add others (docs/protocol.md, issue #20).
    admin_ids: list[int] = field(default_factory=list)
    members_can_add: bool = True


@dataclass(frozen=True, slots=True)
class Invite:
    """A pending invitation of ``user_id`` into a group, made by ``inviter_id``."""

    channel_id: str
    name: str | None
    user_id: int
    inviter_id: int
    created_at: int


class FriendOutcome:
    """What a friend request did (:meth:`Directory.request_friend`)."""

    FRIENDS = "friends"  # they had asked first, or were friends already
    REQUESTED = "requested"  # a request now waits for them
    IGNORED = "ignored"  # one of the two blocks the other: nothing stored


class Directory(Protocol):
    """Relational data: users, devices, friends, channels and their members."""

    async def create_user(
        self, user_id: int, username: str, password_hash: str, display_name: str, now: int
    ) -> User: ...
    async def get_user(self, user_id: int) -> User | None: ...
    async def get_user_by_name(self, username: str) -> User | None: ...
    async def get_users(self, user_ids: Iterable[int]) -> list[User]: ...

    async def create_device(
        self, device_id: int, user_id: int, name: str, platform: str | None, now: int
    ) -> Device: ...
    async def get_device(self, device_id: int) -> Device | None: ...
    async def list_devices(self, user_id: int) -> list[Device]: ...
    async def list_devices_now(self, user_id: int) -> list[Device]:
        """As stored now, with last_seen (no cache)."""
        ...

    async def set_push_token(self, device_id: int, provider: str, token: str) -> None: ...
    async def clear_push_token(self, device_id: int, token: str) -> None: ...
    async def bump_token_version(self, device_id: int) -> int | None:
        """Supersede the device's tokens; its new version (None: no such device)."""
        ...

    async def delete_device(self, device_id: int) -> bool: ...
    async def touch_devices(self, seen: Mapping[int, int]) -> None:
        """Record when devices were last seen (device id -> epoch ms)."""
        ...

    async def add_friend(self, user_id: int, friend_id: int) -> None:
        """Make the two friends at once, both ways (tests and seeding; the API asks
        through :meth:`request_friend`)."""
        ...

    async def request_friend(self, user_id: int, friend_id: int, now: int) -> str:
        """Ask ``friend_id`` to be friends, or accept their request: a
        :class:`FriendOutcome` value."""
        ...

    async def remove_friend(self, user_id: int, friend_id: int) -> None:
        """End a friendship, withdraw a request or decline one, whichever there is."""
        ...

    async def list_friends(self, user_id: int) -> list[User]: ...
    async def friend_requests(self, user_id: int) -> tuple[list[User], list[User]]:
        """(incoming, outgoing) pending friend requests of the user."""
        ...

    async def is_friend(self, user_id: int, other_id: int) -> bool: ...
    async def related(self, user_id: int, other_id: int) -> bool:
        """Whether the user may look ``other_id`` up: friends, a request either way, a
        shared channel, or an invite between them."""
        ...

    async def presence_audience(self, user_id: int, limit: int) -> set[int]: ...

    async def block(self, user_id: int, blocked_id: int, now: int) -> None: ...
    async def unblock(self, user_id: int, blocked_id: int) -> None: ...
    async def list_blocked(self, user_id: int) -> list[User]: ...
    async def block_set(self, user_id: int) -> frozenset[int]:
        """Everyone the user blocked or was blocked by."""
        ...

    async def invite(self, channel_id: str, user_id: int, inviter_id: int, now: int) -> None: ...
    async def list_invites(self, user_id: int) -> list[Invite]: ...
    async def accept_invite(self, channel_id: str, user_id: int, max_members: int) -> bool:
        """Join the group the user was invited to; False if there is no such invite."""
        ...

    async def decline_invite(self, channel_id: str, user_id: int) -> None: ...

    async def bucket_levels(self, keys: Sequence[str]) -> Mapping[str, tuple[float, float]]:
        """Shared leaky buckets (core/login_throttle.py): key -> (tokens, at)."""
        ...

    async def spend_bucket(self, key: str, burst: float, per_s: float, now: float) -> None: ...

    async def use_allowance(
        self, user_id: int, kind: str, now: int, window_ms: int, limit: int, cost: int = 1
    ) -> int:
        """Count ``cost`` ``kind`` actions of the user if they fit under ``limit`` with
        those counted in the last ``window_ms``: 0; else how many ms until the oldest
        counted ages out (nothing counted). A cost over the limit never fits."""
        ...

    async def ensure_dm(
        self, channel_id: str, user_a: int, user_b: int, now: int, e2e: bool = False
    ) -> bool:
        """Make the 1:1 channel if it is new (end-to-end or not, as ``e2e`` says); returns
        whether it is end-to-end (an existing channel keeps its mode)."""
        ...

    async def create_group(
        self,
        channel_id: str,
        name: str,
        owner_id: int,
        member_ids: Sequence[int],
        now: int,
        e2e: bool = False,
    ) -> Channel: ...
    async def get_channel(self, channel_id: str) -> Channel | None: ...
    async def add_member(self, channel_id: str, user_id: int, max_members: int) -> None: ...
    async def remove_member(self, channel_id: str, user_id: int) -> int | None:
        """Take the user out of the group; when that leaves members but no admin, the
        member with the lowest id becomes admin: returned (None otherwise)."""
        ...

    async def update_group(
        self, channel_id: str, *, name: str | None = None, members_can_add: bool | None = None
    ) -> None: ...
    async def set_admin(self, channel_id: str, user_id: int, admin: bool) -> None: ...
    async def set_display_name(self, user_id: int, display_name: str) -> None: ...
    async def list_channels(self, user_id: int) -> list[Channel]: ...

    async def close(self) -> None: ...


class MessageStore(Protocol):
    """Messages, inboxes, receipts, presence and search."""

    async def save_message(
        self, message: Message, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> Message:
        """Store a message once per (sender, client_msg_id); a resend returns the first.

        ``fence``, when given, is awaited before the store writes anything and may raise
        to stop the save (a chat server checking that it still serves the sender).
        An edit, delete or reaction (``message.event``) also changes the message it
        names, idempotently (core/channel_events.py)."""
        ...

    async def find_sent(self, sender_id: int, client_msg_id: str) -> Message | None: ...
    async def get_message(self, channel_id: str, message_id: int) -> Message | None:
        """One message of a channel as it is now (edited, deleted, reactions)."""
        ...

    async def count_unread(self, channel_id: str, after: int, reader_id: int, limit: int) -> int:
        """Messages after ``after`` from others than the reader that count as unread
        (no events, no tombstones), counted up to ``limit``."""
        ...

    async def history(self, channel_id: str, before: int | None, limit: int) -> list[Message]: ...
    async def latest_message_ids(self, channel_ids: Sequence[str]) -> dict[str, int]: ...
    async def search(self, channel_ids: Sequence[str], query: str, limit: int) -> list[Message]: ...

    async def append_inbox(
        self, user_id: int, messages: Sequence[Message], *, new: Container[int] = ()
    ) -> list[InboxEntry]:
        """Append to a user's inbox with the next gapless seqs; already-present ids are
        skipped. Only the owner of the user's partition calls this (single writer).
        ``new``: ids the caller knows no inbox holds yet (a store may skip looking for
        them; see :class:`tidings.chat.delivery.NewIds`)."""
        ...

    async def inbox_after(self, user_id: int, cursor: int, limit: int) -> list[InboxEntry]: ...
    async def inbox_head(self, user_id: int) -> int: ...

    async def get_watermarks(self, channel_id: str, user_id: int) -> Watermarks: ...
    async def set_watermarks(
        self, channel_id: str, user_id: int, watermarks: Watermarks
    ) -> None: ...

    async def set_presence(
        self, user_id: int, presence: PresenceStatus, partition: int = 0
    ) -> None: ...
    async def refresh_presence(self, leases: Sequence[OnlineLease]) -> None:
        """Renew "online" for users this server still serves (it lapses otherwise)."""
        ...

    async def online_in_partition(self, partition: int) -> dict[int, int | None]:
        """Users stored as online in an inbox partition, with their last_seen (a new
        owner announces those whose server died as offline)."""
        ...

    async def get_presence(self, user_ids: Sequence[int]) -> dict[int, PresenceStatus]: ...

    async def close(self) -> None: ...


class PublishedKeys(Protocol):
    """A device's published keys, as far as a send checks its envelopes against them."""

    @property
    def user_id(self) -> int: ...
    @property
    def identity_key(self) -> str: ...


class KeyLookup(Protocol):
    """The device key directory, as the message path reads it (``storage/sql/keys.py``)."""

    async def devices_with_keys(self, user_ids: Sequence[int]) -> Mapping[int, PublishedKeys]:
        """Every device of these users that has keys, by device id."""
        ...


class AttachmentMedia(Protocol):
    """The uploads a message attaches, as the message path uses them
    (``storage/sql/media.py``)."""

    async def get_many(self, media_ids: Sequence[str]) -> Mapping[str, MediaRecord]: ...
    async def reference(self, media_ids: Sequence[str], channel_id: str, now: int) -> bool:
        """Mark ready uploads as sent to ``channel_id``; False (nothing changed) when one
        of them is not ready any more."""
        ...

    async def unreference(self, media_ids: Sequence[str], channel_id: str) -> None:
        """The channel's members may no longer fetch these (their message was deleted for
        everyone)."""
        ...
