"""Centrifugo as a target (the binary e2e/env/centrifugo.sh installs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tidings.bench.targets.base import (
    Proc,
    SinglePortTarget,
    wait_http,
)

CENTRIFUGO_SECRET = "centrifugo-bench-hmac-secret-0123456789abcdef"


CENTRIFUGO_API_KEY = "centrifugo-bench-api-key"


CENTRIFUGO_CHANNEL = "bench"


def centrifugo_binary() -> Path | None:
    """The Centrifugo binary: $TIDINGS_BENCH_CENTRIFUGO, else the newest the test environment's
    cache holds (None if none)."""
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
        """Write its config (this run's secret and API key), start it and wait for /health."""
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
        """What ``centrifugo version`` says."""
        out = subprocess.run(
            [str(self.binary), "version"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip()
