"""The servers under test, each started as its own process(es): Tidings embedded
(`tidings up`), a Tidings cluster (`tidings migrate/api/chat` on PostgreSQL, Cassandra
and Kafka), the baseline relay, and Centrifugo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tidings.bench._procstat import raise_nofile

log = logging.getLogger(__name__)

JWT_SECRET = "tidings-bench-jwt-secret-0123456789abcdef0123456789"
# Settings every bench Tidings process runs with (docs/benchmarks.md says why): cheap
# password hashing so that tens of thousands of signups take seconds (logins are not what
# is measured), and per-connection rate limits out of the way of the offered load.
BENCH_ENV = {
    "TIDINGS_JWT_SECRET": JWT_SECRET,
    "TIDINGS_ARGON2_TIME_COST": "1",
    "TIDINGS_ARGON2_MEMORY_KIB": "64",
    "TIDINGS_RATE_LIMIT_PER_S": "100000",
    "TIDINGS_RATE_LIMIT_BURST": "100000",
    "TIDINGS_LOG_LEVEL": "WARNING",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tidings_command() -> list[str]:
    script = Path(sys.executable).parent / "tidings"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tidings"]


def _child_env(extra: dict[str, str], defaults: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server under test: BENCH_ENV and ``defaults``, then the
    caller's TIDINGS_BENCH_ENV_* settings over them, then ``extra`` (what the target
    needs to run at all)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(BENCH_ENV)
    env.update(defaults or {})
    # TIDINGS_BENCH_ENV_<NAME>=v in the caller's environment sets TIDINGS_<NAME>=v.
    prefix = "TIDINGS_BENCH_ENV_"
    env.update(
        {"TIDINGS_" + k[len(prefix) :]: v for k, v in os.environ.items() if k.startswith(prefix)}
    )
    env.update(extra)
    return env


def _preexec() -> None:
    raise_nofile()


class Proc:
    """One server process, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.cwd is not None:
            self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec,
                cwd=self.cwd,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def wait_http(url: str, proc: Proc, timeout: float = 60.0, ok: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if proc.proc is not None and proc.proc.poll() is not None:
                raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
            try:
                if http.get(url).status_code in ok:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout}s:\n{proc.tail()}")


class Target:
    """A server under test: where clients connect and which processes to measure."""

    name = "target"
    dialect = "tidings"
    deflate = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []
        self.host = "127.0.0.1"

    @property
    def ws_url(self) -> str:
        raise NotImplementedError

    @property
    def api_url(self) -> str:
        return ""

    @property
    def ports(self) -> list[int]:
        """Ports whose accepted sockets are this target's (for kernel socket memory)."""
        return []

    @property
    def server_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.proc is not None]

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def version(self) -> str:
        return ""

    def describe(self) -> dict[str, Any]:
        prefix = "TIDINGS_BENCH_ENV_"
        overrides = {
            "TIDINGS_" + k[len(prefix) :]: v for k, v in os.environ.items() if k.startswith(prefix)
        }
        out: dict[str, Any] = {"name": self.name, "dialect": self.dialect}
        out["version"] = self.version()
        if overrides and self.dialect == "tidings":
            out["settings"] = overrides
        return out


class SinglePortTarget(Target):
    """A server on one port of its own: its WebSocket path and (if it has one) its HTTP API
    there."""

    ws_path = "/"
    serves_api = True

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}" if self.serves_api else ""

    @property
    def ports(self) -> list[int]:
        return [self.port]


