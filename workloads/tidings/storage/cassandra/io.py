"""cassandra-driver on asyncio: the cluster from settings, statements as awaitables.

Used by ``tidings migrate`` (:mod:`tidings.storage.cassandra.schema`: DDL waits for
schema agreement), tools and tests. The message store itself runs on the C++ driver
(:mod:`tidings.storage.cassandra.io_async`), about a quarter of this one's CPU per request.

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
import ssl
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
    ConstantSpeculativeExecutionPolicy,
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    NoSpeculativeExecutionPolicy,
    RetryPolicy,
    SpeculativeExecutionPolicy,
    TokenAwarePolicy,
    WriteType,
)
from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage
from cassandra.query import PreparedStatement, dict_factory

from tidings.settings import Settings, SettingsError
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
_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL
)


def check_identifier(name: str) -> str:
    """A keyspace name safe to put into CQL unquoted (Cassandra's own rule: 48 chars),
    lower-cased as Cassandra folds unquoted names (so lookups in system tables match)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid Cassandra keyspace name: {name!r}")
    return name.lower()


def consistency_level(name: str) -> int:
    """cassandra-driver's consistency level for a settings name such as ``LOCAL_QUORUM``;
    ValueError for an unknown one."""
    try:
        level: int = ConsistencyLevel.name_to_value[name.upper()]
    except KeyError:
        raise ValueError(f"unknown Cassandra consistency level: {name!r}") from None
    return level


def wrap_error(
    exc: BaseException, what: str, retriable: tuple[type[BaseException], ...] = _RETRIABLE
) -> StorageError:
    """The storage error for a driver error (the caller raises it ``from exc``):
    :class:`StorageUnavailable` for the ``retriable`` kinds (this driver's by default)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, retriable):
        return StorageUnavailable(f"cassandra unavailable during {what}: {exc}")
    return StorageError(f"cassandra error during {what}: {exc}")


class IdempotentWriteRetryPolicy(RetryPolicy):  # type: ignore[misc]
    """The driver's standard policy, plus one retry of a timed-out idempotent write.

    - read timeout: retried once, at the same consistency, when enough replicas answered
      but the one holding the data did not (the driver's rule);
    - write timeout: retried once on the same coordinator when the statement is marked
      idempotent and is a plain write or an unlogged batch. Every statement of the
      message store is an upsert of the same values (no lightweight transaction, no
      counter), so applying it twice is applying it once. Anything else is rethrown;
    - unavailable (too few live replicas): tried once on the next host (the driver's rule);
    - request error (connection lost, overloaded or bootstrapping coordinator): tried on
      the next host, once (the driver's rule).

    A retry that fails too comes out as :class:`~tidings.storage.base.StorageUnavailable`,
    and the caller's own retry takes over (the client resends with the same
    client_msg_id; the inbox consumer handles the batch again).
    """

    _RETRIED_WRITES = frozenset({WriteType.SIMPLE, WriteType.UNLOGGED_BATCH, WriteType.BATCH})

    def on_write_timeout(
        self,
        query: Any,
        consistency: int,
        write_type: int,
        required_responses: int,
        received_responses: int,
        retry_num: int,
    ) -> tuple[int, int | None]:
        """Retry an idempotent simple or batch write once at the same consistency; anything else
        as the default policy decides."""
        if (
            retry_num == 0
            and write_type in self._RETRIED_WRITES
            and getattr(query, "is_idempotent", False)
        ):
            return self.RETRY, consistency
        result: tuple[int, int | None] = super().on_write_timeout(
            query, consistency, write_type, required_responses, received_responses, retry_num
        )
        return result


def speculative_policy(delay_ms: int) -> SpeculativeExecutionPolicy:
    """After ``delay_ms`` without an answer, one more attempt on the next replica of the
    query plan (the driver speculates only on statements marked idempotent); 0: never."""
    if delay_ms <= 0:
        return NoSpeculativeExecutionPolicy()  # (the base class's new_plan raises)
    return ConstantSpeculativeExecutionPolicy(delay_ms / 1000, 1)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for ``cassandra_ssl`` (None without it): the nodes' certificates
    must chain to a certificate of ``cassandra_ssl_cafile`` (every one in the bundle is
    trusted) and, with ``cassandra_ssl_verify_hostname``, name the address connected to.

    A CA file that cannot be read or holds no certificate is a :class:`SettingsError`
    naming the setting and the file, raised when the cluster is built (at start).
    """
    if not settings.cassandra_ssl:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED
    context.check_hostname = settings.cassandra_ssl_verify_hostname
    context.load_verify_locations(cadata=trusted_ca_pem(settings))
    return context


def trusted_ca_pem(settings: Settings) -> str:
    """The certificates of ``cassandra_ssl_cafile`` as PEM text (the C++ driver takes the
    PEM itself, not a path), each checked to parse; anything else in the file (comments,
    keys) is left out."""
    path = settings.cassandra_ssl_cafile
    try:
        with open(path or "", encoding="utf-8", errors="replace") as f:
            blocks = _PEM_CERTIFICATE.findall(f.read())
        if not blocks:
            raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")
        pem = "\n".join(blocks) + "\n"
        ssl.create_default_context(cadata=pem)  # parses every certificate
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise SettingsError(
            f"TIDINGS_CASSANDRA_SSL_CAFILE={path}: cannot load CA certificates from it: {exc}"
        ) from exc
    return pem


def build_cluster(settings: Settings) -> Cluster:
    """A driver ``Cluster`` from the ``cassandra_*`` settings (not yet connected).

    - Routing: token-aware over DC-aware round robin (the local DC from settings, else
      the contact points' DC): a prepared statement's partition key picks a replica as
      coordinator, so a single-partition request (or single-partition batch) takes no
      extra hop.
    - Consistency: ``cassandra_consistency``, LOCAL_QUORUM by default. The dedupe and
      inbox arguments (docs/architecture.md) need reads that see acknowledged writes,
      i.e. R + W > RF, which LOCAL_QUORUM for both gives. No statement is a lightweight
      transaction, so the serial consistency is never used.
    - Retries: :class:`IdempotentWriteRetryPolicy`.
    - Speculative execution: ``cassandra_speculative_delay_ms`` (:func:`speculative_policy`),
      off by default.
    - Rows as dicts; ``cassandra_request_timeout_s`` per request.
    - TLS with ``cassandra_ssl`` (:func:`ssl_context`).
    """
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(
            DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc or "")
        ),
        retry_policy=IdempotentWriteRetryPolicy(),
        speculative_execution_policy=speculative_policy(settings.cassandra_speculative_delay_ms),
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
        ssl_context=ssl_context(settings),
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
        """The first row a statement returns, or None."""
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
        """Run a statement for its effect (a write, or DDL); errors wrapped like :meth:`rows`."""
        await self.rows(statement, params, request_timeout_s=request_timeout_s, what=what)

    @staticmethod
    async def gather(work: Iterable[Awaitable[T]]) -> list[T]:
        """Await many operations at once (requests stay bounded by the semaphore)."""
        return list(await asyncio.gather(*work))
