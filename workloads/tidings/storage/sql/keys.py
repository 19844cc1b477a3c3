"""The key directory of end-to-end encryption (SQLite and PostgreSQL, the directory's
database): each device's public keys, and its one-time prekeys, each handed out once.

The server only stores and hands out public keys; it never sees a private key or a
plaintext (docs/e2ee.md). What it checks:

- keys are 32 bytes (Curve25519 and Ed25519 public keys), signatures 64, in base64;
- the signed prekey's signature, by the device's Ed25519 signing key, over
  :func:`signed_prekey_message` (bound to the device, so it cannot be replayed for
  another): a client cannot publish a prekey its own signing key did not vouch for;
- a claim takes one one-time prekey per device in one statement (``DELETE ...
  RETURNING`` of one row; PostgreSQL skips rows another claim holds): no prekey is ever
  handed out twice, however many claim at once. A device with none left is handed its
  signed prekey alone, as Signal does.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.storage.sql.tables import device_keys, devices, one_time_prekeys

__all__ = [
    "MAX_ONE_TIME_PREKEYS",
    "Bundle",
    "DeviceKeys",
    "KeyDirectory",
    "KeyUploadError",
    "PreKey",
    "signed_prekey_message",
]

# At most this many unclaimed one-time prekeys per device (an upload beyond is refused).
MAX_ONE_TIME_PREKEYS = 200
_KEY_ID = re.compile(r"^[A-Za-z0-9+/=_-]{1,32}$")


class KeyUploadError(ValueError):
    """A key upload that cannot be accepted; the message says why."""


def signed_prekey_message(device_id: int, key_id: str, public_key: str) -> bytes:
    """What a device's signing key signs to vouch for its signed prekey."""
    return f"tidings-signed-prekey:{device_id}:{key_id}:{public_key}".encode()


