"""A Tidings cluster as a target: `tidings migrate/api/chat` on the test environment's
PostgreSQL, Cassandra and Kafka."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from tidings.bench.targets.base import (
    Proc,
    Target,
    _child_env,
    free_port,
    tidings_command,
    wait_http,
)

log = logging.getLogger(__name__)


def read_testenv(state: Path) -> dict[str, str]:
    """The test environment's addresses: the ``*.env`` files of its state directory, then
    TIDINGS_TEST_* from the environment over them."""
    values: dict[str, str] = {}
    for env_file in sorted(state.glob("*.env")):
        for line in env_file.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    values.update({k: v for k, v in os.environ.items() if k.startswith("TIDINGS_TEST_")})
    return values


class Cluster(Target):
    """`tidings migrate`, one `tidings api` and ``chats`` x `tidings chat` on the test
    environment's PostgreSQL, Cassandra and Kafka, in a fresh namespace (database,
    keyspace, topic prefix) that :meth:`stop` drops again."""

    name = "tidings-cluster"

    def __init__(
        self, workdir: Path, testenv: dict[str, str], chats: int = 2, partitions: int = 12
    ) -> None:
        super().__init__(workdir)
        self.testenv = testenv
        self.namespace = f"bench_{uuid.uuid4().hex[:12]}"
        self.partitions = partitions
        self.api_port = free_port()
        self.chat_ports = [free_port() for _ in range(chats)]
        self.service_state = Path(testenv.get("_STATE", ""))

    @property
    def ws_url(self) -> str:
        """The first chat server's url."""
        return self.chat_urls[0]

    @property
    def chat_urls(self) -> list[str]:
        """Each chat server's public URL (what login and /v1/discover name)."""
        return [f"ws://{self.host}:{port}/v1/ws" for port in self.chat_ports]

    @property
    def api_url(self) -> str:
        """The API process's base url."""
        return f"http://{self.host}:{self.api_port}"

    @property
    def ports(self) -> list[int]:
        """The chat servers' ports (their accepted sockets are what is measured)."""
        return self.chat_ports

    @property
    def chat_procs(self) -> list[Proc]:
        """The chat server processes (the API is the first process)."""
        return self.procs[1:]

    def _postgres_url(self, database: str | None = None) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.testenv["TIDINGS_TEST_POSTGRES_URL"])
        if database is not None:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)

    def _env(self, **extra: str) -> dict[str, str]:
        hosts = [h for h in self.testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",") if h]
        env = {
            "TIDINGS_POSTGRES_URL": self._postgres_url(self.namespace),
            "TIDINGS_CASSANDRA_CONTACT_POINTS": json.dumps(hosts),
            "TIDINGS_CASSANDRA_PORT": self.testenv["TIDINGS_TEST_CASSANDRA_PORT"],
            "TIDINGS_CASSANDRA_KEYSPACE": self.namespace,
            "TIDINGS_KAFKA_BOOTSTRAP": self.testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"],
            "TIDINGS_KAFKA_TOPIC_PREFIX": self.namespace,
            "TIDINGS_KAFKA_INBOX_PARTITIONS": str(self.partitions),
        }
        env.update(extra)
        # A default only: TIDINGS_BENCH_ENV_DRAIN_BUDGET_S changes it (as the drain's
        # other settings, drain_admit_per_s and drain_min_spread_s).
        return _child_env(env, defaults={"TIDINGS_DRAIN_BUDGET_S": "10"})

    def start(self) -> None:
        """Create the namespace's database, migrate, then start the API and the chat servers and
        wait until they serve."""
        asyncio.run(self._admin_sql(f'CREATE DATABASE "{self.namespace}"'))
        migrate = subprocess.run(
            [*tidings_command(), "migrate"],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"tidings migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        api = Proc(
            "tidings api",
            [*tidings_command(), "api", "--host", self.host, "--port", str(self.api_port)],
            self._env(TIDINGS_SERVER_ID="api-0", TIDINGS_WORKER_ID="1"),
            self.workdir / "api.log",
        )
        self.procs = [api]
        for i, port in enumerate(self.chat_ports):
            self.procs.append(
                Proc(
                    f"tidings chat #{i}",
                    [*tidings_command(), "chat", "--host", self.host, "--port", str(port)],
                    self._env(
                        TIDINGS_SERVER_ID=f"chat-{i}",
                        TIDINGS_WORKER_ID=str(100 + i),
                        TIDINGS_PUBLIC_CHAT_URL=f"ws://{self.host}:{port}/v1/ws",
                    ),
                    self.workdir / f"chat-{i}.log",
                )
            )
        for proc in self.procs:
            proc.start()
        wait_http(f"{self.api_url}/healthz", api)
        for proc, port in zip(self.chat_procs, self.chat_ports, strict=True):
            wait_http(f"http://{self.host}:{port}/readyz", proc, timeout=90)

    def wait_settled(self, accounts: list[dict[str, str]], timeout: float = 90.0) -> None:
        """Until every running chat server owns partitions and /v1/discover agrees, twice
        in a row; each account's ``chat_url`` is then the server of its partition. One
        account per inbox partition is asked (a user's server is its partition's owner),
        so 20,000 accounts take as long as a dozen."""
        asyncio.run(self._wait_settled(accounts, timeout))

    async def _wait_settled(self, accounts: list[dict[str, str]], within: float) -> None:
        from tidings.bus.partitioning import partition_for_user

        deadline = time.monotonic() + within
        live = {
            url
            for url, c in zip(self.chat_urls, self.chat_procs, strict=True)
            if c.proc and c.proc.poll() is None
        }
        by_partition: dict[int, list[dict[str, str]]] = {}
        for account in accounts:
            partition = partition_for_user(int(account["user_id"]), self.partitions)
            by_partition.setdefault(partition, []).append(account)
        last: dict[int, str] = {}
        async with httpx.AsyncClient(base_url=self.api_url, timeout=5, trust_env=False) as http:
            while time.monotonic() < deadline:
                owners: dict[int, str] = {}
                for partition, members in by_partition.items():
                    token = members[0]["token"]
                    r = await http.get("/v1/discover", headers={"Authorization": f"Bearer {token}"})
                    if r.status_code == 200:
                        owners[partition] = r.json()["chat_url"]
                seen = set(owners.values())
                settled = len(owners) == len(by_partition) and seen <= live
                if settled and len(seen) == min(len(live), len(by_partition)) and owners == last:
                    for partition, members in by_partition.items():
                        for account in members:
                            account["chat_url"] = owners[partition]
                    return
                last = owners
                await asyncio.sleep(0.5)
        raise RuntimeError(f"the cluster did not settle within {within}s")

    async def _admin_sql(self, sql: str) -> None:
        import asyncpg  # type: ignore[import-untyped]

        dsn = self._postgres_url().replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the processes, then drop the namespace: database, topics and keyspace."""
        super().stop()
        try:
            asyncio.run(self._admin_sql(f'DROP DATABASE IF EXISTS "{self.namespace}" WITH (FORCE)'))
            asyncio.run(self._drop_topics())
            self._drop_keyspace()
        except Exception as exc:
            log.warning("could not drop bench namespace %s: %r", self.namespace, exc)

    async def _drop_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.testenv["TIDINGS_TEST_KAFKA_BOOTSTRAP"])
        await admin.start()
        try:
            names = [f"{self.namespace}.{t}" for t in ("inbox", "members", "push")]
            existing = set(await admin.list_topics())
            await admin.delete_topics([n for n in names if n in existing])
        finally:
            await admin.close()

    def _drop_keyspace(self) -> None:
        from cassandra.cluster import Cluster as CassandraCluster

        hosts = [h for h in self.testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(",") if h]
        cassandra = CassandraCluster(
            hosts, port=int(self.testenv["TIDINGS_TEST_CASSANDRA_PORT"]), protocol_version=5
        )
        try:
            cassandra.connect().execute(f"DROP KEYSPACE IF EXISTS {self.namespace}", timeout=60)
        finally:
            cassandra.shutdown()

    def backend_pids(self) -> dict[str, list[int]]:
        """The PostgreSQL, Kafka and Cassandra processes (each daemon is its own session,
        recorded in the test environment's run/ directory)."""
        from tidings.bench._procstat import family

        out: dict[str, list[int]] = {}
        run = self.service_state / "run"
        for name in ("postgres", "kafka", "cassandra"):
            pids: list[int] = []
            for pidfile in run.glob(f"{name}*.pid"):
                try:
                    pid = int(pidfile.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
                pids += family(pid)
            out[name] = sorted(set(pids))
        return out

    def version(self) -> str:
        """This tree's tidings version."""
        from tidings import __version__

        return __version__
