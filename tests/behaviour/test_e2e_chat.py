"""End-to-end encryption for real (issue #17): devices with vodozemac keys
(tidings.client._e2ee) talk 1:1 and in a 3-member group through `tidings up` and the
cluster. Every device decrypts every message; a device added later is found through the
mismatch answer and gets the next message; a removed member cannot open what is sent
after; and no plaintext is anywhere at rest (the SQLite files; Cassandra's tables read
through CQL, the Kafka topics' records and PostgreSQL's tables)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tidings.client._e2ee import DeviceCrypto

from ._at_rest import bytes_at_rest
from ._harness import Account, Clients, Deployment, WsClient, another_device, befriend, new_account


class Device:
    """One logged-in device with its own keys and socket."""

    def __init__(self, account: Account, crypto: DeviceCrypto, ws: WsClient) -> None:
        self.account, self.crypto, self.ws = account, crypto, ws

    @property
    def device_id(self) -> str:
        return self.account.device_id

    @property
    def user_id(self) -> str:
        return self.account.user_id


async def device(
    http: httpx.AsyncClient, clients: Clients, account: Account, keys_dir: Path
) -> Device:
    crypto = DeviceCrypto(keys_dir / f"{account.device_id}.json", account.device_id)
    response = await http.put("/v1/keys", json=crypto.keys_body(10), headers=account.auth)
    assert response.status_code == 200, response.text
    return Device(account, crypto, await clients.connect(account))


async def sessions_with(http: httpx.AsyncClient, sender: Device, user_id: str) -> None:
    """Claim bundles for the user's devices the sender has no session with."""
    response = await http.get(f"/v1/users/{user_id}/keys", headers=sender.account.auth)
    assert response.status_code == 200, response.text
    for bundle in response.json()["devices"]:
        if bundle["device_id"] not in sender.crypto.sessions:
            sender.crypto.start_session(bundle)
    sender.crypto.save()


async def identity_keys(
    http: httpx.AsyncClient, who: Device, user_ids: list[str]
) -> dict[str, str]:
    """device -> identity key of these users' devices, as the directory holds them now
    (a claim per device we lack a session with; the others from what we know)."""
    keys: dict[str, str] = {}
    for user_id in user_ids:
        response = await http.get(f"/v1/users/{user_id}/keys", headers=who.account.auth)
        for bundle in response.json()["devices"]:
            keys[bundle["device_id"]] = bundle["identity_key"]
            if bundle["device_id"] not in who.crypto.sessions:
                who.crypto.start_session(bundle)
    return keys


async def send_e2e(
    http: httpx.AsyncClient, sender: Device, members: list[str], plaintext: str, **target: str
) -> dict[str, Any]:
    """Encrypt for every member device (the sender's others too) and send; on a
    mismatch, fetch keys and send again with the same client_msg_id."""
    client_msg_id = uuid.uuid4().hex
    keys = await identity_keys(http, sender, members)
    for _ in range(3):
        envelopes = [
            sender.crypto.envelope(d, k, plaintext.encode())
            for d, k in keys.items()
            if d != sender.device_id
        ]
        await sender.ws.send(
            {
                "type": "send",
                "client_msg_id": client_msg_id,
                "body": "",
                "envelopes": envelopes,
                **target,
            }
        )
        answer = await sender.ws.recv_send_answer(client_msg_id)
        if answer["type"] == "ack":
            sender.crypto.save()
            return answer
        assert answer["code"] == "devices_mismatch", answer
        keys = await identity_keys(http, sender, members)
    raise AssertionError(f"no ack after retries: {answer}")


async def read(receiver: Device, message_id: str, channel: str | None = None) -> str:
    got = await receiver.ws.recv_until("msg", message_id=message_id)
    sender_device = got["sender_device_id"]
    if got["envelope"] is not None:
        opened = receiver.crypto.open(sender_device, got["sender_key"], got["envelope"])
        if channel is None:
            return opened.decode()
        receiver.crypto.accept_group_key(channel, sender_device, opened.decode())
    assert channel is not None and got["body"], got
    return receiver.crypto.group_decrypt(channel, sender_device, got["body"]).decode()


