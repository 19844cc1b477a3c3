"""The baseline relay (:mod:`tidings.bench.baseline`) and the floor
(:mod:`tidings.bench.floor`) as targets."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from tidings.bench.targets.base import (
    Proc,
    SinglePortTarget,
    _child_env,
)


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
        """Start the relay and wait until its port accepts connections."""
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
        """The websockets version the relay runs on."""
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
        """The uvloop version the floor runs on."""
        from importlib.metadata import version

        return f"uvloop {version('uvloop')}"
