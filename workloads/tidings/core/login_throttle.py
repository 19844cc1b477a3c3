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

The buckets live in a :class:`BucketStore` — the directory (SQLite for `tidings up`,
PostgreSQL for a cluster) — so every API process of a cluster counts the same failures.
This module holds the arithmetic; a bucket is ``(tokens, at)``: the tokens left as of
``at`` (seconds), refilling at ``per_s`` up to ``burst``. No row means a full bucket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

Level = tuple[float, float]  # (tokens, as of this time in seconds)


@dataclass(frozen=True, slots=True)
class BucketRule:
    burst: float
    per_s: float

    def tokens(self, level: Level | None, now: float) -> float:
        """The tokens the bucket holds at ``now`` (full when it has no level yet)."""
        if level is None:
            return self.burst
        tokens, at = level
        return min(self.burst, tokens + max(0.0, now - at) * self.per_s)

    def wait_s(self, level: Level | None, now: float) -> float:
        """Seconds until the bucket holds a token again (0: now)."""
        tokens = self.tokens(level, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.per_s

    def after_failure(self, level: Level | None, now: float) -> Level:
        """The level after a failed login at ``now``: one token less (never below 0)."""
        return max(0.0, self.tokens(level, now) - 1.0), now


class BucketStore(Protocol):
    async def bucket_levels(self, keys: Sequence[str]) -> Mapping[str, Level]:
        """The stored (tokens, at) of these buckets; one with no level yet is left out (full)."""
        ...

    async def spend_bucket(self, key: str, burst: float, per_s: float, now: float) -> None:
        """Take one token from the bucket, in one transaction (see :class:`BucketRule`)."""
        ...


class LoginThrottle:
    """See the module docstring."""

    def __init__(
        self,
        store: BucketStore,
        *,
        account_burst: float = 10,
        account_per_s: float = 1 / 60,
        address_burst: float = 100,
        address_per_s: float = 1.0,
    ) -> None:
        self.store = store
        self.account = BucketRule(account_burst, account_per_s)
        self.address = BucketRule(address_burst, address_per_s)

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str]:
        return f"login-account:{username.casefold()}", f"login-address:{address}"

    async def retry_after_ms(self, username: str, address: str, now: float) -> int:
        """0 when a login may be tried now, else how long to wait (ms, rounded up)."""
        account_key, address_key = self._keys(username, address)
        levels = await self.store.bucket_levels([account_key, address_key])
        wait = max(
            self.account.wait_s(levels.get(account_key), now),
            self.address.wait_s(levels.get(address_key), now),
        )
        return math.ceil(wait * 1000)

    async def failed(self, username: str, address: str, now: float) -> None:
        """A login failed: take a token from the account's bucket and from the address's."""
        account_key, address_key = self._keys(username, address)
        await self.store.spend_bucket(account_key, self.account.burst, self.account.per_s, now)
        await self.store.spend_bucket(address_key, self.address.burst, self.address.per_s, now)
