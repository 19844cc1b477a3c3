"""The parts of a running Tidings process, opened and closed together.

`tidings up` opens all of them on SQLite with the embedded bus; the cluster processes
(:mod:`tidings.runtime_cluster`) open the same parts on PostgreSQL, Cassandra and Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.auth import Passwords, Tokens
from tidings.bus.base import InboxBus
from tidings.bus.memory import MemoryBus
from tidings.bus.sqlite import replay_legacy_bus
from tidings.chat.delivery import InboxProcessor
from tidings.chat.ports import MessageLog, Ownership, PushSink
from tidings.chat.service import ChatService
from tidings.core.ids import SnowflakeGenerator
from tidings.core.login_throttle import LoginThrottle
from tidings.gateway.gateway import Gateway
from tidings.media.factory import open_media
from tidings.media.service import MediaService
from tidings.push.dispatcher import PushDispatcher
from tidings.push.grace import GracefulPushSink
from tidings.settings import Settings
from tidings.storage.base import Directory, MessageStore
from tidings.storage.sql.directory import SqlDirectory
from tidings.storage.sql.directory_cache import CachedDirectory
from tidings.storage.sql.keys import KeyDirectory
from tidings.storage.sql.media import MediaStore
from tidings.storage.sqlite.store import SqliteMessageStore, StoreMessageLog
from tidings.storage.sqlite.writer import kill_before_commit_after

log = logging.getLogger(__name__)


def wall_ms() -> int:
    """The wall clock, in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class OwnsEveryone:
    """The embedded default serves every user itself."""

    def partition_of(self, user_id: int) -> int:
        """Always partition 0."""
        return 0

    def owns(self, user_id: int) -> bool:
        """Always true."""
        return True

    def owner_url(self, user_id: int) -> str | None:
        """None: there is no other server."""
        return None

    def fallback_url(self) -> str | None:
        """None: there is no other server."""
        return None


Background = Callable[[], Coroutine[Any, Any, None]]
Closer = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    """What routes and the gateway reach: stores, bus, auth, the chat service.

    ``gateway`` is None in a process that serves no WebSockets (`tidings api`).
    ``background`` are the loops ``start()`` runs; ``drainers`` run in order on SIGTERM
    before the server stops (hand work over, send clients away); ``closers`` run in order
    on ``close()``. ``restarts_in_place``: this process is the only server (`tidings up`),
    so a drain is a restart and its clients have nowhere else to go meanwhile.
    """

    settings: Settings
    directory: Directory
    messages: MessageStore
    bus: InboxBus
    ids: SnowflakeGenerator
    passwords: Passwords
    tokens: Tokens
    service: ChatService
    ownership: Ownership
    login_throttle: LoginThrottle
    keys: KeyDirectory
    gateway: Gateway | None = None
    # Media uploads and downloads (None: no blob store here; docs/media.md).
    media: MediaService | None = None
    inbox: InboxProcessor | None = None
    background: list[Background] = field(default_factory=list)
    drainers: list[Closer] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)
    restarts_in_place: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """Start the ``background`` loops as tasks; one that dies is logged as critical."""
        for loop_fn in self.background:
            task = asyncio.create_task(loop_fn(), name=getattr(loop_fn, "__name__", "loop"))
            task.add_done_callback(_crash_loudly)
            self._tasks.append(task)

    async def drain(self) -> None:
        """Run the ``drainers`` in order; one that fails is logged and the rest still run."""
        steps = Steps()
        for drainer in self.drainers:
            try:
                await drainer()
            except Exception:
                log.exception("draining %s failed", _name(drainer))
            steps.done(_name(drainer))
        log.info("drained", extra=steps.timings())

    async def close(self) -> None:
        """Cancel the background tasks, then run the ``closers`` in order; one that fails is
        logged and the rest still run."""
        steps = Steps()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        steps.done("background")
        for closer in self.closers:
            try:
                await closer()
            except Exception:
                log.exception("closing %s failed", _name(closer))
            steps.done(_name(closer))
        log.info("closed", extra=steps.timings())


class Steps:
    """Milliseconds taken by each step of a start or a stop, for the log (a restart's
    time goes somewhere; this says where)."""

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self._ms: dict[str, float] = {}

    def done(self, name: str) -> None:
        """The step ``name`` ended now (its time is added to any it had before)."""
        now = time.perf_counter()
        self._ms[name] = self._ms.get(name, 0.0) + (now - self._last) * 1000
        self._last = now

    def timings(self) -> dict[str, object]:
        """``{"ms": total, "steps": "name=ms,..."}`` (steps under 1 ms left out)."""
        parts = ",".join(f"{k}={v:.0f}" for k, v in self._ms.items() if v >= 1)
        return {"ms": round((self._last - self.started) * 1000), "steps": parts}


def _name(fn: object) -> str:
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str):
        return qualname.replace(".<locals>", "")
    return repr(fn)


