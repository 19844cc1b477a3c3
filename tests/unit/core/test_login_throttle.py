"""Failed logins per account and per address (core/login_throttle.py), on a fake clock,
over buckets kept in memory the way the directory keeps them in a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tidings.core.login_throttle import BucketRule, Level, LoginThrottle


class Buckets:
    def __init__(self) -> None:
        self.levels: dict[str, Level] = {}

    async def bucket_levels(self, keys: Sequence[str]) -> Mapping[str, Level]:
        return {k: self.levels[k] for k in keys if k in self.levels}

    async def spend_bucket(self, key: str, burst: float, per_s: float, now: float) -> None:
        self.levels[key] = BucketRule(burst, per_s).after_failure(self.levels.get(key), now)


async def test_an_account_is_refused_after_its_burst_then_lets_one_more_per_period() -> None:
    throttle = LoginThrottle(Buckets(), account_burst=3, account_per_s=1 / 60)
    for _ in range(3):
        assert await throttle.retry_after_ms("alice", "10.0.0.1", 0) == 0
        await throttle.failed("alice", "10.0.0.1", 0)
    assert 59_000 < await throttle.retry_after_ms("alice", "10.0.0.1", 0) <= 60_001
    assert 44_000 < await throttle.retry_after_ms("alice", "10.0.0.1", 15) <= 45_001  # refilling
    assert await throttle.retry_after_ms("ALICE", "10.0.0.9", 15) > 0  # the account, any address
    assert await throttle.retry_after_ms("bob", "10.0.0.1", 15) == 0  # another account is fine
    assert await throttle.retry_after_ms("alice", "10.0.0.1", 60) == 0  # a minute on: one try
    await throttle.failed("alice", "10.0.0.1", 60)
    assert await throttle.retry_after_ms("alice", "10.0.0.1", 61) > 0


async def test_an_address_is_refused_after_its_burst_over_many_accounts() -> None:
    throttle = LoginThrottle(Buckets(), account_burst=10, address_burst=5, address_per_s=1.0)
    for n in range(5):
        await throttle.failed(f"user{n}", "203.0.113.7", 0)
    assert await throttle.retry_after_ms("someone-else", "203.0.113.7", 0) == 1000
    assert await throttle.retry_after_ms("someone-else", "198.51.100.1", 0) == 0
    assert await throttle.retry_after_ms("someone-else", "203.0.113.7", 1) == 0


def test_a_bucket_refills_up_to_its_burst_and_no_row_is_a_full_bucket() -> None:
    rule = BucketRule(burst=3, per_s=0.5)
    assert rule.tokens(None, 100) == 3
    level = rule.after_failure(None, 100)
    assert level == (2, 100)
    assert rule.tokens(level, 101) == 2.5
    assert rule.tokens(level, 1_000) == 3  # never more than the burst
    assert rule.wait_s((0.0, 100), 100) == 2.0
