"""The message path: validate, dedupe, store, publish, ack; receipts, typing, sync."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tidings.bus.base import InboxBus, InboxEvent
from tidings.chat.message_log import BusMessageLog
from tidings.chat.ports import MessageLog
from tidings.core import errors
from tidings.core.channel_events import (
    DELETE,
    EVENT_CLIENT_MSG_ID,
    action_target,
    check_action,
    check_reply,
    stored_action,
)
from tidings.core.channels import dm_channel_id, parse_channel_id
from tidings.core.e2ee import check_devices, encode_body
from tidings.core.errors import ProtocolError
from tidings.core.frames import Receipt, Send, presence_frame, receipt_frame, typing_frame
from tidings.core.ids import SnowflakeGenerator
from tidings.core.media import check_attachments
from tidings.core.model import (
    Attachments,
    InboxEntry,
    Message,
    OnlineLease,
    PresenceStatus,
    advance_watermarks,
)
from tidings.core.presence import PresenceChange
from tidings.storage.base import (
    AttachmentMedia,
    ClientMsgIdReused,
    Directory,
    KeyLookup,
    MessageStore,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncPage:
    entries: list[InboxEntry]
    cursor: int
    more: bool


def _refuse_reuse(
    answer: asyncio.Future[Message], client_msg_id: str, stored: asyncio.Future[Message]
) -> None:
    if answer.done():
        return
    exc = stored.exception()
    if isinstance(exc, ClientMsgIdReused):
        answer.set_exception(
            ProtocolError(
                errors.DUPLICATE_CLIENT_MSG_ID,
                "this client_msg_id was already used for another message; use a new one",
                ref=client_msg_id,
            )
        )
    elif exc is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(stored.result())


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a deleted message's media stayed shared", exc_info=task.exception())


class ChatService:
    def __init__(
        self,
        directory: Directory,
        messages: MessageStore,
        bus: InboxBus,
        ids: SnowflakeGenerator,
        clock_ms: Callable[[], int],
        *,
        presence_fanout_limit: int = 1000,
        partition_of: Callable[[int], int] = lambda _: 0,
        log: MessageLog | None = None,
        keys: KeyLookup | None = None,
        media: AttachmentMedia | None = None,
        edit_window_ms: int = 900_000,
        delete_window_ms: int = 172_800_000,
    ) -> None:
        self.edit_window_ms = edit_window_ms
        self.delete_window_ms = delete_window_ms
        self.keys = keys
        self.media = media
        self.partition_of = partition_of
        self.directory = directory
        self.messages = messages
        self.bus = bus
        self.ids = ids
        self.clock_ms = clock_ms
        self.presence_fanout_limit = presence_fanout_limit
        self.log: MessageLog = log if log is not None else BusMessageLog(messages, bus)

    async def channel_members(self, user_id: int, channel_id: str, ref: str | None) -> list[int]:
        """The members of a channel the user belongs to, or the contract's error."""
        members, _ = await self._members_and_mode(user_id, channel_id, ref)
        return members

    async def _members_and_mode(
        self, user_id: int, channel_id: str, ref: str | None
    ) -> tuple[list[int], bool]:
        """The members, and whether the channel is end-to-end (a DM's mode is learnt when
        a send makes or finds it: False here)."""
        parsed = parse_channel_id(channel_id)
        if parsed is None:
            raise ProtocolError(errors.UNKNOWN_CHANNEL, f"no channel {channel_id!r}", ref=ref)
        if parsed.kind == "dm":
            if user_id not in parsed.dm_users:
                raise ProtocolError(errors.NOT_A_MEMBER, "not a member of this channel", ref=ref)
            peer = parsed.dm_users[0] if parsed.dm_users[1] == user_id else parsed.dm_users[1]
            if await self.directory.get_user(peer) is None:
                raise ProtocolError(errors.UNKNOWN_CHANNEL, f"no channel {channel_id!r}", ref=ref)
            return [user_id, peer], False
        channel = await self.directory.get_channel(channel_id)
        if channel is None:
            raise ProtocolError(errors.UNKNOWN_CHANNEL, f"no channel {channel_id!r}", ref=ref)
        if user_id not in channel.member_ids:
            raise ProtocolError(errors.NOT_A_MEMBER, "not a member of this channel", ref=ref)
        return channel.member_ids, channel.e2e

    async def _resolve_send_target(self, user_id: int, frame: Send) -> tuple[str, list[int], bool]:
        """The channel, its members and whether it is end-to-end. A 1:1 channel is made
        by its first send: end-to-end if that send carries envelopes."""
        ref = frame.client_msg_id
        e2e = False
        if frame.to is not None:
            if frame.to == user_id:
                raise ProtocolError(
                    errors.INVALID_FRAME, "cannot send a 1:1 message to yourself", ref=ref
                )
            if await self.directory.get_user(frame.to) is None:
                raise ProtocolError(errors.UNKNOWN_USER, f"no user {frame.to}", ref=ref)
            channel_id = dm_channel_id(user_id, frame.to)
            members = [user_id, frame.to]
        else:
            assert frame.channel_id is not None
            channel_id = frame.channel_id
            members, e2e = await self._members_and_mode(user_id, channel_id, ref)
        if channel_id.startswith("dm:"):
            await self._refuse_if_blocked(user_id, members, ref)
            low, high = sorted(members)
            e2e = await self.directory.ensure_dm(
                channel_id, low, high, self.clock_ms(), frame.envelopes is not None
            )
        return channel_id, members, e2e

    async def _stored_body(
        self, device_id: int, frame: Send, channel_id: str, members: list[int], e2e: bool
    ) -> str:
        """The body to store: the frame's, or in an end-to-end channel its envelopes,
        once they address exactly the members' devices with keys (the sending one
        aside): else ``devices_mismatch`` and nothing is stored (core/e2ee.py)."""
        ref = frame.client_msg_id
        if not e2e:
            if frame.envelopes is not None:
                raise ProtocolError(
                    errors.NOT_E2E,
                    "this channel is not end-to-end: send a plain body, no envelopes",
                    ref=ref,
                )
            return frame.body
        if frame.envelopes is None:
            if channel_id.startswith("dm:") or not frame.body:
                raise ProtocolError(
                    errors.E2E_REQUIRED,
                    "this channel is end-to-end: send envelopes (docs/e2ee.md)",
                    ref=ref,
                )
            # A group's sender-key ciphertext alone (its key came in an envelope before).
            return encode_body(frame.body, ())
        if self.keys is None:
            raise ProtocolError(errors.E2E_REQUIRED, "no key directory here", ref=ref)
        with_keys = await self.keys.devices_with_keys(members)
        own = with_keys.get(device_id)
        if own is None:
            raise ProtocolError(
                errors.E2E_REQUIRED,
                "publish this device's keys first (PUT /v1/keys): its peers need them",
                ref=ref,
            )
        wanted = {d: (k.user_id, k.identity_key) for d, k in with_keys.items() if d != device_id}
        mismatch = check_devices(frame.envelopes, wanted)
        if mismatch is not None:
            raise mismatch.error(ref)
        return encode_body(frame.body, frame.envelopes, own.identity_key)

    async def _attach(self, user_id: int, frame: Send, channel_id: str, e2e: bool) -> Attachments:
        """The attachments to store, once each names a ready upload of the sender's that it
        describes truly; the uploads are then readable to the channel's members and kept
        (nothing is stored and no upload changes otherwise)."""
        ref = frame.client_msg_id
        if self.media is None:
            raise ProtocolError(errors.UNKNOWN_MEDIA, "media is off here", ref=ref)
        ids = [a.media_id for a in frame.attachments]
        records = await self.media.get_many(ids)
        stored = check_attachments(frame.attachments, records, user_id, e2e, ref)
        if not await self.media.reference(ids, channel_id, self.clock_ms()):
            raise ProtocolError(
                errors.MEDIA_NOT_READY, "an upload was deleted meanwhile: upload it again", ref=ref
            )
        return stored

    async def _refuse_if_blocked(self, user_id: int, members: list[int], ref: str | None) -> None:
        """1:1 only: nothing passes between two users when either blocked the other."""
        peer = members[1] if members[0] == user_id else members[0]
        if user_id in await self.directory.block_set(peer):
            raise ProtocolError(
                errors.BLOCKED, "messages between you and this user are blocked", ref=ref
            )

    async def recipients(self, user_id: int, frame: Send) -> int:
        """How many inboxes a send reaches (the sender's own included): 2 for a 1:1, the
        member count for a group (from the cache; an unknown channel counts 1, and the
        send itself then says what is wrong)."""
        if frame.channel_id is None or not frame.channel_id.startswith("g:"):
            return 2
        channel = await self.directory.get_channel(frame.channel_id)
        return len(channel.member_ids) if channel is not None else 1

    async def send(self, user_id: int, device_id: int, frame: Send) -> Message:
        """Store and publish a message; returns it once durable (the caller acks)."""
        return await (await self.begin_send(user_id, device_id, frame))

    async def begin_send(
        self, user_id: int, device_id: int, frame: Send
    ) -> asyncio.Future[Message]:
        """Check and start storing a message; the future is done once it is durable.

        Call it for one connection's sends one after another (that fixes their order)
        and wait for the futures side by side (they share group commits). A resend of
        the same client_msg_id to the same target gives the first message and delivers
        nothing twice; a reuse for another channel or body fails with
        ``duplicate_client_msg_id`` and delivers nothing.
        """
        channel_id, members, e2e = await self._resolve_send_target(user_id, frame)
        event, target = None, None
        if frame.action is not None:  # an edit, delete or reaction: no new text to wrap
            event, target = await self._checked_action(user_id, frame, channel_id, e2e)
            body = frame.body
        else:
            if frame.reply_to is not None:
                target = await self.messages.get_message(channel_id, frame.reply_to)
                check_reply(target, frame.client_msg_id)
            body = await self._stored_body(device_id, frame, channel_id, members, e2e)
        attachments: Attachments = ()
        if frame.attachments:
            attachments = await self._attach(user_id, frame, channel_id, e2e)
        # No await between taking the id and queueing the write: writes queue in id order.
        candidate = Message(
            message_id=self.ids.next_id(),
            channel_id=channel_id,
            sender_id=user_id,
            sender_device_id=device_id,
            client_msg_id=frame.client_msg_id,
            body=body,
            ts=self.clock_ms(),
            attachments=attachments,
            reply_to=frame.reply_to,
            event=event,
        )
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.log.append(candidate, members).add_done_callback(
            functools.partial(_refuse_reuse, answer, frame.client_msg_id)
        )
        if event is not None and event["type"] == DELETE and target and target.attachments:
            answer.add_done_callback(functools.partial(self._unshare_media, target))
        return answer

    def _unshare_media(self, target: Message, deleted: asyncio.Future[Message]) -> None:
        """Once a message is deleted for everyone, its media are no longer the channel's."""
        if deleted.cancelled() or deleted.exception() is not None or self.media is None:
            return
        ids = [str(a["media_id"]) for a in target.attachments]
        task = asyncio.ensure_future(self.media.unreference(ids, target.channel_id))
        task.add_done_callback(_log_failure)

    async def _checked_action(
        self, user_id: int, frame: Send, channel_id: str, e2e: bool
    ) -> tuple[dict[str, Any], Message]:
        """The event to store for an edit, delete or reaction the sender may make, and
        the message it names; or the contract's error (core/channel_events.py)."""
        assert frame.action is not None
        target = await self.messages.get_message(channel_id, action_target(frame.action))
        check_action(
            frame.action,
            target,
            user_id,
            self.clock_ms(),
            e2e=e2e,
            edit_window_ms=self.edit_window_ms,
            delete_window_ms=self.delete_window_ms,
            ref=frame.client_msg_id,
        )
        assert target is not None
        return stored_action(frame.action, target), target

    async def post_event(
        self, actor_id: int, channel_id: str, event: dict[str, Any], members: Sequence[int]
    ) -> Message:
        """Store a server-made channel event (a membership change) from ``actor_id`` and
        put it in ``members``' inboxes; returns it once durable."""
        message_id = self.ids.next_id()
        message = Message(
            message_id=message_id,
            channel_id=channel_id,
            sender_id=actor_id,
            sender_device_id=0,
            client_msg_id=f"{EVENT_CLIENT_MSG_ID}{message_id}",
            body="",
            ts=self.clock_ms(),
            event=event,
        )
        return await self.log.append(message, sorted(set(members)))

    async def receipt(self, user_id: int, frame: Receipt) -> None:
        """Move the user's receipt watermark in the channel and, if it moved, send the
        ``receipt`` frame to every member (the user's own other devices too).

        Raises the contract's error when the user is not a member of the channel."""
        members = await self.channel_members(user_id, frame.channel_id, None)
        current = await self.messages.get_watermarks(frame.channel_id, user_id)
        moved = advance_watermarks(current, frame.message_id, frame.status)
        if moved is None:
            return
        await self.messages.set_watermarks(frame.channel_id, user_id, moved)
        out = receipt_frame(frame.channel_id, user_id, frame.message_id, frame.status)
        await self.bus.publish_ephemeral([InboxEvent(m, "receipt", out) for m in members])

    async def typing(self, user_id: int, channel_id: str) -> None:
        """Send a ``typing`` frame to the channel's other members.

        Raises the contract's error when the user is not a member, or ``blocked`` in a 1:1."""
        members = await self.channel_members(user_id, channel_id, None)
        if channel_id.startswith("dm:"):
            await self._refuse_if_blocked(user_id, members, None)
        out = typing_frame(channel_id, user_id)
        await self.bus.publish_ephemeral(
            [InboxEvent(m, "typing", out) for m in members if m != user_id]
        )

    async def device_session(self, device_id: int) -> tuple[int, int] | None:
        """The session a device's tokens must carry to be good: (its user, its token
        version), or None when the device is gone (logged out or unlinked)."""
        device = await self.directory.get_device(device_id)
        return None if device is None else (device.user_id, device.token_version)

    async def authenticate(self, user_id: int, device_id: int, token_version: int) -> None:
        """Check that a token's session is still on (its signature was checked already):
        the device exists, is the user's and was not logged in again since. Else
        :class:`ProtocolError` ``unauthorized``, closing the socket (4001)."""
        if await self.device_session(device_id) != (user_id, token_version):
            raise ProtocolError(
                errors.UNAUTHORIZED,
                "this session has ended (logged out, device unlinked or logged in again)",
                close_code=errors.CLOSE_UNAUTHORIZED,
            )

    async def open_inbox(self, user_id: int) -> int:
        """A device of ``user_id`` comes online: the head of the user's inbox (the seq
        its sync runs up to)."""
        return await self.messages.inbox_head(user_id)

    async def inbox_head(self, user_id: int) -> int:
        """The head of the user's inbox: its last written seq (0 when empty)."""
        return await self.messages.inbox_head(user_id)

    async def devices_seen(self, seen: Mapping[int, int]) -> None:
        """Record when devices were last seen (device id → ms), in one batch."""
        await self.directory.touch_devices(seen)

    async def refresh_presence(self, leases: Sequence[OnlineLease]) -> None:
        """Renew the stored online leases of the users connected to this server."""
        await self.messages.refresh_presence(leases)

    async def online_in_partition(self, partition: int) -> dict[int, int | None]:
        """The users stored online in an inbox partition, with when they were last seen."""
        return await self.messages.online_in_partition(partition)

    async def sync(self, user_id: int, cursor: int, limit: int) -> SyncPage:
        """The entries after ``cursor``; a cursor beyond the head is taken as the head."""
        cursor = min(cursor, await self.messages.inbox_head(user_id))
        entries = await self.messages.inbox_after(user_id, cursor, limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        return SyncPage(entries, entries[-1].seq if entries else cursor, more)

    async def presence_changed(self, changes: Sequence[PresenceChange]) -> None:
        """Store each change and fan it out to the user's friends and group peers."""
        events: list[InboxEvent] = []
        for change in changes:
            await self.messages.set_presence(
                change.user_id,
                PresenceStatus(change.status, change.last_seen),
                self.partition_of(change.user_id),
            )
            audience = await self.directory.presence_audience(
                change.user_id, self.presence_fanout_limit
            )
            out = presence_frame(change.user_id, change.status, change.last_seen)
            events.extend(InboxEvent(peer, "presence", out) for peer in audience)
        if events:
            await self.bus.publish_ephemeral(events)
