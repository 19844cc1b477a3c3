"""Failed logins per account and per address (core/login_throttle.py), on a fake clock."""

from __future__ import annotations

from tidings.core.login_throttle import LoginThrottle


def test_an_account_is_refused_after_its_burst_of_failures_then_lets_one_more_per_period() -> None:
    throttle = LoginThrottle(account_burst=3, account_per_s=1 / 60)
    for _ in range(3):
        assert throttle.retry_after_ms("alice", "10.0.0.1", 0) == 0
        throttle.failed("alice", "10.0.0.1", 0)
    assert 59_000 < throttle.retry_after_ms("alice", "10.0.0.1", 0) <= 60_001
    assert 44_000 < throttle.retry_after_ms("alice", "10.0.0.1", 15) <= 45_001  # refilling
    assert throttle.retry_after_ms("ALICE", "10.0.0.9", 15) > 0  # the account, any address
    assert throttle.retry_after_ms("bob", "10.0.0.1", 15) == 0  # another account is fine
    assert throttle.retry_after_ms("alice", "10.0.0.1", 60) == 0  # a minute on: one try
    throttle.failed("alice", "10.0.0.1", 60)
    assert throttle.retry_after_ms("alice", "10.0.0.1", 61) > 0


def test_an_address_is_refused_after_its_burst_over_many_accounts() -> None:
    throttle = LoginThrottle(account_burst=10, address_burst=5, address_per_s=1.0)
    for n in range(5):
        throttle.failed(f"user{n}", "203.0.113.7", 0)
    assert throttle.retry_after_ms("someone-else", "203.0.113.7", 0) == 1000
    assert throttle.retry_after_ms("someone-else", "198.51.100.1", 0) == 0
    assert throttle.retry_after_ms("someone-else", "203.0.113.7", 1) == 0


def test_the_buckets_kept_are_bounded_and_a_dropped_one_starts_full() -> None:
    throttle = LoginThrottle(account_burst=1, address_burst=100, max_keys=2)
    throttle.failed("a", "x", 0)
    assert throttle.retry_after_ms("a", "x", 0) > 0
    throttle.failed("b", "x", 0)
    throttle.failed("c", "x", 0)  # "a" was the least recently failed: dropped
    assert throttle.retry_after_ms("a", "x", 0) == 0
    assert throttle.retry_after_ms("c", "x", 0) > 0
