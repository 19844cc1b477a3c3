"""Sessions end (issue #15, item 3): logout, unlinking a device and logging a device in
again stop its earlier tokens at once, over HTTP and on open sockets (close 4001), on the
embedded server and on the cluster (where the socket is on another process than the API
call that ended it)."""

from __future__ import annotations

import asyncio
import time

import httpx

from ._harness import Clients, another_device, error_code, login, new_account

ENDED_WITHIN_S = 5.0  # a cluster's chat servers learn it from the directory's change log


async def test_logout_ends_this_device_only(http: httpx.AsyncClient, clients: Clients) -> None:
    laptop = await new_account(http, "out")
    phone = await another_device(http, laptop)
    laptop_ws = await clients.connect(laptop)
    phone_ws = await clients.connect(phone)

    response = await http.delete("/v1/sessions/current", headers=laptop.auth)
    assert response.status_code == 204, response.text

    assert await laptop_ws.wait_closed(within=ENDED_WITHIN_S) == 4001
    refused = await http.get("/v1/me", headers=laptop.auth)
    assert refused.status_code == 401
    assert error_code(refused) == "unauthorized"
    # The other device goes on: its token works and its socket carries messages.
    assert (await http.get("/v1/me", headers=phone.auth)).status_code == 200
    assert not phone_ws.closed.is_set()
    await phone_ws.heartbeat()
    listed = (await http.get("/v1/devices", headers=phone.auth)).json()["devices"]
    assert [d["device_id"] for d in listed] == [phone.device_id]
    # A hello with the ended token is refused.
    late = await clients.open(laptop.chat_url)
    await late.send({"type": "hello", "token": laptop.token, "cursor": "0"})
    assert await late.wait_closed() == 4001


async def test_unlinking_a_device_ends_its_session_everywhere(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    phone = await new_account(http, "unl")
    tablet = await another_device(http, phone)
    tablet_ws = await clients.connect(tablet)

    stranger = await new_account(http, "str")
    theirs = await http.delete(f"/v1/devices/{tablet.device_id}", headers=stranger.auth)
    assert theirs.status_code == 404
    assert error_code(theirs) == "not_found"
    assert (await http.get("/v1/me", headers=tablet.auth)).status_code == 200

    gone = await http.delete(f"/v1/devices/{tablet.device_id}", headers=phone.auth)
    assert gone.status_code == 204, gone.text
    assert await tablet_ws.wait_closed(within=ENDED_WITHIN_S) == 4001
    assert (await http.get("/v1/channels", headers=tablet.auth)).status_code == 401
    # Logging the unlinked device in again by its id is refused: it is gone.
    again = await http.post(
        "/v1/sessions",
        json={
            "username": tablet.username,
            "password": tablet.password,
            "device_id": tablet.device_id,
        },
    )
    assert again.status_code == 403


async def test_a_new_login_as_the_same_device_supersedes_its_old_token(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    first = await new_account(http, "sup")
    old_ws = await clients.connect(first)
    second = await login(http, first.username, device_id=first.device_id)
    assert second.device_id == first.device_id
    assert await old_ws.wait_closed(within=ENDED_WITHIN_S) == 4001
    assert (await http.get("/v1/me", headers=first.auth)).status_code == 401
    assert (await http.get("/v1/me", headers=second.auth)).status_code == 200
    new_ws = await clients.connect(second)
    await new_ws.heartbeat()


async def test_the_device_list_shows_platform_and_last_seen(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    web = await new_account(http, "dev")
    phone = await login(http, web.username, platform="ios", device_name="Ann's iPhone")
    before = time.time_ns() // 1_000_000
    conn = await clients.connect(phone)
    await conn.close()
    deadline = time.monotonic() + 10  # written in batches (every second in these tests)
    while True:
        devices = (await http.get("/v1/devices", headers=web.auth)).json()["devices"]
        by_id = {d["device_id"]: d for d in devices}
        seen = by_id[phone.device_id]["last_seen"]
        if seen is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert set(by_id) == {web.device_id, phone.device_id}
    assert by_id[phone.device_id]["platform"] == "ios"
    assert by_id[phone.device_id]["name"] == "Ann's iPhone"
    assert by_id[web.device_id]["current"] is True
    assert by_id[phone.device_id]["current"] is False
    assert by_id[web.device_id]["last_seen"] is None  # never connected
    assert seen is not None and before - 1000 <= seen <= time.time_ns() // 1_000_000 + 1000


async def test_a_user_has_at_most_ten_devices(http: httpx.AsyncClient) -> None:
    first = await new_account(http, "many")
    devices = [first] + [await another_device(http, first) for _ in range(9)]
    refused = await http.post(
        "/v1/sessions", json={"username": first.username, "password": first.password}
    )
    assert refused.status_code == 409
    assert error_code(refused) == "too_many_devices"
    gone = await http.delete(f"/v1/devices/{devices[-1].device_id}", headers=first.auth)
    assert gone.status_code == 204
    await another_device(http, first)  # room again
