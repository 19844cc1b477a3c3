"""Prometheus metrics are never on the public port: off by default, and with
``TIDINGS_METRICS_PORT`` (or ``--metrics-port``) on a port of their own (docs/security.md).

"Nothing else serves it" is checked on the process itself: the TCP sockets it listens on,
read from ``/proc`` (its socket descriptors against the kernel's TCP tables).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx

from ._harness import (
    Clients,
    ServerProcess,
    error_code,
    free_port,
    http_client,
    new_account,
    owned_server,
)

LOOPBACK = "127.0.0.1"


def listening(pid: int) -> dict[int, str]:
    """The TCP ports the process listens on, with their address ({port: address})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    found: dict[int, str] = {}
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            assert len(address) == width
            if width == 8:  # little-endian IPv4
                address = ".".join(str(b) for b in reversed(bytes.fromhex(address)))
            found[int(port, 16)] = address
    return found


def pid_of(server: ServerProcess) -> int:
    assert server.proc is not None
    return server.proc.pid


async def public_metrics_is_not_found(server: ServerProcess) -> None:
    async with http_client(server) as http:
        response = await http.get("/metrics")
    assert response.status_code == 404
    assert error_code(response) == "not_found"


async def test_by_default_nothing_serves_metrics(tmp_path: Path) -> None:
    with owned_server(tmp_path, metrics=False) as server:
        await public_metrics_is_not_found(server)
        # No metrics port either: the public port is all the process listens on.
        assert listening(pid_of(server)) == {server.port: LOOPBACK}


async def test_the_metrics_port_serves_prometheus_text(tmp_path: Path, clients: Clients) -> None:
    with owned_server(tmp_path) as server:  # the harness sets TIDINGS_METRICS_PORT
        assert server.metrics_port is not None
        async with http_client(server) as http:
            await clients.connect(await new_account(http, "mp"))
            response = await http.get(server.metrics_url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE tidings_connections gauge" in response.text
        connections = re.search(r"^tidings_connections (\S+)$", response.text, re.MULTILINE)
        assert connections is not None and float(connections.group(1)) >= 1
        await public_metrics_is_not_found(server)
        # Two ports, the metrics one on loopback (TIDINGS_METRICS_HOST's default).
        assert listening(pid_of(server)) == {server.port: LOOPBACK, server.metrics_port: LOOPBACK}


async def test_the_metrics_port_flag_of_tidings_up(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    server.metrics = False  # no TIDINGS_METRICS_PORT: the flag alone
    server.args += ["--metrics-port", str(metrics_port), "--metrics-host", LOOPBACK]
    server.start()
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            response = await http.get(f"http://{LOOPBACK}:{metrics_port}/metrics")
        assert response.status_code == 200
        assert "# TYPE tidings_messages_sent_total counter" in response.text
        await public_metrics_is_not_found(server)
        assert listening(pid_of(server)) == {server.port: LOOPBACK, metrics_port: LOOPBACK}
    finally:
        server.kill()
