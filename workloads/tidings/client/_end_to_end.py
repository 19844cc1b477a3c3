"""End-to-end messaging on top of :class:`ApiClient` and :class:`ChatConnection`:
:class:`EndToEnd` encrypts a send into envelopes (claiming keys of devices it has no
session with), answers ``devices_mismatch`` by fetching keys and sending again with the
same ``client_msg_id``, and opens what arrives. Groups use a Megolm sender key per group,
sent in envelopes to every member device when it is new to them, and replaced when a
device that had it is no longer among the members' (docs/e2ee.md).

::

    crypto = DeviceCrypto(path, api.device_id)
    e2e = EndToEnd(api, chat, crypto)
    await e2e.publish()
    await e2e.send_direct(bob_id, "hello")
    await e2e.send_file(photo_path, to=bob_id, caption="the beach")
    async for event in chat.events():
        if isinstance(event, Msg) and event.e2e:
            opened = e2e.open_message(event)
            print(opened.text)
            for file in opened.files:
                await e2e.download_file(file, downloads / (file.name or file.media_id))

Files (docs/media.md, "Who may download"): each is encrypted here with a fresh AES-256-GCM
key and uploaded as ciphertext (``e2e: true``); the key, the nonce, the plaintext's
SHA-256, real type and name travel inside the envelopes, after :data:`FILES_MARK`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._connection import ChatConnection
from ._e2ee import DeviceCrypto
from ._errors import TidingsChatError, TidingsProtocolError
from ._frames import Ack
from ._http import ApiClient
from ._local_index import Found, LocalIndex
from ._media import guess_content_type
from ._models import Attachment, Message

__all__ = ["EndToEnd", "Opened", "SecretFile"]

MISMATCH_RETRIES = 3
# A plaintext that carries files: this, then JSON {"text": ..., "files": [SecretFile]}.
# Any other plaintext is the text itself.
FILES_MARK = b"\x00files1:"
E2E_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class SecretFile:
    """A file of an end-to-end message, as its envelope tells it: where the ciphertext
    is (``media_id``), how to open it and what it is."""

    media_id: str
    key: str  # base64: the AES-256-GCM key
    nonce: str  # base64: 12 bytes
    sha256: str  # of the plaintext
    size: int  # of the plaintext
    content_type: str
    name: str | None = None


@dataclass(frozen=True)
class Opened:
    text: str
    files: tuple[SecretFile, ...] = ()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def seal(data: bytes) -> tuple[bytes, bytes, bytes]:
    """``data`` encrypted with a fresh key: (ciphertext with its tag, key, nonce)."""
    key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(12)
    return AESGCM(key).encrypt(nonce, data, None), key, nonce


def unseal(ciphertext: bytes, file: SecretFile) -> bytes:
    """The plaintext of a :class:`SecretFile`, checked (tag and SHA-256)."""
    try:
        plain = AESGCM(base64.b64decode(file.key)).decrypt(
            base64.b64decode(file.nonce), ciphertext, None
        )
    except (InvalidTag, ValueError) as exc:
        raise TidingsProtocolError(f"file {file.media_id} does not open: {exc}") from exc
    if len(plain) != file.size or hashlib.sha256(plain).hexdigest() != file.sha256:
        raise TidingsProtocolError(f"file {file.media_id} is not what its sender described")
    return plain


def _payload(text: str, files: Sequence[SecretFile]) -> bytes:
    if not files:
        return text.encode()
    packed = {"text": text, "files": [asdict(f) for f in files]}
    return FILES_MARK + json.dumps(packed, separators=(",", ":")).encode()


def _unpack(plain: bytes) -> Opened:
    if not plain.startswith(FILES_MARK):
        return Opened(plain.decode())
    packed = json.loads(plain[len(FILES_MARK) :])
    return Opened(str(packed["text"]), tuple(SecretFile(**f) for f in packed["files"]))


class EndToEnd:
    """``index``: where what this device opens is kept for :meth:`search` (the server
    cannot search end-to-end channels)."""

    def __init__(
        self,
        api: ApiClient,
        chat: ChatConnection,
        crypto: DeviceCrypto,
        index: LocalIndex | None = None,
    ) -> None:
        self.api, self.chat, self.crypto, self.index = api, chat, crypto, index

    async def publish(self, one_time: int = 50) -> int:
        """Publish this device's keys (and ``one_time`` new one-time prekeys)."""
        return await self.api.publish_keys(self.crypto.keys_body(one_time))

    async def _devices(self, user_ids: list[str], *, claim_missing: bool) -> dict[str, str]:
        """device -> identity key of these users' devices with keys (never this one);
        with ``claim_missing``, a session with each one we have none with (or whose
        identity key changed)."""
        keys: dict[str, str] = {}
        for user_id in user_ids:
            for device in await self.api.device_keys(user_id):
                keys[device["device_id"]] = device["identity_key"]
        keys.pop(self.crypto.device_id, None)
        if claim_missing:
            known = self.crypto.peer_keys
            for user_id in user_ids:
                wanted = [d for d, k in keys.items() if known.get(d) != k]
                if not wanted:
                    break
                for bundle in await self.api.device_keys(user_id, claim=True):
                    if bundle["device_id"] in wanted:
                        self.crypto.start_session(bundle)
        return keys

    async def _send(
        self,
        body: Any,
        members: list[str],
        attachments: Sequence[Attachment] | None = None,
        **target: str,
    ) -> Ack:
        """``body(keys)`` gives the shared body and the envelopes for these devices."""
        client_msg_id: str | None = None
        for attempt in range(MISMATCH_RETRIES + 1):
            keys = await self._devices(members, claim_missing=True)
            shared, envelopes = body(keys)
            try:
                ack = await self.chat.send(
                    shared,
                    to=target.get("to"),
                    channel_id=target.get("channel_id"),
                    client_msg_id=client_msg_id,
                    envelopes=envelopes,
                    attachments=attachments,
                )
            except TidingsChatError as exc:
                if exc.code != "devices_mismatch" or attempt == MISMATCH_RETRIES:
                    raise
                client_msg_id = exc.ref  # the same message, sent again
                continue
            self.crypto.save()
            return ack
        raise AssertionError("unreachable")

    async def send_direct(
        self, to: str, text: str, files: Sequence[tuple[SecretFile, Attachment]] = ()
    ) -> Ack:
        """A 1:1 message: an envelope for each of their devices and our other ones."""
        me = self.api.user_id
        if me is None:
            raise ValueError("log in first")
        plain = _payload(text, [f for f, _ in files])

        def body(keys: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
            return "", [self.crypto.envelope(d, k, plain) for d, k in keys.items()]

        return await self._send(body, [to, me], [a for _, a in files] or None, to=to)

    async def upload_file(
        self, source: str | os.PathLike[str] | bytes, *, content_type: str | None = None
    ) -> tuple[SecretFile, Attachment]:
        """Encrypt a file with a fresh key and upload the ciphertext (``e2e: true``):
        what goes inside the envelopes, and the attachment the server sees. The file is
        read whole (AES-GCM in one piece): mind the 100 MiB cap."""
        if isinstance(source, bytes):
            data, name = source, None
        else:
            path = Path(source)
            data, name = await asyncio.to_thread(path.read_bytes), path.name
        sealed, key, nonce = await asyncio.to_thread(seal, data)
        attachment = await self.api.upload(sealed, content_type=E2E_CONTENT_TYPE, e2e=True)
        secret = SecretFile(
            media_id=attachment.media_id,
            key=_b64(key),
            nonce=_b64(nonce),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            content_type=content_type or guess_content_type(data[:64], name),
            name=name,
        )
        return secret, attachment

    async def send_file(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        to: str | None = None,
        channel_id: str | None = None,
        members: list[str] | None = None,
        caption: str = "",
        content_type: str | None = None,
    ) -> Ack:
        """Encrypt, upload and send a file, to a user (``to``) or a group (``channel_id``
        and its ``members``)."""
        file = await self.upload_file(source, content_type=content_type)
        if to is not None:
            return await self.send_direct(to, caption, [file])
        if channel_id is None or members is None:
            raise ValueError("send_file needs to=, or channel_id= and members=")
        return await self.send_group(channel_id, members, caption, [file])

    async def download_file(self, file: SecretFile, dest: str | os.PathLike[str]) -> Path:
        """Fetch a file's ciphertext (checked against the upload), open it (checked
        against what the sender described) and write it to ``dest``."""
        target = Path(dest)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            sealed_path = Path(scratch) / "sealed"
            await self.api.download(file.media_id, sealed_path)
            sealed = await asyncio.to_thread(sealed_path.read_bytes)
        plain = await asyncio.to_thread(unseal, sealed, file)
        await asyncio.to_thread(target.write_bytes, plain)
        return target

    async def send_group(
        self,
        channel_id: str,
        members: list[str],
        text: str,
        files: Sequence[tuple[SecretFile, Attachment]] = (),
    ) -> Ack:
        """A group message: one Megolm ciphertext; the sender key goes in envelopes to
        every member device when one of them lacks it, and is replaced first when a
        device that had it is gone (a member left or a device was unlinked)."""

        def body(keys: dict[str, str]) -> tuple[str, list[dict[str, Any]] | None]:
            had = set(self.crypto.shared_with.get(channel_id, []))
            key = self.crypto.group_key(channel_id, new=bool(had - set(keys)))
            envelopes = None
            if set(keys) - set(self.crypto.shared_with.get(channel_id, [])):
                envelopes = [self.crypto.envelope(d, k, key.encode()) for d, k in keys.items()]
                self.crypto.shared_with[channel_id] = sorted(keys)
            return self.crypto.group_encrypt(channel_id, plain), envelopes

        plain = _payload(text, [f for f, _ in files])
        attachments = [a for _, a in files] or None
        return await self._send(body, members, attachments, channel_id=channel_id)

    def open(self, message: Message) -> str:
        """The text of an end-to-end message for this device (a group's sender key in
        our envelope is taken on the way)."""
        return self.open_message(message).text

    def open_message(self, message: Message) -> Opened:
        """The text and the files of an end-to-end message for this device (each message
        opens once: a ratchet moves on)."""
        sender = message.sender_device_id
        if message.channel_id.startswith("g:"):
            if message.envelope is not None:
                key = self.crypto.open(sender, message.sender_key or "", message.envelope)
                self.crypto.accept_group_key(message.channel_id, sender, key.decode())
            text = self.crypto.group_decrypt(message.channel_id, sender, message.body)
        else:
            if message.envelope is None:
                raise ValueError("no envelope for this device in this message")
            text = self.crypto.open(sender, message.sender_key or "", message.envelope)
        self.crypto.save()
        opened = _unpack(text)
        if self.index is not None:
            self.index.add(message.message_id, message.channel_id, message.sender_id, opened.text)
        return opened

    def search(self, words: str, limit: int = 50) -> list[Found]:
        """What this device opened with all these words, newest first."""
        return self.index.search(words, limit) if self.index is not None else []
