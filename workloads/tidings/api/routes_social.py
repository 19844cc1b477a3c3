"""Friends (with consent), blocks, groups and group invites."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from tidings.api.deps import IdentityDep, RuntimeDep, parse_id, spend_hourly
from tidings.api.errors import ApiError
from tidings.api.schemas import GroupBody, GroupPatchBody, group_out, invite_out, user_out
from tidings.core import errors
from tidings.core.channel_events import (
    ADMIN_ADDED,
    ADMIN_REMOVED,
    GROUP_CREATED,
    MEMBER_ADDED,
    MEMBER_JOINED,
    MEMBER_LEFT,
    MEMBER_REMOVED,
    RENAMED,
    SETTINGS_CHANGED,
    membership_event,
)
from tidings.core.channels import MAX_GROUP_MEMBERS, group_channel_id, parse_channel_id
from tidings.core.ids import parse_decimal_id
from tidings.runtime import Runtime, wall_ms
from tidings.storage.base import Channel, GroupFull, User

router = APIRouter(prefix="/v1")


async def _other_user(runtime: Runtime, me: int, user_id: str) -> User:
    other = parse_id(user_id)
    user = await runtime.directory.get_user(other) if other != me else None
    if user is None:
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {user_id}")
    return user


# --- friends -----------------------------------------------------------------------


@router.put("/friends/{user_id}", status_code=204)
async def request_friend(user_id: str, me: IdentityDep, runtime: RuntimeDep) -> Response:
    """Accept their request, or ask them. A user who blocks the caller (or whom the
    caller blocks) gets nothing, and the answer is the same."""
    friend = await _other_user(runtime, me.user_id, user_id)
    directory = runtime.directory
    incoming, _ = await directory.friend_requests(me.user_id)
    accepting = any(u.user_id == friend.user_id for u in incoming)
    if not accepting and not await directory.is_friend(me.user_id, friend.user_id):
        await spend_hourly(
            runtime,
            me.user_id,
            "friend_request",
            runtime.settings.friend_requests_per_hour,
            "friend requests",
        )
    await directory.request_friend(me.user_id, friend.user_id, wall_ms())
    return Response(status_code=204)


@router.delete("/friends/{user_id}", status_code=204)
async def remove_friend(user_id: str, me: IdentityDep, runtime: RuntimeDep) -> Response:
    """End a friendship (or cancel a request either way); nothing to do is no error."""
    friend_id = parse_decimal_id(user_id)
    if friend_id is not None:  # an id that names nobody is no friend: nothing to do
        await runtime.directory.remove_friend(me.user_id, friend_id)
    return Response(status_code=204)


@router.get("/friends")
async def list_friends(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Your friends."""
    return {"friends": [user_out(u) for u in await runtime.directory.list_friends(me.user_id)]}


