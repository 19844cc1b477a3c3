"""Friends and groups."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from tidings.api.deps import IdentityDep, RuntimeDep, parse_id
from tidings.api.errors import ApiError
from tidings.api.schemas import GroupBody, group_out, user_out
from tidings.core import errors
from tidings.core.channels import MAX_GROUP_MEMBERS, group_channel_id, parse_channel_id
from tidings.core.ids import parse_decimal_id
from tidings.runtime import Runtime, wall_ms
from tidings.storage.base import Channel, GroupFull

router = APIRouter(prefix="/v1")


@router.put("/friends/{user_id}", status_code=204)
async def add_friend(user_id: str, me: IdentityDep, runtime: RuntimeDep) -> Response:
    friend_id = parse_id(user_id)
    if friend_id == me.user_id or await runtime.directory.get_user(friend_id) is None:
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {user_id} to befriend")
    await runtime.directory.add_friend(me.user_id, friend_id)
    return Response(status_code=204)


@router.delete("/friends/{user_id}", status_code=204)
async def remove_friend(user_id: str, me: IdentityDep, runtime: RuntimeDep) -> Response:
    friend_id = parse_decimal_id(user_id)
    if friend_id is not None:  # an id that names nobody is no friend: nothing to do
        await runtime.directory.remove_friend(me.user_id, friend_id)
    return Response(status_code=204)


@router.get("/friends")
async def list_friends(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    return {"friends": [user_out(u) for u in await runtime.directory.list_friends(me.user_id)]}


@router.post("/groups", status_code=201)
async def create_group(body: GroupBody, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    member_ids = {parse_id(m, errors.UNKNOWN_USER, 404) for m in body.member_ids} | {me.user_id}
    if len(member_ids) > MAX_GROUP_MEMBERS:
        raise ApiError(
            422, errors.GROUP_TOO_LARGE, f"a group has at most {MAX_GROUP_MEMBERS} members"
        )
    found = {u.user_id for u in await runtime.directory.get_users(member_ids)}
    missing = sorted(member_ids - found)
    if missing:
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {missing[0]}")
    channel = await runtime.directory.create_group(
        group_channel_id(runtime.ids.next_id()),
        body.name,
        me.user_id,
        sorted(member_ids),
        wall_ms(),
    )
    return group_out(channel)


async def _group_of_member(channel_id: str, user_id: int, runtime: Runtime) -> Channel:
    parsed = parse_channel_id(channel_id)
    channel = await runtime.directory.get_channel(channel_id) if parsed else None
    if channel is None or channel.kind != "group":
        raise ApiError(404, errors.UNKNOWN_CHANNEL, f"no group {channel_id}")
    if user_id not in channel.member_ids:
        raise ApiError(403, errors.NOT_A_MEMBER, "not a member of this group")
    return channel


@router.get("/groups/{channel_id}")
async def get_group(channel_id: str, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    return group_out(await _group_of_member(channel_id, me.user_id, runtime))


@router.put("/groups/{channel_id}/members/{user_id}", status_code=204)
async def add_member(
    channel_id: str, user_id: str, me: IdentityDep, runtime: RuntimeDep
) -> Response:
    await _group_of_member(channel_id, me.user_id, runtime)
    new_member = parse_id(user_id)
    if await runtime.directory.get_user(new_member) is None:
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {user_id}")
    try:
        await runtime.directory.add_member(channel_id, new_member, MAX_GROUP_MEMBERS)
    except GroupFull as exc:
        raise ApiError(409, errors.GROUP_FULL, "the group has 100 members") from exc
    return Response(status_code=204)


@router.delete("/groups/{channel_id}/members/{user_id}", status_code=204)
async def remove_member(
    channel_id: str, user_id: str, me: IdentityDep, runtime: RuntimeDep
) -> Response:
    channel = await _group_of_member(channel_id, me.user_id, runtime)
    target = parse_id(user_id)
    if target != me.user_id and channel.owner_id != me.user_id:
        raise ApiError(403, errors.FORBIDDEN, "only the owner removes other members")
    await runtime.directory.remove_member(channel_id, target)
    return Response(status_code=204)
