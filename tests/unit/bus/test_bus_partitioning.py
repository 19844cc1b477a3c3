"""partition_for_user is Kafka's default key partitioning (murmur2, positive, modulo P)."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tidings.bus.partitioning import murmur2, murmur2_py, partition_for_user, user_key

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed Java ints).
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_the_java_client(data: bytes, expected: int) -> None:
    assert murmur2_py(data) == expected & 0xFFFFFFFF
    assert murmur2(data) & 0xFFFFFFFF == expected & 0xFFFFFFFF


def test_own_murmur2_equals_aiokafkas_on_random_keys() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        data = rng.randbytes(rng.randint(0, 33))
        assert murmur2_py(data) == murmur2(data) & 0xFFFFFFFF


@pytest.mark.parametrize("partitions", [1, 4, 7, 64, 256])
def test_partition_for_user_equals_the_producers_default_partitioner(partitions: int) -> None:
    everything = list(range(partitions))
    for user_id in [0, 1, 42, 10**6, 2**62 + 12345, *range(1000, 1200)]:
        expected = DefaultPartitioner()(user_key(user_id), everything, everything)
        assert partition_for_user(user_id, partitions) == expected


def test_user_key_is_the_decimal_id() -> None:
    assert user_key(1234567890123) == b"1234567890123"


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        partition_for_user(1, 0)
