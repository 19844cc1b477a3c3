"""The retry policy, without I/O."""

from __future__ import annotations

import pytest

from tidings.push.backoff import Backoff, parse_retry_after

POLICY = Backoff(attempts=5, base_s=0.5, max_s=10.0)


def test_delays_grow_exponentially_within_equal_jitter() -> None:
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]:
        low = POLICY.delay(attempt, None, 0.0)
        high = POLICY.delay(attempt, None, 0.999999)
        assert low == pytest.approx(ceiling / 2)
        assert high == pytest.approx(ceiling, rel=1e-5)


def test_delays_are_capped() -> None:
    policy = Backoff(attempts=20, base_s=1.0, max_s=5.0)
    assert policy.delay(15, None, 0.999999) == pytest.approx(5.0, rel=1e-5)


def test_gives_up_after_the_last_attempt() -> None:
    assert POLICY.delay(5, None, 0.5) is None
    assert Backoff(attempts=1).delay(1, None, 0.5) is None


def test_retry_after_is_a_floor_with_a_little_jitter() -> None:
    assert POLICY.delay(1, 3.0, 0.0) == 3.0
    delay = POLICY.delay(1, 3.0, 0.999)
    assert delay is not None and 3.0 <= delay <= 3.0 + POLICY.base_s


def test_retry_after_beyond_the_cap_is_not_waited_for_here() -> None:
    assert POLICY.delay(1, 60.0, 0.5) is None
    assert POLICY.delay(1, 10.0, 0.9) == 10.0  # exactly the cap: no room for jitter


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now) == pytest.approx(20.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # in the past
