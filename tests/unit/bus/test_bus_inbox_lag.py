"""tidings_inbox_consumer_lag: what the last fetch says this server has not handled."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from tidings import metrics
from tidings.bus.kafka import KafkaBus
from tidings.settings import Settings


class Consumer:
    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self.ends = ends

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends.get(tp)


def records(*offsets: int) -> list[Any]:
    return [SimpleNamespace(offset=o) for o in offsets]


def test_lag_is_the_end_minus_what_the_batches_reached_and_zero_when_caught_up() -> None:
    bus = KafkaBus(Settings(), group_id=None)
    a, b = TopicPartition("t.inbox", 0), TopicPartition("t.inbox", 1)
    consumer = Consumer({a: 100, b: 50})
    bus._note_lag(consumer, {a: records(10, 11, 12), b: records(49)})
    assert metrics.INBOX_LAG._value.get() == (100 - 13) + 0
    bus._note_lag(consumer, {a: records(99)})  # b keeps its last figure (0)
    assert metrics.INBOX_LAG._value.get() == 0
    bus._note_lag(Consumer({a: 150}), {a: records(100)})
    assert metrics.INBOX_LAG._value.get() == 49
    bus._note_lag(consumer, {})  # a fetch with nothing: caught up
    assert metrics.INBOX_LAG._value.get() == 0
