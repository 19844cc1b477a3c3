"""Channels, history and search."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tidings.api.deps import IdentityDep, RuntimeDep
from tidings.api.errors import ApiError
from tidings.api.schemas import channel_out, messages_out
from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.core.ids import MAX_ID
from tidings.runtime import Runtime
from tidings.storage.base import Channel

router = APIRouter(prefix="/v1")


# Unread counts stop here: a client shows "999+" or the like beyond.
UNREAD_COUNT_LIMIT = 1000


@router.get("/channels")
async def list_channels(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The caller's channels with their read marks: the caller's own, an unread count,
    and every other member's receipt watermarks (the ticks after a reload)."""
    channels = await runtime.directory.list_channels(me.user_id)
    latest = await runtime.messages.latest_message_ids([c.channel_id for c in channels])
    entries = await asyncio.gather(
        *(_with_read_marks(runtime, me.user_id, c, latest.get(c.channel_id)) for c in channels)
    )
    return {"channels": list(entries)}


async def _with_read_marks(
    runtime: Runtime, user_id: int, channel: Channel, last_message_id: int | None
) -> dict[str, Any]:
    messages = runtime.messages
    out = channel_out(channel, last_message_id)
    others = [m for m in channel.member_ids if m != user_id]
    mine, *theirs = await asyncio.gather(
        *(messages.get_watermarks(channel.channel_id, m) for m in (user_id, *others))
    )
    unread = 0
    if last_message_id is not None and last_message_id > mine.read_upto:
        unread = await messages.count_unread(
            channel.channel_id, mine.read_upto, user_id, UNREAD_COUNT_LIMIT
        )
    out["read_upto"] = str(mine.read_upto)
    out["unread"] = unread
    out["receipts"] = [
        {
            "user_id": str(member),
            "delivered_upto": str(marks.delivered_upto),
            "read_upto": str(marks.read_upto),
        }
        for member, marks in zip(others, theirs, strict=True)
    ]
    return out


@router.get("/channels/{channel_id}/messages")
async def history(
    channel_id: str,
    me: IdentityDep,
    runtime: RuntimeDep,
    before: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """A channel's messages, newest first: up to ``limit`` before the message id ``before``
    (or the newest); 403 ``not_a_member``, 404 for a channel that does not exist."""
    try:
        await runtime.service.channel_members(me.user_id, channel_id, None)
    except ProtocolError as exc:
        status = 403 if exc.code == errors.NOT_A_MEMBER else 404
        raise ApiError(status, exc.code, exc.message) from exc
    before_id = min(int(before), MAX_ID) if before is not None else None
    found = await runtime.messages.history(channel_id, before_id, limit)
    return messages_out(found, me.device_id)


@router.get("/search")
async def search(
    me: IdentityDep,
    runtime: RuntimeDep,
    q: Annotated[str, Query(min_length=1, max_length=256)],
    channel_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The newest ``limit`` messages with every word of ``q`` in your channels (or only
    ``channel_id``); end-to-end channels are left out: the server cannot read them."""
    # End-to-end channels are never searched: the server has nothing it could search
    # (docs/e2ee.md); the client keeps its own index of what it decrypted.
    channels = await runtime.directory.list_channels(me.user_id)
    mine = [c.channel_id for c in channels if not c.e2e]
    if channel_id is not None:
        mine = [c for c in mine if c == channel_id]  # not the caller's: no results
    return messages_out(await runtime.messages.search(mine, q, limit), me.device_id)
