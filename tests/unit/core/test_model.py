from hypothesis import given
from hypothesis import strategies as st

from tidings.core.channels import dm_channel_id, group_channel_id, parse_channel_id
from tidings.core.model import Watermarks, advance_watermarks
from tidings.core.ratelimit import TokenBucket

receipts = st.lists(
    st.tuples(st.integers(1, 1000), st.sampled_from(["delivered", "read"])), max_size=40
)


@given(receipts)
def test_watermarks_only_move_forward_and_read_implies_delivered(steps: list) -> None:
    marks = Watermarks()
    for message_id, status in steps:
        moved = advance_watermarks(marks, message_id, status)
        if moved is None:
            continue
        assert moved.delivered_upto >= marks.delivered_upto
        assert moved.read_upto >= marks.read_upto
        assert moved.delivered_upto >= moved.read_upto
        assert moved != marks
        marks = moved
    if steps:
        assert marks.delivered_upto == max(m for m, _ in steps)


def test_an_older_receipt_moves_nothing() -> None:
    marks = Watermarks(delivered_upto=10, read_upto=10)
    assert advance_watermarks(marks, 5, "read") is None
    assert advance_watermarks(marks, 10, "delivered") is None


@given(st.integers(1, 2**62), st.integers(1, 2**62))
def test_dm_channel_ids_are_symmetric_and_parse_back(a: int, b: int) -> None:
    channel = dm_channel_id(a, b)
    assert channel == dm_channel_id(b, a)
    if a != b:
        parsed = parse_channel_id(channel)
        assert parsed is not None and parsed.dm_users == tuple(sorted((a, b)))


def test_foreign_channel_ids_do_not_parse() -> None:
    for bad in ["", "dm:2:1", "dm:1:1", "dm:01:2", "g:", "g:x", "x:1", "dm:1:2:3"]:
        assert parse_channel_id(bad) is None
    assert parse_channel_id(group_channel_id(42)) is not None


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)  # one token back after half a second
    assert not bucket.take(0.5)
