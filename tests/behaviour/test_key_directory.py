"""End-to-end encryption's key directory (issue #17, item 1) over HTTP and the sockets, on
`tidings up` and on the cluster: a device publishes its keys, a related user claims a
bundle per device (a one-time prekey each, never twice), a device hears when its prekeys
run low, and peers hear of a new device, an identity key change and an unlinked device."""

from __future__ import annotations

import asyncio

import httpx

from tidings.api.routes_keys import PREKEYS_LOW

from ._harness import Clients, another_device, befriend, error_code, new_account
from ._keys import b64, curve_key, keys_body, upload


async def test_a_friend_claims_a_bundle_per_device_each_prekey_once(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann = await new_account(http, "kann")
    ann_laptop = await another_device(http, ann)
    bob = await new_account(http, "kbob")
    phone_body = keys_body(ann, PREKEYS_LOW + 2)
    assert await upload(http, ann, phone_body) == PREKEYS_LOW + 2
    await upload(http, ann_laptop, keys_body(ann_laptop, 1))

    # A stranger gets nothing (as if nobody): keys are for related users only.
    stranger = await http.get(f"/v1/users/{ann.user_id}/keys", headers=bob.auth)
    assert stranger.status_code == 404 and error_code(stranger) == "unknown_user"

    await befriend(http, ann, bob)
    ann_ws = await clients.connect(ann)
    claimed = await http.get(f"/v1/users/{ann.user_id}/keys", headers=bob.auth)
    assert claimed.status_code == 200, claimed.text
    devices = {d["device_id"]: d for d in claimed.json()["devices"]}
    assert set(devices) == {ann.device_id, ann_laptop.device_id}
    phone = devices[ann.device_id]
    assert phone["identity_key"] == phone_body["identity_key"]
    assert phone["signed_prekey"] == phone_body["signed_prekey"]
    handed = {phone["one_time_prekey"]["key_id"]}

    # Claims at once never share a prekey; the phone is told when it runs low.
    more = await asyncio.gather(
        *(
            http.get(
                f"/v1/users/{ann.user_id}/keys",
                params={"device_id": ann.device_id},
                headers=bob.auth,
            )
            for _ in range(4)
        )
    )
    for response in more:
        (bundle,) = response.json()["devices"]
        handed.add(bundle["one_time_prekey"]["key_id"])
    assert len(handed) == 5
    low = await ann_ws.recv_until("prekeys_low", device_id=ann.device_id)
    assert low["one_time_prekeys"] < PREKEYS_LOW
    count = await http.get("/v1/keys/count", headers=ann.auth)
    assert count.json() == {"one_time_prekeys": PREKEYS_LOW + 2 - 5}

    # The laptop's one prekey went in the first claim: now its signed prekey alone.
    again = await http.get(
        f"/v1/users/{ann.user_id}/keys",
        params={"device_id": ann_laptop.device_id},
        headers=bob.auth,
    )
    (laptop,) = again.json()["devices"]
    assert laptop["one_time_prekey"] is None
    # Claiming one's own keys leaves out the claiming device.
    own = await http.get(f"/v1/users/{ann.user_id}/keys", headers=ann.auth)
    assert [d["device_id"] for d in own.json()["devices"]] == [ann_laptop.device_id]


async def test_peers_hear_of_a_new_device_a_new_identity_and_an_unlinked_one(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann = await new_account(http, "dann")
    bob = await new_account(http, "dbob")
    await befriend(http, ann, bob)
    bob_ws = await clients.connect(bob)
    await upload(http, ann, keys_body(ann, 3))
    added = await bob_ws.recv_until("devices_changed", device_id=ann.device_id)
    assert (added["user_id"], added["change"]) == (ann.user_id, "added")
    await upload(http, ann, keys_body(ann, 0))  # a new identity key: its safety number
    changed = await bob_ws.recv_until("devices_changed", change="identity_changed")
    assert changed["device_id"] == ann.device_id
    gone = await http.delete("/v1/sessions/current", headers=ann.auth)
    assert gone.status_code == 204
    removed = await bob_ws.recv_until("devices_changed", change="removed")
    assert removed["device_id"] == ann.device_id


async def test_a_prekey_its_signing_key_did_not_sign_is_refused(
    http: httpx.AsyncClient,
) -> None:
    ann = await new_account(http, "sann")
    body = keys_body(ann, 1)
    body["signed_prekey"]["public_key"] = curve_key()  # not the key that was signed
    refused = await http.put("/v1/keys", json=body, headers=ann.auth)
    assert refused.status_code == 400 and error_code(refused) == "invalid_request"
    assert "does not verify" in refused.json()["error"]["message"]
    short = keys_body(ann, 0)
    short["identity_key"] = b64(b"x" * 16)
    refused = await http.put("/v1/keys", json=short, headers=ann.auth)
    assert refused.status_code == 400 and "32 bytes" in refused.json()["error"]["message"]
    assert (await http.get("/v1/keys/count", headers=ann.auth)).json() == {"one_time_prekeys": 0}
