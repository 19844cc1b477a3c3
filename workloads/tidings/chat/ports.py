"""What the chat logic needs from its adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from tidings.core.model import InboxEntry, Message


class Delivery(Protocol):
    """The devices connected to this server (the gateway's connection registry)."""

    def deliver_entries(self, user_id: int, entries: Sequence[InboxEntry]) -> None:
        """Live inbox entries for ``user_id``: to each of its sockets here."""
        ...

    def deliver_frame(self, user_id: int, frame: dict[str, Any]) -> None:
        """An ephemeral frame (typing, receipt, presence) to ``user_id``'s live sockets here."""
        ...

    def connected_devices(self, user_id: int) -> set[int]:
        """The devices of ``user_id`` with a socket here."""
        ...


class MessageLog(Protocol):
    """Where a sent message becomes durable on its way to the members' inboxes."""

    def append(self, message: Message, members: Sequence[int]) -> asyncio.Future[Message]:
        """Start storing ``message`` for ``members`` now (writes start in call order);
        the future is done when it is durable (the caller acks then).

        A resend of (sender, client_msg_id) gives the message stored first and delivers
        nothing twice; it raises :class:`~tidings.storage.base.ClientMsgIdReused` when
        that client_msg_id was used for another channel or body.
        """
        ...


class PushSink(Protocol):
    """Asks for a push to devices that are not connected."""

    async def request(self, user_id: int, device_ids: Sequence[int], message: Message) -> None:
        """Ask for a push of ``message`` to these devices of ``user_id``."""
        ...


class Ownership(Protocol):
    """Which users this server serves (embedded: everyone)."""

    def partition_of(self, user_id: int) -> int:
        """The inbox partition of ``user_id``."""
        ...

    def owns(self, user_id: int) -> bool:
        """Whether this server owns ``user_id``'s inbox partition now."""
        ...

    def owner_url(self, user_id: int) -> str | None:
        """The URL of the server owning ``user_id``'s partition, or None if none is known."""
        ...

    def fallback_url(self) -> str | None:
        """Where to send a client whose owner is not known right now (None: nowhere)."""
        ...
