"""The message store's driver connection (acsylla), without a server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from acsylla import errors as cass

from tidings.settings import Settings
from tidings.storage.base import StorageError, StorageUnavailable
from tidings.storage.cassandra.io_async import PartitionWrites, build_cluster, wrap_error


@pytest.mark.parametrize(
    "error",
    [
        cass.CassErrorServerWriteTimeout("w"),
        cass.CassErrorServerReadTimeout("r"),
        cass.CassErrorServerUnavailable("u"),
        cass.CassErrorServerOverloaded("o"),
        cass.CassErrorLibRequestTimedOut("t"),
        cass.CassErrorLibNoHostsAvailable("n"),
    ],
)
def test_timeouts_and_missing_replicas_are_retriable(error: Exception) -> None:
    wrapped = wrap_error(error, "save message")
    assert isinstance(wrapped, StorageUnavailable) and wrapped.retriable
    assert "save message" in str(wrapped)


def test_a_bad_query_is_not_retriable() -> None:
    wrapped = wrap_error(cass.CassErrorServerInvalidQuery("no such column"), "read inbox")
    assert type(wrapped) is StorageError and not isinstance(wrapped, StorageUnavailable)


async def test_the_cluster_takes_every_setting_it_is_given() -> None:
    build_cluster(
        Settings(
            cassandra_consistency="local_quorum",
            cassandra_local_dc="dc1",
            cassandra_speculative_delay_ms=200,
            cassandra_username="tidings",
            cassandra_password="pw",
        )
    )
    with pytest.raises(ValueError, match="consistency level"):
        build_cluster(Settings(cassandra_consistency="NOT_A_LEVEL"))


class FakeCql:
    """Records requests: a batch is ``("batch", [(statement, params), ...])``."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[Any] = []
        self.fail = fail

    @staticmethod
    def batch(statements: Iterable[tuple[Any, Sequence[Any]]]) -> Any:
        return ("batch", list(statements))

    async def run(self, statement: Any, params: Sequence[Any] | None = None, **_: Any) -> None:
        self.requests.append(statement if params is None else (statement, params))
        await asyncio.sleep(0)
        if self.fail:
            raise StorageUnavailable("down")


def shape(request: Any) -> int:
    return len(request[1]) if request[0] == "batch" else 1


async def test_writes_of_one_tick_go_out_as_one_request_per_partition() -> None:
    cql = FakeCql()
    writes = PartitionWrites(cql, max_rows=3)  # type: ignore[arg-type]
    futures = [writes.write("insert", ("a", n), ("t", "a")) for n in range(4)]
    futures.append(writes.write("insert", ("b", 0), ("t", "b")))
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    # Partition a: a batch of 3 and a lone write (max_rows); partition b: a lone write.
    assert sorted(shape(r) for r in cql.requests) == [1, 1, 3]


async def test_batches_stay_under_their_byte_bound_and_big_rows_go_alone() -> None:
    cql = FakeCql()
    writes = PartitionWrites(cql, max_rows=50, max_bytes=1000)  # type: ignore[arg-type]
    sizes = [400, 400, 400, 5000, 100]
    futures = [writes.write("insert", ("a", n), "a", size=s) for n, s in enumerate(sizes)]
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert sorted(shape(r) for r in cql.requests) == [1, 1, 1, 2]  # [400 400] [400] [5000] [100]


async def test_a_failed_partition_write_fails_its_own_callers_only() -> None:
    failing, working = FakeCql(fail=True), FakeCql()
    bad = PartitionWrites(failing)  # type: ignore[arg-type]
    good = PartitionWrites(working)  # type: ignore[arg-type]
    lost = [bad.write("insert", (n,), "p") for n in range(2)]
    kept = good.write("insert", (1,), "q")
    for future in lost:
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(future, 5)
    await asyncio.wait_for(kept, 5)
