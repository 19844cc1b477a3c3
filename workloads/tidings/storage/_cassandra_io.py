"""cassandra-driver on asyncio: the cluster from settings, statements as awaitables.

The driver does its I/O on its own threads and reports through callbacks; :class:`Cql`
turns ``Session.execute_async`` into an awaitable (``ResponseFuture.add_callbacks`` ->
``loop.call_soon_threadsafe``), follows every result page, and wraps the driver's errors
in the storage hierarchy of :mod:`tidings.storage.base`:

- :class:`~tidings.storage.base.StorageUnavailable` (retriable): timeouts, unavailable
  replicas, no host reachable, overloaded or bootstrapping coordinators, lost connections;
- :class:`~tidings.storage.base.StorageError`: everything else (invalid query, missing
  schema, authentication), where trying again does not help.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from cassandra import (
    ConsistencyLevel,
    OperationTimedOut,
    Timeout,
    Unavailable,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    ResponseFuture,
    Session,
)
from cassandra.connection import ConnectionException
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    RetryPolicy,
    TokenAwarePolicy,
)
from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage
from cassandra.query import PreparedStatement, dict_factory

from tidings.settings import Settings
from tidings.storage.base import StorageError, StorageUnavailable

log = logging.getLogger(__name__)

Row = dict[str, Any]
T = TypeVar("T")

_RETRIABLE: tuple[type[BaseException], ...] = (
    Timeout,  # ReadTimeout, WriteTimeout (server side)
    OperationTimedOut,  # client side
    Unavailable,
    NoHostAvailable,
    ConnectionException,
    OverloadedErrorMessage,
    IsBootstrappingErrorMessage,
)
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


def check_identifier(name: str) -> str:
    """A keyspace name safe to put into CQL unquoted (Cassandra's own rule: 48 chars),
    lower-cased as Cassandra folds unquoted names (so lookups in system tables match)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid Cassandra keyspace name: {name!r}")
    return name.lower()


def consistency_level(name: str) -> int:
    try:
        level: int = ConsistencyLevel.name_to_value[name.upper()]
    except KeyError:
        raise ValueError(f"unknown Cassandra consistency level: {name!r}") from None
    return level


def wrap_error(exc: BaseException, what: str) -> StorageError:
    """The storage error for a driver error (the caller raises it ``from exc``)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, _RETRIABLE):
        return StorageUnavailable(f"cassandra unavailable during {what}: {exc}")
    return StorageError(f"cassandra error during {what}: {exc}")


def build_cluster(settings: Settings) -> Cluster:
    """A driver ``Cluster`` from the ``cassandra_*`` settings (not yet connected).

    Token-aware routing over DC-aware round robin (the local DC from settings, else the
    contact points' DC), the driver's standard retry policy (it retries only what is safe:
    a read timeout once when enough replicas answered, an unavailable once on the next
    host), rows as dicts, LOCAL_SERIAL for lightweight transactions.
    """
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(
            DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc or "")
        ),
        retry_policy=RetryPolicy(),
        consistency_level=consistency_level(settings.cassandra_consistency),
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=settings.cassandra_request_timeout_s,
        row_factory=dict_factory,
    )
    auth = (
        PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password or "")
        if settings.cassandra_username
        else None
    )
    return Cluster(
        contact_points=list(settings.cassandra_contact_points),
        port=settings.cassandra_port,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=settings.cassandra_request_timeout_s,
        control_connection_timeout=settings.cassandra_request_timeout_s,
        # Cassandra 4.0+ speaks v5; naming it skips the driver's noisy downgrade dance.
        protocol_version=settings.cassandra_protocol_version,
        # Come back quickly after a node restart (the default backs off to 10 minutes).
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
    )


async def connect(settings: Settings) -> tuple[Cluster, Session]:
    """Build and connect a cluster; connecting blocks, so it runs in a thread."""
    cluster = build_cluster(settings)
    try:
        session = await asyncio.to_thread(cluster.connect)
    except Exception as exc:
        await asyncio.to_thread(cluster.shutdown)
        raise wrap_error(exc, "connect") from exc
    return cluster, session


def _as_dict(row: Any) -> Row:
    if isinstance(row, dict):
        return row
    if hasattr(row, "_asdict"):  # a session with the driver's default named tuples
        return dict(row._asdict())
    raise TypeError(f"unexpected row type {type(row).__name__}")


def _resolve(fut: asyncio.Future[T], value: T) -> None:
    if not fut.done():  # the waiter may have been cancelled meanwhile
        fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class Cql:
    """Runs statements on a session without blocking the event loop."""

    def __init__(self, session: Session, *, concurrency: int = 64) -> None:
        self.session = session
        # Bounds the requests in flight (each holds a slot only while it runs, so nested
        # fan-outs cannot deadlock).
        self._in_flight = asyncio.Semaphore(concurrency)

    async def prepare(self, queries: Mapping[str, str]) -> dict[str, PreparedStatement]:
        """Prepare many statements (preparing blocks, so it runs in a thread)."""

        def prepare_all() -> dict[str, PreparedStatement]:
            return {name: self.session.prepare(cql) for name, cql in queries.items()}

        try:
            return await asyncio.to_thread(prepare_all)
        except Exception as exc:
            raise wrap_error(exc, "prepare") from exc

    async def rows(
        self,
        statement: Any,
        params: Sequence[Any] | None = None,
        *,
        request_timeout_s: float | None = None,
        what: str = "query",
    ) -> list[Row]:
        """Run a statement and return every row of every page."""
        async with self._in_flight:
            return await self._rows(statement, params, request_timeout_s, what)

    async def _rows(
        self,
        statement: Any,
        params: Sequence[Any] | None,
        request_timeout_s: float | None,
        what: str,
    ) -> list[Row]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Row]] = loop.create_future()
        collected: list[Row] = []
        try:
            if request_timeout_s is None:
                response: ResponseFuture = self.session.execute_async(statement, params)
            else:
                response = self.session.execute_async(statement, params, timeout=request_timeout_s)
        except Exception as exc:
            raise wrap_error(exc, what) from exc

        def on_page(page: Iterable[Any] | None) -> None:
            try:
                collected.extend(_as_dict(r) for r in page or ())
                if response.has_more_pages:
                    response.start_fetching_next_page()  # calls back here again
                    return
            except Exception as exc:  # pragma: no cover - driver bug territory
                loop.call_soon_threadsafe(_fail, fut, exc)
                return
            loop.call_soon_threadsafe(_resolve, fut, collected)

        def on_error(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_fail, fut, exc)

        response.add_callbacks(on_page, on_error)
        try:
            return await fut
        except Exception as exc:
            raise wrap_error(exc, what) from exc

    async def first(
        self, statement: Any, params: Sequence[Any] | None = None, *, what: str = "query"
    ) -> Row | None:
        found = await self.rows(statement, params, what=what)
        return found[0] if found else None

    async def run(
        self,
        statement: Any,
        params: Sequence[Any] | None = None,
        *,
        request_timeout_s: float | None = None,
        what: str = "write",
    ) -> None:
        await self.rows(statement, params, request_timeout_s=request_timeout_s, what=what)

    @staticmethod
    async def gather(work: Iterable[Awaitable[T]]) -> list[T]:
        """Await many operations at once (requests stay bounded by the semaphore)."""
        return list(await asyncio.gather(*work))
