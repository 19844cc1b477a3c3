"""Admission control without sockets: a late event loop turns newcomers away."""

from __future__ import annotations

import asyncio
import time

from tidings.gateway.admission import BASE_DELAY_MS, MAX_DELAY_MS, Admission
from tidings.server import event_loop_choice


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_a_blocked_loop_reads_as_saturated_and_recovers() -> None:
    admission = Admission(max_lag_ms=100, max_hellos=1000, clock_ms=now_ms)
    admission.start()
    try:
        await asyncio.sleep(0.12)
        assert not admission.saturated
        time.sleep(0.3)  # noqa: ASYNC251 - the loop is stuck: the next sample comes late
        await asyncio.sleep(0.06)
        assert admission.saturated
        assert admission.lag_ms > admission.max_lag_ms
        delays = {admission.retry_after_ms() for _ in range(50)}
        assert all(BASE_DELAY_MS <= d <= BASE_DELAY_MS + MAX_DELAY_MS for d in delays)
        assert len(delays) > 1  # jittered
        await asyncio.sleep(1.0)
        assert not admission.saturated
    finally:
        admission.stop()


async def test_too_many_hellos_in_flight_reads_as_saturated() -> None:
    admission = Admission(max_lag_ms=1000, max_hellos=3, clock_ms=now_ms)
    admission.hellos_in_flight = 2
    assert not admission.saturated
    admission.hellos_in_flight = 3
    assert admission.saturated


def test_the_event_loop_falls_back_to_asyncio_without_uvloop() -> None:
    import sys

    import pytest

    assert event_loop_choice("auto") == "uvloop"  # a dependency: installed here
    assert event_loop_choice("asyncio") == "asyncio"
    mp = pytest.MonkeyPatch()
    try:
        mp.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
        assert event_loop_choice("auto") == "asyncio"
        with pytest.raises(RuntimeError, match="uvloop is not installed"):
            event_loop_choice("uvloop")
    finally:
        mp.undo()
