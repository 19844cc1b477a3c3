"""The generator processes of one measurement, driven from the orchestrator."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from typing import Any

from tidings.bench._histogram import Latency
from tidings.bench._procstat import CpuMeter, raise_nofile
from tidings.bench._worker import Plan, worker_main


class Fleet:
    """``len(plans)`` generator processes; each one answers every command once."""

    def __init__(self, plans: list[Plan], connect_timeout: float = 600.0) -> None:
        check_nofile(plans)
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.procs: list[BaseProcess] = []
        for plan in plans:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(plan, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.connect_reports = self._gather(connect_timeout)

    @property
    def pids(self) -> list[int]:
        """The generator processes' pids."""
        return [p.pid for p in self.procs if p.pid is not None]

    def meter(self) -> CpuMeter:
        """A :class:`CpuMeter` over the generator processes."""
        return CpuMeter(self.pids)

    @property
    def connected(self) -> int:
        """How many connections the generators opened, in all."""
        return sum(int(r.get("connected", 0)) for r in self.connect_reports)

    def connect_summary(self) -> dict[str, Any]:
        """Connections opened, the slowest generator's connect time (s) and failures by kind."""
        failures: dict[str, int] = {}
        for report in self.connect_reports:
            for k, v in report.get("failures", {}).items():
                failures[k] = failures.get(k, 0) + v
        return {
            "connected": self.connected,
            "connect_s": round(max(r.get("seconds", 0.0) for r in self.connect_reports), 2),
            "connect_failures": failures,
        }

    def command(self, *command: Any, timeout: float = 600.0) -> list[dict[str, Any]]:
        """Send ``command`` to every generator; their answers, in order.

        Raises ``RuntimeError`` when one dies, fails or does not answer within ``timeout`` s."""
        for pipe in self.pipes:
            pipe.send(command)
        return self._gather(timeout)

    def send_each(
        self, commands: list[tuple[Any, ...]], timeout: float = 600.0
    ) -> list[dict[str, Any]]:
        """Send each generator its own command; their answers, in order (raises as
        :meth:`command`)."""
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        return self._gather(timeout)

    def _gather(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        out = []
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            while not pipe.poll(0.2):
                if not proc.is_alive():
                    raise RuntimeError(f"generator {proc.pid} died ({proc.exitcode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"generator {proc.pid} did not answer in {timeout}s")
            answer: dict[str, Any] = pipe.recv()
            if "error" in answer:
                raise RuntimeError(f"generator {proc.pid} failed: {answer['error']}")
            out.append(answer)
        return out

    def close(self) -> None:
        """Tell the generators to stop; kill those still alive 20 s later."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        for proc in self.procs:
            proc.join(20)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


# Files a generator process has open besides its connections' sockets (its pipe, the
# interpreter's, a /v1/discover connection per client coming back in a storm: at most
# the handshakes in flight).
NOFILE_SPARE = 1024


def check_nofile(plans: list[Plan]) -> None:
    """Refuse a plan that gives one generator more connections than it may open files
    (RLIMIT_NOFILE: the generators raise it to the hard limit): more ``--workers``."""
    limit = raise_nofile()  # what the generators, children of this process, get too
    most = max((len(p.accounts) for p in plans), default=0)
    if most + NOFILE_SPARE > limit:
        raise ValueError(
            f"a generator would hold {most} connections, but a process may open only "
            f"{limit} files here: use more --workers"
        )


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the workers' counts and histograms."""
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    hists = {k: Latency() for k in ("latency", "ack_latency", "send_lag")}
    for result in results:
        for k, v in result.get("counts", {}).items():
            counts[k] = counts.get(k, 0) + v
        for k, v in result.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
        for k, hist in hists.items():
            hist.merge(Latency.decode(result.get(k, "")))
    return {
        "counts": counts,
        "errors": errors,
        "latency": hists["latency"].summary(),
        "ack_latency": hists["ack_latency"].summary(),
        "send_lag": hists["send_lag"].summary(),
    }