async def test_devices_decrypt_1to1_and_group_and_nothing_plain_is_at_rest(
    server: Deployment, http: httpx.AsyncClient, clients: Clients, tmp_path: Path
) -> None:
    secret = uuid.uuid4().hex[:12]
    said: list[str] = []

    def text(what: str) -> str:
        said.append(f"{what}-{secret}")
        return said[-1]

    ann_acct, bob_acct = await new_account(http, "xann"), await new_account(http, "xbob")
    carol_acct = await new_account(http, "xcar")
    await befriend(http, ann_acct, bob_acct)
    await befriend(http, ann_acct, carol_acct)
    await befriend(http, bob_acct, carol_acct)
    ann = await device(http, clients, ann_acct, tmp_path)
    ann2 = await device(http, clients, await another_device(http, ann_acct), tmp_path)
    bob = await device(http, clients, bob_acct, tmp_path)
    bob2 = await device(http, clients, await another_device(http, bob_acct), tmp_path)
    carol = await device(http, clients, carol_acct, tmp_path)

    # 1:1, both ways: every device of both (the sender's other one too) decrypts.
    hello = text("hello-bob")
    ack = await send_e2e(http, ann, [bob.user_id, ann.user_id], hello, to=bob.user_id)
    for receiver in (bob, bob2, ann2):
        assert await read(receiver, ack["message_id"]) == hello
    back = text("hi-ann")
    ack = await send_e2e(http, bob2, [ann.user_id, bob.user_id], back, to=ann.user_id)
    for receiver in (ann, ann2, bob):
        assert await read(receiver, ack["message_id"]) == back

    # A device added later: the next send is told it is missing, includes it, and it reads.
    bob3 = await device(http, clients, await another_device(http, bob_acct), tmp_path)
    later = text("for-the-new-tablet")
    ack = await send_e2e(http, ann, [bob.user_id, ann.user_id], later, to=bob.user_id)
    for receiver in (bob3, bob, ann2):
        assert await read(receiver, ack["message_id"]) == later

    # A group of three: the sender key goes pairwise once, then one ciphertext a message.
    made = await http.post(
        "/v1/groups",
        json={"name": "crypt", "member_ids": [bob.user_id, carol.user_id], "e2e": True},
        headers=ann.account.auth,
    )
    assert made.status_code == 201, made.text
    channel = made.json()["channel_id"]
    members = [ann.user_id, bob.user_id, carol.user_id]
    readers = [ann2, bob, bob2, bob3, carol]

    async def group_send(sender: Device, plaintext: str, *, new_key: bool = False) -> str:
        keys = await identity_keys(http, sender, members)
        key = sender.crypto.group_key(channel, new=new_key)
        envelopes = [
            sender.crypto.envelope(d, k, key.encode())
            for d, k in keys.items()
            if d != sender.device_id
        ]
        client_msg_id = uuid.uuid4().hex
        await sender.ws.send(
            {
                "type": "send",
                "client_msg_id": client_msg_id,
                "channel_id": channel,
                "body": sender.crypto.group_encrypt(channel, plaintext.encode()),
                "envelopes": envelopes,
            }
        )
        answer = await sender.ws.recv_send_answer(client_msg_id)
        assert answer["type"] == "ack", answer
        return str(answer["message_id"])

    team = text("to-the-team")
    message_id = await group_send(ann, team)
    for receiver in readers:
        assert await read(receiver, message_id, channel) == team

    # Carol leaves; the next message goes under a new sender key she never gets.
    removed = await http.delete(
        f"/v1/groups/{channel}/members/{carol.user_id}", headers=ann.account.auth
    )
    assert removed.status_code == 204, removed.text
    members.remove(carol.user_id)
    after = text("after-carol-left")
    message_id = await group_send(ann, after, new_key=True)
    got = await bob.ws.recv_until("msg", message_id=message_id)
    bob.crypto.accept_group_key(
        channel,
        ann.device_id,
        bob.crypto.open(ann.device_id, got["sender_key"], got["envelope"]).decode(),
    )
    assert bob.crypto.group_decrypt(channel, ann.device_id, got["body"]).decode() == after
    try:
        carol.crypto.group_decrypt(channel, ann.device_id, got["body"])
    except Exception:
        pass  # what a removed member holds opens nothing sent after
    else:
        raise AssertionError("a removed member decrypted a message sent after removal")

    # A control: a plaintext channel's message is found by the same scan.
    control = f"control-{secret}"
    await ann.ws.send_and_ack(control, to=carol.account)

    # Nothing said end to end is anywhere at rest, in any form the server keeps.
    at_rest = await bytes_at_rest(server)
    assert control.encode() in at_rest, "the scan does not see what the server stores"
    leaked = [s for s in said if s.encode() in at_rest]
    assert not leaked, f"plaintext at rest: {leaked}"
