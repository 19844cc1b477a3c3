"""cassandra-driver's plumbing (tidings migrate and tools) without a Cassandra: the
stated retry and speculative-execution policies."""

from __future__ import annotations

from cassandra import ConsistencyLevel
from cassandra.policies import (
    ConstantSpeculativeExecutionPolicy,
    NoSpeculativeExecutionPolicy,
    RetryPolicy,
    WriteType,
)
from cassandra.query import SimpleStatement

from tidings.settings import Settings
from tidings.storage.cassandra.io import (
    IdempotentWriteRetryPolicy,
    build_cluster,
    speculative_policy,
)


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

    from tidings.storage.cassandra import store as cassandra

    for name, cql in cassandra._STATEMENTS.items():
        assert " IF " not in f" {cql.upper()} ", name
    root = Path(cassandra.__file__).parents[2]  # all of tidings
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "ALLOW FILTERING" in path.read_text(encoding="utf-8").upper()
    ]
    assert offenders == []
