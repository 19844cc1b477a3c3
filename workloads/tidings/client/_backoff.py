"""Exponential backoff with full jitter, capped (no I/O).

The n-th delay (n from 0) is drawn uniformly from ``[0, min(cap, base * 2**n)]``: clients
that lost the same server spread their reconnects over the whole window instead of
arriving together.

Two policies use it (docs/protocol.md, "Reconnecting"): a connection lost out of the blue
backs off up to :data:`CAP_S`; after the server said ``reconnect{after_ms}`` (a drain or
a restart), attempts that fail — typically "connection refused" while the next process
starts — retry briskly, capped at :data:`RESTART_CAP_S`, for :data:`RESTART_WINDOW_S`,
since the server is expected back within seconds.
"""

from __future__ import annotations

import random

__all__ = [
    "BASE_S",
    "CAP_S",
    "RESTART_BASE_S",
    "RESTART_CAP_S",
    "RESTART_WINDOW_S",
    "Backoff",
    "restart_backoff",
]

_MAX_EXPONENT = 64  # 2**64 * any sensible base is far above any cap; avoids float overflow

BASE_S = 0.5  # a lost connection: the first retry within 0.5 s, then 1, 2, 4 ...
CAP_S = 30.0  # ... up to 30 s (an outage: do not drain the battery or stampede)
RESTART_BASE_S = 0.5  # after reconnect{after_ms}: within 0.5 s, 1 s, then ...
RESTART_CAP_S = 2.0  # ... every 2 s at most: a restarting server is back in seconds
RESTART_WINDOW_S = 30.0  # how long after the reconnect delay the brisk policy holds


class Backoff:
    """Delays for successive reconnect attempts; :meth:`reset` after a success."""

    def __init__(
        self, base: float = BASE_S, cap: float = CAP_S, *, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rng = rng if rng is not None else random.Random()

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before attempt ``attempt`` (0-based)."""
        return min(self.cap, self.base * 2.0 ** min(attempt, _MAX_EXPONENT))

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failed attempt."""
        delay = self._rng.uniform(0.0, self.ceiling(self.attempts))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


def restart_backoff(rng: random.Random | None = None) -> Backoff:
    """The policy for attempts after the server said ``reconnect``: full jitter, base
    :data:`RESTART_BASE_S`, cap :data:`RESTART_CAP_S`."""
    return Backoff(RESTART_BASE_S, RESTART_CAP_S, rng=rng)
