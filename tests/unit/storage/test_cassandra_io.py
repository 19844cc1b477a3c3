"""The Cassandra plumbing without a Cassandra: write grouping per partition, the stated
retry and speculative-execution policies."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from cassandra import ConsistencyLevel
from cassandra.policies import (
    ConstantSpeculativeExecutionPolicy,
    NoSpeculativeExecutionPolicy,
    RetryPolicy,
    WriteType,
)
from cassandra.query import BatchStatement, SimpleStatement

from tidings.settings import Settings
from tidings.storage._cassandra_io import (
    IdempotentWriteRetryPolicy,
    PartitionWrites,
    build_cluster,
    speculative_policy,
)
from tidings.storage.base import StorageUnavailable


class FakeCql:
    def __init__(self, fail: bool = False) -> None:
        self.requests: list[tuple[Any, Sequence[Any] | None]] = []
        self.fail = fail

    async def run(self, statement: Any, params: Sequence[Any] | None = None, **_: Any) -> None:
        self.requests.append((statement, params))
        await asyncio.sleep(0)
        if self.fail:
            raise StorageUnavailable("down")


async def test_writes_of_one_tick_go_out_as_one_request_per_partition() -> None:
    cql = FakeCql()
    writes = PartitionWrites(cql, max_rows=3)  # type: ignore[arg-type]
    insert = "INSERT INTO ks.t (p, c) VALUES (%s, %s)"
    futures = [writes.write(insert, ("a", n), ("t", "a")) for n in range(4)]
    futures.append(writes.write(insert, ("b", 0), ("t", "b")))
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    kinds = sorted(
        (type(statement).__name__, len(statement._statements_and_parameters))
        if isinstance(statement, BatchStatement)
        else ("single", 1)
        for statement, _ in cql.requests
    )
    # Partition a: a batch of 3 and a lone write (max_rows); partition b: a lone write.
    assert kinds == [("BatchStatement", 3), ("single", 1), ("single", 1)]
    for statement, _ in cql.requests:
        if isinstance(statement, BatchStatement):
            assert statement.is_idempotent


async def test_batches_stay_under_their_byte_bound_and_big_rows_go_alone() -> None:
    cql = FakeCql()
    writes = PartitionWrites(cql, max_rows=50, max_bytes=1000)  # type: ignore[arg-type]
    insert = "INSERT INTO ks.t (p, c) VALUES (%s, %s)"
    sizes = [400, 400, 400, 5000, 100]
    futures = [writes.write(insert, ("a", n), "a", size=s) for n, s in enumerate(sizes)]
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    shapes = [
        len(statement._statements_and_parameters) if isinstance(statement, BatchStatement) else 1
        for statement, _ in cql.requests
    ]
    assert sorted(shapes) == [1, 1, 1, 2]  # [400, 400] [400] [5000] [100]


async def test_a_failed_partition_write_fails_its_own_callers_only() -> None:
    failing, working = FakeCql(fail=True), FakeCql()
    bad = PartitionWrites(failing)  # type: ignore[arg-type]
    good = PartitionWrites(working)  # type: ignore[arg-type]
    lost = [bad.write("INSERT INTO ks.t (p) VALUES (%s)", (n,), "p") for n in range(2)]
    kept = good.write("INSERT INTO ks.t (p) VALUES (%s)", (1,), "q")
    for future in lost:
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(future, 5)
    await asyncio.wait_for(kept, 5)


async def test_a_write_that_cannot_be_built_fails_instead_of_hanging() -> None:
    writes = PartitionWrites(FakeCql())  # type: ignore[arg-type]
    broken = [writes.write("INSERT INTO ks.t (p) VALUES (%s)", (1, 2, 3), "p") for _ in range(2)]
    for future in broken:
        with pytest.raises(TypeError):
            await asyncio.wait_for(future, 5)


def test_a_timed_out_idempotent_write_is_retried_once() -> None:
    policy = IdempotentWriteRetryPolicy()
    idempotent = SimpleStatement("INSERT", is_idempotent=True)
    other = SimpleStatement("UPDATE", is_idempotent=False)
    quorum = ConsistencyLevel.LOCAL_QUORUM
    for write_type in (WriteType.SIMPLE, WriteType.UNLOGGED_BATCH):
        assert policy.on_write_timeout(idempotent, quorum, write_type, 2, 1, 0) == (
            RetryPolicy.RETRY,
            quorum,
        )
        assert policy.on_write_timeout(idempotent, quorum, write_type, 2, 1, 1)[0] == (
            RetryPolicy.RETHROW
        )
        assert policy.on_write_timeout(other, quorum, write_type, 2, 1, 0)[0] == (
            RetryPolicy.RETHROW
        )
    for write_type in (WriteType.CAS, WriteType.COUNTER):
        assert policy.on_write_timeout(idempotent, quorum, write_type, 2, 1, 0)[0] == (
            RetryPolicy.RETHROW
        )


def test_speculative_execution_is_off_unless_asked_for() -> None:
    off = speculative_policy(0)
    assert type(off) is NoSpeculativeExecutionPolicy
    assert off.new_plan("ks", None).next_execution(None) == -1  # the driver's "never"
    on = speculative_policy(150)
    assert isinstance(on, ConstantSpeculativeExecutionPolicy)
    assert (on.delay, on.max_attempts) == (0.15, 1)


def test_the_cluster_profile_states_its_policies() -> None:
    cluster = build_cluster(Settings(cassandra_speculative_delay_ms=200))
    profile = cluster.profile_manager.default
    assert isinstance(profile.retry_policy, IdempotentWriteRetryPolicy)
    assert isinstance(profile.speculative_execution_policy, ConstantSpeculativeExecutionPolicy)
    assert profile.consistency_level == ConsistencyLevel.LOCAL_QUORUM
    assert type(profile.load_balancing_policy).__name__ == "TokenAwarePolicy"


def test_no_statement_takes_a_lightweight_transaction_or_filters() -> None:
    from pathlib import Path

    from tidings.storage import cassandra

    for name, cql in cassandra._STATEMENTS.items():
        assert " IF " not in f" {cql.upper()} ", name
    root = Path(cassandra.__file__).parents[1]
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "ALLOW FILTERING" in path.read_text(encoding="utf-8").upper()
    ]
    assert offenders == []
