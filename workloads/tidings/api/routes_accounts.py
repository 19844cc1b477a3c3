"""Sign-up, log-in, discovery, profiles and devices."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from tidings.api.deps import IdentityDep, RuntimeDep, parse_id, spend_hourly
from tidings.api.errors import ApiError
from tidings.api.routes_keys import announce_devices_changed
from tidings.api.schemas import (
    LoginBody,
    ProfilePatchBody,
    PushTokenBody,
    SignupBody,
    device_out,
    user_out,
)
from tidings.auth import Identity
from tidings.core import errors
from tidings.core.ids import parse_decimal_id, random_user_id
from tidings.core.model import PresenceStatus
from tidings.runtime import Runtime, wall_ms
from tidings.storage.base import UsernameTaken

router = APIRouter(prefix="/v1")
OFFLINE = PresenceStatus("offline", None)


def chat_url(runtime: Runtime, request: Request, user_id: int) -> str:
    """Where the user's client is to connect for chat: the owning server, any live one, or
    this process's own WebSocket URL; 503 ``unavailable`` when no chat server runs."""
    owner = runtime.ownership.owner_url(user_id) or runtime.ownership.fallback_url()
    if owner:
        return owner
    if runtime.gateway is None:
        raise ApiError(503, errors.UNAVAILABLE, "no chat server is running")
    if runtime.settings.public_chat_url:
        return runtime.settings.public_chat_url
    scheme = "wss" if request.url.scheme == "https" else "ws"
    host = request.headers.get("host") or f"{runtime.settings.host}:{runtime.settings.port}"
    return f"{scheme}://{host}/v1/ws"


@router.post("/users", status_code=201)
async def signup(body: SignupBody, runtime: RuntimeDep) -> dict[str, Any]:
    """Create an account; 409 ``username_taken`` when the username is in use."""
    password_hash = await runtime.passwords.hash(body.password)
    try:
        user = await runtime.directory.create_user(
            random_user_id(),
            body.username,
            password_hash,
            body.display_name or body.username,
            wall_ms(),
        )
    except UsernameTaken as exc:
        raise ApiError(409, errors.USERNAME_TAKEN, f"{body.username!r} is taken") from exc
    return user_out(user)


@router.post("/sessions", status_code=201)
async def login(body: LoginBody, runtime: RuntimeDep, request: Request) -> dict[str, Any]:
    """Log in: a token for a new device, or for ``device_id`` (one of yours) whose earlier
    tokens then end.

    401 ``bad_credentials`` for a wrong username or password; 429 ``rate_limited`` after
    too many failures for the account or from the address; 409 ``too_many_devices`` at
    ``max_devices_per_user``; 403 ``forbidden`` for a device that is not yours."""
    throttle = runtime.login_throttle
    address = request.client.host if request.client is not None else "unknown"
    wait_ms = await throttle.retry_after_ms(body.username, address, time.time())
    if wait_ms > 0:
        raise ApiError(
            429,
            errors.RATE_LIMITED,
            "too many failed logins for this account or from this address; try again later",
            retry_after_ms=wait_ms,
        )
    user = await runtime.directory.get_user_by_name(body.username)
    if user is None:
        ok = await runtime.passwords.verify_unknown(body.password)  # same time as a miss
    else:
        ok = await runtime.passwords.verify(user.password_hash, body.password)
    if user is None or not ok:
        await throttle.failed(body.username, address, time.time())
        raise ApiError(401, errors.BAD_CREDENTIALS, "wrong username or password")
    url = chat_url(runtime, request, user.user_id)  # before a device is made: may be 503
    directory = runtime.directory
    if body.device_id is not None:
        wanted = parse_decimal_id(body.device_id)
        device = await directory.get_device(wanted) if wanted is not None else None
        if device is None or device.user_id != user.user_id:
            raise ApiError(403, errors.FORBIDDEN, "that device is not yours")
        # Logged in again: the device's earlier tokens (and their sockets) end now.
        version = await directory.bump_token_version(device.device_id)
        if version is None:
            raise ApiError(403, errors.FORBIDDEN, "that device is not yours")
    else:
        limit = runtime.settings.max_devices_per_user
        if len(await directory.list_devices(user.user_id)) >= limit:
            raise ApiError(
                409,
                errors.TOO_MANY_DEVICES,
                f"this account has {limit} devices; unlink one (DELETE /v1/devices/{{id}}) first",
            )
        device = await directory.create_device(
            runtime.ids.next_id(),
            user.user_id,
            body.device_name or body.platform or "device",
            body.platform,
            wall_ms(),
        )
        version = device.token_version
    identity = Identity(user.user_id, device.device_id, token_version=version)
    token, expires_at = runtime.tokens.issue(identity)
    return {
        "access_token": token,
        "expires_at": expires_at,
        "user_id": str(user.user_id),
        "device_id": str(device.device_id),
        "chat_url": url,
    }


