"""The message store's driver connection (acsylla), without a server."""

from __future__ import annotations

import pytest
from acsylla import errors as cass

from tidings.settings import Settings
from tidings.storage._cassandra_async import build_cluster, wrap_error
from tidings.storage.base import StorageError, StorageUnavailable


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
