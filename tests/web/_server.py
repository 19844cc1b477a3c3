"""A real `tidings up` subprocess for the browser tests: its own port and data directory,
killed and started again on the same port and data directory for the restart test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from behaviour._harness import _tidings_command, free_port

# Short timings so presence changes are seen within seconds: the page heartbeats every
# `heartbeat_s` (from `welcome`), well inside the presence window.
SERVER_ENV = {
    "TIDINGS_HEARTBEAT_S": "1",
    "TIDINGS_PRESENCE_OFFLINE_AFTER_S": "3",
    "TIDINGS_SWEEP_INTERVAL_S": "0.2",
    "TIDINGS_ARGON2_TIME_COST": "1",
    "TIDINGS_ARGON2_MEMORY_KIB": "1024",
    "TIDINGS_JWT_SECRET": "web-client-tests-jwt-secret-0123456789abcdef012345",
    "TIDINGS_DRAIN_BUDGET_S": "1",
    # A restart in place tells pages to come back within 0.2 s, before the next process
    # listens: the page must keep to the same URL until it does (not ask /v1/discover).
    "TIDINGS_RESTART_RECONNECT_MIN_S": "0",
    "TIDINGS_RESTART_RECONNECT_MAX_S": "0.2",
    "TIDINGS_RATE_LIMIT_PER_S": "1000",
    "TIDINGS_RATE_LIMIT_BURST": "1000",
}


@dataclass
class WebServer:
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)  # beyond SERVER_ENV
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(SERVER_ENV)
        env.update(self.env)
        command = [*_tidings_command(), "up", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(command)}\n".encode())
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=1.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"tidings up exited during start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        self.kill()
        raise AssertionError(f"tidings up not healthy within {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye to the clients (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
