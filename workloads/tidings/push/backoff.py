"""The retry policy: exponential backoff with jitter that honours Retry-After. No I/O."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """``attempts`` in all (1 = no retry); delays grow from ``base_s``, capped at ``max_s``.

    Without Retry-After the delay before attempt ``n + 1`` is "equal jitter": half of
    ``min(max_s, base_s * 2**(n-1))`` plus a random share of the other half, so it grows
    for certain and a fleet of workers does not come back in step. With Retry-After we
    wait at least that long (plus up to ``base_s`` of jitter); a provider that asks for
    more than ``max_s`` is not retried here.
    """

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, failed_attempt: int, retry_after: float | None, rand: float) -> float | None:
        """Seconds to wait after attempt ``failed_attempt`` (from 1) failed; None: give up.

        ``rand`` is a uniform random number in [0, 1).
        """
        if failed_attempt >= self.attempts:
            return None
        if retry_after is not None:
            retry_after = max(0.0, retry_after)
            if retry_after > self.max_s:
                return None
            return retry_after + min(rand * self.base_s, self.max_s - retry_after)
        ceiling: float = min(self.max_s, self.base_s * 2.0 ** (failed_attempt - 1))
        return ceiling / 2 + rand * ceiling / 2


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from ``now`` (epoch seconds): delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
