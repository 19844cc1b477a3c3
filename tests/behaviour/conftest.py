"""Fixtures: one real deployment per session and kind, HTTP and WebSocket clients per test.

The ``server`` fixture is parametrised: ``embedded`` is one `tidings up` on SQLite;
``cluster`` is `tidings migrate`, 2 `tidings api` and 3 `tidings chat` subprocesses on the
test environment's PostgreSQL, Cassandra and Kafka. Every test that uses ``server`` or
``http`` runs against both, unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tidings.client import ApiClient, User

from ._cluster import Backends, close_cluster, open_cluster
from ._harness import (
    PASSWORD,
    Clients,
    Deployment,
    Opener,
    http_client,
    start_server,
    stop_server,
    unique_name,
)

CLUSTER_MARKS = [pytest.mark.kafka, pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.s3]


@pytest.fixture(
    scope="session",
    params=[pytest.param("embedded"), pytest.param("cluster", marks=CLUSTER_MARKS)],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One shared deployment; tests keep out of each other's way with unique usernames."""
    if request.param == "embedded":
        proc = start_server(tmp_path_factory.mktemp("tidings-shared"))
        try:
            yield proc
        finally:
            stop_server(proc)
        return
    testenv: Mapping[str, str] = request.getfixturevalue("testenv")
    cluster = open_cluster(
        tmp_path_factory.mktemp("tidings-cluster"), Backends.from_testenv(testenv)
    )
    try:
        yield cluster
    finally:
        close_cluster(cluster)


_api_turn = itertools.count()


@pytest.fixture
async def http(server: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of one of the deployment's API processes, taking turns per test."""
    async with http_client(server, next(_api_turn)) as client:
        yield client


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    opened = Clients()
    try:
        yield opened
    finally:
        await opened.close_all()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests with servers of their own (restarts, drains, the failover cluster) first, so
    that they do not share the machine with an idle shared deployment."""
    here = Path(__file__).parent
    mine = [i for i in items if here in i.path.parents]
    own = [i for i in mine if "server" not in getattr(i, "fixturenames", ())]
    if not own or not mine:
        return
    first = items.index(mine[0])
    moved = set(own)
    rest = [i for i in items if i not in moved]
    items[:] = [*rest[:first], *own, *rest[first:]]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test shows the logs of the processes it used."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        shown: set[int] = set()
        for value in funcargs.values():
            sections = getattr(value, "log_sections", None)
            if callable(sections) and id(value) not in shown:
                shown.add(id(value))
                for title, text in sections():
                    report.sections.append((title, text))
    return report


@pytest.fixture
async def person(server: Deployment) -> AsyncIterator[Opener]:
    """person() signs a new user up and logs a device in with the client library:
    (client, user). (test_client_media.py has its own, returning the client only.)"""
    opened: list[ApiClient] = []

    async def open_person() -> tuple[ApiClient, User]:
        api = ApiClient(server.api_urls[len(opened) % len(server.api_urls)])
        opened.append(api)
        user = await api.signup(unique_name("person"), PASSWORD)
        await api.login(user.username, PASSWORD)
        return api, user

    yield open_person
    for api in opened:
        await api.aclose()
