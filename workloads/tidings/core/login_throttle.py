"""Login throttling: failed password attempts, per account and per source address.

In the manner of Signal-Server's rate limiters: each key has a leaky bucket of failures.
A wrong password (or an unknown username) takes one token from the account's bucket and
one from the address's; while either bucket is empty, every login for that account or
from that address is refused with ``rate_limited`` and the time until a token is back —
the right password too, or guessing would simply continue. Successful logins cost
nothing, so many people behind one address (a NAT, an office) log in freely.

Defaults (settings ``login_failures_*``): an account takes 10 failures at once and one
more a minute; an address 100 at once and one more a second. Locking an account by
failing on purpose is possible (the usual trade-off) and lasts about a minute per
attempt wanted.

This holds the buckets of one process; a cluster's API processes each keep their own,
so an attacker spread over N of them gets N times the attempts (docs/security.md).
Memory is bounded: at most ``max_keys`` buckets, the least recently used dropped first
(a dropped bucket starts full again).
"""

from __future__ import annotations

import math
from collections import OrderedDict

from tidings.core.ratelimit import TokenBucket


class _Buckets:
    def __init__(self, burst: float, per_s: float, max_keys: int) -> None:
        self.burst, self.per_s, self.max_keys = burst, per_s, max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def wait_s(self, key: str, now: float) -> float:
        """Seconds until this key may try again (0: now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        bucket.take(now, 0.0)  # refilled up to now, nothing spent
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.per_s

    def fail(self, key: str, now: float) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.per_s, self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        bucket.take(now)


class LoginThrottle:
    """See the module docstring."""

    def __init__(
        self,
        *,
        account_burst: float = 10,
        account_per_s: float = 1 / 60,
        address_burst: float = 100,
        address_per_s: float = 1.0,
        max_keys: int = 100_000,
    ) -> None:
        self._accounts = _Buckets(account_burst, account_per_s, max_keys)
        self._addresses = _Buckets(address_burst, address_per_s, max_keys)

    def retry_after_ms(self, username: str, address: str, now: float) -> int:
        """0 when a login may be tried now, else how long to wait (ms, rounded up)."""
        wait = max(
            self._accounts.wait_s(username.casefold(), now),
            self._addresses.wait_s(address, now),
        )
        return math.ceil(wait * 1000)

    def failed(self, username: str, address: str, now: float) -> None:
        self._accounts.fail(username.casefold(), now)
        self._addresses.fail(address, now)
