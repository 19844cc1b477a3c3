"""Sign-up, log-in, discovery, profiles and devices."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from tidings.api.deps import IdentityDep, RuntimeDep, parse_id
from tidings.api.errors import ApiError
from tidings.api.schemas import LoginBody, PushTokenBody, SignupBody, user_out
from tidings.auth import Identity
from tidings.core import errors
from tidings.core.ids import parse_decimal_id
from tidings.core.model import PresenceStatus
from tidings.runtime import Runtime, wall_ms
from tidings.storage.base import UsernameTaken

router = APIRouter(prefix="/v1")
OFFLINE = PresenceStatus("offline", None)


def chat_url(runtime: Runtime, request: Request, user_id: int) -> str:
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
    password_hash = await runtime.passwords.hash(body.password)
    try:
        user = await runtime.directory.create_user(
            runtime.ids.next_id(),
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
    throttle, now = runtime.login_throttle, time.monotonic()
    address = request.client.host if request.client is not None else "unknown"
    wait_ms = throttle.retry_after_ms(body.username, address, now)
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
        throttle.failed(body.username, address, time.monotonic())
        raise ApiError(401, errors.BAD_CREDENTIALS, "wrong username or password")
    url = chat_url(runtime, request, user.user_id)  # before a device is made: may be 503
    if body.device_id is not None:
        wanted = parse_decimal_id(body.device_id)
        device = await runtime.directory.get_device(wanted) if wanted is not None else None
        if device is None or device.user_id != user.user_id:
            raise ApiError(403, errors.FORBIDDEN, "that device is not yours")
    else:
        device = await runtime.directory.create_device(
            runtime.ids.next_id(),
            user.user_id,
            body.device_name or body.platform or "device",
            body.platform,
            wall_ms(),
        )
    token, expires_at = runtime.tokens.issue(Identity(user.user_id, device.device_id))
    return {
        "access_token": token,
        "expires_at": expires_at,
        "user_id": str(user.user_id),
        "device_id": str(device.device_id),
        "chat_url": url,
    }


@router.get("/discover")
async def discover(me: IdentityDep, runtime: RuntimeDep, request: Request) -> dict[str, Any]:
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


@router.get("/users/{user_id}")
async def get_user(user_id: str, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    user = await runtime.directory.get_user(parse_id(user_id))
    if user is None:
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {user_id}")
    presence = (await runtime.messages.get_presence([user.user_id])).get(user.user_id, OFFLINE)
    return user_out(user, presence)


@router.put("/devices/{device_id}/push", status_code=204)
async def set_push_token(
    device_id: str, body: PushTokenBody, me: IdentityDep, runtime: RuntimeDep
) -> Response:
    device = await runtime.directory.get_device(parse_id(device_id, errors.FORBIDDEN, 403))
    if device is None or device.user_id != me.user_id:
        raise ApiError(403, errors.FORBIDDEN, "not your device")
    await runtime.directory.set_push_token(device.device_id, body.provider, body.token)
    return Response(status_code=204)