def _crash_loudly(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("background task %s died", task.get_name(), exc_info=task.exception())


async def open_embedded(settings: Settings) -> Runtime:
    """Everything on SQLite files under ``settings.data_dir``; no bus between a send and
    the inboxes (one transaction holds both), an in-memory one for ephemeral events."""
    steps = Steps()
    data_dir = settings.data_dir
    make_private(data_dir)
    if settings.jwt_secret:
        secret, previous = settings.jwt_secret, settings.jwt_previous_secrets
    else:  # generated: the data directory's key, and the ones it had before
        secret = _dev_secret(data_dir)
        previous = [*_dev_previous_secrets(data_dir), *settings.jwt_previous_secrets]
    # One process: every write goes through this cache, so it needs no refresher.
    directory = await CachedDirectory.from_settings(
        f"sqlite+aiosqlite:///{data_dir / 'directory.db'}", settings
    )
    steps.done("directory")
    # A restart is followed by every client's hello: have their devices in memory first.
    warmed = await directory.warm_devices(settings.directory_cache_users)
    steps.done("warm_devices")
    audiences = await directory.warm_audiences(
        directory.warmed_users, settings.presence_fanout_limit
    )
    steps.done("warm_audiences")
    await directory.warm_blocks()
    steps.done("warm_blocks")
    fault = settings.fault_kill_before_commit_after
    messages = await SqliteMessageStore.open(
        data_dir / "messages.db",
        synchronous=settings.sqlite_synchronous,
        before_commit=kill_before_commit_after(fault) if fault else None,
    )
    steps.done("messages")
    await replay_legacy_bus(data_dir / "bus.db", messages)
    await messages.reset_presence()
    steps.done("presence")
    bus = MemoryBus()  # receipts, presence, typing: ephemeral by contract
    push = PushDispatcher.from_settings(settings, directory)
    runtime = assemble(
        settings,
        directory,
        messages,
        bus,
        secret,
        OwnsEveryone(),
        push,
        message_log=StoreMessageLog(messages),
        restart_in_place=True,
        previous_secrets=previous,
    )
    if runtime.inbox is not None:
        messages.on_appended = runtime.inbox.appended
    runtime.background.append(messages.run_indexer)
    await add_media(runtime, embedded=True, secret=secret, sweep=True)
    steps.done("assemble")
    log.info("runtime open", extra={"devices": warmed, "audiences": audiences, **steps.timings()})
    return runtime


async def add_media(runtime: Runtime, *, embedded: bool, secret: str, sweep: bool) -> None:
    """Open the blob store the settings name (none: media stays off) and, with ``sweep``,
    run the orphan sweeper in this process (docs/media.md)."""
    media = await open_media(
        runtime.settings,
        _engine_of(runtime.directory),
        runtime.directory,
        wall_ms,
        embedded=embedded,
        jwt_secret=secret,
    )
    if media is None:
        return
    runtime.media = media
    runtime.closers.append(media.close)
    if sweep:
        runtime.background.append(media.run_sweeper)


def _engine_of(directory: Directory) -> AsyncEngine:
    """The database the directory is in: the key directory's too."""
    if isinstance(directory, CachedDirectory | SqlDirectory):
        return directory.engine
    raise TypeError(f"no database behind {type(directory).__name__}")


def assemble(
    settings: Settings,
    directory: Directory,
    messages: MessageStore,
    bus: InboxBus,
    secret: str,
    ownership: Ownership,
    push: PushSink | None,
    *,
    serve_websockets: bool = True,
    message_log: MessageLog | None = None,
    restart_in_place: bool = False,
    previous_secrets: Sequence[str] | None = None,
) -> Runtime:
    """Wire the parts; with ``serve_websockets`` add the gateway and the inbox consumer.

    ``push`` is then put behind a :class:`GracefulPushSink` (the grace where connections
    are known), which owns it from here on: closing the runtime closes it.

    ``restart_in_place``: the only server (`tidings up`). Its drain tells every client at
    once to come back to the same URL (``reconnect{after_ms, same_url}``: no
    ``/v1/discover``, which would name this server anyway) within
    ``restart_reconnect_*_s``, when the next process is likely up; nobody else can take
    them meanwhile. Otherwise (a chat server among peers) the reconnects are spread over
    ``Settings.drain_spread_s`` (as long as the peers need to admit that many clients,
    within half of ``drain_budget_s``) so the peers are not stampeded, and clients
    discover their new server.

    ``secret`` signs access tokens; it and ``previous_secrets`` (by default
    ``settings.jwt_previous_secrets``) verify them.
    """
    ids = SnowflakeGenerator(settings.worker_id)
    keys = KeyDirectory(_engine_of(directory))
    service = ChatService(
        directory,
        messages,
        bus,
        ids,
        wall_ms,
        presence_fanout_limit=settings.presence_fanout_limit,
        partition_of=ownership.partition_of,
        log=message_log,
        keys=keys,
        media=MediaStore(_engine_of(directory)),
        edit_window_ms=settings.edit_window_s * 1000,
        delete_window_ms=settings.delete_window_s * 1000,
    )
    if previous_secrets is None:
        previous_secrets = settings.jwt_previous_secrets
    tokens = Tokens(secret, settings.token_ttl_s, previous=previous_secrets)
    runtime = Runtime(
        settings=settings,
        directory=directory,
        messages=messages,
        bus=bus,
        ids=ids,
        passwords=Passwords(
            settings.argon2_time_cost,
            settings.argon2_memory_kib,
            workers=settings.argon2_workers,
            waiting=settings.argon2_waiting,
        ),
        tokens=tokens,
        service=service,
        ownership=ownership,
        login_throttle=LoginThrottle(
            directory,
            account_burst=settings.login_failures_per_account,
            account_per_s=1 / settings.login_failure_account_every_s,
            address_burst=settings.login_failures_per_address,
            address_per_s=1 / settings.login_failure_address_every_s,
        ),
        keys=keys,
        restarts_in_place=restart_in_place,
    )
    if serve_websockets:
        assert push is not None, "a process that serves WebSockets asks for pushes"
        gateway = Gateway(settings, service, tokens, ownership, wall_ms)
        if isinstance(directory, CachedDirectory):
            directory.device_listeners.append(gateway.device_changed)
            directory.flush_listeners.append(gateway.devices_unknown)
        graceful = GracefulPushSink(push, gateway.connected_devices, settings.push_grace_s)
        processor = InboxProcessor(messages, directory, gateway, graceful, ownership)

        async def inbox_consumer() -> None:
            # The bus retries a failed batch itself; if consuming still ends with an
            # error, start again after a pause rather than leave the partitions unserved.
            failures = 0
            while True:
                try:
                    await bus.consume(processor.handle)
                    return  # the bus was closed
                except Exception:
                    failures += 1
                    log.exception("inbox consumer failed; restarting it")
                    await asyncio.sleep(min(2.0**failures, 30.0))

        async def send_clients_away() -> None:
            if restart_in_place:
                window = settings.restart_reconnect_window_ms
                told = await gateway.drain(0, reconnect_window_ms=window, same_url=True)
            else:
                # Paced over half the spread, each after_ms within it: the clients reach
                # the peers no faster than those admit them, and no later than they must.
                spread_s = settings.drain_spread_s(gateway.connection_count)
                told = await gateway.drain(spread_s / 2)
            log.info("clients told to reconnect", extra={"clients": told})

        runtime.gateway = gateway
        runtime.inbox = processor
        runtime.background += [inbox_consumer, gateway.run_sweeper, graceful.run]
        runtime.drainers.append(send_clients_away)
        runtime.closers += [graceful.close, gateway.close]

    async def close_passwords() -> None:
        runtime.passwords.close()

    runtime.closers += [bus.close, messages.close, directory.close, close_passwords]
    return runtime


def make_private(data_dir: Path) -> None:
    """The data directory holds password hashes, every message and the signing secret:
    it is created (or made) 0700 and every file in it 0600, and this process creates new
    files without group or other permissions (umask 077) from now on."""
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for path in data_dir.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


# `tidings up` without TIDINGS_JWT_SECRET: the generated signing key, and the keys it
# replaced (newest first, one a line), which still verify (`tidings rotate-jwt-key`).
DEV_SECRET_FILE = "dev-jwt-secret"
DEV_PREVIOUS_SECRETS_FILE = "dev-jwt-previous-secrets"
KEEP_PREVIOUS_SECRETS = 3


def _dev_secret(data_dir: Any) -> str:
    """`tidings up` only: a generated secret kept in the data dir, so tokens survive restarts."""
    path = data_dir / DEV_SECRET_FILE
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
        log.warning("no TIDINGS_JWT_SECRET set: generated a development secret in %s", path)
    return str(path.read_text().strip())


def _dev_previous_secrets(data_dir: Path) -> list[str]:
    """The generated keys `tidings rotate-jwt-key` replaced, newest first."""
    path = data_dir / DEV_PREVIOUS_SECRETS_FILE
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def rotate_dev_secret(data_dir: Path, keep: int = KEEP_PREVIOUS_SECRETS) -> tuple[str, list[str]]:
    """`tidings rotate-jwt-key`: a new generated signing key for the data directory; the
    current one becomes the newest previous key, and only the ``keep`` newest previous
    keys are kept (the tokens of any older key stop working). The new key and the kept
    ones. A running `tidings up` reads the keys when it starts: it signs with the new key
    from its next restart, and meanwhile keeps signing with the old one, which stays
    valid as a previous key."""
    current_path = data_dir / DEV_SECRET_FILE
    current = current_path.read_text().strip() if current_path.exists() else ""
    kept: list[str] = []
    for key in (current, *_dev_previous_secrets(data_dir)):
        if key and key not in kept:
            kept.append(key)
    del kept[keep:]
    new = secrets.token_urlsafe(48)
    # The previous keys first: a process starting in between verifies with the old key
    # either way.
    _write_private(data_dir / DEV_PREVIOUS_SECRETS_FILE, "".join(f"{key}\n" for key in kept))
    _write_private(current_path, new)
    return new, kept


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (a temporary file renamed over it), 0600."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
