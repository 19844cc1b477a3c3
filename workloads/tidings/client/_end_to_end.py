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
    async for event in chat.events():
        if isinstance(event, Msg) and event.e2e:
            print(e2e.open(event))
"""

from __future__ import annotations

from typing import Any

from ._connection import ChatConnection
from ._e2ee import DeviceCrypto
from ._errors import TidingsChatError
from ._frames import Ack
from ._http import ApiClient
from ._local_index import Found, LocalIndex
from ._models import Message

__all__ = ["EndToEnd"]

MISMATCH_RETRIES = 3


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

    async def _send(self, body: Any, members: list[str], **target: str) -> Ack:
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
                )
            except TidingsChatError as exc:
                if exc.code != "devices_mismatch" or attempt == MISMATCH_RETRIES:
                    raise
                client_msg_id = exc.ref  # the same message, sent again
                continue
            self.crypto.save()
            return ack
        raise AssertionError("unreachable")

    async def send_direct(self, to: str, text: str) -> Ack:
        """A 1:1 message: an envelope for each of their devices and our other ones."""
        me = self.api.user_id
        if me is None:
            raise ValueError("log in first")

        def body(keys: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
            return "", [self.crypto.envelope(d, k, text.encode()) for d, k in keys.items()]

        return await self._send(body, [to, me], to=to)

    async def send_group(self, channel_id: str, members: list[str], text: str) -> Ack:
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
            return self.crypto.group_encrypt(channel_id, text.encode()), envelopes

        return await self._send(body, members, channel_id=channel_id)

    def open(self, message: Message) -> str:
        """The text of an end-to-end message for this device (a group's sender key in
        our envelope is taken on the way)."""
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
        plain = text.decode()
        if self.index is not None:
            self.index.add(message.message_id, message.channel_id, message.sender_id, plain)
        return plain

    def search(self, words: str, limit: int = 50) -> list[Found]:
        """What this device opened with all these words, newest first."""
        return self.index.search(words, limit) if self.index is not None else []
