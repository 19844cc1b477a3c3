"""The key directory (storage/sql/keys.py), the same on SQLite (embedded) and PostgreSQL
(cluster): uploads are checked, a one-time prekey is handed out once — however many
claim at once — and a device's keys go with the device."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tidings.storage.sql.directory import SqlDirectory, make_engine
from tidings.storage.sql.directory_schema import migrate
from tidings.storage.sql.keys import (
    DeviceKeys,
    KeyDirectory,
    KeyUploadError,
    PreKey,
    signed_prekey_message,
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def curve_key() -> str:
    return b64(
        X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


@dataclass
class Stores:
    directory: SqlDirectory
    keys: KeyDirectory


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path, testenv: dict[str, str]
) -> AsyncIterator[Stores]:
    admin: AsyncEngine | None = None
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}")
    else:
        url = testenv["TIDINGS_TEST_POSTGRES_URL"]
        schema = f"k_{uuid.uuid4().hex[:12]}"
        admin = create_async_engine(url)
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine = create_async_engine(
            url, connect_args={"server_settings": {"search_path": schema}}, pool_size=20
        )
    await migrate(engine)
    directory = SqlDirectory(engine)
    await directory.create_user(1, "ann", "h", "Ann", 0)
    await directory.create_user(2, "bob", "h", "Bob", 0)
    for device_id, user_id in ((11, 1), (12, 1), (21, 2)):
        await directory.create_device(device_id, user_id, "phone", None, 0)
    yield Stores(directory, KeyDirectory(engine))
    await directory.close()
    if admin is not None:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()


def device_keys(device_id: int, user_id: int, *, identity: str | None = None) -> DeviceKeys:
    signer = Ed25519PrivateKey.generate()
    signing = b64(signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    prekey = PreKey("AAAAAAAAAAA", curve_key())
    signature = signer.sign(signed_prekey_message(device_id, prekey.key_id, prekey.public_key))
    return DeviceKeys(device_id, user_id, identity or curve_key(), signing, prekey, b64(signature))


def prekeys(n: int, start: int = 0) -> list[PreKey]:
    return [PreKey(f"k{i:05d}", curve_key()) for i in range(start, start + n)]


async def test_upload_then_claim_hands_each_device_a_bundle(stores: Stores) -> None:
    ann_phone, ann_laptop = device_keys(11, 1), device_keys(12, 1)
    first = await stores.keys.upload(ann_phone, prekeys(2), now=1)
    assert (first.first, first.identity_changed, first.one_time_prekeys) == (True, False, 2)
    await stores.keys.upload(ann_laptop, prekeys(1), now=1)
    bundles = {b.keys.device_id: b for b in await stores.keys.claim(1)}
    assert set(bundles) == {11, 12}
    assert bundles[11].keys == ann_phone
    assert bundles[11].one_time_prekey is not None
    assert await stores.keys.count(11) == 1 and await stores.keys.count(12) == 0
    # The laptop has none left: its signed prekey alone.
    (laptop,) = await stores.keys.claim(1, device_id=12)
    assert laptop.one_time_prekey is None and laptop.keys.signed_prekey == ann_laptop.signed_prekey
    assert await stores.keys.claim(2) == []  # bob has no keys yet


async def test_a_new_identity_key_is_reported_and_key_ids_are_kept(stores: Stores) -> None:
    keys = device_keys(11, 1)
    await stores.keys.upload(keys, prekeys(3), now=1)
    again = await stores.keys.upload(keys, prekeys(3), now=2)  # the same ids: kept
    assert (again.first, again.identity_changed, again.one_time_prekeys) == (False, False, 3)
    changed = await stores.keys.upload(device_keys(11, 1), prekeys(2, start=3), now=3)
    assert changed.identity_changed and changed.one_time_prekeys == 5


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ("signature", "does not verify"),
        ("identity", "identity_key must be 32 bytes"),
        ("not-base64", "identity_key is not base64"),
        ("device", "no such device"),
    ],
)
async def test_uploads_that_cannot_be_right_are_refused(
    stores: Stores, broken: str, says: str
) -> None:
    keys = device_keys(11, 1)
    if broken == "signature":  # signed for another device: not vouched for this one
        keys = DeviceKeys(
            11, 1, keys.identity_key, keys.signing_key, keys.signed_prekey,
            device_keys(12, 1).signed_prekey_signature,
        )  # fmt: skip
    elif broken == "identity":
        keys = DeviceKeys(
            11, 1, b64(b"x" * 31), keys.signing_key, keys.signed_prekey,
            keys.signed_prekey_signature,
        )  # fmt: skip
    elif broken == "not-base64":
        keys = DeviceKeys(
            11, 1, "!" * 43, keys.signing_key, keys.signed_prekey, keys.signed_prekey_signature
        )
    else:  # device 21 is bob's
        keys = device_keys(21, 1)
    with pytest.raises(KeyUploadError, match=says):
        await stores.keys.upload(keys, [], now=1)
    assert await stores.keys.claim(1) == []


async def test_no_one_time_prekey_is_handed_out_twice_under_concurrent_claims(
    stores: Stores,
) -> None:
    await stores.keys.upload(device_keys(21, 2), prekeys(40), now=1)
    claims = await asyncio.gather(*(stores.keys.claim(2) for _ in range(100)))
    handed = [b.one_time_prekey.key_id for (b,) in claims if b.one_time_prekey is not None]
    assert len(handed) == len(set(handed)), "a one-time prekey was handed out twice"
    assert len(handed) + await stores.keys.count(21) == 40
    assert await stores.keys.count(21) == 0 or len(handed) < 40


async def test_a_deleted_devices_keys_go_with_it(stores: Stores) -> None:
    await stores.keys.upload(device_keys(12, 1), prekeys(2), now=1)
    assert await stores.directory.delete_device(12)
    assert await stores.keys.claim(1) == []
    assert await stores.keys.count(12) == 0
