"""Device keys for tests of end-to-end channels: real Curve25519 and Ed25519 keys and a
signed prekey the server accepts (the server checks the signature), without a ratchet:
the server never reads a ciphertext, so tests of its side send opaque strings."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tidings.storage.sql.keys import signed_prekey_message

from ._harness import Account


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def curve_key() -> str:
    return b64(
        X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def keys_body(account: Account, prekeys: int, *, start: int = 0) -> dict[str, Any]:
    """A ``PUT /v1/keys`` body for the account's device, with a valid signed prekey."""
    signer = Ed25519PrivateKey.generate()
    spk = {"key_id": "spk1", "public_key": curve_key()}
    message = signed_prekey_message(int(account.device_id), spk["key_id"], spk["public_key"])
    return {
        "identity_key": curve_key(),
        "signing_key": b64(signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
        "signed_prekey": {**spk, "signature": b64(signer.sign(message))},
        "one_time_prekeys": [
            {"key_id": f"k{i}", "public_key": curve_key()} for i in range(start, start + prekeys)
        ],
    }


async def upload(http: httpx.AsyncClient, account: Account, body: dict[str, Any]) -> int:
    response = await http.put("/v1/keys", json=body, headers=account.auth)
    assert response.status_code == 200, response.text
    count: int = response.json()["one_time_prekeys"]
    return count


async def publish_keys(http: httpx.AsyncClient, account: Account) -> str:
    """Publish keys for the account's device; returns its identity key."""
    body = keys_body(account, 5)
    await upload(http, account, body)
    identity: str = body["identity_key"]
    return identity