def _decode(value: str, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * size:
        raise KeyUploadError(f"{what} must be base64 of {size} bytes")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyUploadError(f"{what} is not base64") from None
    if len(raw) != size:
        raise KeyUploadError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def _key_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _KEY_ID.match(value):
        raise KeyUploadError(f"{what} must be 1-32 characters of base64 or [-_]")
    return value


@dataclass(frozen=True, slots=True)
class PreKey:
    """A prekey: its id (chosen by the device) and its Curve25519 public key, base64."""

    key_id: str
    public_key: str


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A device's published keys: identity (Curve25519) and signing (Ed25519) keys and the signed
    prekey with its signature, base64."""

    device_id: int
    user_id: int
    identity_key: str
    signing_key: str
    signed_prekey: PreKey
    signed_prekey_signature: str


@dataclass(frozen=True, slots=True)
class Bundle:
    """What a peer needs to start a session with one device."""

    keys: DeviceKeys
    one_time_prekey: PreKey | None  # None: none left; the signed prekey alone
    one_time_left: int | None = None  # after a claim: the device's prekeys still unclaimed


@dataclass(frozen=True, slots=True)
class Upload:
    """What an upload changed, for the events it causes."""

    first: bool  # the device had no keys before: a new device for its peers
    identity_changed: bool  # a different identity key: its safety number changed
    one_time_prekeys: int  # how many it has now


def check_keys(keys: DeviceKeys) -> None:
    """Sizes, encodings and the signed prekey's signature; raises :class:`KeyUploadError`."""
    _decode(keys.identity_key, 32, "identity_key")
    signing = _decode(keys.signing_key, 32, "signing_key")
    _key_id(keys.signed_prekey.key_id, "signed_prekey.key_id")
    _decode(keys.signed_prekey.public_key, 32, "signed_prekey.public_key")
    signature = _decode(keys.signed_prekey_signature, 64, "signed_prekey.signature")
    message = signed_prekey_message(
        keys.device_id, keys.signed_prekey.key_id, keys.signed_prekey.public_key
    )
    try:
        Ed25519PublicKey.from_public_bytes(signing).verify(signature, message)
    except InvalidSignature:
        raise KeyUploadError(
            "signed_prekey.signature does not verify with signing_key over "
            "'tidings-signed-prekey:<device_id>:<key_id>:<public_key>'"
        ) from None


def check_prekeys(prekeys: Sequence[PreKey]) -> None:
    """Refuse one-time prekeys with a bad id or key, or an id given twice
    (:class:`KeyUploadError`)."""
    seen = set()
    for prekey in prekeys:
        _key_id(prekey.key_id, "one_time_prekeys[].key_id")
        _decode(prekey.public_key, 32, "one_time_prekeys[].public_key")
        if prekey.key_id in seen:
            raise KeyUploadError(f"one_time_prekeys has key_id {prekey.key_id!r} twice")
        seen.add(prekey.key_id)


def _keys(row: Any) -> DeviceKeys:
    """A row of device_keys."""
    return DeviceKeys(
        device_id=row.device_id,
        user_id=row.user_id,
        identity_key=row.identity_key,
        signing_key=row.signing_key,
        signed_prekey=PreKey(row.signed_prekey_id, row.signed_prekey),
        signed_prekey_signature=row.signed_prekey_signature,
    )


class KeyDirectory:
    """Device keys on the directory's engine (its schema version 6)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def upload(self, keys: DeviceKeys, one_time: Sequence[PreKey], now: int) -> Upload:
        """Store a device's keys (replacing what it had) and add one-time prekeys (a
        key id it already has keeps its first key). Checked first: :class:`KeyUploadError`."""
        check_keys(keys)
        check_prekeys(one_time)
        values = {
            "user_id": keys.user_id,
            "identity_key": keys.identity_key,
            "signing_key": keys.signing_key,
            "signed_prekey_id": keys.signed_prekey.key_id,
            "signed_prekey": keys.signed_prekey.public_key,
            "signed_prekey_signature": keys.signed_prekey_signature,
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            owner = (
                await conn.execute(
                    select(devices.c.user_id).where(devices.c.device_id == keys.device_id)
                )
            ).scalar_one_or_none()
            if owner != keys.user_id:
                raise KeyUploadError("no such device of this user")
            before = (
                await conn.execute(
                    select(device_keys.c.identity_key).where(
                        device_keys.c.device_id == keys.device_id
                    )
                )
            ).scalar_one_or_none()
            if before is None:
                await conn.execute(insert(device_keys).values(device_id=keys.device_id, **values))
            else:
                await conn.execute(
                    update(device_keys)
                    .where(device_keys.c.device_id == keys.device_id)
                    .values(**values)
                )
            have = set(
                (
                    await conn.execute(
                        select(one_time_prekeys.c.key_id).where(
                            one_time_prekeys.c.device_id == keys.device_id
                        )
                    )
                ).scalars()
            )
            new = [p for p in one_time if p.key_id not in have]
            if len(have) + len(new) > MAX_ONE_TIME_PREKEYS:
                raise KeyUploadError(
                    f"at most {MAX_ONE_TIME_PREKEYS} one-time prekeys per device; it has "
                    f"{len(have)}, the upload adds {len(new)}"
                )
            if new:
                await conn.execute(
                    insert(one_time_prekeys),
                    [
                        {
                            "device_id": keys.device_id,
                            "key_id": p.key_id,
                            "public_key": p.public_key,
                        }
                        for p in new
                    ],
                )
        return Upload(
            first=before is None,
            identity_changed=before is not None and before != keys.identity_key,
            one_time_prekeys=len(have) + len(new),
        )

    async def has_keys(self, device_id: int) -> bool:
        """Whether this device has published its keys."""
        async with self.engine.connect() as conn:
            found = await conn.execute(
                select(device_keys.c.device_id).where(device_keys.c.device_id == device_id)
            )
            return found.first() is not None

    async def count(self, device_id: int) -> int:
        """The device's one-time prekeys not handed out yet."""
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(one_time_prekeys)
                        .where(one_time_prekeys.c.device_id == device_id)
                    )
                ).scalar_one()
            )

    async def devices_with_keys(self, user_ids: Sequence[int]) -> dict[int, DeviceKeys]:
        """Every device of these users that has keys, by device id."""
        if not user_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(device_keys).where(device_keys.c.user_id.in_(list(user_ids)))
            )
            return {row.device_id: _keys(row) for row in rows}

    async def claim(
        self, user_id: int, device_id: int | None = None, *, but: int | None = None
    ) -> list[Bundle]:
        """A bundle for each of the user's devices with keys (or the one named; never
        device ``but``, the claimer's own), each taking one one-time prekey for good."""
        async with self.engine.connect() as conn:
            query = select(device_keys).where(device_keys.c.user_id == user_id)
            if device_id is not None:
                query = query.where(device_keys.c.device_id == device_id)
            if but is not None:
                query = query.where(device_keys.c.device_id != but)
            found = [_keys(row) for row in await conn.execute(query)]
        return [Bundle(keys, *await self._take_one(keys.device_id)) for keys in found]

    async def _take_one(self, device_id: int) -> tuple[PreKey | None, int]:
        """One one-time prekey of the device (None when it has none left), and how many
        it has left after it."""
        one = (
            select(one_time_prekeys.c.key_id)
            .where(one_time_prekeys.c.device_id == device_id)
            .order_by(one_time_prekeys.c.key_id)
            .limit(1)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serializes writes
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    delete(one_time_prekeys)
                    .where(
                        one_time_prekeys.c.device_id == device_id,
                        one_time_prekeys.c.key_id == one,
                    )
                    .returning(one_time_prekeys.c.key_id, one_time_prekeys.c.public_key)
                )
            ).first()
            left = (
                await conn.execute(
                    select(func.count())
                    .select_from(one_time_prekeys)
                    .where(one_time_prekeys.c.device_id == device_id)
                )
            ).scalar_one()
        return (PreKey(row.key_id, row.public_key) if row is not None else None), int(left)
