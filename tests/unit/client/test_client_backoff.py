"""Reconnect delays: exponential, capped, full jitter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.client import Backoff
from tidings.client._backoff import RESTART_CAP_S, restart_backoff


@given(
    base=st.floats(0.001, 5.0),
    cap_factor=st.floats(1.0, 1000.0),
    seed=st.integers(0, 2**32),
    n=st.integers(1, 200),
)
def test_each_delay_lies_in_zero_to_the_capped_exponential(
    base: float, cap_factor: float, seed: int, n: int
) -> None:
    backoff = Backoff(base, base * cap_factor, rng=random.Random(seed))
    for attempt in range(n):
        delay = backoff.next_delay()
        assert 0.0 <= delay <= min(base * cap_factor, base * 2**attempt)
    assert backoff.attempts == n


def test_ceiling_doubles_then_stays_at_the_cap() -> None:
    backoff = Backoff(0.5, 30.0)
    assert [backoff.ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.ceiling(10_000) == 30.0  # no overflow for very long outages


def test_the_restart_policy_stays_brisk() -> None:
    """After the server said reconnect: a restarting server is back in seconds, so the
    retries stay within 2 s of each other however many fail."""
    backoff = restart_backoff(random.Random(3))
    assert [backoff.ceiling(n) for n in range(5)] == [0.5, 1, 2, 2, 2]
    assert RESTART_CAP_S == 2.0
    delays = [backoff.next_delay() for _ in range(200)]
    assert max(delays) <= 2.0 and min(delays) >= 0.0


def test_delays_are_jittered_over_the_whole_window() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(7))
    backoff.attempts = 10  # at the cap: window [0, 8]
    delays = []
    for _ in range(2000):
        delays.append(backoff.next_delay())
        backoff.attempts = 10
    assert min(delays) < 0.5  # full jitter reaches near zero ...
    assert max(delays) > 7.5  # ... and near the cap
    assert 3.5 < sum(delays) / len(delays) < 4.5  # uniform: mean is half the window


def test_reset_starts_over_from_the_base() -> None:
    backoff = Backoff(1.0, 100.0, rng=random.Random(1))
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() <= 1.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_rejects_nonsense_parameters(base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap)
