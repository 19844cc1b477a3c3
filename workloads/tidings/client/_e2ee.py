"""One device's end-to-end cryptography: vodozemac's Olm (pairwise) and Megolm (sender
keys for groups), its state kept in a file only the user can read.

:class:`DeviceCrypto` has no I/O but its file: it makes the body of ``PUT /v1/keys``,
opens sessions from claimed bundles (checking the signed prekey's signature), encrypts a
plaintext into one envelope per device, opens envelopes, and does the same for group
messages with a Megolm session per group (its key travels in envelopes). The protocol
and the reasons for the library are in docs/e2ee.md.

The file (JSON) holds vodozemac pickles encrypted under a random key kept in the same
file: what protects it is its mode, 0600, as for an SSH key without a passphrase.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import vodozemac

__all__ = ["DeviceCrypto", "E2eeError", "safety_number", "signed_prekey_message"]

ONE_TIME_PREKEYS = 50


class E2eeError(Exception):
    """A bundle that does not verify, an envelope that cannot be opened."""


def signed_prekey_message(device_id: str, key_id: str, public_key: str) -> bytes:
    """What the signing key signs (the server checks it: storage/sql/keys.py)."""
    return f"tidings-signed-prekey:{device_id}:{key_id}:{public_key}".encode()


def safety_number(mine: str, theirs: str) -> str:
    """A 60-digit number both sides compute alike from the two identity keys: compared
    out of band (read aloud, a QR code), it shows no one sits between them."""
    digest = hashlib.sha512("\n".join(sorted((mine, theirs))).encode()).digest()
    digits = "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 60, 5)
    )
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def _write_private(path: Path, data: str) -> None:
    """Replace the file atomically, mode 0600 from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class DeviceCrypto:
    """The keys and sessions of one device (``device_id``), in the file at ``path``."""

    def __init__(self, path: Path, device_id: str) -> None:
        self.path = path
        self.device_id = device_id
        self.sessions: dict[str, vodozemac.Session] = {}  # peer device -> Olm session
        self.peer_keys: dict[str, str] = {}  # peer device -> the identity key of its session
        self.outbound: dict[str, vodozemac.GroupSession] = {}  # channel -> ours
        self.inbound: dict[str, vodozemac.InboundGroupSession] = {}  # "channel/device"
        self.shared_with: dict[str, list[str]] = {}  # channel -> devices given our key
        self.signed_prekey: dict[str, str] | None = None  # as published
        if path.exists():
            self._load()
        else:
            self._key = secrets.token_bytes(32)
            self.account = vodozemac.Account()
            self.save()

    # --- the file --------------------------------------------------------------------

    def _load(self) -> None:
        state = json.loads(self.path.read_text())
        if state["device_id"] != self.device_id:
            raise E2eeError(f"{self.path} holds the keys of device {state['device_id']}")
        self._key = base64.b64decode(state["key"])
        self.account = vodozemac.Account.from_pickle(state["account"], self._key)
        self.sessions = {
            d: vodozemac.Session.from_pickle(p, self._key) for d, p in state["sessions"].items()
        }
        self.outbound = {
            c: vodozemac.GroupSession.from_pickle(p, self._key)
            for c, p in state["outbound"].items()
        }
        self.inbound = {
            k: vodozemac.InboundGroupSession.from_pickle(p, self._key)
            for k, p in state["inbound"].items()
        }
        self.shared_with = state.get("shared_with", {})
        self.signed_prekey = state.get("signed_prekey")
        self.peer_keys = state.get("peer_keys", {})

    def save(self) -> None:
        state = {
            "device_id": self.device_id,
            "key": base64.b64encode(self._key).decode(),
            "account": self.account.pickle(self._key),
            "sessions": {d: s.pickle(self._key) for d, s in self.sessions.items()},
            "outbound": {c: s.pickle(self._key) for c, s in self.outbound.items()},
            "inbound": {k: s.pickle(self._key) for k, s in self.inbound.items()},
            "shared_with": self.shared_with,
            "signed_prekey": self.signed_prekey,
            "peer_keys": self.peer_keys,
        }
        _write_private(self.path, json.dumps(state))

    # --- the key directory -----------------------------------------------------------

    @property
    def identity_key(self) -> str:
        return str(self.account.curve25519_key.to_base64())

    def keys_body(self, one_time: int = ONE_TIME_PREKEYS) -> dict[str, Any]:
        """``PUT /v1/keys``: identity and signing keys, the fallback key as the signed
        prekey, and ``one_time`` new one-time prekeys (marked published: upload it)."""
        if self.signed_prekey is None:
            # The fallback key (vodozemac's stubs lack it) is the signed prekey: made once,
            # kept while it is published (vodozemac lists only unpublished ones).
            account: Any = self.account
            account.generate_fallback_key()
            ((spk_id, spk),) = account.fallback_key.items()
            spk_public = spk.to_base64()
            signature = self.account.sign(
                signed_prekey_message(self.device_id, spk_id, spk_public)
            ).to_base64()
            self.signed_prekey = {
                "key_id": spk_id,
                "public_key": spk_public,
                "signature": signature,
            }
        self.account.generate_one_time_keys(one_time)
        body = {
            "identity_key": self.identity_key,
            "signing_key": self.account.ed25519_key.to_base64(),
            "signed_prekey": dict(self.signed_prekey),
            "one_time_prekeys": [
                {"key_id": k, "public_key": v.to_base64()}
                for k, v in self.account.one_time_keys.items()
            ],
        }
        self.account.mark_keys_as_published()
        self.save()
        return body

    def start_session(self, bundle: dict[str, Any]) -> None:
        """A session with the device of ``bundle`` (``GET /v1/users/{id}/keys``): its
        signed prekey must carry its signing key's signature."""
        device_id = str(bundle["device_id"])
        spk = bundle["signed_prekey"]
        signing = vodozemac.Ed25519PublicKey.from_base64(bundle["signing_key"])
        try:
            signing.verify_signature(
                signed_prekey_message(device_id, spk["key_id"], spk["public_key"]),
                vodozemac.Ed25519Signature.from_base64(spk["signature"]),
            )
        except vodozemac.SignatureException as exc:
            raise E2eeError(f"device {device_id}'s signed prekey does not verify") from exc
        one_time = bundle.get("one_time_prekey")
        prekey = one_time["public_key"] if one_time else spk["public_key"]
        self.sessions[device_id] = self.account.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_base64(bundle["identity_key"]),
            vodozemac.Curve25519PublicKey.from_base64(prekey),
        )
        self.peer_keys[device_id] = bundle["identity_key"]

    # --- pairwise envelopes ------------------------------------------------------------

    def envelope(self, device_id: str, identity_key: str, plaintext: bytes) -> dict[str, Any]:
        """One envelope for a device we have a session with."""
        kind, ciphertext = self.sessions[device_id].encrypt(plaintext).to_parts()
        return {
            "device_id": device_id,
            "key": identity_key,
            "type": kind,
            "body": base64.b64encode(ciphertext).decode(),
        }

    def open(self, sender_device: str, sender_key: str, envelope: dict[str, Any]) -> bytes:
        """The plaintext of our envelope from ``sender_device``; a pre-key envelope from a
        device we have no session with opens one (and uses up our one-time key)."""
        message = vodozemac.AnyOlmMessage.from_parts(
            envelope["type"], base64.b64decode(envelope["body"])
        )
        session = self.sessions.get(sender_device)
        if session is not None:
            try:
                plaintext: bytes = session.decrypt(message)
                return plaintext
            except vodozemac.OlmDecryptionException:
                if envelope["type"] != 0:
                    raise
        if envelope["type"] != 0:
            raise E2eeError(f"no session with device {sender_device}")
        prekey_message = message.to_pre_key()
        if prekey_message is None:
            raise E2eeError(f"device {sender_device}'s envelope is not a pre-key message")
        try:
            session, plaintext = self.account.create_inbound_session(
                vodozemac.Curve25519PublicKey.from_base64(sender_key), prekey_message
            )
        except vodozemac.SessionCreationException as exc:
            raise E2eeError(f"cannot open device {sender_device}'s envelope") from exc
        self.sessions[sender_device] = session
        self.peer_keys[sender_device] = sender_key
        return plaintext

    # --- groups: sender keys (Megolm) ------------------------------------------------

    def group_key(self, channel_id: str, *, new: bool = False) -> str:
        """Our sender key for the group (a new one after a membership change)."""
        if new or channel_id not in self.outbound:
            self.outbound[channel_id] = vodozemac.GroupSession()
            self.shared_with[channel_id] = []
        return str(self.outbound[channel_id].session_key.to_base64())

    def group_encrypt(self, channel_id: str, plaintext: bytes) -> str:
        return str(self.outbound[channel_id].encrypt(plaintext).to_base64())

    def accept_group_key(self, channel_id: str, sender_device: str, session_key: str) -> None:
        self.inbound[f"{channel_id}/{sender_device}"] = vodozemac.InboundGroupSession(
            vodozemac.SessionKey(session_key)
        )

    def group_decrypt(self, channel_id: str, sender_device: str, ciphertext: str) -> bytes:
        session = self.inbound.get(f"{channel_id}/{sender_device}")
        if session is None:
            raise E2eeError(f"no key of device {sender_device} for {channel_id}")
        try:
            decrypted = session.decrypt(vodozemac.MegolmMessage.from_base64(ciphertext))
        except vodozemac.MegolmDecryptionException as exc:
            raise E2eeError(f"cannot decrypt device {sender_device}'s message") from exc
        plaintext: bytes = decrypted.plaintext
        return plaintext
