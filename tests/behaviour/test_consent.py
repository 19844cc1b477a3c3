"""Consent before presence, blocking, group invites and finding people (issue #15,
items 6-8): friendship is a request the other side accepts, presence and profiles go
only to people one is related to, a block stops messages, requests and invites, and no
one is put into a group without their consent."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx

from ._harness import Account, Clients, befriend, error_code, make_group, new_account, signup


async def profile(http: httpx.AsyncClient, viewer: Account, user: Account) -> httpx.Response:
    return await http.get(f"/v1/users/{user.user_id}", headers=viewer.auth)


async def requests_of(http: httpx.AsyncClient, user: Account) -> dict[str, list[str]]:
    body = (await http.get("/v1/friends/requests", headers=user.auth)).json()
    return {side: [u["user_id"] for u in body[side]] for side in ("incoming", "outgoing")}


async def test_a_friend_request_gives_nothing_until_accepted(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann, bob = await new_account(http, "ann"), await new_account(http, "bob")
    # Strangers: no profile at all, as if there were nobody.
    hidden = await profile(http, ann, bob)
    assert hidden.status_code == 404 and error_code(hidden) == "unknown_user"

    asked = await http.put(f"/v1/friends/{bob.user_id}", headers=ann.auth)
    assert asked.status_code == 204
    assert await requests_of(http, ann) == {"incoming": [], "outgoing": [bob.user_id]}
    assert await requests_of(http, bob) == {"incoming": [ann.user_id], "outgoing": []}
    assert (await http.get("/v1/friends", headers=ann.auth)).json()["friends"] == []
    # A pending request shows the profile, but no presence.
    shown = await profile(http, ann, bob)
    assert shown.status_code == 200 and shown.json()["presence"] is None
    a = await clients.connect(ann)
    await clients.connect(bob)
    await a.heartbeat()
    await asyncio.sleep(0.5)
    assert [f for f in a.pending("presence") if f["user_id"] == bob.user_id] == []

    accepted = await http.put(f"/v1/friends/{ann.user_id}", headers=bob.auth)
    assert accepted.status_code == 204
    assert await requests_of(http, bob) == {"incoming": [], "outgoing": []}
    for who, whom in ((ann, bob), (bob, ann)):
        friends = (await http.get("/v1/friends", headers=who.auth)).json()["friends"]
        assert [f["user_id"] for f in friends] == [whom.user_id]
    assert (await profile(http, ann, bob)).json()["presence"]["status"] in {"online", "offline"}


async def test_a_declined_request_is_gone(http: httpx.AsyncClient) -> None:
    ann, bob = await new_account(http, "ann"), await new_account(http, "bob")
    await http.put(f"/v1/friends/{bob.user_id}", headers=ann.auth)
    declined = await http.delete(f"/v1/friends/{ann.user_id}", headers=bob.auth)
    assert declined.status_code == 204
    assert await requests_of(http, ann) == {"incoming": [], "outgoing": []}
    assert (await profile(http, ann, bob)).status_code == 404


async def test_people_are_found_by_exact_username_only(http: httpx.AsyncClient) -> None:
    me, them = await new_account(http, "find"), await new_account(http, "findme")
    found = await http.get("/v1/users", params={"username": them.username}, headers=me.auth)
    assert found.status_code == 200
    assert found.json() == {
        "user_id": them.user_id,
        "username": them.username,
        "display_name": them.username,
    }
    for partial in (them.username[:-1], them.username[:4], "%", them.username.upper()):
        missed = await http.get("/v1/users", params={"username": partial}, headers=me.auth)
        assert missed.status_code == 404, partial
        assert error_code(missed) == "unknown_user"


async def test_look_ups_are_limited_per_user(http: httpx.AsyncClient) -> None:
    """100 an hour (user_lookups_per_hour): a scan of usernames or ids soon stops."""
    me = await new_account(http, "scan")
    answers = []
    for i in range(101):
        path = "/v1/users" if i % 2 else f"/v1/users/{4_294_967_296 + i}"
        params = {"username": f"nobody{i}"} if i % 2 else None
        answers.append(await http.get(path, params=params, headers=me.auth))
    assert [r.status_code for r in answers[:100]] == [404] * 100
    assert answers[100].status_code == 429
    assert error_code(answers[100]) == "rate_limited"
    assert int(answers[100].headers["retry-after"]) > 0


async def test_user_ids_are_not_guessable(http: httpx.AsyncClient) -> None:
    """Ids signed up one after another are far apart (random 62-bit), not the sign-up
    millisecond: scanning the neighbourhood of one finds nobody."""
    ids = sorted([int((await signup(http))["user_id"]) for _ in range(8)])
    gaps = [b - a for a, b in itertools.pairwise(ids)]
    assert min(gaps) > 1 << 32, gaps
    assert all(i >= 1 << 32 for i in ids)


async def test_a_block_stops_messages_requests_and_presence(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann, bob = await new_account(http, "ann"), await new_account(http, "bob")
    await befriend(http, ann, bob)
    a, b = await clients.connect(ann), await clients.connect(bob)
    ok = await b.send_and_ack("hi ann", to=ann)
    assert (await a.recv_until("msg", message_id=ok["message_id"]))["body"] == "hi ann"

    blocked = await http.put(f"/v1/blocks/{bob.user_id}", headers=ann.auth)
    assert blocked.status_code == 204
    listed = (await http.get("/v1/blocks", headers=ann.auth)).json()["blocked"]
    assert [u["user_id"] for u in listed] == [bob.user_id]
    # The friendship ended; bob's messages and typing are refused, nothing stored.
    assert (await http.get("/v1/friends", headers=ann.auth)).json()["friends"] == []
    sent = await b.send_msg("are you there?", to=ann)
    refused = await b.recv_send_answer(sent)
    assert refused["type"] == "error" and refused["code"] == "blocked", refused
    # Blocking works both ways: ann cannot write to bob either until she unblocks.
    sent = await a.send_msg("bye", to=bob)
    assert (await a.recv_send_answer(sent))["code"] == "blocked"
    # A friend request from bob is answered as usual but reaches nobody.
    again = await http.put(f"/v1/friends/{ann.user_id}", headers=bob.auth)
    assert again.status_code == 204
    assert await requests_of(http, ann) == {"incoming": [], "outgoing": []}
    history = await http.get(
        f"/v1/channels/{ok['channel_id']}/messages", params={"limit": 10}, headers=ann.auth
    )
    assert [m["body"] for m in history.json()["messages"]] == ["hi ann"]

    unblocked = await http.delete(f"/v1/blocks/{bob.user_id}", headers=ann.auth)
    assert unblocked.status_code == 204
    back = await b.send_and_ack("sorry", to=ann)
    assert (await a.recv_until("msg", message_id=back["message_id"]))["body"] == "sorry"


async def test_a_blocked_group_peer_sees_no_presence(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann, bob, cat = [await new_account(http, n) for n in ("ann", "bob", "cat")]
    await make_group(http, cat, [ann, bob], name="trio")
    assert (await profile(http, bob, ann)).json()["presence"] is not None  # group peers
    await http.put(f"/v1/blocks/{bob.user_id}", headers=ann.auth)
    assert (await profile(http, bob, ann)).json()["presence"] is None
    b = await clients.connect(bob)
    c = await clients.connect(cat)
    await clients.connect(ann)
    await c.recv_until("presence", user_id=ann.user_id)  # the fan-out happened
    await b.heartbeat()
    assert [f for f in b.pending("presence") if f["user_id"] == ann.user_id] == []


async def group(http: httpx.AsyncClient, owner: Account, members: list[Account]) -> dict[str, Any]:
    response = await http.post(
        "/v1/groups",
        json={"name": "club", "member_ids": [m.user_id for m in members]},
        headers=owner.auth,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_strangers_are_invited_to_groups_not_added(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, friend, stranger, shy = [
        await new_account(http, n) for n in ("own", "frd", "str", "shy")
    ]
    await befriend(http, owner, friend)
    made = await group(http, owner, [friend, stranger, shy])
    channel = made["channel_id"]
    assert sorted(made["member_ids"]) == sorted([owner.user_id, friend.user_id])
    assert sorted(made["invited"]) == sorted([stranger.user_id, shy.user_id])

    # Invitees are outside until they accept: they see the invite, not the group.
    outside = await http.get(f"/v1/groups/{channel}", headers=stranger.auth)
    assert outside.status_code == 403
    invites = (await http.get("/v1/invites", headers=stranger.auth)).json()["invites"]
    assert [(i["channel_id"], i["name"], i["inviter_id"]) for i in invites] == [
        (channel, "club", owner.user_id)
    ]
    assert invites[0]["inviter"]["username"] == owner.username
    joined = await http.post(f"/v1/invites/{channel}/accept", headers=stranger.auth)
    assert joined.status_code == 200
    assert stranger.user_id in joined.json()["member_ids"]
    s = await clients.connect(stranger)
    o = await clients.connect(owner)
    ack = await o.send_and_ack("welcome", channel_id=channel)
    assert (await s.recv_until("msg", message_id=ack["message_id"]))["body"] == "welcome"

    declined = await http.delete(f"/v1/invites/{channel}", headers=shy.auth)
    assert declined.status_code == 204
    assert (await http.get("/v1/invites", headers=shy.auth)).json()["invites"] == []
    gone = await http.post(f"/v1/invites/{channel}/accept", headers=shy.auth)
    assert gone.status_code == 404 and error_code(gone) == "not_found"

    # Adding a stranger later is an invite too (202); a friend is added at once (204).
    late = await new_account(http, "late")
    invited = await http.put(f"/v1/groups/{channel}/members/{late.user_id}", headers=owner.auth)
    assert invited.status_code == 202 and invited.json() == {"invited": True}
    view = (await http.get(f"/v1/groups/{channel}", headers=owner.auth)).json()
    assert late.user_id not in view["member_ids"]


async def test_a_user_who_blocked_the_inviter_gets_no_invite(http: httpx.AsyncClient) -> None:
    owner, target = await new_account(http, "own"), await new_account(http, "tgt")
    await http.put(f"/v1/blocks/{owner.user_id}", headers=target.auth)
    made = await group(http, owner, [target])
    assert made["invited"] == [target.user_id]  # the answer does not tell of the block
    assert (await http.get("/v1/invites", headers=target.auth)).json()["invites"] == []


async def test_groups_made_per_hour_are_limited(http: httpx.AsyncClient) -> None:
    """20 an hour (groups_per_hour), counted for the user across every API process."""
    owner = await new_account(http, "maker")
    for _ in range(20):
        assert (
            await http.post("/v1/groups", json={"name": "g"}, headers=owner.auth)
        ).status_code == 201
    refused = await http.post("/v1/groups", json={"name": "g"}, headers=owner.auth)
    assert refused.status_code == 429
    assert error_code(refused) == "rate_limited"
    assert int(refused.headers["retry-after"]) > 3000


async def test_friend_requests_per_hour_are_limited(http: httpx.AsyncClient) -> None:
    """50 an hour (friend_requests_per_hour); accepting a request is never limited."""
    me = await new_account(http, "asker")
    people = [await signup(http) for _ in range(51)]
    answers = [
        (await http.put(f"/v1/friends/{p['user_id']}", headers=me.auth)).status_code for p in people
    ]
    assert answers == [204] * 50 + [429]
    fan = await new_account(http, "fan")
    asked = await http.put(f"/v1/friends/{me.user_id}", headers=fan.auth)
    assert asked.status_code == 204
    accepted = await http.put(f"/v1/friends/{fan.user_id}", headers=me.auth)
    assert accepted.status_code == 204
    friends = (await http.get("/v1/friends", headers=me.auth)).json()["friends"]
    assert [f["user_id"] for f in friends] == [fan.user_id]


async def test_invites_of_strangers_per_hour_are_limited(http: httpx.AsyncClient) -> None:
    """200 an hour (group_invites_per_hour): a group of 99 strangers takes 99 of them."""
    owner = await new_account(http, "inviter")
    strangers = [(await signup(http))["user_id"] for _ in range(99)]
    for _ in range(2):
        made = await http.post(
            "/v1/groups", json={"name": "g", "member_ids": strangers}, headers=owner.auth
        )
        assert made.status_code == 201, made.text
        assert len(made.json()["invited"]) == 99
    refused = await http.post(
        "/v1/groups", json={"name": "g", "member_ids": strangers[:3]}, headers=owner.auth
    )
    assert refused.status_code == 429 and error_code(refused) == "rate_limited"
    assert "invites" in refused.json()["error"]["message"]


async def test_group_and_device_names_are_cleaned_like_display_names(
    http: httpx.AsyncClient,
) -> None:
    owner = await new_account(http, "names")
    for bad in ("Team\u202eevil", "a\u200bb"):
        refused = await http.post("/v1/groups", json={"name": bad}, headers=owner.auth)
        assert refused.status_code == 422, bad
        assert error_code(refused) == "invalid_request"
    made = await http.post("/v1/groups", json={"name": "  \uff21ces "}, headers=owner.auth)
    assert made.status_code == 201 and made.json()["name"] == "Aces"
    device = await http.post(
        "/v1/sessions",
        json={"username": owner.username, "password": owner.password, "device_name": "x\u202ey"},
    )
    assert device.status_code == 422
    named = await http.post(
        "/v1/sessions",
        json={"username": owner.username, "password": owner.password, "device_name": "\uff30hone"},
    )
    assert named.status_code == 201
    devices = (await http.get("/v1/devices", headers=owner.auth)).json()["devices"]
    assert "Phone" in [d["name"] for d in devices]
