"""What every server under test shares: its process (:class:`Proc`), the
:class:`Target` interface, the bench environment and the helpers to wait and clean up."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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
    """A TCP port free on ``host`` now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tidings_command() -> list[str]:
    """How to run this venv's ``tidings``: its script, or ``python -m tidings``."""
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
        """Start the process, its output appended to ``log_path``, with a raised open-files
        limit."""
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
        """The process id (started processes only)."""
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> None:
        """Terminate the process, and kill it if it has not exited within ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self) -> str:
        """The end of the process's log (for error messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def wait_http(url: str, proc: Proc, timeout: float = 60.0, ok: tuple[int, ...] = (200,)) -> None:
    """Wait until ``url`` answers with one of ``ok``; RuntimeError with the log's tail if the
    process exits first or ``timeout`` passes."""
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
        """Where clients open their WebSockets."""
        raise NotImplementedError

    @property
    def api_url(self) -> str:
        """The HTTP API's base url ('' for a target without one)."""
        return ""

    @property
    def ports(self) -> list[int]:
        """Ports whose accepted sockets are this target's (for kernel socket memory)."""
        return []

    @property
    def server_pids(self) -> list[int]:
        """The processes whose CPU and memory are the target's."""
        return [p.pid for p in self.procs if p.proc is not None]

    def start(self) -> None:
        """Start the target's processes and wait until they serve."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the target's processes, the last started first."""
        for proc in reversed(self.procs):
            proc.stop()

    def version(self) -> str:
        """What ran, for the result ('' if unknown)."""
        return ""

    def describe(self) -> dict[str, Any]:
        """The target as the result records it: name, dialect, version, and the
        TIDINGS_BENCH_ENV_* settings it ran with."""
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
        """``ws://host:port`` and the target's WebSocket path."""
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    @property
    def api_url(self) -> str:
        """``http://host:port``, if the target serves an API there."""
        return f"http://{self.host}:{self.port}" if self.serves_api else ""

    @property
    def ports(self) -> list[int]:
        """The target's one port."""
        return [self.port]


def stop_all(targets: list[Target]) -> None:
    """Stop every target, logging (not raising) what fails."""
    for target in targets:
        try:
            target.stop()
        except Exception as exc:
            log.warning("stopping %s: %r", target.name, exc)


def drain(proc: Proc) -> None:
    """Ask a server to drain (SIGTERM)."""
    proc.signal(signal.SIGTERM)


def tempdir() -> Path:
    """A new temporary directory for a run's logs and data."""
    return Path(tempfile.mkdtemp(prefix="tidings-bench-"))


def rmtree(path: Path) -> None:
    """Remove a directory tree, ignoring errors."""
    shutil.rmtree(path, ignore_errors=True)
