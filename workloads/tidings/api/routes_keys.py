"""The key directory of end-to-end encryption: a device publishes its public keys, a
peer claims a bundle per device to start a session (docs/e2ee.md, docs/protocol.md).

Events, on the sockets (frames of their own, never stored):

- ``devices_changed`` to the user's peers and own devices when a device publishes keys
  for the first time (``added``) or a different identity key (``identity_changed``: its
  safety number changed), and when a device is unlinked (``removed``, routes_accounts);
- ``prekeys_low`` to the device's user when a claim leaves it fewer than
  ``PREKEYS_LOW`` one-time prekeys: the device uploads more.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import IdentityDep, RuntimeDep, parse_id, spend_hourly
from tidings.api.errors import ApiError
from tidings.bus.base import InboxEvent
from tidings.core import errors
from tidings.runtime import Runtime, wall_ms
from tidings.storage.sql.keys import (
    MAX_ONE_TIME_PREKEYS,
    Bundle,
    DeviceKeys,
    KeyUploadError,
    PreKey,
)

router = APIRouter(prefix="/v1")

# Fewer one-time prekeys than this after a claim: the device is told to upload more.
PREKEYS_LOW = 20


class PreKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_id: str = Field(min_length=1, max_length=32)
    public_key: str = Field(min_length=1, max_length=64)


class SignedPreKeyBody(PreKeyBody):
    signature: str = Field(min_length=1, max_length=128)


class KeysBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity_key: str = Field(min_length=1, max_length=64)
    signing_key: str = Field(min_length=1, max_length=64)
    signed_prekey: SignedPreKeyBody
    one_time_prekeys: list[PreKeyBody] = Field(
        default_factory=list, max_length=MAX_ONE_TIME_PREKEYS
    )


def _prekey(prekey: PreKey) -> dict[str, str]:
    return {"key_id": prekey.key_id, "public_key": prekey.public_key}


def bundle_out(bundle: Bundle) -> dict[str, Any]:
    """A device's key bundle as the API shows it (``one_time_prekey`` null when none was left)."""
    keys = bundle.keys
    return {
        "device_id": str(keys.device_id),
        "identity_key": keys.identity_key,
        "signing_key": keys.signing_key,
        "signed_prekey": {
            **_prekey(keys.signed_prekey),
            "signature": keys.signed_prekey_signature,
        },
        "one_time_prekey": _prekey(bundle.one_time_prekey) if bundle.one_time_prekey else None,
    }


async def announce_devices_changed(
    runtime: Runtime, user_id: int, device_id: int, change: str
) -> None:
    """Tell the user's peers (friends, group peers) and the user's own devices."""
    audience = await runtime.directory.presence_audience(
        user_id, runtime.settings.presence_fanout_limit
    )
    frame = {
        "type": "devices_changed",
        "user_id": str(user_id),
        "device_id": str(device_id),
        "change": change,
    }
    await runtime.bus.publish_ephemeral(
        [InboxEvent(uid, "keys", frame) for uid in sorted({user_id, *audience})]
    )


@router.put("/keys")
async def upload_keys(body: KeysBody, me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Publish this device's keys (replacing its identity and signed prekey) and add
    one-time prekeys."""
    await spend_hourly(
        runtime, me.user_id, "key_upload", runtime.settings.key_uploads_per_hour, "key uploads"
    )
    keys = DeviceKeys(
        device_id=me.device_id,
        user_id=me.user_id,
        identity_key=body.identity_key,
        signing_key=body.signing_key,
        signed_prekey=PreKey(body.signed_prekey.key_id, body.signed_prekey.public_key),
        signed_prekey_signature=body.signed_prekey.signature,
    )
    one_time = [PreKey(p.key_id, p.public_key) for p in body.one_time_prekeys]
    try:
        upload = await runtime.keys.upload(keys, one_time, wall_ms())
    except KeyUploadError as exc:
        raise ApiError(400, errors.INVALID_REQUEST, str(exc)) from exc
    if upload.first or upload.identity_changed:
        change = "added" if upload.first else "identity_changed"
        await announce_devices_changed(runtime, me.user_id, me.device_id, change)
    return {"one_time_prekeys": upload.one_time_prekeys}


@router.get("/keys/count")
async def count_keys(me: IdentityDep, runtime: RuntimeDep) -> dict[str, Any]:
    """How many one-time prekeys this device has left on the server."""
    return {"one_time_prekeys": await runtime.keys.count(me.device_id)}


@router.get("/users/{user_id}/keys")
async def claim_keys(
    user_id: str,
    me: IdentityDep,
    runtime: RuntimeDep,
    device_id: str | None = None,
    claim: bool = True,
) -> dict[str, Any]:
    """A bundle per device of the user that has keys (or of the one device named), each
    taking one of its one-time prekeys. Only of oneself or a related user (a friend, a
    group peer), as profiles; claims are counted per hour (each one uses up a prekey).
    ``claim=false``: the devices' keys without a one-time prekey (safety numbers, the
    device list), which takes nothing."""
    target = parse_id(user_id)
    if target != me.user_id and not await runtime.directory.related(me.user_id, target):
        raise ApiError(404, errors.UNKNOWN_USER, f"no user {user_id}")
    if not claim:
        found = await runtime.keys.devices_with_keys([target])
        listed = [Bundle(k, None) for d, k in sorted(found.items()) if d != me.device_id]
        return {"user_id": str(target), "devices": [bundle_out(b) for b in listed]}
    await spend_hourly(
        runtime, me.user_id, "key_claim", runtime.settings.key_claims_per_hour, "key claims"
    )
    only = parse_id(device_id, errors.NOT_FOUND) if device_id is not None else None
    bundles = await runtime.keys.claim(target, only, but=me.device_id)
    for bundle in bundles:
        left = bundle.one_time_left
        if left is not None and left < PREKEYS_LOW:
            frame = {
                "type": "prekeys_low",
                "device_id": str(bundle.keys.device_id),
                "one_time_prekeys": left,
            }
            await runtime.bus.publish_ephemeral([InboxEvent(target, "keys", frame)])
    return {"user_id": str(target), "devices": [bundle_out(b) for b in bundles]}
