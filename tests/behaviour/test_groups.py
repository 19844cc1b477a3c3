"""Groups: creation, fan-out to members, membership rules and the 100-member limit."""

from __future__ import annotations

import asyncio

import httpx

from ._harness import Account, Clients, befriend, error_code, make_group, new_account

create_group = make_group


async def test_create_group_returns_it_with_the_caller_as_owner(http: httpx.AsyncClient) -> None:
    owner, a, b = [await new_account(http, "g") for _ in range(3)]
    group = await create_group(http, owner, [a, b], name="Weekend plans")
    assert group["channel_id"].startswith("g:")
    assert group["name"] == "Weekend plans"
    assert group["owner_id"] == owner.user_id
    assert sorted(group["member_ids"]) == sorted([owner.user_id, a.user_id, b.user_id])
    for member in (owner, a, b):
        got = await http.get(f"/v1/groups/{group['channel_id']}", headers=member.auth)
        assert got.status_code == 200
        assert got.json()["channel_id"] == group["channel_id"]
        assert sorted(got.json()["member_ids"]) == sorted(group["member_ids"])


async def test_group_message_reaches_every_member(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, a, b = [await new_account(http, "g") for _ in range(3)]
    group = await create_group(http, owner, [a, b])
    channel = group["channel_id"]
    conns = [await clients.connect(acct) for acct in (owner, a, b)]

    ack = await conns[1].send_and_ack("hi all", channel_id=channel)
    assert ack["channel_id"] == channel
    for conn in conns:
        got = await conn.recv_until("msg", message_id=ack["message_id"])
        assert got["channel_id"] == channel
        assert got["sender_id"] == a.user_id
        assert got["body"] == "hi all"
        # Next in each inbox after what the member held at hello (the group's events).
        assert int(got["seq"]) == int(conn.welcome["cursor"]) + 1


async def test_non_member_cannot_send_and_stays_connected(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, a = await new_account(http, "g"), await new_account(http, "g")
    outsider = await new_account(http, "out")
    group = await create_group(http, owner, [a])
    owner_conn = await clients.connect(owner)
    conn = await clients.connect(outsider, keepalive=False)

    client_msg_id = await conn.send_msg("let me in", channel_id=group["channel_id"])
    error = await conn.recv_until("error")
    assert error["code"] == "not_a_member"
    assert error["ref"] == client_msg_id
    assert conn.pending("ack") == []
    await conn.heartbeat()  # the connection still serves
    # Nothing reached the group: the owner's next msg is a real one.
    ack = await owner_conn.send_and_ack("members only", channel_id=group["channel_id"])
    got = await owner_conn.recv_until("msg")
    assert got["message_id"] == ack["message_id"]


async def test_outsider_cannot_read_the_group(http: httpx.AsyncClient) -> None:
    owner, a = await new_account(http, "g"), await new_account(http, "g")
    outsider = await new_account(http, "out")
    group = await create_group(http, owner, [a])
    response = await http.get(f"/v1/groups/{group['channel_id']}", headers=outsider.auth)
    assert response.status_code == 403
    assert error_code(response) == "not_a_member"
    history = await http.get(f"/v1/channels/{group['channel_id']}/messages", headers=outsider.auth)
    assert history.status_code == 403
    assert error_code(history) == "not_a_member"


async def test_outsider_cannot_add_members(http: httpx.AsyncClient) -> None:
    owner, a = await new_account(http, "g"), await new_account(http, "g")
    outsider = await new_account(http, "out")
    group = await create_group(http, owner, [a])
    response = await http.put(
        f"/v1/groups/{group['channel_id']}/members/{outsider.user_id}", headers=outsider.auth
    )
    assert response.status_code == 403
    assert error_code(response) == "not_a_member"


async def test_group_with_unknown_member_is_404(http: httpx.AsyncClient) -> None:
    owner = await new_account(http, "g")
    response = await http.post(
        "/v1/groups", json={"name": "x", "member_ids": ["1"]}, headers=owner.auth
    )
    assert response.status_code == 404
    assert error_code(response) == "unknown_user"


async def test_group_without_name_is_422(http: httpx.AsyncClient) -> None:
    owner = await new_account(http, "g")
    response = await http.post("/v1/groups", json={"member_ids": []}, headers=owner.auth)
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"


async def test_added_member_receives_later_messages(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    owner, a, late = [await new_account(http, "g") for _ in range(3)]
    group = await create_group(http, owner, [a])
    channel = group["channel_id"]
    owner_conn = await clients.connect(owner)
    late_conn = await clients.connect(late)
    before = await owner_conn.send_and_ack("before you came", channel_id=channel)
    await befriend(http, owner, late)  # a friend is added at once (others are invited)
    added = await http.put(f"/v1/groups/{channel}/members/{late.user_id}", headers=owner.auth)
    assert added.status_code == 204, added.text
    after = await owner_conn.send_and_ack("welcome aboard", channel_id=channel)
    joined = await late_conn.recv_until("msg")  # first: the event that says who came
    assert joined["event"]["type"] == "member_added"
    assert joined["event"]["user_ids"] == [late.user_id]
    assert joined["channel_id"] == channel
    got = await late_conn.recv_until("msg")
    assert got["message_id"] == after["message_id"]
    assert got["message_id"] != before["message_id"]
    reply = await late_conn.send_and_ack("thanks", channel_id=channel)
    assert (await owner_conn.recv_until("msg", message_id=reply["message_id"]))["body"] == "thanks"


async def test_member_removal_rules(http: httpx.AsyncClient, clients: Clients) -> None:
    owner, a, b, c = [await new_account(http, "g") for _ in range(4)]
    group = await create_group(http, owner, [a, b, c])
    channel = group["channel_id"]

    def members_path(user: Account) -> str:
        return f"/v1/groups/{channel}/members/{user.user_id}"

    # A plain member cannot remove someone else.
    refused = await http.delete(members_path(b), headers=a.auth)
    assert refused.status_code == 403
    assert error_code(refused) == "forbidden"
    # A member removes themself.
    left = await http.delete(members_path(a), headers=a.auth)
    assert left.status_code == 204, left.text
    # The owner removes anyone.
    kicked = await http.delete(members_path(b), headers=owner.auth)
    assert kicked.status_code == 204, kicked.text

    view = (await http.get(f"/v1/groups/{channel}", headers=owner.auth)).json()
    assert sorted(view["member_ids"]) == sorted([owner.user_id, c.user_id])
    # Removed members are outsiders now: no reading, no sending, no receiving.
    for gone in (a, b):
        response = await http.get(f"/v1/groups/{channel}", headers=gone.auth)
        assert response.status_code == 403
        assert error_code(response) == "not_a_member"
    b_conn = await clients.connect(b)
    await b_conn.send_msg("still here?", channel_id=channel)
    assert (await b_conn.recv_until("error"))["code"] == "not_a_member"
    owner_conn = await clients.connect(owner)
    c_conn = await clients.connect(c)
    ack = await owner_conn.send_and_ack("just us", channel_id=channel)
    assert (await c_conn.recv_until("msg", message_id=ack["message_id"]))["body"] == "just us"
    # b hears that it was removed, and of nothing said in the group after.
    direct = await owner_conn.send_and_ack("dm for b", to=b)
    await b_conn.recv_until("msg", message_id=direct["message_id"])
    seen = [f for f in (*b_conn.backlog, *b_conn.buffer) if f.get("type") == "msg"]
    assert ack["message_id"] not in {f["message_id"] for f in seen}
    removals = [f["event"] for f in seen if f.get("event", {}).get("type") == "member_removed"]
    assert [e["user_id"] for e in removals] == [b.user_id]


async def _users(http: httpx.AsyncClient, count: int) -> list[Account]:
    """`count` real users with a device each, created concurrently."""
    created: list[Account] = []
    for start in range(0, count, 25):
        created += await asyncio.gather(*(new_account(http) for _ in range(min(25, count - start))))
    return created


async def test_group_size_limits(http: httpx.AsyncClient) -> None:
    owner = await new_account(http, "big")
    people = await _users(http, 100)
    others = [a.user_id for a in people]

    # 100 others plus the caller is 101 members: too large.
    too_large = await http.post(
        "/v1/groups", json={"name": "crowd", "member_ids": others}, headers=owner.auth
    )
    assert too_large.status_code == 422, too_large.text
    assert error_code(too_large) == "group_too_large"

    # 99 others plus the caller is exactly 100: allowed.
    full = await create_group(http, owner, people[:99], name="crowd")
    channel = full["channel_id"]
    assert len(full["member_ids"]) == 100

    # The 101st member does not fit, neither invited nor as a friend.
    refused = await http.put(f"/v1/groups/{channel}/members/{others[99]}", headers=owner.auth)
    assert refused.status_code == 409
    assert error_code(refused) == "group_full"
    view = (await http.get(f"/v1/groups/{channel}", headers=owner.auth)).json()
    assert len(view["member_ids"]) == 100
    assert others[99] not in view["member_ids"]
    await befriend(http, owner, people[99])
    refused = await http.put(f"/v1/groups/{channel}/members/{others[99]}", headers=owner.auth)
    assert refused.status_code == 409
    # Adding someone who is already in is not growing the group.
    again = await http.put(f"/v1/groups/{channel}/members/{others[5]}", headers=owner.auth)
    assert again.status_code == 204, again.text

    # Room again after someone leaves.
    kicked = await http.delete(f"/v1/groups/{channel}/members/{others[0]}", headers=owner.auth)
    assert kicked.status_code == 204
    added = await http.put(f"/v1/groups/{channel}/members/{others[99]}", headers=owner.auth)
    assert added.status_code == 204, added.text
