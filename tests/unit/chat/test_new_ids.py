"""Which inbox appends may skip looking for ids the inbox already holds (NewIds)."""

from __future__ import annotations

from collections.abc import Container, Sequence

import pytest

from tidings.bus.base import RESENT, InboxEvent
from tidings.chat.delivery import NEW_AFTER_MS, InboxProcessor, NewIds
from tidings.core.ids import SnowflakeGenerator
from tidings.core.model import InboxEntry, Message
from tidings.runtime import OwnsEveryone

T0 = 1_900_000_000_000


def message_at(ms: int, n: int = 0) -> Message:
    ids = SnowflakeGenerator(3, clock_ms=lambda: ms)
    for _ in range(n):
        ids.next_id()
    return Message(ids.next_id(), "c", 1, 1, f"m{ms}-{n}", "hi", ms)


def test_nothing_is_new_before_the_first_tenure() -> None:
    assert NewIds(lambda: T0).among([message_at(T0 + 10 * NEW_AFTER_MS)]) == set()


def test_only_messages_made_well_after_the_tenure_began_are_new() -> None:
    now = [T0]
    new_ids = NewIds(lambda: now[0])
    new_ids.restart()
    before = message_at(T0 - 1)
    within_margin = message_at(T0 + NEW_AFTER_MS)
    after = message_at(T0 + NEW_AFTER_MS + 1)
    assert new_ids.among([before, within_margin, after]) == {after.message_id}
    # A new tenure (a rebalance, a failed poll) forgets: `after` may have been appended.
    now[0] = T0 + NEW_AFTER_MS + 5
    new_ids.restart()
    assert new_ids.among([after]) == set()


class RecordingStore:
    """A store that records which ids it was told are new, and fails one user once."""

    def __init__(self, fail_user: int) -> None:
        self.fail_user = fail_user
        self.calls: list[tuple[int, set[int]]] = []

    async def append_inbox(
        self, user_id: int, messages: Sequence[Message], *, new: Container[int] = ()
    ) -> list[InboxEntry]:
        self.calls.append((user_id, {m.message_id for m in messages if m.message_id in new}))
        if user_id == self.fail_user:
            self.fail_user = -1
            raise RuntimeError("storage away")
        return []


async def test_a_failed_poll_comes_again_with_nothing_known_new() -> None:
    """A poll that failed for one user may have been appended for another: when it
    comes again, every id is looked for, so nobody gets a message twice."""
    now = [T0]
    store = RecordingStore(fail_user=2)
    processor = InboxProcessor(store, None, None, None, OwnsEveryone())  # type: ignore[arg-type]
    processor.new_ids = NewIds(lambda: now[0])
    processor.new_ids.restart()
    now[0] = T0 + 2 * NEW_AFTER_MS
    fresh = message_at(now[0])
    events = [InboxEvent(user, "msg", fresh.to_wire()) for user in (1, 2)]

    with pytest.raises(RuntimeError):
        await processor.handle(events)
    assert dict(store.calls) == {1: {fresh.message_id}, 2: {fresh.message_id}}

    store.calls.clear()
    await processor.handle(events)
    assert dict(store.calls) == {1: set(), 2: set()}


async def test_a_resent_message_is_looked_for_even_when_it_is_new() -> None:
    """A sender's resend publishes the stored message again (marked ``resent``): its
    inboxes may hold it already, so the append looks."""
    now = [T0]
    store = RecordingStore(fail_user=-1)
    processor = InboxProcessor(store, None, None, None, OwnsEveryone())  # type: ignore[arg-type]
    processor.new_ids = NewIds(lambda: now[0])
    processor.new_ids.restart()
    now[0] = T0 + 2 * NEW_AFTER_MS
    fresh, again = message_at(now[0]), message_at(now[0], 1)
    await processor.handle(
        [
            InboxEvent(1, "msg", fresh.to_wire()),
            InboxEvent(1, "msg", {**again.to_wire(), RESENT: True}),
        ]
    )
    assert store.calls == [(1, {fresh.message_id})]
