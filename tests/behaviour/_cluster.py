"""A real Tidings cluster as subprocesses: `tidings migrate`, API processes, chat servers.

Every cluster gets its own PostgreSQL database, Cassandra keyspace and Kafka topic prefix
(and so its own consumer group), named after a fresh uuid, so clusters never see each
other's data; :meth:`Cluster.destroy` drops them again. The services themselves come from
the test environment (``e2e/env/up.sh postgres kafka cassandra seaweedfs``; S3 for media).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from tidings.bus.partitioning import partition_for_user

from ._harness import (
    PASSWORD,
    Account,
    TidingsProcess,
    WsClient,
    _tidings_command,
    child_env,
    free_port,
    signup,
    unique_name,
)

log = logging.getLogger(__name__)

# Inbox partitions of a test cluster: a few, so that every chat server owns some.
PARTITIONS = 6
# The chat servers' consumer session (TIDINGS_KAFKA_SESSION_TIMEOUT_S): see Cluster._env.
KAFKA_SESSION_TIMEOUT_S = 3


@dataclass(frozen=True)
class Backends:
    """Where the test environment's PostgreSQL, Kafka and Cassandra are."""

    postgres_url: str  # postgresql+asyncpg://... of a database the role may connect to
    kafka_bootstrap: str
    cassandra_hosts: tuple[str, ...]
    cassandra_port: int
    # The S3 store for media (SeaweedFS): TIDINGS_MEDIA_S3_* for every process.
    s3_env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_testenv(cls, testenv: Mapping[str, str]) -> Backends:
        s3_env = (
            ("TIDINGS_MEDIA_STORE", "s3"),
            ("TIDINGS_MEDIA_S3_ENDPOINT", testenv["TIDINGS_TEST_S3_ENDPOINT"]),
            ("TIDINGS_MEDIA_S3_BUCKET", testenv["TIDINGS_TEST_S3_BUCKET"]),
            ("TIDINGS_MEDIA_S3_REGION", testenv["TIDINGS_TEST_S3_REGION"]),
            ("TIDINGS_MEDIA_S3_ACCESS_KEY_ID", testenv["TIDINGS_TEST_S3_ACCESS_KEY"]),
            ("TIDINGS_MEDIA_S3_SECRET_ACCESS_KEY", testenv["TIDINGS_TEST_S3_SECRET_KEY"]),
        )
        return cls(
            s3_env=s3_env,
            postgres_url=testenv["TIDINGS_TEST_POSTGRES_URL"],
            kafka_bootstrap=testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"],
            cassandra_hosts=tuple(
                h.strip() for h in testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",") if h.strip()
            ),
            cassandra_port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
        )


