"""Shared fixtures: where the test environment's real services are.

`e2e/env/up.sh` starts the services and writes one `<service>.env` file per service into
the state directory (default `.testenv/`, or `$TIDINGS_TESTENV_STATE`). Tests that need a
service read its address through :func:`testenv`; a service that is not there fails the
test loudly — it is never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _state_dir() -> Path:
    return Path(os.environ.get("TIDINGS_TESTENV_STATE", REPO_ROOT / ".testenv"))


def _read_env_files(state: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for env_file in sorted(state.glob("*.env")):
        for line in env_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


class TestEnv(Mapping[str, str]):
    """The addresses the test environment wrote, with loud failures for missing ones."""

    def __init__(self, values: dict[str, str], state: Path) -> None:
        self._values = values
        self._state = state

    def __getitem__(self, key: str) -> str:
        # An explicit environment variable wins over the files (for pointing at other hosts).
        if key in os.environ:
            return os.environ[key]
        try:
            return self._values[key]
        except KeyError:
            pytest.fail(
                f"{key} is not set: the test environment is not running or did not write it "
                f"(looked in {self._state}/*.env). Start it with `make testenv-up`.",
                pytrace=False,
            )

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@pytest.fixture(scope="session")
def testenv() -> TestEnv:
    state = _state_dir()
    return TestEnv(_read_env_files(state), state)
