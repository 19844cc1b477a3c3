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
    ) -> User:
        """Create a user; :class:`UsernameTaken` if the name is."""
        ...

    async def get_user(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        ...

    async def get_user_by_name(self, username: str) -> User | None:
        """The user with this username, or None."""
        ...

    async def get_users(self, user_ids: Iterable[int]) -> list[User]:
        """The users among these ids that exist, in no particular order."""
        ...

    async def create_device(
        self, device_id: int, user_id: int, name: str, platform: str | None, now: int
    ) -> Device:
        """Register a new device of a user."""
        ...

    async def get_device(self, device_id: int) -> Device | None:
        """The device with this id, or None."""
        ...

    async def list_devices(self, user_id: int) -> list[Device]:
        """A user's devices, by id (possibly from a cache: see :meth:`list_devices_now`)."""
        ...

    async def list_devices_now(self, user_id: int) -> list[Device]:
        """As stored now, with last_seen (no cache)."""
        ...

    async def set_push_token(self, device_id: int, provider: str, token: str) -> None:
        """Set the push provider and token a device is reached through."""
        ...

    async def clear_push_token(self, device_id: int, token: str) -> None:
        """Forget a device's push token, if it still is ``token`` (a provider said it is dead)."""
        ...

    async def bump_token_version(self, device_id: int) -> int | None:
        """Supersede the device's tokens; its new version (None: no such device)."""
        ...

    async def delete_device(self, device_id: int) -> bool:
        """Remove a device; whether it existed."""
        ...

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

    async def list_friends(self, user_id: int) -> list[User]:
        """A user's friends, by username."""
        ...

    async def friend_requests(self, user_id: int) -> tuple[list[User], list[User]]:
        """(incoming, outgoing) pending friend requests of the user."""
        ...

    async def is_friend(self, user_id: int, other_id: int) -> bool:
        """Whether the two users are friends."""
        ...

    async def related(self, user_id: int, other_id: int) -> bool:
        """Whether the user may look ``other_id`` up: friends, a request either way, a
        shared channel, or an invite between them."""
        ...

    async def presence_audience(self, user_id: int, limit: int) -> set[int]:
        """Who sees the user's presence: friends (either direction) and members of groups
        shared with the user, blocks either way left out; at most ``limit``."""
        ...

    async def block(self, user_id: int, blocked_id: int, now: int) -> None:
        """Block a user: the friendship and requests between them end, and the blocked user's
        invites to this one go."""
        ...

    async def unblock(self, user_id: int, blocked_id: int) -> None:
        """Unblock a user (no friendship comes back)."""
        ...

    async def list_blocked(self, user_id: int) -> list[User]:
        """The users this user blocks, by username."""
        ...

    async def block_set(self, user_id: int) -> frozenset[int]:
        """Everyone the user blocked or was blocked by."""
        ...

    async def invite(self, channel_id: str, user_id: int, inviter_id: int, now: int) -> None:
        """Invite a user to a group, unless either blocks the other, they are a member, or an
        invite is pending."""
        ...

    async def list_invites(self, user_id: int) -> list[Invite]:
        """A user's pending group invites, oldest first."""
        ...

    async def accept_invite(self, channel_id: str, user_id: int, max_members: int) -> bool:
        """Join the group the user was invited to; False if there is no such invite."""
        ...

    async def decline_invite(self, channel_id: str, user_id: int) -> None:
        """Drop an invite (none is fine)."""
        ...

    async def bucket_levels(self, keys: Sequence[str]) -> Mapping[str, tuple[float, float]]:
        """Shared leaky buckets (core/login_throttle.py): key -> (tokens, at)."""
        ...

    async def spend_bucket(self, key: str, burst: float, per_s: float, now: float) -> None:
        """Take a failure's token from a shared leaky bucket, refilled at ``per_s`` up to
        ``burst`` since it was last spent."""
        ...

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
    ) -> Channel:
        """Create a group of its owner (an admin) and these members."""
        ...

    async def get_channel(self, channel_id: str) -> Channel | None:
        """The channel with its members and admins, or None."""
        ...

    async def add_member(self, channel_id: str, user_id: int, max_members: int) -> None:
        """Add a member to a group (and drop their invite); :class:`GroupFull` at
        ``max_members``."""
        ...

    async def remove_member(self, channel_id: str, user_id: int) -> int | None:
        """Take the user out of the group; when that leaves members but no admin, the
        member with the lowest id becomes admin: returned (None otherwise)."""
        ...

    async def update_group(
        self, channel_id: str, *, name: str | None = None, members_can_add: bool | None = None
    ) -> None:
        """Rename a group or change whether members may add others (what is given)."""
        ...

    async def set_admin(self, channel_id: str, user_id: int, admin: bool) -> None:
        """Make a member an admin of the group, or not."""
        ...

    async def set_display_name(self, user_id: int, display_name: str) -> None:
        """Change a user's display name."""
        ...

    async def list_channels(self, user_id: int) -> list[Channel]:
        """The channels a user is a member of, with their members, by id."""
        ...

    async def close(self) -> None:
        """Release the directory's connections."""
        ...


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

    async def find_sent(self, sender_id: int, client_msg_id: str) -> Message | None:
        """The message this sender stored under ``client_msg_id``, if any."""
        ...

    async def get_message(self, channel_id: str, message_id: int) -> Message | None:
        """One message of a channel as it is now (edited, deleted, reactions)."""
        ...

    async def count_unread(self, channel_id: str, after: int, reader_id: int, limit: int) -> int:
        """Messages after ``after`` from others than the reader that count as unread
        (no events, no tombstones), counted up to ``limit``."""
        ...

    async def history(self, channel_id: str, before: int | None, limit: int) -> list[Message]:
        """A channel's messages before ``before`` (all, if None), newest first, at most
        ``limit``."""
        ...

    async def latest_message_ids(self, channel_ids: Sequence[str]) -> dict[str, int]:
        """The newest message id of each of these channels that has any."""
        ...

    async def search(self, channel_ids: Sequence[str], query: str, limit: int) -> list[Message]:
        """The newest messages (at most ``limit``) of these channels that match ``query``."""
        ...

    async def append_inbox(
        self, user_id: int, messages: Sequence[Message], *, new: Container[int] = ()
    ) -> list[InboxEntry]:
        """Append to a user's inbox with the next gapless seqs; already-present ids are
        skipped. Only the owner of the user's partition calls this (single writer).
        ``new``: ids the caller knows no inbox holds yet (a store may skip looking for
        them; see :class:`tidings.chat.delivery.NewIds`)."""
        ...

    async def inbox_after(self, user_id: int, cursor: int, limit: int) -> list[InboxEntry]:
        """A user's inbox entries with seq above ``cursor``, in order, at most ``limit``."""
        ...

    async def inbox_head(self, user_id: int) -> int:
        """The highest seq of a user's inbox (0 for an empty inbox)."""
        ...

    async def get_watermarks(self, channel_id: str, user_id: int) -> Watermarks:
        """How far this user has received and read in this channel."""
        ...

    async def set_watermarks(self, channel_id: str, user_id: int, watermarks: Watermarks) -> None:
        """Move this user's receipt watermarks in this channel (they only go forward)."""
        ...

    async def set_presence(
        self, user_id: int, presence: PresenceStatus, partition: int = 0
    ) -> None:
        """Record a user's presence (status and last_seen); ``partition`` is the user's inbox
        partition, for :meth:`online_in_partition`."""
        ...

    async def refresh_presence(self, leases: Sequence[OnlineLease]) -> None:
        """Renew "online" for users this server still serves (it lapses otherwise)."""
        ...

    async def online_in_partition(self, partition: int) -> dict[int, int | None]:
        """Users stored as online in an inbox partition, with their last_seen (a new
        owner announces those whose server died as offline)."""
        ...

    async def get_presence(self, user_ids: Sequence[int]) -> dict[int, PresenceStatus]:
        """The presence of those of these users who have any (never seen: left out)."""
        ...

    async def close(self) -> None:
        """Release the store's connections."""
        ...


class PublishedKeys(Protocol):
    """A device's published keys, as far as a send checks its envelopes against them."""

    @property
    def user_id(self) -> int:
        """Whose device it is."""
        ...

    @property
    def identity_key(self) -> str:
        """The device's published identity key."""
        ...


class KeyLookup(Protocol):
    """The device key directory, as the message path reads it (``storage/sql/keys.py``)."""

    async def devices_with_keys(self, user_ids: Sequence[int]) -> Mapping[int, PublishedKeys]:
        """Every device of these users that has keys, by device id."""
        ...


class AttachmentMedia(Protocol):
    """The uploads a message attaches, as the message path uses them
    (``storage/sql/media.py``)."""

    async def get_many(self, media_ids: Sequence[str]) -> Mapping[str, MediaRecord]:
        """The records of these uploads that exist, by id."""
        ...

    async def reference(self, media_ids: Sequence[str], channel_id: str, now: int) -> bool:
        """Mark ready uploads as sent to ``channel_id``; False (nothing changed) when one
        of them is not ready any more."""
        ...

    async def unreference(self, media_ids: Sequence[str], channel_id: str) -> None:
        """The channel's members may no longer fetch these (their message was deleted for
        everyone)."""
        ...