class Cluster:
    """``apis`` x `tidings api` and ``chats`` x `tidings chat` on their own namespace.

    As a :class:`~._harness.Deployment`: ``base_url`` is the first API process,
    ``ws_url`` and ``port`` the first chat server's.
    """

    kind = "cluster"

    def __init__(
        self,
        root: Path,
        backends: Backends,
        *,
        apis: int = 2,
        chats: int = 3,
        partitions: int = PARTITIONS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.backends = backends
        self.partitions = partitions
        self.namespace = f"bt_{uuid.uuid4().hex[:16]}"
        self.extra_env = dict(env or {})
        self.migrate_log = root / "migrate.log"
        self.apis = [
            TidingsProcess(
                f"tidings api #{i}",
                ["api"],
                root / f"api-{i}.log",
                self._env(TIDINGS_SERVER_ID=f"api-{i}", TIDINGS_WORKER_ID=str(1 + i)),
            )
            for i in range(apis)
        ]
        self.chats = []
        for i in range(chats):
            port = free_port()
            self.chats.append(
                TidingsProcess(
                    f"tidings chat #{i}",
                    ["chat"],
                    root / f"chat-{i}.log",
                    self._env(
                        TIDINGS_SERVER_ID=f"chat-{i}",
                        TIDINGS_WORKER_ID=str(100 + i),
                        TIDINGS_PUBLIC_CHAT_URL=f"ws://127.0.0.1:{port}/v1/ws",
                    ),
                    port=port,
                    keep_port=True,
                )
            )
        # One signed-up user per inbox partition, to ask every API about every partition.
        self.probes: dict[int, Account] = {}

    # --- as a Deployment ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.apis[0].base_url

    @property
    def ws_url(self) -> str:
        return self.chats[0].ws_url

    @property
    def port(self) -> int:
        return self.chats[0].port

    @property
    def api_urls(self) -> list[str]:
        return [p.base_url for p in self.apis]

    @property
    def chat_urls(self) -> list[str]:
        return [p.ws_url for p in self.chats]

    @property
    def processes(self) -> list[TidingsProcess]:
        return [*self.apis, *self.chats]

    def log_sections(self) -> list[tuple[str, str]]:
        sections = []
        for p in self.processes:
            state = "running" if p.running else f"exited {p.proc.returncode if p.proc else '-'}"
            sections.append((f"{p.name} log ({p.log_path}, {state})", p.log_tail(40)))
        with contextlib.suppress(OSError):
            sections.insert(0, ("tidings migrate log", self.migrate_log.read_text()[-4000:]))
        return sections

    def logs(self) -> str:
        return "\n".join(f"--- {title}\n{text}" for title, text in self.log_sections())

    # --- names ------------------------------------------------------------------------

    @property
    def postgres_url(self) -> str:
        url = make_url(self.backends.postgres_url).set(database=self.namespace)
        return url.render_as_string(hide_password=False)

    def _admin_dsn(self) -> str:
        url = make_url(self.backends.postgres_url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _env(self, **extra: str) -> dict[str, str]:
        import json

        env = {
            "TIDINGS_POSTGRES_URL": self.postgres_url,
            "TIDINGS_CASSANDRA_CONTACT_POINTS": json.dumps(list(self.backends.cassandra_hosts)),
            "TIDINGS_CASSANDRA_PORT": str(self.backends.cassandra_port),
            "TIDINGS_CASSANDRA_KEYSPACE": self.namespace,
            "TIDINGS_KAFKA_BOOTSTRAP": self.backends.kafka_bootstrap,
            "TIDINGS_KAFKA_TOPIC_PREFIX": self.namespace,
            "TIDINGS_KAFKA_INBOX_PARTITIONS": str(self.partitions),
            # A SIGKILLed chat server's partitions move after the consumer session: 3 s
            # here (the test broker allows down to 2 s: group.min.session.timeout.ms in
            # e2e/env/kafka/server.properties), against the stock broker's 6 s minimum.
            # Membership records (1 s, stale after 3 s: the defaults) stop naming it by then.
            "TIDINGS_KAFKA_SESSION_TIMEOUT_S": str(KAFKA_SESSION_TIMEOUT_S),
            "TIDINGS_KAFKA_HEARTBEAT_INTERVAL_S": "1",
            **dict(self.backends.s3_env),
        }
        env.update(self.extra_env)
        env.update(extra)
        return env

    def metrics_url_of(self, url: str) -> str:
        for process in self.processes:
            if url.rstrip("/") in (process.base_url, process.ws_url):
                return process.metrics_url
        raise AssertionError(f"{url} is none of this cluster's processes")

    def chat_at(self, url: str) -> TidingsProcess:
        for chat in self.chats:
            if chat.ws_url == url:
                return chat
        raise AssertionError(f"{url} is none of this cluster's chat servers: {self.chat_urls}")

    # --- life cycle ---------------------------------------------------------------------

    def create(self, timeout: float = 90.0) -> None:
        """A fresh database, then `tidings migrate` (keyspace, tables, topics)."""
        asyncio.run(self._create_database())
        self.root.mkdir(parents=True, exist_ok=True)
        with self.migrate_log.open("ab") as out:
            try:
                done = subprocess.run(
                    [*_tidings_command(), "migrate"],
                    env=child_env(self._env()),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"tidings migrate did not finish within {timeout}s:\n{self.logs()}"
                ) from None
        if done.returncode != 0:
            raise AssertionError(f"tidings migrate exited with {done.returncode}:\n{self.logs()}")

    async def _create_database(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._admin_dsn(), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{self.namespace}"')
        finally:
            await conn.close()

    def start(self, ready_within: float = 60.0) -> None:
        """Start every process at once, wait for health, then for settled ownership."""
        for process in self.processes:
            process.launch()
        try:
            for process in self.processes:
                process.wait_healthy(60.0)  # five processes start at once on 2 cores
            asyncio.run(self.wait_ready(ready_within))
        except BaseException:
            self.kill_all()
            raise

    def restart_chat(self, chat: TidingsProcess) -> None:
        """Start a chat server that went away again, on its port, with its id."""
        chat.start()

    def stop(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every process at once; wait (bounded) for all. Returns exit codes."""
        for process in self.processes:
            if process.running:
                process.signal(15)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout
        for process in self.processes:
            if process.proc is None:
                codes[process.name] = None
                continue
            try:
                codes[process.name] = process.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[process.name] = None
        return codes

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()

    def destroy(self) -> None:
        """Drop the database, keyspace and topics (best effort, bounded)."""
        for what, step in (
            ("database", self._drop_database),
            ("topics", self._delete_topics),
        ):
            try:
                asyncio.run(asyncio.wait_for(step(), 30))
            except Exception as exc:  # cleanup must not hide the tests' own outcome
                log.warning("could not drop the test %s %s: %r", what, self.namespace, exc)
        try:
            self._drop_keyspace()
        except Exception as exc:
            log.warning("could not drop the test keyspace %s: %r", self.namespace, exc)

    async def _drop_database(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._admin_dsn(), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.namespace}" WITH (FORCE)')
        finally:
            await conn.close()

    async def _delete_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.backends.kafka_bootstrap)
        await admin.start()
        try:
            names = [f"{self.namespace}.{t}" for t in ("inbox", "members", "push")]
            existing = set(await admin.list_topics())
            await admin.delete_topics([n for n in names if n in existing])
            # aiokafka's admin client has no delete_consumer_groups: send DeleteGroups to
            # the group's coordinator (an empty group would otherwise linger for days).
            from aiokafka.protocol.admin import DeleteGroupsRequest

            group = f"{self.namespace}.chat"
            node = await admin.find_coordinator(group)
            await admin._send_request_to_node(node, DeleteGroupsRequest([group]))
        finally:
            await admin.close()

    def _drop_keyspace(self) -> None:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
        from cassandra.cluster import Cluster as CassandraCluster
        from cassandra.policies import RoundRobinPolicy

        profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
        cassandra = CassandraCluster(
            list(self.backends.cassandra_hosts),
            port=self.backends.cassandra_port,
            protocol_version=5,
            connect_timeout=10,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        )
        try:
            session = cassandra.connect()
            session.execute(f"DROP KEYSPACE IF EXISTS {self.namespace}")
        finally:
            cassandra.shutdown()

    # --- readiness ----------------------------------------------------------------------

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until every API process sends every partition's users to the same running chat
        server, every running chat server owns some partition, and each owner welcomes
        its users (no redirect): the cluster has settled after a start or a change."""
        deadline = time.monotonic() + within
        reason = "not checked"
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                try:
                    if len(self.probes) < self.partitions:
                        await self._sign_probes_up(deadline)
                    problem = await self._unsettled(http)
                except (httpx.HTTPError, OSError, AssertionError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if problem is None:
                    return
                reason = problem
                await asyncio.sleep(0.25)
        raise AssertionError(
            f"the cluster did not settle within {within}s: {reason}\n{self.logs()}"
        )

    async def _sign_probes_up(self, deadline: float) -> None:
        api = httpx.AsyncClient(base_url=self.base_url, timeout=10.0, trust_env=False)
        async with api:
            tries = 0
            while len(self.probes) < self.partitions and time.monotonic() < deadline:
                tries += 1
                assert tries < 40 * self.partitions, "no user lands on some partitions"
                username = unique_name("probe")
                user = await signup(api, username)
                partition = partition_for_user(int(user["user_id"]), self.partitions)
                if partition in self.probes:
                    continue
                response = await api.post(
                    "/v1/sessions", json={"username": username, "password": PASSWORD}
                )
                while response.status_code == 503 and time.monotonic() < deadline:
                    await asyncio.sleep(0.25)  # no chat server known yet
                    response = await api.post(
                        "/v1/sessions", json={"username": username, "password": PASSWORD}
                    )
                assert response.status_code == 201, response.text
                body = response.json()
                self.probes[partition] = Account(
                    username=username,
                    password=PASSWORD,
                    user_id=body["user_id"],
                    device_id=body["device_id"],
                    token=body["access_token"],
                    chat_url=body["chat_url"],
                )

    async def discover_everywhere(
        self, http: httpx.AsyncClient, account: Account, *, include_chats: bool = False
    ) -> dict[str, str]:
        """``/v1/discover`` for ``account`` from every API process (and chat server):
        process name -> chat_url, or ``"<status>"`` when it did not answer 200."""
        answers: dict[str, str] = {}
        processes = self.apis + ([c for c in self.chats if c.running] if include_chats else [])
        for process in processes:
            response = await http.get(f"{process.base_url}/v1/discover", headers=account.auth)
            answers[process.name] = (
                response.json()["chat_url"]
                if response.status_code == 200
                else f"<{response.status_code}>"
            )
        return answers

    async def _unsettled(self, http: httpx.AsyncClient) -> str | None:
        running = {c.ws_url for c in self.chats if c.running}
        owners: dict[int, str] = {}
        for partition, probe in sorted(self.probes.items()):
            answers = await self.discover_everywhere(http, probe)
            if len(set(answers.values())) != 1:
                return f"the API processes disagree on partition {partition}: {answers}"
            owner = next(iter(answers.values()))
            if owner not in running:
                return f"partition {partition} is sent to {owner}, not a running chat server"
            owners[partition] = owner
        idle = running - set(owners.values())
        if idle:
            return f"chat servers that own no partition: {sorted(idle)}; owners {owners}"
        for partition, probe in sorted(self.probes.items()):
            conn = await WsClient.open(owners[partition])
            try:
                answer = await conn.try_hello(probe.token, "0", keepalive=False)
            finally:
                await conn.close()
            if answer["type"] != "welcome":
                return f"partition {partition}'s owner {owners[partition]} answered {answer}"
        return None

    async def owner_of(self, http: httpx.AsyncClient, account: Account) -> TidingsProcess:
        """The chat server every API process sends ``account`` to (they must agree)."""
        answers = await self.discover_everywhere(http, account)
        assert len(set(answers.values())) == 1, f"the API processes disagree: {answers}"
        return self.chat_at(next(iter(answers.values())))

    def __repr__(self) -> str:
        return f"Cluster({self.namespace}, {len(self.apis)} api, {len(self.chats)} chat)"


def open_cluster(root: Path, backends: Backends, **options: Any) -> Cluster:
    """Create and start a cluster; on failure nothing is left running or allocated."""
    cluster = Cluster(root, backends, **options)
    try:
        cluster.create()
        cluster.start()
    except BaseException:
        cluster.kill_all()
        cluster.destroy()
        raise
    return cluster


def close_cluster(cluster: Cluster) -> dict[str, int | None]:
    try:
        return cluster.stop()
    finally:
        cluster.destroy()
