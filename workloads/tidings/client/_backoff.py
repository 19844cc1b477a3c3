"""Exponential backoff with full jitter, capped (no I/O).

The n-th delay (n from 0) is drawn uniformly from ``[0, min(cap, base * 2**n)]``: clients
that lost the same server spread their reconnects over the whole window instead of
arriving together.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]

_MAX_EXPONENT = 64  # 2**64 * any sensible base is far above any cap; avoids float overflow


class Backoff:
    """Delays for successive reconnect attempts; :meth:`reset` after a success."""

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, *, rng: random.Random | None = None
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
