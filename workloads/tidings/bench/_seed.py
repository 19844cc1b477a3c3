"""Many users at once: straight into the embedded target's SQLite directory, or into the
cluster target's PostgreSQL directory.

Signing 50,000 users up over HTTP takes the embedded server about 13 minutes (an argon2
hash, FastAPI and SQLAlchemy twice per user). Here the bench writes the same rows itself,
while the server is stopped, through the project's own storage layer:

- one argon2 hash of the bench password, made once by :class:`tidings.auth.Passwords` with
  the server's cost settings and stored for every user (so ``POST /v1/sessions`` with the
  bench password works for each of them, as after a signup);
- ``users`` and ``devices`` rows with the columns signup and login give them (display name
  = username, one ``desktop`` device, Snowflake ids from the server's worker id, created
  at the wall clock), and the ``directory_changes`` rows those writes log (``user``, then
  ``device`` and ``user_devices`` per user), through :class:`SqlDirectory`'s own write
  transaction, many users per transaction;
- an access token per device from :class:`tidings.auth.Tokens` with the key the server
  signs with for that data directory (``TIDINGS_JWT_SECRET`` as the bench passes it, or
  the development secret ``tidings up`` keeps in the data directory) and its token TTL.

The result is the list :func:`tidings.bench._accounts.create_accounts` returns. 50,000
users take seconds instead of minutes.

The cluster's directory is PostgreSQL, migrated by `tidings migrate` and written by its
API while the bench seeds (:func:`cluster_accounts`): the same rows and change-log rows
go in through the same write transaction, with ids from a worker id no server of the
cluster uses (:data:`SEED_WORKER_ID`); the chat servers' directory caches read the
change log as they do after a signup through the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import insert

from tidings.auth import Identity, Passwords, Tokens
from tidings.bench._accounts import PASSWORD, Account
from tidings.bench.targets import Cluster, Embedded, EmbeddedRef, Target
from tidings.core.ids import SnowflakeGenerator
from tidings.settings import Settings

log = logging.getLogger(__name__)

DIRECTORY_DB = "directory.db"
# Users per write transaction (three change rows each).
CHUNK = 10_000
PLATFORM = "desktop"  # what the bench's login says, and so the device's name
# The Snowflake worker id of users seeded into a running cluster (its API is worker 1, its
# chat servers 100 + i): ids unique beside the ones the servers make meanwhile.
SEED_WORKER_ID = 1023


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, env, clear=True):
        yield


def server_settings(env: Mapping[str, str], data_dir: Path) -> Settings:
    """The settings `tidings up --data-dir data_dir` reads from the environment ``env``."""
    overrides: dict[str, Any] = {"data_dir": data_dir}  # as `tidings up` applies its flag
    with _environment(env):
        return Settings(**overrides)


def signing_secret(settings: Settings) -> str:
    """The key `tidings up` signs tokens with on ``settings.data_dir``: the configured
    secret, or the development secret it keeps in the data directory (made now if there
    is none yet, as the server would)."""
    if settings.jwt_secret:
        return settings.jwt_secret
    from tidings.runtime import _dev_secret

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _dev_secret(settings.data_dir)


def processes_holding(path: Path) -> list[int]:
    """Other processes that have ``path`` (or its -wal/-shm) open."""
    wanted = {str(path.resolve()) + suffix for suffix in ("", "-wal", "-shm")}
    me = os.getpid()
    holders = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in wanted:
                    holders.append(int(entry))
                    break
            except OSError:
                continue
    return holders


def issue_tokens(accounts: list[Account], settings: Settings) -> None:
    """(Re-)sign every account's token as login does, with the server's key and TTL."""
    tokens = Tokens(signing_secret(settings), settings.token_ttl_s)
    now = time.time()
    for account in accounts:
        identity = Identity(int(account["user_id"]), int(account["device_id"]))
        account["token"] = tokens.issue(identity, now)[0]


def seed_accounts(
    data_dir: Path,
    count: int,
    *,
    env: Mapping[str, str],
    chat_url: str,
    first: int = 0,
    prefix: str | None = None,
    chunk: int = CHUNK,
) -> list[Account]:
    """``count`` new users with one device and a token each, written into the directory
    of ``data_dir`` while no server runs on it (refused otherwise). ``env`` is the
    environment the server runs with (its cost, worker id, secret and TTL settings);
    usernames are ``b<prefix>_<i>`` for ``i`` from ``first``, as the HTTP path names them."""
    if count <= 0:
        return []
    db = data_dir / DIRECTORY_DB
    holders = processes_holding(db) if db.exists() else []
    if holders:
        raise RuntimeError(
            f"{db} is open in process(es) {holders}: stop the server before seeding users"
        )
    settings = server_settings(env, data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # Opened as `tidings up` opens it: migrated to the current schema first.
    url = f"sqlite+aiosqlite:///{db}"
    return _seed_into(url, True, settings, count, first, prefix, chunk, chat_url)


def _seed_into(
    url: str,
    migrate: bool,
    settings: Settings,
    count: int,
    first: int,
    prefix: str | None,
    chunk: int,
    chat_url: str,
) -> list[Account]:
    t0 = time.monotonic()
    made = _seed(url, migrate, settings, count, first, prefix or uuid.uuid4().hex[:8], chunk)
    accounts = asyncio.run(made)
    issue_tokens(accounts, settings)
    for account in accounts:
        account["chat_url"] = chat_url
    where = url.rsplit("/", 1)[-1]
    log.info("seeded %d users into %s in %.1fs", count, where, time.monotonic() - t0)
    return accounts


def cluster_accounts(target: Cluster, n: int, asked: str = "auto") -> list[Account]:
    """``n`` new users with a device and a token each in the running cluster ``target``:
    written into its PostgreSQL directory (``direct``), or signed up and logged in
    through its API (``api``). Their ``chat_url`` is where login would send them now;
    :meth:`Cluster.wait_settled` tells where they belong once the cluster is settled."""
    if seed_mode(target, asked) == "api":
        from tidings.bench._accounts import create_accounts

        return create_accounts(target.api_url, n)
    env = target._env(TIDINGS_WORKER_ID=str(SEED_WORKER_ID))
    settings = server_settings(env, target.workdir / "seed")
    url = env["TIDINGS_POSTGRES_URL"]  # migrated by `tidings migrate` in Cluster.start
    return _seed_into(url, False, settings, n, 0, None, CHUNK, target.ws_url)


async def _seed(
    url: str, migrate: bool, settings: Settings, count: int, first: int, prefix: str, chunk: int
) -> list[Account]:
    from tidings.runtime import wall_ms
    from tidings.storage.sql.directory import SqlDirectory
    from tidings.storage.sql.tables import devices, users

    passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib, workers=1)
    try:
        password_hash = await passwords.hash(PASSWORD)  # once, for every user
    finally:
        passwords.close()
    ids = SnowflakeGenerator(settings.worker_id)
    directory = await SqlDirectory.open(url, migrate=migrate)
    accounts: list[Account] = []
    try:
        for start in range(first, first + count, chunk):
            user_rows: list[dict[str, Any]] = []
            device_rows: list[dict[str, Any]] = []
            made: list[Account] = []
            for i in range(start, min(start + chunk, first + count)):
                username = f"b{prefix}_{i}"
                user_id = ids.next_id()
                user_rows.append(
                    {
                        "user_id": user_id,
                        "username": username,
                        "display_name": username,
                        "password_hash": password_hash,
                        "created_at": wall_ms(),
                    }
                )
                device_id = ids.next_id()
                device_rows.append(
                    {
                        "device_id": device_id,
                        "user_id": user_id,
                        "name": PLATFORM,
                        "platform": PLATFORM,
                        "created_at": wall_ms(),
                    }
                )
                made.append(
                    {
                        "username": username,
                        "user_id": str(user_id),
                        "device_id": str(device_id),
                        "token": "",
                        "chat_url": "",
                    }
                )
            # SqlDirectory's own write transaction: it logs the changes named here in
            # directory_changes, in the order one signup and one login would have.
            async with directory._write() as write:
                await write.conn.execute(insert(users), user_rows)
                await write.conn.execute(insert(devices), device_rows)
                for user, device in zip(user_rows, device_rows, strict=True):
                    write.changed("user", user["user_id"])
                    write.changed("device", device["device_id"])
                    write.changed("user_devices", user["user_id"])
            accounts += made
            if len(accounts) % 50_000 == 0 or len(accounts) == count:
                log.info("seeded users: %d of %d", len(accounts), count)
    finally:
        await directory.close()
    return accounts


# --- the bench's choice of path --------------------------------------------------------

SEED_MODES = ("auto", "direct", "api")


def seed_mode(target: Target, asked: str) -> str:
    """``direct`` or ``api`` for ``target``: ``auto`` is direct for the embedded target
    (`tidings up` from this tree, whose storage layer this is) and the cluster (its
    PostgreSQL directory, migrated by this tree's `tidings migrate`), and the HTTP API
    for the others (a reference tree may have another schema)."""
    direct_ok = isinstance(target, Cluster) or (
        isinstance(target, Embedded) and not isinstance(target, EmbeddedRef)
    )
    if asked not in SEED_MODES:
        raise ValueError(f"--seed {asked!r}: one of {', '.join(SEED_MODES)}")
    if asked == "auto":
        return "direct" if direct_ok else "api"
    if asked == "direct" and not direct_ok:
        raise ValueError(
            f"--seed direct works for the embedded and cluster targets only, not {target.name}"
        )
    return asked


def _running(target: Target) -> bool:
    return any(p.proc is not None and p.proc.poll() is None for p in target.procs)


def embedded_accounts(target: Embedded, n: int, cache: Path | None = None) -> list[Account]:
    """``n`` accounts on ``target``'s data directory: those in ``cache`` first (their
    tokens signed afresh, so an expired or differently keyed cache still works), the rest
    seeded directly with the server stopped for it (started again after, if it ran)."""
    env = target._env()
    accounts: list[Account] = []
    if cache is not None and cache.exists():
        accounts = json.loads(cache.read_text())
    have = min(len(accounts), n)
    if have:
        issue_tokens(accounts[:have], server_settings(env, target.data_dir))
    if len(accounts) < n:
        running = _running(target)
        if running:
            target.stop()
        try:
            accounts += seed_accounts(
                target.data_dir,
                n - len(accounts),
                env=env,
                chat_url=target.ws_url,
                first=len(accounts),
            )
            if cache is not None:
                cache.write_text(json.dumps(accounts))
        finally:
            if running:
                target.start()
    accounts = accounts[:n]
    for account in accounts:  # the port is new every run: what login says now
        account["chat_url"] = target.ws_url
    return accounts


def fd_headroom(pid: int) -> tuple[int, int, int] | None:
    """(files process ``pid`` may still open, its soft and hard RLIMIT_NOFILE)."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            line = next(ln for ln in f if ln.startswith("Max open files"))
        soft, hard = (int(v) if v.isdigit() else 1 << 62 for v in line.split()[3:5])
        used = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None
    return soft - used, soft, hard


def warn_if_fds_short(target: Target, connections: int) -> None:
    """Say so when the server cannot hold ``connections`` sockets: every accepted
    connection is a file descriptor, and RLIMIT_NOFILE above the hard limit needs
    CAP_SYS_RESOURCE (the bench raises the soft limit to the hard one itself)."""
    for pid in target.server_pids:
        room = fd_headroom(pid)
        if room is not None and room[0] < connections:
            log.warning(
                "%s (pid %d) can open only %d more files (RLIMIT_NOFILE soft %d, hard %d): "
                "at most that many of the %d connections can be accepted; raise the hard "
                "limit (ulimit -Hn, needs CAP_SYS_RESOURCE) to measure more",
                target.name,
                pid,
                room[0],
                room[1],
                room[2],
                connections,
            )