class Embedded(SinglePortTarget):
    """`tidings up`: API, gateway and push in one process on SQLite."""

    name = "tidings-embedded"
    ws_path = "/v1/ws"

    def __init__(self, workdir: Path, data_dir: Path | None = None, **env: str) -> None:
        super().__init__(workdir)
        self.data_dir = data_dir or workdir / "data"
        self.env = env
        self.ready_at_ns = 0
        # Directories put first on the server's PYTHONPATH (the trace's sitecustomize).
        self.pythonpath: list[Path] = []

    def _argv(self) -> list[str]:
        return [*tidings_command(), "up"]

    def _env(self) -> dict[str, str]:
        env = _child_env(self.env)
        if self.pythonpath:
            old = env.get("PYTHONPATH", "")
            env["PYTHONPATH"] = os.pathsep.join([*map(str, self.pythonpath), *filter(None, [old])])
        return env

    def _proc(self) -> Proc:
        argv = [*self._argv(), "--host", self.host, "--port", str(self.port)]
        argv += ["--data-dir", str(self.data_dir)]
        return Proc("tidings up", argv, self._env(), self.workdir / "tidings-up.log")

    def start(self) -> None:
        self.procs = [self._proc()]
        self.procs[0].start()
        wait_http(f"{self.api_url}/readyz", self.procs[0])

    def setup_mode(self, on: bool) -> None:
        """Setup (signups) runs on a server with SQLite ``synchronous=NORMAL``; the
        measured server is started again afterwards with the settings under test, so
        its memory baseline does not carry the signups either."""
        self.stop()
        if on:
            self.env = {**self.env, "TIDINGS_SQLITE_SYNCHRONOUS": "NORMAL"}
        else:
            self.env = {k: v for k, v in self.env.items() if k != "TIDINGS_SQLITE_SYNCHRONOUS"}
        self.start()

    def restart(self) -> None:
        """Start a fresh process on the same port and data (after a drain)."""
        old = self.procs[0]
        if old.proc is not None:
            old.proc.wait(60)
        self.procs = [self._proc()]
        self.procs[0].start()
        wait_http(f"{self.api_url}/readyz", self.procs[0])
        self.ready_at_ns = time.monotonic_ns()

    def version(self) -> str:
        from tidings import __version__

        return __version__

    def code_tree(self) -> Path:
        """The checkout whose code this target runs."""
        import tidings

        return Path(tidings.__file__).resolve().parents[2]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        described = subprocess.run(
            ["git", "-C", str(self.code_tree()), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
        if described.returncode == 0:
            out["tree_commit"] = described.stdout.strip()  # "-dirty": uncommitted changes
        return out


# Runs `tidings` from the tree whose ``workloads`` directory is argv[1] (first on
# PYTHONPATH), after checking that this is where the package really came from: the
# project is installed editable in the venv, and an import from the venv's tree instead
# would measure the wrong code without any sign of it.
_REF_LAUNCHER = """
import os, sys
want = os.path.realpath(sys.argv.pop(1)) + os.sep
import tidings
found = os.path.realpath(tidings.__file__ or "")
print("tidings imported from", found, flush=True)
if not found.startswith(want):
    sys.exit(f"tidings was imported from {found}, not from {want}")
from tidings.cli import main
sys.argv[0] = "tidings"
sys.exit(main())
"""
IMPORTED_FROM = "tidings imported from "


def git_commit(tree: Path) -> str:
    """The commit checked out in ``tree`` ('' when it is not a git work tree)."""
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def _dependencies(pyproject: Path) -> set[str]:
    import re
    import tomllib

    try:
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except (OSError, KeyError, ValueError):
        return set()
    names = (re.match(r"[A-Za-z0-9._-]+", str(d)) for d in deps)
    return {m.group(0).lower().replace("-", "_") for m in names if m}


def ref_hidden_modules(tree: Path) -> list[str]:
    """Modules to hide from a reference tree: what the current tree's pyproject.toml
    depends on and the reference's does not (installed into the venv since), unless
    another installed distribution needs it. Libraries pick such modules up by
    themselves (uvicorn runs on uvloop whenever it can import it), which would measure
    the old code on a new stack."""
    from importlib import metadata

    import tidings

    here = Path(tidings.__file__).resolve().parents[2] / "pyproject.toml"
    added = _dependencies(here) - _dependencies(tree / "pyproject.toml")
    needed: set[str] = set()
    for dist in metadata.distributions():
        if (dist.metadata["Name"] or "").lower() == "tidings":
            continue
        for req in dist.requires or []:
            if "extra ==" not in req and "extra==" not in req:
                name = req.split(";")[0].strip().split(" ")[0]
                needed.add(name.split("[")[0].split(">")[0].split("=")[0].split("<")[0].lower())
    return sorted(m for m in added if m.replace("_", "-") not in needed and m not in needed)


class EmbeddedRef(Embedded):
    """`tidings up` from another checkout of this repository (``--ref-tree``), e.g. the
    commit before a change, measured in the same run as the current tree. It runs on
    this venv's interpreter and libraries with ``<tree>/workloads`` first on PYTHONPATH,
    from a working directory of its own; start-up fails unless ``tidings`` was imported
    from that tree."""

    def __init__(self, workdir: Path, tree: Path, data_dir: Path | None = None, **env: str) -> None:
        super().__init__(workdir, data_dir, **env)
        self.tree = tree.resolve()
        if not (self.tree / "workloads" / "tidings" / "__init__.py").exists():
            raise RuntimeError(f"--ref-tree {tree}: no workloads/tidings/ there")
        self.commit = git_commit(self.tree)
        self.name = f"tidings-embedded (ref {self.commit[:7] or self.tree.name})"
        self.hidden = ref_hidden_modules(self.tree)
        hide = self.workdir / "hidden-modules"
        hide.mkdir(parents=True, exist_ok=True)
        for module in self.hidden:
            (hide / f"{module}.py").write_text(
                f"raise ModuleNotFoundError({module!r} ' is hidden from the reference tree: "
                f"its pyproject.toml does not depend on it', name={module!r})\n"
            )
        self.pythonpath = [self.tree / "workloads", hide]
        self.imported_from = ""

    def _argv(self) -> list[str]:
        return [sys.executable, "-c", _REF_LAUNCHER, str(self.tree / "workloads"), "up"]

    def _proc(self) -> Proc:
        proc = super()._proc()
        proc.cwd = self.workdir / "cwd"  # not the caller's: '' is first on sys.path
        return proc

    def start(self) -> None:
        super().start()
        self._check_import()

    def restart(self) -> None:
        super().restart()
        self._check_import()

    def _check_import(self) -> None:
        log_text = self.procs[0].log_path.read_text(errors="replace")
        lines = [ln for ln in log_text.splitlines() if ln.startswith(IMPORTED_FROM)]
        if not lines:
            raise RuntimeError(f"{self.name}: the launcher did not say where tidings came from")
        self.imported_from = lines[-1][len(IMPORTED_FROM) :]

    def version(self) -> str:
        return f"ref {self.commit or self.tree}"

    def code_tree(self) -> Path:
        return self.tree

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            {
                "ref_tree": str(self.tree),
                "commit": self.commit,
                "imported_from": self.imported_from,
                "hidden_modules": self.hidden,
            }
        )
        return out


class Baseline(SinglePortTarget):
    """The minimal `websockets` relay (tidings.bench.baseline)."""

    dialect = "baseline"
    serves_api = False

    def __init__(self, workdir: Path, compression: bool = True) -> None:
        super().__init__(workdir)
        self.compression = compression
        self.name = "baseline-websockets" + ("" if compression else "-nocompress")
        self.deflate = compression  # the client offers it, as browsers and websockets do

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "tidings.bench.baseline", "--port", str(self.port)]
        if not self.compression:
            argv.append("--no-compression")
        return argv

    def start(self) -> None:
        argv = self._argv()
        proc = Proc(self.name, argv, _child_env({}), self.workdir / f"{self.name}.log")
        self.procs = [proc]
        proc.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"baseline did not listen:\n{proc.tail()}")

    def version(self) -> str:
        from websockets.version import version

        return f"websockets {version}"


