"""The inbox cursor: in-order, once-only delivery whatever order and repeats the network
produces, and the sync decisions that fill or give up on gaps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.client import Inbox, InboxTracker, Msg, Step, Synced


def msg(seq: int, message_id: str | None = None) -> Msg:
    return Msg(
        message_id=message_id if message_id is not None else f"m{seq}",
        channel_id="dm:1:2",
        sender_id="1",
        sender_device_id="d1",
        client_msg_id=f"c{seq}",
        body=f"body {seq}",
        ts=1_700_000_000_000 + seq,
        seq=seq,
    )


def seqs(steps: list[Step]) -> list[int]:
    return [s.seq for s in steps]


# -- InboxTracker: examples ----------------------------------------------------------------


def test_in_order_messages_are_released_at_once() -> None:
    tracker = InboxTracker()
    assert tracker.offer(msg(1)) == [Step(1, msg(1))]
    assert tracker.offer(msg(2)) == [Step(2, msg(2))]
    assert tracker.cursor == 2
    assert not tracker.has_gap


def test_a_message_after_a_gap_is_held_until_the_gap_fills() -> None:
    tracker = InboxTracker()
    assert tracker.offer(msg(3)) == []
    assert tracker.offer(msg(2)) == []
    assert tracker.has_gap
    assert tracker.cursor == 0
    assert seqs(tracker.offer(msg(1))) == [1, 2, 3]
    assert tracker.cursor == 3
    assert not tracker.has_gap


def test_redelivery_at_or_below_the_cursor_or_already_held_is_dropped() -> None:
    tracker = InboxTracker(cursor=5)
    assert tracker.offer(msg(5)) == []
    assert tracker.offer(msg(4)) == []
    assert tracker.offer(msg(7)) == []
    assert tracker.offer(msg(7)) == []
    assert seqs(tracker.offer(msg(6))) == [6, 7]
    assert tracker.offer(msg(6)) == []


def test_same_message_id_under_a_new_seq_moves_the_cursor_without_delivery() -> None:
    tracker = InboxTracker()
    tracker.offer(msg(1, "a"))
    assert tracker.offer(msg(2, "a")) == [Step(2, None)]
    assert tracker.cursor == 2
    assert tracker.offer(msg(3, "b")) == [Step(3, msg(3, "b"))]


def test_message_id_memory_is_bounded_and_keeps_the_recent_ones() -> None:
    tracker = InboxTracker(remember=2)
    for seq, mid in [(1, "a"), (2, "b"), (3, "c")]:
        tracker.offer(msg(seq, mid))
    assert tracker.offer(msg(4, "c")) == [Step(4, None)]  # recent: dropped
    assert tracker.offer(msg(5, "a")) == [Step(5, msg(5, "a"))]  # forgotten


def test_skip_gap_releases_everything_held_in_order() -> None:
    tracker = InboxTracker()
    tracker.offer(msg(4))
    tracker.offer(msg(7))
    tracker.offer(msg(5))
    assert seqs(tracker.skip_gap()) == [4, 5, 7]
    assert tracker.cursor == 7
    assert not tracker.has_gap
    assert tracker.offer(msg(6)) == []  # a late arrival below the cursor stays dropped


def test_skip_gap_upto_only_skips_missing_seqs_up_to_that_point() -> None:
    tracker = InboxTracker()
    tracker.offer(msg(2))
    tracker.offer(msg(3))
    tracker.offer(msg(6))
    assert seqs(tracker.skip_gap(upto=3)) == [2, 3]
    assert tracker.has_gap  # 4 and 5 may still come
    assert seqs(tracker.offer(msg(5))) == []
    assert seqs(tracker.offer(msg(4))) == [4, 5, 6]


def test_holding_too_much_gives_up_on_the_gap() -> None:
    tracker = InboxTracker(max_held=3)
    for seq in (2, 3, 4):
        assert tracker.offer(msg(seq)) == []
    assert seqs(tracker.offer(msg(5))) == [2, 3, 4, 5]


# -- InboxTracker: properties ----------------------------------------------------------------


@st.composite
def shuffled_with_repeats(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """A start cursor, a last seq, and a delivery order containing every seq in
    ``start+1..last`` at least once, plus repeats and stale seqs, in any order."""
    start = draw(st.integers(0, 20))
    last = draw(st.integers(start, start + 40))
    needed = list(range(start + 1, last + 1))
    extra = draw(st.lists(st.integers(1, last + 1 if last else 1), max_size=30))
    extra = [s for s in extra if s <= last]
    order = draw(st.permutations(needed + extra))
    return start, last, order


@given(shuffled_with_repeats())
def test_every_seq_is_released_once_in_order(case: tuple[int, int, list[int]]) -> None:
    start, last, order = case
    tracker = InboxTracker(cursor=start)
    released: list[Step] = []
    for seq in order:
        released.extend(tracker.offer(msg(seq)))
    assert seqs(released) == list(range(start + 1, last + 1))
    assert all(step.msg == msg(step.seq) for step in released)
    assert tracker.cursor == last
    assert not tracker.has_gap


@given(st.lists(st.integers(1, 30), max_size=60))
def test_cursor_is_the_longest_gapless_prefix_at_every_point(order: list[int]) -> None:
    tracker = InboxTracker()
    offered: set[int] = set()
    released: list[int] = []
    for seq in order:
        offered.add(seq)
        released.extend(seqs(tracker.offer(msg(seq))))
        prefix = 0
        while prefix + 1 in offered:
            prefix += 1
        assert tracker.cursor == prefix
        assert released == list(range(1, prefix + 1))
        assert tracker.has_gap == any(s > prefix for s in offered)


@given(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=40))
def test_each_message_id_is_delivered_once_and_every_seq_moves_the_cursor(ids: list[str]) -> None:
    tracker = InboxTracker()
    steps: list[Step] = []
    for seq, mid in enumerate(ids, start=1):
        steps.extend(tracker.offer(msg(seq, mid)))
    assert seqs(steps) == list(range(1, len(ids) + 1))
    delivered = [s.msg.message_id for s in steps if s.msg is not None]
    assert delivered == list(dict.fromkeys(ids))  # first occurrence of each, in order


# -- Inbox: sync decisions -----------------------------------------------------------------


def test_gap_during_hello_backlog_waits_for_synced_then_syncs_once_before_skipping() -> None:
    inbox = Inbox()
    inbox.on_hello()
    assert inbox.on_msg(msg(1)).sync_from is None
    plan = inbox.on_msg(msg(3))  # 2 missing, but the backlog's synced is still to come
    assert plan.steps == [] and plan.sync_from is None
    plan = inbox.on_synced(Synced(cursor=3, more=False))
    assert plan.steps == [] and plan.sync_from == 1  # ask again before believing 2 is gone
    assert inbox.on_msg(msg(3)).steps == []  # the sync's answer: no 2
    plan = inbox.on_synced(Synced(cursor=3, more=False))
    assert seqs(plan.steps) == [3] and plan.sync_from is None
    assert inbox.cursor == 3


def test_gap_with_no_sync_in_flight_asks_for_one_and_the_answer_fills_it() -> None:
    inbox = Inbox(cursor=10)
    inbox.on_hello()
    inbox.on_synced(Synced(cursor=10, more=False))
    plan = inbox.on_msg(msg(12))
    assert plan.sync_from == 10
    assert inbox.on_msg(msg(13)).sync_from is None  # one sync at a time
    assert seqs(inbox.on_msg(msg(11)).steps) == [11, 12, 13]
    plan = inbox.on_synced(Synced(cursor=13, more=False))
    assert plan == plan.__class__([], None)


def test_more_asks_for_the_next_page_from_the_cursor() -> None:
    inbox = Inbox()
    inbox.on_hello()
    for seq in (1, 2):
        inbox.on_msg(msg(seq))
    assert inbox.on_synced(Synced(cursor=2, more=True)).sync_from == 2


def test_synced_beyond_what_arrived_asks_again_but_not_forever() -> None:
    inbox = Inbox(max_stalls=3)
    inbox.on_hello()
    requests = 0
    plan = inbox.on_synced(Synced(cursor=5, more=False))
    while plan.sync_from is not None:
        requests += 1
        assert requests < 10
        plan = inbox.on_synced(Synced(cursor=5, more=False))  # a server that never sends 1..5
    assert requests == 2  # three syncs in all moved nothing: stop
    assert inbox.cursor == 0  # nothing is skipped that never arrived


@st.composite
def inbox_scenario(draw: st.DrawFn) -> tuple[int, list[int], list[int], int]:
    """A server inbox 1..last with holes (seqs that do not exist), the device's start
    cursor, the backlog as the network delivers it (reordered, repeated, some lost), and
    the page size the server answers syncs with."""
    last = draw(st.integers(1, 40))
    holes = draw(st.sets(st.integers(1, last - 1), max_size=last // 3)) if last > 1 else set()
    existing = [s for s in range(1, last + 1) if s not in holes]
    start = draw(st.integers(0, last))
    backlog = draw(st.lists(st.sampled_from(existing), max_size=2 * len(existing)))
    limit = draw(st.integers(1, 8))
    return start, existing, backlog, limit


@settings(max_examples=300)
@given(inbox_scenario())
def test_inbox_ends_with_every_existing_message_once_in_order(
    scenario: tuple[int, list[int], list[int], int],
) -> None:
    start, existing, backlog, limit = scenario
    last = existing[-1]
    inbox = Inbox(cursor=start)
    delivered: list[int] = []
    syncs: list[int] = []

    def run(plan_steps: list[Step]) -> None:
        delivered.extend(step.seq for step in plan_steps if step.msg is not None)

    inbox.on_hello()
    for seq in backlog:
        plan = inbox.on_msg(msg(seq))
        run(plan.steps)
        if plan.sync_from is not None:
            syncs.append(plan.sync_from)
    plan = inbox.on_synced(Synced(cursor=last, more=False))
    run(plan.steps)
    pending = [] if plan.sync_from is None else [plan.sync_from]
    syncs.extend(pending)
    while pending:  # a correct server answers each sync in turn
        assert len(syncs) < 200, "the client keeps syncing"
        after = pending.pop(0)
        page = [s for s in existing if s > after][:limit]
        for seq in page:
            plan = inbox.on_msg(msg(seq))
            run(plan.steps)
            if plan.sync_from is not None:
                syncs.append(plan.sync_from)
                pending.append(plan.sync_from)
        more = any(s > (page[-1] if page else after) for s in existing)
        plan = inbox.on_synced(Synced(cursor=page[-1] if page else after, more=more))
        run(plan.steps)
        if plan.sync_from is not None:
            syncs.append(plan.sync_from)
            pending.append(plan.sync_from)

    assert delivered == [s for s in existing if s > start]
    assert inbox.cursor == max(start, last)
    assert not inbox.tracker.has_gap


def test_rewind_starts_again_below_the_cursor_and_keeps_deduping_by_id() -> None:
    tracker = InboxTracker(0)
    tracker.offer(msg(1))
    tracker.offer(msg(2))
    tracker.offer(msg(4))  # held behind 3
    tracker.rewind(1)
    assert tracker.cursor == 1 and not tracker.has_gap
    assert seqs(tracker.offer(msg(2, "new-2"))) == [2]  # a new message at a seq seen before
    (step,) = tracker.offer(msg(3, "m1"))  # an id delivered before: moves, not delivered
    assert (step.seq, step.msg) == (3, None)
    tracker.rewind(7)  # never forward
    assert tracker.cursor == 3
