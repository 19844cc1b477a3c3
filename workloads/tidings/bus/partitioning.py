"""Which inbox partition a user is on: Kafka's default key partitioning, computed here.

The Kafka bus keys every inbox event by ``str(user_id).encode()`` and leaves the
partition to the producer's default partitioner (murmur2 of the key, made positive,
modulo the partition count), exactly like the Java client. The API and the chat servers
compute the same number with :func:`partition_for_user` to find a user's owner.
"""

from __future__ import annotations

from collections.abc import Callable

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2_py(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as unsigned 32 bits."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    base = length - tail
    if tail >= 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


try:  # the producer's own function, so the two can never disagree
    from aiokafka.partitioner import murmur2 as _aiokafka_murmur2

    murmur2: Callable[[bytes], int] = _aiokafka_murmur2
except ImportError:  # pragma: no cover - aiokafka is a dependency; this keeps the API light
    murmur2 = murmur2_py


def user_key(user_id: int) -> bytes:
    """The Kafka record key of a user's inbox events."""
    return str(user_id).encode()


def partition_for_user(user_id: int, partitions: int) -> int:
    """The inbox partition of ``user_id`` on a topic with ``partitions`` partitions."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    return (murmur2(user_key(user_id)) & 0x7FFFFFFF) % partitions