class Floor(Baseline):
    """A bare uvloop protocol answering every heartbeat with a fixed frame
    (tidings.bench.floor): what a heartbeat costs any server in the kernel and loop."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, compression=False)
        self.name = "floor-uvloop"

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "tidings.bench.floor", "--port", str(self.port)]

    def version(self) -> str:
        from importlib.metadata import version

        return f"uvloop {version('uvloop')}"


CENTRIFUGO_SECRET = "centrifugo-bench-hmac-secret-0123456789abcdef"
CENTRIFUGO_API_KEY = "centrifugo-bench-api-key"
CENTRIFUGO_CHANNEL = "bench"


def centrifugo_binary() -> Path | None:
    found = os.environ.get("TIDINGS_BENCH_CENTRIFUGO")
    if found:
        return Path(found)
    cache = Path(os.environ.get("TIDINGS_TESTENV_CACHE", Path.home() / ".cache/tidings-testenv"))
    candidates = sorted(cache.glob("centrifugo/*/bin/centrifugo"))
    return candidates[-1] if candidates else None


class Centrifugo(SinglePortTarget):
    """Centrifugo v6 with its JSON protocol; clients are subscribed to one channel by
    their connection JWT, publications come through its HTTP API."""

    name = "centrifugo"
    dialect = "centrifugo"
    ws_path = "/connection/websocket"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        binary = centrifugo_binary()
        if binary is None or not binary.exists():
            raise RuntimeError("no centrifugo binary: run e2e/env/centrifugo.sh install")
        self.binary = binary

    def start(self) -> None:
        config = {
            "http_server": {"address": self.host, "port": self.port},
            "health": {"enabled": True},
            "client": {
                "token": {"hmac_secret_key": CENTRIFUGO_SECRET},
                "allowed_origins": ["*"],
            },
            "http_api": {"key": CENTRIFUGO_API_KEY},
            "log": {"level": "error"},
        }
        path = self.workdir / "centrifugo.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        argv = [str(self.binary), "--config", str(path)]
        proc = Proc("centrifugo", argv, dict(os.environ), self.workdir / "centrifugo.log")
        self.procs = [proc]
        proc.start()
        wait_http(f"{self.api_url}/health", proc)

    def version(self) -> str:
        out = subprocess.run(
            [str(self.binary), "version"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip()


def read_testenv(state: Path) -> dict[str, str]:
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
        return self.chat_urls[0]

    @property
    def chat_urls(self) -> list[str]:
        """Each chat server's public URL (what login and /v1/discover name)."""
        return [f"ws://{self.host}:{port}/v1/ws" for port in self.chat_ports]

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def ports(self) -> list[int]:
        return self.chat_ports

    @property
    def chat_procs(self) -> list[Proc]:
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
        from tidings import __version__

        return __version__


def stop_all(targets: list[Target]) -> None:
    for target in targets:
        try:
            target.stop()
        except Exception as exc:
            log.warning("stopping %s: %r", target.name, exc)


def drain(proc: Proc) -> None:
    proc.signal(signal.SIGTERM)


def tempdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tidings-bench-"))


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
