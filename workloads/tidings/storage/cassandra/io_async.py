"""The message store's Cassandra connection: the C++ driver, through acsylla.

Every message costs the chat servers several Cassandra requests (docs/architecture.md,
"The cluster send path"). cassandra-driver spends about 85 µs of Python per request on
this project's machines (request and response objects, a threading.Event per request,
its own I/O thread handing results back to the loop); acsylla, a thin asyncio binding of
ScyllaDB's C++ driver (it speaks to Cassandra as well), about 23 µs, with the I/O on the
C++ driver's own thread. Measured with ``tidings bench cluster`` (docs/benchmarks.md).
cassandra-driver stays for schema migrations (``tidings migrate``, which waits for schema
agreement) and tools.

What this connection does, from the ``cassandra_*`` settings:

- Routing: token-aware (a prepared statement's partition key picks a replica as the
  coordinator, so a single-partition request or batch takes no extra hop), DC-aware
  round robin under it, with ``cassandra_local_dc`` as the local DC when set.
- Consistency: ``cassandra_consistency`` (LOCAL_QUORUM by default) for reads and
  writes. The dedupe and inbox arguments in docs/architecture.md need reads that see
  acknowledged writes: R + W > RF, which LOCAL_QUORUM for both gives. No statement is a
  lightweight transaction.
- Retries: the driver's default policy (a read timeout with enough replicas answering
  is retried once; too few live replicas: once on the next host; a write timeout is not
  retried by the driver) and, here, one more attempt of a write that timed out, since
  every statement of the message store is an upsert of the same values and is marked
  idempotent (which also lets the driver retry it on another host after a connection
  error). A retry that fails too comes out as
  :class:`~tidings.storage.base.StorageUnavailable`, and the caller's own retry takes
  over (the client resends with the same client_msg_id; the inbox consumer handles its
  poll again).
- Speculative execution: ``cassandra_speculative_delay_ms`` (off by default).
- ``cassandra_request_timeout_s`` per request; requests in flight bounded
  (:class:`AsyncCql`).
- TLS with ``cassandra_ssl``: the same checks as cassandra-driver's
  (:func:`~tidings.storage.cassandra.io.ssl_context`), TLS 1.2 at most (the C++
  driver's limit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import acsylla
from acsylla import errors as cass

from tidings.settings import Settings
from tidings.storage.base import StorageError
from tidings.storage.cassandra.io import trusted_ca_pem
from tidings.storage.cassandra.io import wrap_error as wrap_driver_error

log = logging.getLogger(__name__)


def _not_about_shards(record: logging.LogRecord) -> bool:
    """The driver is ScyllaDB's: on every connection to Cassandra (which has no shards)
    it logs, at error level, that it continues without shard awareness. Not an error."""
    return "sharding info" not in record.getMessage()


logging.getLogger("acsylla").addFilter(_not_about_shards)
_BATCH = type(acsylla.create_batch_unlogged())

Row = dict[str, Any]
Prepared = Any  # acsylla.PreparedStatement
T = TypeVar("T")
_Queued = tuple[Prepared, Sequence[Any], "asyncio.Future[None]"]

PAGE_ROWS = 5000

_RETRIABLE: tuple[type[BaseException], ...] = (
    cass.CassErrorServerReadTimeout,
    cass.CassErrorServerWriteTimeout,
    cass.CassErrorServerUnavailable,
    cass.CassErrorServerOverloaded,
    cass.CassErrorServerIsBootstrapping,
    cass.CassErrorLibRequestTimedOut,
    cass.CassErrorLibNoHostsAvailable,
    cass.CassErrorLibUnableToConnect,
    cass.CassErrorLibNoStreams,
    cass.CassErrorLibRequestQueueFull,
    cass.CassErrorLibWriteError,
    cass.CassExceptionConnectionError,
)
# A write the coordinator could not get acknowledged in time (server side, ~2 s): tried
# once more. (A request the client gave up on after its own timeout is not: that would
# double an already long wait.)
_WRITE_TIMEOUTS: tuple[type[BaseException], ...] = (cass.CassErrorServerWriteTimeout,)


def wrap_error(exc: BaseException, what: str) -> StorageError:
    """The storage error for a driver error (the caller raises it ``from exc``)."""
    return wrap_driver_error(exc, what, _RETRIABLE)


def consistency(name: str) -> Any:
    """acsylla's consistency for a settings name such as ``LOCAL_QUORUM``; ValueError for an
    unknown one."""
    try:
        return acsylla.Consistency[name.upper()]
    except KeyError:
        raise ValueError(f"unknown Cassandra consistency level: {name!r}") from None


class _VerifyFlags:
    """The C++ driver's ``CASS_SSL_VERIFY_*`` bits, passed through acsylla (which takes
    anything with a ``value``): acsylla's own ``SSLVerifyFlags.PEER_IDENTITY`` carries
    PEER_CERT's value (1), and its enum cannot combine flags."""

    PEER_CERT = 0x01  # the chain verifies against the trusted certificates
    PEER_IDENTITY = 0x02  # the node's IP address is in its certificate (CN or SAN)

    def __init__(self, value: int) -> None:
        self.value = value


