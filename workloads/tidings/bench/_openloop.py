"""Open-loop sending: message ``i`` is due at ``start + i / rate`` whatever happened to
the ones before it, and its latency is measured from that intended time. A slow server
therefore shows up as latency instead of silently lowering the offered rate (no
coordinated omission). All times are ``time.monotonic_ns()``: one clock for every
process on the machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tidings.bench._histogram import Latency


async def run_open_loop(
    rate: float,
    start_ns: int,
    duration_s: float,
    fire: Callable[[int, int], None],
    lag: Latency | None = None,
) -> int:
    """Call ``fire(i, intended_ns)`` for every message due in the window; returns how
    many fired. Messages that fall behind are sent at once, keeping their intended time;
    ``lag`` records how late each left (the generator's own health)."""
    if rate <= 0 or duration_s <= 0:
        return 0
    interval_ns = max(1, int(1e9 / rate))
    total = int(rate * duration_s)
    i = 0
    while i < total:
        now = time.monotonic_ns()
        due = min(total, (now - start_ns) // interval_ns + 1) if now >= start_ns else 0
        while i < due:
            intended = start_ns + i * interval_ns
            fire(i, intended)
            if lag is not None:
                lag.record_ns(time.monotonic_ns() - intended)
            i += 1
        if i >= total:
            break
        wait_ns = start_ns + i * interval_ns - time.monotonic_ns()
        await asyncio.sleep(max(0.0, wait_ns / 1e9))
    return i