@router.get("/friends/requests")
async def list_friend_requests(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Friend requests to you (``incoming``) and from you (``outgoing``)."""
    incoming, outgoing = await runtime.directory.friend_requests(me.user_id)
    return {
        "incoming": [user_out(u) for u in incoming],
        "outgoing": [user_out(u) for u in outgoing],
    }


# --- blocks ------------------------------------------------------------------------


@router.put("/blocks/{user_id}", status_code=204)
async def block(user_id: str, me: IdentityDep, runtime: RuntimeDep) -> Response:
    """Block a user: your friendship and requests between you end; 404 ``unknown_user``
    for nobody or yourself."""
    blocked = await _other_user(runtime, me.user_id, user_id)
    await runtime.directory.block(me.user_id, blocked.user_id, wall_ms())
    return Response(status_code=204)


@router.delete("/blocks/{user_id}", status_code=204)
async def unblock(user_id: str, me: IdentityDep, runtime: RuntimeDep) -> Response:
    """Unblock a user; one not blocked is no error."""
    blocked_id = parse_decimal_id(user_id)
    if blocked_id is not None:
        await runtime.directory.unblock(me.user_id, blocked_id)
    return Response(status_code=204)


@router.get("/blocks")
async def list_blocked(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The users you block."""
    return {"blocked": [user_out(u) for u in await runtime.directory.list_blocked(me.user_id)]}


# --- groups ------------------------------------------------------------------------
# Every change reaches the members as a channel event (core/channel_events.py) through
# their inboxes: gapless, on every device, in history.


async def _announce(
    runtime: Runtime, actor: int, channel_id: str, event: dict[str, Any], members: Iterable[int]
) -> None:
    """Post a membership event with the display names of the users it names (the actor
    first), as they are now: a member who leaves stays nameable in the history."""
    named = [
        actor,
        *(int(u) for u in event.get("user_ids", ())),
        *([int(event["user_id"])] if "user_id" in event else []),
    ]
    users = {u.user_id: u for u in await runtime.directory.get_users(named)}
    event["names"] = {str(uid): users[uid].display_name for uid in named if uid in users}
    await runtime.service.post_event(actor, channel_id, event, list(members))


async def _add_or_invite(runtime: Runtime, channel_id: str, adder: int, user_id: int) -> bool:
    """Add a friend of the adder at once; invite anyone else. True when added."""
    directory = runtime.directory
    if await directory.is_friend(adder, user_id):
        await directory.add_member(channel_id, user_id, MAX_GROUP_MEMBERS)
        return True
    await _spend_invites(runtime, adder, 1)
    await directory.invite(channel_id, user_id, adder, wall_ms())
    return False


async def _spend_invites(runtime: Runtime, user_id: int, count: int) -> None:
    per_hour = runtime.settings.group_invites_per_hour
    await spend_hourly(runtime, user_id, "invite", per_hour, "group invites", cost=count)


@router.post("/groups", status_code=201)
async def create_group(body: GroupBody, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Create a group: your friends among ``member_ids`` join at once, anyone else is
    invited (listed as ``invited``).

    404 ``unknown_user`` for an id that names nobody; 422 ``group_too_large`` over the
    member cap; 429 ``rate_limited`` over the hourly groups or invites."""
    named = {parse_id(m, errors.UNKNOWN_USER, 404) for m in body.member_ids} - {me.user_id}
    if len(named) + 1 > MAX_GROUP_MEMBERS:
        raise ApiError(
            422, errors.GROUP_TOO_LARGE, f"a group has at most {MAX_GROUP_MEMBERS} members"
        )
    directory = runtime.directory
    found = {u.user_id for u in await directory.get_users(named)}
    missing = sorted(named - found)
    if missing:
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {missing[0]}")
    settings = runtime.settings
    friends = [uid for uid in sorted(named) if await directory.is_friend(me.user_id, uid)]
    strangers = len(named) - len(friends)
    if strangers:
        await _spend_invites(runtime, me.user_id, strangers)
    await spend_hourly(runtime, me.user_id, "group", settings.groups_per_hour, "new groups")
    channel = await directory.create_group(
        group_channel_id(runtime.ids.next_id()),
        body.name,
        me.user_id,
        sorted({me.user_id, *friends}),
        wall_ms(),
        body.e2e,
    )
    invited = sorted(named - set(friends))
    for uid in invited:
        await directory.invite(channel.channel_id, uid, me.user_id, wall_ms())
    created = membership_event(GROUP_CREATED, name=channel.name)
    await _announce(runtime, me.user_id, channel.channel_id, created, channel.member_ids)
    if friends:
        added = membership_event(MEMBER_ADDED, user_ids=friends)
        await _announce(runtime, me.user_id, channel.channel_id, added, channel.member_ids)
    out = group_out(channel)
    out["invited"] = [str(uid) for uid in invited]
    return out


async def _group_of_member(channel_id: str, user_id: int, runtime: Runtime) -> Channel:
    parsed = parse_channel_id(channel_id)
    channel = await runtime.directory.get_channel(channel_id) if parsed else None
    if channel is None or channel.kind != "group":
        raise ApiError(404, errors.UNKNOWN_CHANNEL, f"no group {channel_id}")
    if user_id not in channel.member_ids:
        raise ApiError(403, errors.NOT_A_MEMBER, "not a member of this group")
    return channel


async def _group_of_admin(channel_id: str, user_id: int, runtime: Runtime) -> Channel:
    channel = await _group_of_member(channel_id, user_id, runtime)
    if user_id not in channel.admin_ids:
        raise ApiError(403, errors.FORBIDDEN, "only the group's admins may do this")
    return channel


@router.get("/groups/{channel_id}")
async def get_group(channel_id: str, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """A group you are a member of; 404 ``unknown_channel``, 403 ``not_a_member``."""
    return group_out(await _group_of_member(channel_id, me.user_id, runtime))


@router.patch("/groups/{channel_id}")
async def change_group(
    channel_id: str, body: GroupPatchBody, me: IdentityDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Rename, or let members who are not admins add others (or not): admins only."""
    channel = await _group_of_admin(channel_id, me.user_id, runtime)
    renamed = body.name is not None and body.name != channel.name
    switched = body.members_can_add is not None and body.members_can_add != channel.members_can_add
    await runtime.directory.update_group(
        channel_id,
        name=body.name if renamed else None,
        members_can_add=body.members_can_add if switched else None,
    )
    if renamed:
        event = membership_event(RENAMED, name=body.name)
        await _announce(runtime, me.user_id, channel_id, event, channel.member_ids)
    if switched:
        event = membership_event(SETTINGS_CHANGED, members_can_add=body.members_can_add)
        await _announce(runtime, me.user_id, channel_id, event, channel.member_ids)
    return group_out(await _group_of_member(channel_id, me.user_id, runtime))


@router.put("/groups/{channel_id}/members/{user_id}", status_code=204, response_model=None)
async def add_member(
    channel_id: str, user_id: str, me: IdentityDep, runtime: RuntimeDep
) -> Response | dict[str, Any]:
    """A friend of the caller is added (204); anyone else is invited (202). Only admins,
    unless the group lets every member add."""
    channel = await _group_of_member(channel_id, me.user_id, runtime)
    if not channel.members_can_add and me.user_id not in channel.admin_ids:
        raise ApiError(403, errors.FORBIDDEN, "only the group's admins add members here")
    new_member = parse_id(user_id)
    if await runtime.directory.get_user(new_member) is None:
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {user_id}")
    if new_member in channel.member_ids:
        return Response(status_code=204)
    if len(channel.member_ids) >= MAX_GROUP_MEMBERS:  # no room to invite into either
        raise ApiError(409, errors.GROUP_FULL, "the group has 100 members")
    try:
        added = await _add_or_invite(runtime, channel_id, me.user_id, new_member)
    except GroupFull as exc:
        raise ApiError(409, errors.GROUP_FULL, "the group has 100 members") from exc
    if added:
        event = membership_event(MEMBER_ADDED, user_ids=[new_member])
        await _announce(runtime, me.user_id, channel_id, event, [*channel.member_ids, new_member])
        return Response(status_code=204)
    return JSONResponse({"invited": True}, status_code=202)


@router.delete("/groups/{channel_id}/members/{user_id}", status_code=204)
async def remove_member(
    channel_id: str, user_id: str, me: IdentityDep, runtime: RuntimeDep
) -> Response:
    """An admin removes anyone; any member removes self (leaves). The one who goes hears
    of it too, and of nothing after."""
    channel = await _group_of_member(channel_id, me.user_id, runtime)
    target = parse_id(user_id)
    if target != me.user_id and me.user_id not in channel.admin_ids:
        raise ApiError(403, errors.FORBIDDEN, "only the group's admins remove other members")
    if target not in channel.member_ids:
        return Response(status_code=204)
    promoted = await runtime.directory.remove_member(channel_id, target)
    kind = MEMBER_LEFT if target == me.user_id else MEMBER_REMOVED
    event = membership_event(kind, user_id=target)
    await _announce(runtime, me.user_id, channel_id, event, channel.member_ids)
    if promoted is not None:
        staying = [m for m in channel.member_ids if m != target]
        event = membership_event(ADMIN_ADDED, user_id=promoted)
        await _announce(runtime, me.user_id, channel_id, event, staying)
    return Response(status_code=204)


@router.put("/groups/{channel_id}/admins/{user_id}", status_code=204)
async def make_admin(
    channel_id: str, user_id: str, me: IdentityDep, runtime: RuntimeDep
) -> Response:
    """Make a member an admin (admins only); 404 ``unknown_user`` for a non-member."""
    channel = await _group_of_admin(channel_id, me.user_id, runtime)
    target = parse_id(user_id)
    if target not in channel.member_ids:
        raise ApiError(404, errors.UNKNOWN_USER, "not a member of this group")
    if target not in channel.admin_ids:
        await runtime.directory.set_admin(channel_id, target, True)
        event = membership_event(ADMIN_ADDED, user_id=target)
        await _announce(runtime, me.user_id, channel_id, event, channel.member_ids)
    return Response(status_code=204)


@router.delete("/groups/{channel_id}/admins/{user_id}", status_code=204)
async def unmake_admin(
    channel_id: str, user_id: str, me: IdentityDep, runtime: RuntimeDep
) -> Response:
    """Make an admin a plain member (admins only); 409 ``last_admin`` for the only admin."""
    channel = await _group_of_admin(channel_id, me.user_id, runtime)
    target = parse_id(user_id)
    if target not in channel.admin_ids:
        return Response(status_code=204)
    if channel.admin_ids == [target]:
        raise ApiError(
            409, errors.LAST_ADMIN, "a group needs an admin: make someone else admin first"
        )
    await runtime.directory.set_admin(channel_id, target, False)
    event = membership_event(ADMIN_REMOVED, user_id=target)
    await _announce(runtime, me.user_id, channel_id, event, channel.member_ids)
    return Response(status_code=204)


# --- invites -----------------------------------------------------------------------


@router.get("/invites")
async def list_invites(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Your pending group invites, with who invited you."""
    invites = await runtime.directory.list_invites(me.user_id)
    inviters = {
        u.user_id: u for u in await runtime.directory.get_users(i.inviter_id for i in invites)
    }
    return {"invites": [invite_out(i, inviters.get(i.inviter_id)) for i in invites]}


@router.post("/invites/{channel_id}/accept")
async def accept_invite(channel_id: str, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Join the group you were invited to; 404 ``not_found`` with no invite, 409
    ``group_full``."""
    directory = runtime.directory
    try:
        joined = await directory.accept_invite(channel_id, me.user_id, MAX_GROUP_MEMBERS)
    except GroupFull as exc:
        raise ApiError(409, errors.GROUP_FULL, "the group has 100 members") from exc
    channel = await directory.get_channel(channel_id) if joined else None
    if channel is None:
        raise ApiError(404, errors.NOT_FOUND, "no invite to that group")
    event = membership_event(MEMBER_JOINED, user_id=me.user_id)
    await _announce(runtime, me.user_id, channel_id, event, channel.member_ids)
    return group_out(channel)


@router.delete("/invites/{channel_id}", status_code=204)
async def decline_invite(channel_id: str, me: IdentityDep, runtime: RuntimeDep) -> Response:
    """Decline a group invite; none to decline is no error."""
    await runtime.directory.decline_invite(channel_id, me.user_id)
    return Response(status_code=204)