def ssl_options(settings: Settings) -> dict[str, Any]:
    """acsylla's TLS keyword arguments from the ``cassandra_ssl*`` settings (none
    without ``cassandra_ssl``); a bad CA file is a SettingsError naming it."""
    if not settings.cassandra_ssl:
        return {}
    flags = _VerifyFlags.PEER_CERT
    if settings.cassandra_ssl_verify_hostname:
        flags |= _VerifyFlags.PEER_IDENTITY
    return {
        "ssl_enabled": True,
        "ssl_trusted_cert": trusted_ca_pem(settings),
        "ssl_verify_flags": _VerifyFlags(flags),
    }


def build_cluster(settings: Settings) -> Any:
    """An acsylla cluster from the ``cassandra_*`` settings (see the module docstring);
    needs a running event loop."""
    speculative = (
        acsylla.SpeculativeExecutionPolicy(
            constant_delay_ms=settings.cassandra_speculative_delay_ms,
            max_speculative_executions=1,
        )
        if settings.cassandra_speculative_delay_ms > 0
        else None
    )
    return acsylla.create_cluster(
        list(settings.cassandra_contact_points),
        port=settings.cassandra_port,
        username=settings.cassandra_username,
        password=settings.cassandra_password if settings.cassandra_username else None,
        connect_timeout=settings.cassandra_request_timeout_s,
        request_timeout=settings.cassandra_request_timeout_s,
        protocol_version=settings.cassandra_protocol_version,
        consistency=consistency(settings.cassandra_consistency),
        serial_consistency="LOCAL_SERIAL",
        token_aware_routing=True,
        load_balance_dc_aware=settings.cassandra_local_dc or None,
        speculative_execution_policy=speculative,
        # Come back quickly after a node restart (the default backs off to a minute).
        exponential_reconnect_base_delay_ms=500,
        exponential_reconnect_max_delay_ms=5000,
        log_level="error",
        **ssl_options(settings),
    )


async def connect(settings: Settings, keyspace: str | None = None) -> Any:
    """A connected acsylla session (``close()`` it); unreachable -> StorageUnavailable."""
    cluster = build_cluster(settings)
    try:
        return await cluster.create_session(keyspace=keyspace)
    except Exception as exc:
        raise wrap_error(exc, "connect") from exc