@router.get("/discover")
async def discover(me: IdentityDep, runtime: RuntimeDep, request: Request) -> dict[str, Any]:
    """Where to connect for chat now; 503 ``unavailable`` (with ``Retry-After``) while this
    chat server is saturated."""
    gateway = runtime.gateway
    if gateway is not None and gateway.admission.saturated and not gateway.draining:
        raise ApiError(
            503,
            errors.UNAVAILABLE,
            "the chat server is saturated; come back later",
            retry_after_ms=gateway.admission.turn_away(),
        )
    return {"chat_url": chat_url(runtime, request, me.user_id)}


@router.get("/me")
async def profile(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Your account, with this session's device and all your devices."""
    user = await runtime.directory.get_user(me.user_id)
    if user is None:
        raise ApiError(401, errors.UNAUTHORIZED, "account no longer exists")
    devices = await runtime.directory.list_devices(me.user_id)
    out = user_out(user)
    out["device_id"] = str(me.device_id)
    out["devices"] = [
        {
            "device_id": str(d.device_id),
            "name": d.name,
            "platform": d.platform,
            "push": d.push_provider,
        }
        for d in devices
    ]
    return out


@router.patch("/me")
async def change_profile(
    body: ProfilePatchBody, me: IdentityDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """A new display name; others see it on their next look-up."""
    await runtime.directory.set_display_name(me.user_id, body.display_name)
    return await profile(me, runtime)


async def _unlink(runtime: Runtime, user_id: int, device_id: int) -> None:
    """Delete the device (its keys go with it); peers of an end-to-end device hear of it."""
    had_keys = await runtime.keys.has_keys(device_id)
    await runtime.directory.delete_device(device_id)
    if had_keys:
        await announce_devices_changed(runtime, user_id, device_id, "removed")


@router.delete("/sessions/current", status_code=204)
async def logout(me: IdentityDep, runtime: RuntimeDep) -> Response:
    """Log out: this device is unlinked, its tokens and keys end."""
    await _unlink(runtime, me.user_id, me.device_id)
    return Response(status_code=204)


@router.get("/devices")
async def list_devices(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Your devices; ``current`` marks the caller's."""
    devices = await runtime.directory.list_devices_now(me.user_id)
    return {"devices": [device_out(d, me.device_id) for d in devices]}


@router.delete("/devices/{device_id}", status_code=204)
async def unlink_device(device_id: str, me: IdentityDep, runtime: RuntimeDep) -> Response:
    """Unlink one of your devices (its tokens and keys end); 404 ``not_found`` if not yours."""
    wanted = parse_decimal_id(device_id)
    device = await runtime.directory.get_device(wanted) if wanted is not None else None
    if device is None or device.user_id != me.user_id:
        raise ApiError(404, errors.NOT_FOUND, "no such device of yours")
    await _unlink(runtime, me.user_id, device.device_id)
    return Response(status_code=204)


async def _spend_lookup(runtime: Runtime, me: Identity) -> None:
    """Count a look-up that could find strangers against the caller's hourly allowance."""
    per_hour = runtime.settings.user_lookups_per_hour
    await spend_hourly(runtime, me.user_id, "lookup", per_hour, "user look-ups")


@router.get("/users")
async def find_user(username: str, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Exactly one username (no prefixes, no patterns): finding people, not listing them."""
    await _spend_lookup(runtime, me)
    user = await runtime.directory.get_user_by_name(username) if len(username) <= 32 else None
    if user is None:
        raise ApiError(404, errors.UNKNOWN_USER, "no user with that username")
    return user_out(user)


@router.get("/users/{user_id}")
async def get_user(user_id: str, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Yourself or a user related to you (friends, a request either way, a shared channel,
    an invite), with their presence if you are in its audience (else null).

    404 ``unknown_user`` for anyone else, counted against your hourly look-ups."""
    wanted = parse_decimal_id(user_id)
    directory = runtime.directory
    user = await directory.get_user(wanted) if wanted is not None else None
    if user is None or not await directory.related(me.user_id, user.user_id):
        await _spend_lookup(runtime, me)  # a scan for ids finds nobody, and slowly
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {user_id}")
    out = user_out(user)
    audience = await directory.presence_audience(
        user.user_id, runtime.settings.presence_fanout_limit
    )
    if me.user_id in audience or me.user_id == user.user_id:
        presence = await runtime.messages.get_presence([user.user_id])
        out["presence"] = presence.get(user.user_id, OFFLINE).to_wire()
    else:
        out["presence"] = None  # presence is for friends and group peers
    return out


@router.put("/devices/{device_id}/push", status_code=204)
async def set_push_token(
    device_id: str, body: PushTokenBody, me: IdentityDep, runtime: RuntimeDep
) -> Response:
    """Set the push provider and token of one of your devices; 403 ``forbidden`` if not yours."""
    device = await runtime.directory.get_device(parse_id(device_id, errors.FORBIDDEN, 403))
    if device is None or device.user_id != me.user_id:
        raise ApiError(403, errors.FORBIDDEN, "not your device")
    await runtime.directory.set_push_token(device.device_id, body.provider, body.token)
    return Response(status_code=204)
