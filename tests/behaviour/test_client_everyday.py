"""The bundled client (`tidings.client`) on issue #20's contract, against a real
deployment (embedded and cluster): replies, edits, deletes and reactions through
ChatConnection, folded by a ChannelView into what history shows; group rename, settings,
admins and leaving through ApiClient, read as system lines; unread counts and receipt
watermarks from channels(); a new display name."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import pytest

from tidings.client import (
    ApiClient,
    ChannelView,
    ChatConnection,
    Msg,
    Receipt,
    TidingsApiError,
    TidingsChatError,
)

from ._harness import Opener

WAIT_S = 15.0


async def befriend(a: ApiClient, b: ApiClient) -> None:
    assert a.user_id is not None and b.user_id is not None
    await a.friend_request(b.user_id)
    await b.accept_friend(a.user_id)


async def msgs_until(chat: ChatConnection, message_id: str) -> list[Msg]:
    """The messages ``chat`` hands out up to and including ``message_id``."""
    got: list[Msg] = []
    async with asyncio.timeout(WAIT_S):
        async for event in chat.events():
            if isinstance(event, Msg):
                got.append(event)
                if event.message_id == message_id:
                    return got
    raise AssertionError(f"the connection ended before {message_id}")


async def refused(action: Coroutine[Any, Any, Any]) -> str:
    with pytest.raises(TidingsChatError) as caught:
        async with asyncio.timeout(WAIT_S):
            await action
    return caught.value.code


async def test_replies_edits_deletes_and_reactions_fold_into_what_history_shows(
    person: Opener,
) -> None:
    (ada, ada_user), (bo, bo_user) = await person(), await person()
    word = f"tpyo{uuid.uuid4().hex[:8]}"
    async with ada.chat() as ada_chat, bo.chat() as bo_chat:
        question = await ada_chat.send(f"lunch {word}?", to=bo_user.user_id)
        channel = question.channel_id
        answer = await bo_chat.send("yes!", channel_id=channel, reply_to=question.message_id)
        edited = await ada_chat.edit(channel, question.message_id, "lunch at one?")
        reacted = await bo_chat.react(channel, question.message_id, "👍")
        changed_mind = await bo_chat.react(channel, question.message_id, "🎉")
        oops = await ada_chat.send("wrong chat", channel_id=channel)
        await bo_chat.react(channel, oops.message_id, "😮")
        deleted = await ada_chat.delete(channel, oops.message_id)

        # Refusals surface as send errors do; nothing is stored.
        assert await refused(bo_chat.edit(channel, question.message_id, "mine")) == "forbidden"
        assert await refused(ada_chat.edit(channel, oops.message_id, "again")) == "too_late"
        assert await refused(bo_chat.react(channel, oops.message_id, "👀")) == "too_late"
        assert await refused(ada_chat.edit(channel, edited.message_id, "x")) == "unknown_message"
        assert await refused(ada_chat.delete(channel, "12345")) == "unknown_message"
        bad_reply = ada_chat.send("?", channel_id=channel, reply_to="12345")
        assert await refused(bad_reply) == "unknown_message"

        # Bo's device sees every one of them live, and folds them.
        live = await msgs_until(bo_chat, deleted.message_id)
    by_id = {m.message_id: m for m in live}
    assert by_id[answer.message_id].reply_to == question.message_id
    edit_event = by_id[edited.message_id].event
    assert edit_event is not None and edit_event.type == "edit"
    assert (edit_event.message_id, edit_event.previous) == (question.message_id, f"lunch {word}?")
    reaction = by_id[reacted.message_id].event
    assert reaction is not None and (reaction.type, reaction.emoji) == ("reaction", "👍")
    assert by_id[question.message_id].body == f"lunch {word}?"  # the live msg as sent

    view = ChannelView(channel)
    view.apply_all(live)
    lines = {line.message_id: line for line in view.lines}
    assert list(lines) == [question.message_id, answer.message_id, oops.message_id]
    first = lines[question.message_id].message
    assert (first.body, first.reactions) == ("lunch at one?", {bo_user.user_id: "🎉"})
    assert first.edited_at == by_id[edited.message_id].ts
    assert lines[oops.message_id].message.deleted
    replied = view.replied_to(lines[answer.message_id])
    assert replied is not None and replied.message_id == question.message_id

    # History gives the same current state, and folding it gives the same lines.
    history = await ada.history(channel)
    stored = {m.message_id: m for m in history}
    assert stored[question.message_id].body == "lunch at one?"
    assert stored[question.message_id].edited_at == first.edited_at
    assert stored[question.message_id].reactions == {bo_user.user_id: "🎉"}
    assert stored[answer.message_id].reply_to == question.message_id
    assert stored[oops.message_id].deleted and stored[oops.message_id].body == ""
    assert stored[changed_mind.message_id].event is not None
    reloaded = ChannelView(channel)
    reloaded.apply_all(history)
    assert [(line.message_id, line.text) for line in reloaded.lines] == [
        (line.message_id, line.text) for line in view.lines
    ]
    assert [m.message_id for m in await bo.search(word)] == []  # the old text is gone
    assert [m.message_id for m in await bo.search("one")] == [question.message_id]
    assert ada_user.user_id == first.sender_id


async def test_group_rename_settings_admins_and_leaving_through_the_client(
    person: Opener,
) -> None:
    (owner, owner_user), (carol, carol_user), (dave, dave_user) = [await person() for _ in range(3)]
    (erin, erin_user) = await person()
    for friend in (carol, dave):
        await befriend(owner, friend)
    await befriend(carol, erin)
    group = await owner.create_group("Book club", [carol_user.user_id, dave_user.user_id])
    channel = group.channel_id
    assert (group.admin_ids, group.members_can_add) == ((owner_user.user_id,), True)

    renamed = await owner.rename_group(channel, "Reading")
    assert renamed.name == "Reading"
    locked = await owner.set_group_settings(channel, members_can_add=False)
    assert locked.members_can_add is False
    with pytest.raises(TidingsApiError) as not_admin:
        await carol.add_group_member(channel, erin_user.user_id)
    assert (not_admin.value.status, not_admin.value.code) == (403, "forbidden")
    with pytest.raises(TidingsApiError) as no_rename:
        await carol.rename_group(channel, "mine now")
    assert (no_rename.value.status, no_rename.value.code) == (403, "forbidden")

    await owner.make_admin(channel, carol_user.user_id)
    assert await carol.add_group_member(channel, erin_user.user_id) == "added"
    seen = await dave.get_group(channel)
    assert set(seen.admin_ids) == {owner_user.user_id, carol_user.user_id}
    assert erin_user.user_id in seen.member_ids
    await carol.unmake_admin(channel, carol_user.user_id)  # steps down
    with pytest.raises(TidingsApiError) as last:
        await owner.unmake_admin(channel, owner_user.user_id)
    assert (last.value.status, last.value.code) == (409, "last_admin")
    entry = {c.channel_id: c for c in await dave.channels()}[channel]
    assert (entry.name, entry.admin_ids, entry.members_can_add) == (
        "Reading",
        (owner_user.user_id,),
        False,
    )

    await carol.leave_group(channel)
    assert channel not in {c.channel_id for c in await carol.channels()}
    with pytest.raises(TidingsApiError) as gone:
        await carol.history(channel)
    assert (gone.value.status, gone.value.code) == (403, "not_a_member")
    await owner.remove_group_member(channel, erin_user.user_id)

    # Dave's device hears all of it as events, read as lines.
    names = {u.user_id: u.username for u in (owner_user, carol_user, dave_user, erin_user)}
    async with dave.chat() as chat:
        view = ChannelView(channel, me=dave_user.user_id, names=names)
        async with asyncio.timeout(WAIT_S):
            async for event in chat.events():
                if isinstance(event, Msg):
                    view.apply(event)
                    if event.event is not None and event.event.type == "member_removed":
                        break
    o, c, e = owner_user.username, carol_user.username, erin_user.username
    added = sorted((carol_user.user_id, dave_user.user_id), key=int)  # in user id order
    assert [line.system for line in view.lines] == [
        f'{o} created the group "Book club"',
        f"{o} added {' and '.join(c if uid == carol_user.user_id else 'you' for uid in added)}",
        f'{o} renamed the group to "Reading"',
        f"{o} let only admins add people",
        f"{o} made {c} an admin",
        f"{c} added {e}",
        f"{c} is no longer an admin",
        f"{c} left",
        f"{o} removed {e}",
    ]


async def test_unread_counts_receipts_and_a_new_display_name(person: Opener) -> None:
    (ada, ada_user), (bo, bo_user) = await person(), await person()
    async with ada.chat() as ada_chat:
        sent = [await ada_chat.send(f"hello {i}", to=bo_user.user_id) for i in range(3)]
    channel = sent[0].channel_id

    fresh = {c.channel_id: c for c in await bo.channels()}[channel]
    assert (fresh.unread, fresh.read_upto) == (3, "0")
    marks = fresh.receipts_of(ada_user.user_id)
    assert marks is not None and (marks.delivered_upto, marks.read_upto) == ("0", "0")
    assert {c.channel_id: c for c in await ada.channels()}[channel].unread == 0  # her own

    async with bo.chat() as bo_chat:
        await bo_chat.receipt(channel, sent[2].message_id, "delivered")
        await bo_chat.receipt(channel, sent[1].message_id, "read")
        async with asyncio.timeout(WAIT_S):  # stored once fanned out to bo's own device
            async for event in bo_chat.events():
                if isinstance(event, Receipt) and event.status == "read":
                    break
    read = {c.channel_id: c for c in await bo.channels()}[channel]
    assert (read.unread, read.read_upto) == (1, sent[1].message_id)
    ticks = {c.channel_id: c for c in await ada.channels()}[channel].receipts_of(bo_user.user_id)
    assert ticks is not None
    assert ticks.has_delivered(sent[2].message_id) and ticks.has_read(sent[1].message_id)
    assert not ticks.has_read(sent[2].message_id)

    await befriend(ada, bo)
    changed = await ada.set_display_name("\uff21da L")
    assert changed.display_name == "Ada L"  # NFKC, as at sign-up
    assert (await bo.get_user(ada_user.user_id)).display_name == "Ada L"
    with pytest.raises(TidingsApiError) as bad:
        await ada.set_display_name("\u200bghost")
    assert (bad.value.status, bad.value.code) == (422, "invalid_request")
