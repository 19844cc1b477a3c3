"""Fixtures: a real `tidings up` per session, HTTP and WebSocket clients per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ._harness import Clients, ServerProcess, http_client, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One shared server; tests keep out of each other's way with unique usernames."""
    proc = start_server(tmp_path_factory.mktemp("tidings-shared"))
    try:
        yield proc
    finally:
        stop_server(proc)


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(server) as client:
        yield client


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    opened = Clients()
    try:
        yield opened
    finally:
        await opened.close_all()
