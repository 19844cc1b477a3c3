"""The e2e tests run against the real single-node Kubernetes of e2e/env/node.sh."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ._node import NodeClients, NodeEnv, Platform


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "node: needs the real single-node Kubernetes (e2e/env/node.sh)"
    )


@pytest.fixture(scope="module")
def platform(testenv: Mapping[str, str]) -> Platform:
    return Platform(NodeEnv.from_testenv(testenv))


@pytest.fixture
async def clients(platform: Platform) -> Any:
    opened = NodeClients(platform)
    try:
        yield opened
    finally:
        await opened.close_all()
