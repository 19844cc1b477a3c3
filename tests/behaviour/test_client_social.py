"""The bundled client (`tidings.client`) against a real deployment: finding people by
username, friend requests (accepted, declined, withdrawn), blocks (a blocked send raises
like any other refused send) and group invites."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tidings.client import TidingsApiError, TidingsChatError

from ._harness import Opener, unique_name


def ids(profiles: Any) -> list[str]:
    return [p.user_id for p in profiles]


async def test_friend_requests_accepted_declined_and_withdrawn(person: Opener) -> None:
    (ada, ada_user), (bo, bo_user), (cy, cy_user) = [await person() for _ in range(3)]

    found = await ada.find_user(bo_user.username)
    assert found == bo_user
    with pytest.raises(TidingsApiError) as unknown:
        await ada.find_user(unique_name("nobody"))
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_user")

    await ada.friend_request(found.user_id)
    assert ids((await ada.friend_requests()).outgoing) == [bo_user.user_id]
    assert ids((await bo.friend_requests()).incoming) == [ada_user.user_id]
    assert await ada.friends() == []  # a request is no friendship yet
    await bo.accept_friend(ada_user.user_id)
    assert ids(await ada.friends()) == [bo_user.user_id]
    assert ids(await bo.friends()) == [ada_user.user_id]
    requests = await bo.friend_requests()
    assert (requests.incoming, requests.outgoing) == ((), ())

    await cy.friend_request(bo_user.user_id)
    await bo.decline_friend(cy_user.user_id)
    assert (await cy.friend_requests()).outgoing == ()
    assert ids(await cy.friends()) == []

    await ada.friend_request(cy_user.user_id)
    await ada.withdraw_friend_request(cy_user.user_id)
    assert (await cy.friend_requests()).incoming == ()


async def test_a_blocked_send_raises_and_unblocking_lets_it_through(person: Opener) -> None:
    (ada, ada_user), (bo, bo_user) = [await person() for _ in range(2)]
    async with ada.chat() as chat:
        first = await chat.send("hello", to=bo_user.user_id)
        await bo.block(ada_user.user_id)
        assert ids(await bo.blocked()) == [ada_user.user_id]
        with pytest.raises(TidingsChatError) as refused:
            async with asyncio.timeout(10):
                await chat.send("are you there?", to=bo_user.user_id)
        assert (refused.value.code, refused.value.retriable) == ("blocked", False)
        with pytest.raises(TidingsChatError):  # to the channel too
            async with asyncio.timeout(10):
                await chat.send("and here?", channel_id=first.channel_id)
        await bo.unblock(ada_user.user_id)
        assert await bo.blocked() == []
        async with asyncio.timeout(10):
            again = await chat.send("and now?", to=bo_user.user_id)
    history = await bo.history(first.channel_id)
    assert [m.body for m in history] == ["and now?", "hello"]  # nothing blocked was stored
    assert again.channel_id == first.channel_id


async def test_group_invites_accepted_and_declined(person: Opener) -> None:
    (ada, ada_user), (bo, bo_user), (cy, cy_user), (di, di_user) = [
        await person() for _ in range(4)
    ]
    # Cy is Ada's friend; Bo and Di are not.
    await ada.friend_request(cy_user.user_id)
    await cy.accept_friend(ada_user.user_id)

    group = await ada.create_group("book club", [bo_user.user_id, cy_user.user_id])
    assert set(group.member_ids) == {ada_user.user_id, cy_user.user_id}
    assert group.invited == (bo_user.user_id,)

    invites = await bo.invites()
    assert [(i.channel_id, i.name, i.inviter_id) for i in invites] == [
        (group.channel_id, "book club", ada_user.user_id)
    ]
    assert invites[0].inviter is not None and invites[0].inviter.username == ada_user.username
    joined = await bo.accept_invite(group.channel_id)
    assert bo_user.user_id in joined.member_ids
    assert group.channel_id in [c.channel_id for c in await bo.channels()]
    assert await bo.invites() == []
    with pytest.raises(TidingsApiError) as gone:
        await bo.accept_invite(group.channel_id)  # accepted already: no invite left
    assert (gone.value.status, gone.value.code) == (404, "not_found")

    assert await ada.add_group_member(group.channel_id, di_user.user_id) == "invited"
    assert [i.channel_id for i in await di.invites()] == [group.channel_id]
    await di.decline_invite(group.channel_id)
    assert await di.invites() == []
    assert di_user.user_id not in (await ada.get_group(group.channel_id)).member_ids

    other = await ada.create_group("chess", [])
    assert await ada.add_group_member(other.channel_id, cy_user.user_id) == "added"
    assert cy_user.user_id in (await cy.get_group(other.channel_id)).member_ids
