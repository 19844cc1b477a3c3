"""The chat session's state machine, driven without a socket (tidings.gateway.session)."""

from __future__ import annotations

from tidings.core.frames import Heartbeat, Hello, Receipt
from tidings.core.model import InboxEntry, Message
from tidings.core.ratelimit import TokenBucket
from tidings.gateway.session import MAX_QUEUED_FRAMES, Session, State


def entry(seq: int) -> InboxEntry:
    return InboxEntry(seq, Message(seq, "dm:1:2", 2, 20, f"c{seq}", "hi", 1))


def live(cursor: int = 0) -> Session:
    session = Session(now_ms=1000)
    session.hello_received()
    session.authenticated(1, 10, 3, TokenBucket(10, 10, 0))
    assert list(session.go_live(cursor)) == []
    return session


def test_a_new_session_waits_for_its_hello_and_knows_nobody() -> None:
    session = Session(now_ms=1000)
    assert session.state is State.HELLO
    assert (session.user_id, session.device_id, session.token_version) == (0, 0, 0)
    assert session.bucket is None
    assert session.hello_overdue(1000) and not session.hello_overdue(999)


def test_a_hello_is_counted_in_flight_once_whatever_ends_it() -> None:
    session = Session(now_ms=0)
    assert not session.hello_finished()  # no hello yet: nothing to take back
    session.hello_received()
    assert session.state is State.SYNCING  # a second hello is refused from now on
    assert session.hello_finished()
    assert not session.hello_finished()  # done, then the socket goes: counted off once


def test_entries_that_arrive_while_syncing_wait_and_go_out_once_live_in_order() -> None:
    session = Session(now_ms=0)
    session.hello_received()
    session.authenticated(1, 10, 3, TokenBucket(10, 10, 0))
    assert (session.user_id, session.device_id, session.token_version) == (1, 10, 3)
    assert session.deliverable([entry(4)]) == ()
    assert session.deliverable([entry(5), entry(6)]) == ()
    # The sync sent the inbox up to 5: only 6 is new.
    assert [e.seq for e in session.go_live(5)] == [6]
    assert session.state is State.LIVE
    assert session.sync_buffer is None
    assert session.sent_seq == 6


def test_a_live_session_sends_each_entry_once_and_never_an_older_one() -> None:
    session = live(cursor=10)
    one = [entry(11)]
    assert session.deliverable(one) is one  # the usual case builds nothing
    assert session.deliverable([entry(11)]) == ()  # the same entry again (a redelivery)
    assert session.deliverable([entry(9)]) == ()  # older than what was sent
    assert [e.seq for e in session.deliverable([entry(11), entry(12), entry(13)])] == [12, 13]
    assert session.sent_seq == 13


def test_a_closing_session_delivers_and_handles_nothing() -> None:
    session = live()
    assert session.enqueue(Heartbeat())
    session.close()
    assert session.state is State.CLOSING
    assert session.deliverable([entry(1)]) == ()
    assert not session.heard(5000)
    assert session.last_heard == 1000  # a frame after close is not heard
    assert session.next_frame() is None  # what was queued is dropped with it
    assert session.closing_since(1000) and not session.closing_since(999)


def test_frames_are_handled_one_at_a_time_in_order_and_the_queue_is_bounded() -> None:
    session = live()
    hello = Hello(token="t", cursor=0)
    receipt = Receipt(channel_id="dm:1:2", message_id=5, status="read")
    assert session.enqueue(hello) and session.enqueue(receipt)
    assert session.start_handling()
    assert not session.start_handling()  # one handler at a time
    assert session.next_frame() is hello
    assert session.next_frame() is receipt
    assert session.next_frame() is None
    session.handling_stopped()
    assert session.start_handling()  # the next frame starts a new handler
    session.handling_stopped()
    for _ in range(MAX_QUEUED_FRAMES):
        assert session.enqueue(Heartbeat())
    assert not session.enqueue(Heartbeat())


def test_silence_is_measured_from_the_last_frame_heard_and_only_when_live() -> None:
    session = Session(now_ms=1000)
    assert not session.silent(5000)  # not live yet: the hello timeout applies instead
    session.hello_received()
    session.authenticated(1, 10, 3, TokenBucket(10, 10, 0))
    session.go_live(0)
    assert session.heard(3000)
    assert session.silent(3000) and not session.silent(2999)
