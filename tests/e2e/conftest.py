"""The e2e tests run against the real single-node Kubernetes of e2e/env/node.sh."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "node: needs the real single-node Kubernetes (e2e/env/node.sh)"
    )
