"""End-to-end channels, the server's side (issue #17, items 2 and 4), on `tidings up` and
on the cluster: a send carries one envelope per recipient device (the sender's other
devices included); the server checks the set against the devices with keys and says
what is missing, extra or stale; each device is given only its own envelope, live, in
history and after a reconnect; plaintext and envelopes do not mix; end-to-end channels
are never searched. The envelopes here are opaque strings: the server never reads one."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from ._harness import (
    Account,
    Clients,
    WsClient,
    another_device,
    befriend,
    error_code,
    new_account,
)
from ._keys import publish_keys


class Person:
    """A user with a phone and a laptop, both with keys, both connected."""

    def __init__(self, phone: Account, laptop: Account, keys: dict[str, str]) -> None:
        self.phone, self.laptop, self.keys = phone, laptop, keys
        self.ws: dict[str, WsClient] = {}

    @property
    def user_id(self) -> str:
        return self.phone.user_id

    def devices(self) -> list[Account]:
        return [self.phone, self.laptop]


async def person(http: httpx.AsyncClient, clients: Clients, prefix: str) -> Person:
    phone = await new_account(http, prefix)
    laptop = await another_device(http, phone)
    keys = {a.device_id: await publish_keys(http, a) for a in (phone, laptop)}
    someone = Person(phone, laptop, keys)
    for device in someone.devices():
        someone.ws[device.device_id] = await clients.connect(device)
    return someone


def envelope(device_id: str, key: str, text: str) -> dict[str, Any]:
    return {"device_id": device_id, "key": key, "type": 0, "body": f"ciphertext-for-{text}"}


def envelopes_for(sender: Account, *people: Person) -> list[dict[str, Any]]:
    """One envelope per device of these people, but the sending one."""
    return [
        envelope(d.device_id, p.keys[d.device_id], d.device_id)
        for p in people
        for d in p.devices()
        if d.device_id != sender.device_id
    ]


async def send(ws: WsClient, **frame: Any) -> dict[str, Any]:
    client_msg_id = frame.pop("client_msg_id", None) or uuid.uuid4().hex
    await ws.send({"type": "send", "client_msg_id": client_msg_id, **frame})
    return await ws.recv_send_answer(client_msg_id)


async def test_a_dm_gives_each_device_its_own_envelope_after_a_mismatch_retry(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann, bob = await person(http, clients, "eann"), await person(http, clients, "ebob")
    await befriend(http, ann.phone, bob.phone)
    sender = ann.ws[ann.phone.device_id]
    full = envelopes_for(ann.phone, ann, bob)

    # Bob's laptop left out, a device that is nobody's added, Bob's phone under an old key.
    wrong = [e for e in full if e["device_id"] != bob.laptop.device_id]
    wrong.append(envelope("12345", "x" * 43, "nobody"))
    wrong = [{**e, "key": "y" * 43} if e["device_id"] == bob.phone.device_id else e for e in wrong]
    client_msg_id = uuid.uuid4().hex
    refused = await send(
        sender, client_msg_id=client_msg_id, to=bob.user_id, body="", envelopes=wrong
    )
    assert refused["type"] == "error" and refused["code"] == "devices_mismatch", refused
    assert refused["missing"] == [{"user_id": bob.user_id, "device_id": bob.laptop.device_id}]
    assert refused["extra"] == [{"device_id": "12345"}]
    assert refused["stale"] == [{"user_id": bob.user_id, "device_id": bob.phone.device_id}]

    # The retry with the same client_msg_id is the first write: acked, delivered once.
    ack = await send(sender, client_msg_id=client_msg_id, to=bob.user_id, body="", envelopes=full)
    assert ack["type"] == "ack", ack
    for p in (ann, bob):
        for device in p.devices():
            got = await p.ws[device.device_id].recv_until("msg", message_id=ack["message_id"])
            assert got["e2e"] is True and got["body"] == ""
            # The sending device's identity key, as published: opens a first envelope.
            assert got["sender_key"] == ann.keys[ann.phone.device_id]
            if device.device_id == ann.phone.device_id:
                assert got["envelope"] is None  # the sender's own device made none for itself
            else:
                assert got["envelope"] == {
                    "type": 0,
                    "body": f"ciphertext-for-{device.device_id}",
                }
    channel_id = ack["channel_id"]
    # History shows a device its own envelope only; the channel says it is end-to-end.
    history = await http.get(f"/v1/channels/{channel_id}/messages", headers=bob.laptop.auth)
    (message,) = history.json()["messages"]
    assert message["envelope"]["body"] == f"ciphertext-for-{bob.laptop.device_id}"
    assert "ciphertext-for-" + bob.phone.device_id not in history.text
    channels = (await http.get("/v1/channels", headers=bob.phone.auth)).json()["channels"]
    assert [c["e2e"] for c in channels if c["channel_id"] == channel_id] == [True]
    # A reconnect's sync gives the same view.
    late = await clients.connect(bob.laptop)
    (synced,) = [m for m in late.backlog if m["message_id"] == ack["message_id"]]
    assert synced["envelope"]["body"] == f"ciphertext-for-{bob.laptop.device_id}"

    # Plaintext does not go into an end-to-end channel, nor envelopes into a plain one.
    plain = await send(sender, to=bob.user_id, body="hello in clear")
    assert plain["type"] == "error" and plain["code"] == "e2e_required"
    carol = await new_account(http, "ecar")
    await befriend(http, ann.phone, carol)
    await send(sender, to=carol.user_id, body="a plain 1:1")
    mixed = await send(sender, to=carol.user_id, body="", envelopes=full[:1])
    assert mixed["type"] == "error" and mixed["code"] == "not_e2e"
    # Search never covers an end-to-end channel.
    found = await http.get("/v1/search", params={"q": "ciphertext"}, headers=bob.phone.auth)
    assert found.json()["messages"] == []


async def test_an_e2e_group_fans_out_one_ciphertext_and_key_envelopes(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann, bob = await person(http, clients, "gann"), await person(http, clients, "gbob")
    await befriend(http, ann.phone, bob.phone)
    made = await http.post(
        "/v1/groups",
        json={"name": "secret", "member_ids": [bob.user_id], "e2e": True},
        headers=ann.phone.auth,
    )
    assert made.status_code == 201 and made.json()["e2e"] is True, made.text
    channel_id = made.json()["channel_id"]
    sender = ann.ws[ann.phone.device_id]

    # The sender key goes to every member device once, in pairwise envelopes...
    keyed = await send(
        sender,
        channel_id=channel_id,
        body="megolm-1",
        envelopes=envelopes_for(ann.phone, ann, bob),
    )
    assert keyed["type"] == "ack", keyed
    # ...then each message is one shared ciphertext, as any group message fans out.
    shared = await send(sender, channel_id=channel_id, body="megolm-2")
    assert shared["type"] == "ack", shared
    ws = bob.ws[bob.laptop.device_id]
    first = await ws.recv_until("msg", message_id=keyed["message_id"])
    assert first["body"] == "megolm-1" and first["envelope"]["body"].endswith(bob.laptop.device_id)
    second = await ws.recv_until("msg", message_id=shared["message_id"])
    assert (second["body"], second["envelope"]) == ("megolm-2", None)
    # An empty send (no ciphertext, no envelopes) is no message.
    empty = await send(sender, channel_id=channel_id, body="")
    assert empty["type"] == "error" and empty["code"] == "e2e_required"
    refused = await http.get("/v1/search", params={"q": "megolm"}, headers=bob.phone.auth)
    assert refused.json()["messages"] == []
    assert error_code(await http.get("/v1/channels/g:1/messages", headers=bob.phone.auth))