class AsyncCql:
    """Runs prepared statements and batches; rows come back as dicts.

    ``rows(statement, params)`` takes a prepared statement and its parameters, or a
    batch from :meth:`batch` (no parameters). Every statement run here is marked
    idempotent: the message store's statements are all plain reads or upserts of the
    same values (no lightweight transaction, no counter, no list append).
    """

    def __init__(self, session: Any, *, concurrency: int = 64) -> None:
        self.session = session
        # Bounds the requests in flight (each holds a slot only while it runs, so nested
        # fan-outs cannot deadlock).
        self._in_flight = asyncio.Semaphore(concurrency)

    async def prepare(self, queries: Mapping[str, str]) -> dict[str, Prepared]:
        """Prepare these statements at once, by name; driver errors wrapped in the storage
        hierarchy."""
        try:
            prepared = await asyncio.gather(
                *(self.session.create_prepared(cql) for cql in queries.values())
            )
        except Exception as exc:
            raise wrap_error(exc, "prepare") from exc
        return dict(zip(queries, prepared, strict=True))

    @staticmethod
    def batch(statements: Iterable[tuple[Prepared, Sequence[Any]]]) -> Any:
        """An unlogged batch; only ever of rows of one partition (one mutation, applied
        atomically; a batch across partitions would make the coordinator fan out)."""
        batch = acsylla.create_batch_unlogged()
        batch.set_is_idempotent(True)
        for prepared, params in statements:
            batch.add_statement(prepared.bind(list(params)))
        return batch

    async def rows(
        self, statement: Any, params: Sequence[Any] | None = None, *, what: str = "query"
    ) -> list[Row]:
        """Run a statement (every page) and return its rows."""
        async with self._in_flight:
            try:
                try:
                    return await self._rows(statement, params)
                except _WRITE_TIMEOUTS:
                    log.debug("retrying a timed-out idempotent request", extra={"what": what})
                    return await self._rows(statement, params)
            except Exception as exc:
                raise wrap_error(exc, what) from exc

    async def _rows(self, statement: Any, params: Sequence[Any] | None) -> list[Row]:
        if isinstance(statement, _BATCH):
            await self.session.execute_batch(statement)
            return []
        bound = statement.bind(list(params) if params is not None else None, page_size=PAGE_ROWS)
        bound.set_is_idempotent(True)
        result = await self.session.execute(bound)
        found = [row.as_dict() for row in result.all()]
        while result.has_more_pages():
            bound.set_page_state(result.page_state())
            result = await self.session.execute(bound)
            found.extend(row.as_dict() for row in result.all())
        return found

    async def first(
        self, statement: Any, params: Sequence[Any] | None = None, *, what: str = "query"
    ) -> Row | None:
        """The first row a statement returns, or None."""
        found = await self.rows(statement, params, what=what)
        return found[0] if found else None

    async def run(
        self, statement: Any, params: Sequence[Any] | None = None, *, what: str = "write"
    ) -> None:
        """Run a statement for its effect (a write); errors wrapped like :meth:`rows`."""
        await self.rows(statement, params, what=what)

    @staticmethod
    async def gather(work: Iterable[Awaitable[T]]) -> list[T]:
        """Await many operations at once (requests stay bounded by the semaphore)."""
        return list(await asyncio.gather(*work))


class PartitionWrites:
    """Writes queued during one event-loop tick, grouped by partition.

    :meth:`write` queues a prepared statement under its partition (any hashable naming
    the table and its partition key) and returns a future; at the end of the tick every
    partition's rows go out as **one** request: the lone statement itself, or an
    unlogged batch of up to ``max_rows`` statements that all write that one partition (a
    single mutation: one round trip, applied atomically, sent to a replica by
    token-aware routing). Never a batch across partitions. The partitions' requests run
    side by side, bounded by the :class:`AsyncCql` in-flight limit.
    """

    def __init__(self, cql: AsyncCql, *, max_rows: int = 50, max_bytes: int = 24 * 1024) -> None:
        self._cql = cql
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._queued: dict[Any, list[tuple[Prepared, Sequence[Any], asyncio.Future[None], int]]]
        self._queued = {}
        self._what: dict[Any, str] = {}
        self._scheduled = False
        self._running: set[asyncio.Future[None]] = set()

    def write(
        self,
        statement: Prepared,
        params: Sequence[Any],
        partition: Any,
        *,
        size: int = 100,
        what: str = "write",
    ) -> asyncio.Future[None]:
        """Queue a write; ``size`` is about its bytes (a batch is kept under
        ``max_bytes``, far below Cassandra's 50 KiB batch limit; a larger row goes
        alone, as a plain statement)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queued.setdefault(partition, []).append((statement, params, fut, size))
        self._what.setdefault(partition, what)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        queued, self._queued = self._queued, {}
        names, self._what = self._what, {}
        for partition, rows in queued.items():
            chunk: list[_Queued] = []
            chunk_bytes = 0
            for statement, params, fut, size in rows:
                if chunk and (len(chunk) >= self._max_rows or chunk_bytes + size > self._max_bytes):
                    self._start(chunk, names[partition])
                    chunk, chunk_bytes = [], 0
                chunk.append((statement, params, fut))
                chunk_bytes += size
            self._start(chunk, names[partition])

    def _start(
        self, rows: list[tuple[Prepared, Sequence[Any], asyncio.Future[None]]], what: str
    ) -> None:
        task = asyncio.ensure_future(self._run(rows, what))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, rows: list[_Queued], what: str) -> None:
        try:
            if len(rows) == 1:
                statement, params, _ = rows[0]
                await self._cql.run(statement, params, what=what)
            else:
                batch = self._cql.batch((statement, params) for statement, params, _ in rows)
                await self._cql.run(batch, what=what)
        except Exception as exc:
            for _, _, fut in rows:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): so are the writers
            for _, _, fut in rows:
                fut.cancel()
            raise
        for _, _, fut in rows:
            if not fut.done():
                fut.set_result(None)
