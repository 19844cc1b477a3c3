"""Admission control: when the server is saturated, new clients are told to come back.

A saturated server that queues every ``hello`` of a reconnect storm answers each of them
late, past the client's patience, and the retries feed the storm. Instead, while the
event loop runs late (its lag, sampled every ``SAMPLE_S``, is over ``max_lag_ms``) or
more than ``max_hellos`` hellos are being answered at once, a new ``hello`` (and
``/v1/discover``) is answered at once with ``reconnect{after_ms}``: a delay with jitter
that grows with the overload, so the clients spread themselves out.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from tidings import metrics

SAMPLE_S = 0.1  # a lag worth refusing for (max_lag_ms, 250 by default) spans ticks
BASE_DELAY_MS = 500
MAX_DELAY_MS = 10_000


class Admission:
    """Whether a new ``hello`` is let in now (see the module docstring). The gateway
    counts ``hellos_in_flight``; the loop's lag is sampled between :meth:`start` and
    :meth:`stop`."""

    def __init__(self, max_lag_ms: float, max_hellos: int, clock_ms: Callable[[], int]) -> None:
        self.max_lag_ms = max_lag_ms
        self.max_hellos = max_hellos
        self.clock_ms = clock_ms
        self.lag_ms = 0.0
        self.hellos_in_flight = 0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        """Start sampling the event loop's lag (call it on the running loop)."""
        loop = asyncio.get_running_loop()
        self._due = loop.time() + SAMPLE_S
        self._handle = loop.call_at(self._due, self._sample)

    def stop(self) -> None:
        """Stop sampling."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        late_ms = max(0.0, (now - self._due) * 1000)
        # A fast rise and a slower fall: one late tick is enough to hold off newcomers.
        lag_ms = late_ms if late_ms > self.lag_ms else 0.7 * self.lag_ms + 0.3 * late_ms
        if abs(lag_ms - self.lag_ms) >= 0.1:  # an idle server does not touch the gauge
            metrics.LOOP_LAG.set(lag_ms / 1000)
        self.lag_ms = lag_ms
        self._due = now + SAMPLE_S
        self._handle = loop.call_at(self._due, self._sample)

    @property
    def saturated(self) -> bool:
        """The loop runs late or too many hellos are being answered: turn newcomers away."""
        return self.lag_ms > self.max_lag_ms or self.hellos_in_flight >= self.max_hellos

    def retry_after_ms(self) -> int:
        """How long a turned-away client waits: more the more overloaded, jittered."""
        overload = max(
            self.lag_ms / max(self.max_lag_ms, 1.0),
            self.hellos_in_flight / max(self.max_hellos, 1),
            1.0,
        )
        spread = min(MAX_DELAY_MS, int(BASE_DELAY_MS * overload * 2))
        return BASE_DELAY_MS + random.randint(0, spread)

    def turn_away(self) -> int:
        """Count a turned-away client; the ``after_ms`` to tell it (:meth:`retry_after_ms`)."""
        metrics.ADMISSION_REFUSED.inc()
        return self.retry_after_ms()
