"""The Python client does end-to-end messaging by itself (tidings.client.EndToEnd), on
`tidings up` and the cluster: keys published, sessions opened from claimed keys, a
mismatch answered by fetching keys and sending again, 1:1 and group messages opened by
every device."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tidings.client import ApiClient, ChatConnection, DeviceCrypto, EndToEnd, LocalIndex, Msg

from ._harness import PASSWORD, Deployment, unique_name


async def next_msg(chat: ChatConnection, message_id: str) -> Msg:
    async with asyncio.timeout(15):
        async for event in chat.events():
            if isinstance(event, Msg) and event.message_id == message_id:
                return event
    raise AssertionError(f"no msg {message_id}")


class Phone:
    def __init__(self, api: ApiClient, chat: ChatConnection, e2e: EndToEnd) -> None:
        self.api, self.chat, self.e2e = api, chat, e2e

    @property
    def user_id(self) -> str:
        assert self.api.user_id is not None
        return self.api.user_id


async def phone(server: Deployment, tmp: Path, username: str, *, new: bool) -> Phone:
    api = ApiClient(server.api_urls[0])
    if new:
        await api.signup(username, PASSWORD)
    await api.login(username, PASSWORD)
    chat = api.chat()
    await chat.start()
    assert api.device_id is not None
    crypto = DeviceCrypto(tmp / f"{api.device_id}.json", api.device_id)
    e2e = EndToEnd(api, chat, crypto, LocalIndex(tmp / f"{api.device_id}.index.db"))
    await e2e.publish(5)
    return Phone(api, chat, e2e)


async def test_the_client_sends_and_opens_end_to_end_by_itself(
    server: Deployment, tmp_path: Path
) -> None:
    ann_name, bob_name = unique_name("lan"), unique_name("lbo")
    ann = await phone(server, tmp_path, ann_name, new=True)
    bob = await phone(server, tmp_path, bob_name, new=True)
    phones = [ann, bob]
    try:
        await ann.api.friend_request(bob.user_id)
        await bob.api.accept_friend(ann.user_id)
        ann_laptop = await phone(server, tmp_path, ann_name, new=False)
        phones.append(ann_laptop)

        ack_dm = ack = await ann.e2e.send_direct(bob.user_id, "hello, privately")
        for receiver in (bob, ann_laptop):
            got = await next_msg(receiver.chat, ack.message_id)
            assert got.e2e and receiver.e2e.open(got) == "hello, privately"

        # Bob links a tablet: Ann's next send meets the mismatch, fetches, sends again.
        bob_tablet = await phone(server, tmp_path, bob_name, new=False)
        phones.append(bob_tablet)
        ack = await ann.e2e.send_direct(bob.user_id, "the tablet reads this")
        got = await next_msg(bob_tablet.chat, ack.message_id)
        assert bob_tablet.e2e.open(got) == "the tablet reads this"

        group = await ann.api.create_group("pair", [bob.user_id], e2e=True)
        members = [ann.user_id, bob.user_id]
        first = await ann.e2e.send_group(group.channel_id, members, "to us both")
        second = await ann.e2e.send_group(group.channel_id, members, "and again")
        for receiver in (bob, bob_tablet, ann_laptop):
            for ack, text in ((first, "to us both"), (second, "and again")):
                got = await next_msg(receiver.chat, ack.message_id)
                assert receiver.e2e.open(got) == text
        # The server finds nothing in end-to-end channels; the device's own index does.
        assert (await bob.api.search("privately")) == []
        (found,) = bob.e2e.search("privately")
        assert (found.channel_id, found.sender_id, found.text) == (
            ack_dm.channel_id,
            ann.user_id,
            "hello, privately",
        )
        assert [f.text for f in bob.e2e.search("again")] == ["and again"]
    finally:
        for p in phones:
            await p.chat.aclose()
            await p.api.aclose()


async def test_files_go_end_to_end_as_ciphertext_with_the_key_in_the_envelopes(
    server: Deployment, tmp_path: Path
) -> None:
    ann = await phone(server, tmp_path, unique_name("fan"), new=True)
    bob = await phone(server, tmp_path, unique_name("fbo"), new=True)
    phones = [ann, bob]
    try:
        await ann.api.friend_request(bob.user_id)
        await bob.api.accept_friend(ann.user_id)
        secret = b"%PDF-1.7 the contract, signed " + os.urandom(300_000)
        source = tmp_path / "contract.pdf"
        source.write_bytes(secret)
        ack = await ann.e2e.send_file(source, to=bob.user_id, caption="sign here")

        got = await next_msg(bob.chat, ack.message_id)
        # The server saw ciphertext only: no type, no name, no preview.
        (seen,) = got.attachments
        assert seen.content_type == "application/octet-stream" and seen.name is None
        assert not seen.thumbnail and seen.size > len(secret)
        opened = bob.e2e.open_message(got)
        assert opened.text == "sign here"
        (file,) = opened.files
        assert (file.name, file.content_type, file.size) == (
            "contract.pdf",
            "application/pdf",
            len(secret),
        )
        dest = await bob.e2e.download_file(file, tmp_path / "received.pdf")
        assert dest.read_bytes() == secret
        # What the store holds is not the file.
        raw = tmp_path / "raw"
        await bob.api.download(file.media_id, raw)
        assert b"the contract" not in raw.read_bytes()
    finally:
        for p in phones:
            await p.chat.aclose()
            await p.api.aclose()
