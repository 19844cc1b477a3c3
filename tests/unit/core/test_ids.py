import pytest

from tidings.core.ids import (
    EPOCH_MS,
    MAX_SEQUENCE,
    ClockWentBackwards,
    SnowflakeGenerator,
    min_id_at,
    timestamp_ms,
)


class FakeClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.ms

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.ms += max(1, int(seconds * 1000))


def test_ids_increase_and_carry_time_and_worker() -> None:
    clock = FakeClock(EPOCH_MS + 10_000)
    gen = SnowflakeGenerator(7, clock_ms=clock, sleep=clock.sleep)
    first, second = gen.next_id(), gen.next_id()
    assert second > first
    assert timestamp_ms(first) == clock.ms
    assert (first >> 12) & 0x3FF == 7
    assert min_id_at(clock.ms) <= first


def test_sequence_overflow_waits_for_the_next_millisecond() -> None:
    clock = FakeClock(EPOCH_MS + 1)
    calls = iter(range(10**6))

    def ticking() -> int:  # time moves on only after many reads
        return EPOCH_MS + 1 + next(calls) // 5000

    gen = SnowflakeGenerator(1, clock_ms=ticking, sleep=clock.sleep)
    made = [gen.next_id() for _ in range(MAX_SEQUENCE + 10)]
    assert made == sorted(made) and len(set(made)) == len(made)


def test_small_clock_step_back_is_waited_out() -> None:
    clock = FakeClock(EPOCH_MS + 5_000)
    gen = SnowflakeGenerator(1, clock_ms=clock, sleep=clock.sleep)
    before = gen.next_id()
    clock.ms -= 50
    after = gen.next_id()
    assert after > before and clock.slept


def test_large_clock_step_back_is_refused() -> None:
    clock = FakeClock(EPOCH_MS + 50_000)
    gen = SnowflakeGenerator(1, clock_ms=clock, sleep=clock.sleep, max_backwards_ms=1000)
    gen.next_id()
    clock.ms -= 10_000
    with pytest.raises(ClockWentBackwards):
        gen.next_id()


def test_worker_id_must_fit_in_ten_bits() -> None:
    with pytest.raises(ValueError):
        SnowflakeGenerator(1024)
