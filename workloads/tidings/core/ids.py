"""Snowflake ids: 41 bits of milliseconds since EPOCH_MS, 10 bits worker, 12 bits sequence.

Ids are time-sortable 64-bit integers and travel as decimal strings in JSON.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

# 2024-01-01T00:00:00Z: ids stay positive in a signed 64-bit column until 2093.
EPOCH_MS = 1_704_067_200_000
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
# Ids and sequences are stored as signed 64-bit integers: nothing above this names a thing.
MAX_ID = (1 << 63) - 1


def parse_decimal_id(text: str) -> int | None:
    """A non-negative decimal id that fits 63 bits, or None."""
    if text.isascii() and text.isdigit() and 0 < len(text) <= 19:
        value = int(text)
        if value <= MAX_ID:
            return value
    return None


# User ids are random in [2^32, 2^62): not the sign-up time, so a scan of ids finds nobody
# (one account in ~10^14 ids tried for a million users), and still 64-bit like the rest.
_USER_ID_LOW = 1 << 32
_USER_ID_SPAN = (1 << 62) - _USER_ID_LOW


def random_user_id() -> int:
    """A new random user id, in [2^32, 2^62) (see above)."""
    return _USER_ID_LOW + secrets.randbelow(_USER_ID_SPAN)


class ClockWentBackwards(RuntimeError):
    """The wall clock moved back further than the generator is willing to wait out."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SnowflakeGenerator:
    """Makes unique, increasing ids for one worker.

    A clock that steps back by at most ``max_backwards_ms`` is waited out (ids keep
    increasing); a larger step raises :class:`ClockWentBackwards` rather than risk
    handing out an id twice.
    """

    def __init__(
        self,
        worker_id: int,
        *,
        clock_ms: Callable[[], int] = _wall_ms,
        sleep: Callable[[float], None] = time.sleep,
        max_backwards_ms: int = 2_000,
    ) -> None:
        if not 0 <= worker_id <= MAX_WORKER:
            raise ValueError(f"worker id must be within 0..{MAX_WORKER}, got {worker_id}")
        self.worker_id = worker_id
        self._clock_ms = clock_ms
        self._sleep = sleep
        self._max_backwards_ms = max_backwards_ms
        self._last_ms = -1
        self._sequence = 0

    def next_id(self) -> int:
        """The next id: larger than any this generator returned before.

        Waits out a clock that went back, up to ``max_backwards_ms``; raises
        :class:`ClockWentBackwards` beyond that."""
        now = self._clock_ms()
        if now < self._last_ms:
            behind = self._last_ms - now
            if behind > self._max_backwards_ms:
                raise ClockWentBackwards(
                    f"clock went back {behind} ms (limit {self._max_backwards_ms} ms); "
                    "refusing to generate ids"
                )
            while now < self._last_ms:
                self._sleep((self._last_ms - now) / 1000)
                now = self._clock_ms()
        if now == self._last_ms:
            self._sequence = (self._sequence + 1) & MAX_SEQUENCE
            if self._sequence == 0:  # 4096 ids in this millisecond: wait for the next one
                while now <= self._last_ms:
                    now = self._clock_ms()
        else:
            self._sequence = 0
        self._last_ms = now
        return (
            ((now - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS))
            | (self.worker_id << SEQUENCE_BITS)
            | self._sequence
        )


def timestamp_ms(snowflake: int) -> int:
    """The wall-clock millisecond a Snowflake id was made in."""
    return (snowflake >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS


def min_id_at(ms: int) -> int:
    """The smallest id that could have been made at millisecond ``ms`` (for range scans)."""
    return max(ms - EPOCH_MS, 0) << (WORKER_BITS + SEQUENCE_BITS)
