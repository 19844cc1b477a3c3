"""Fixtures and stand-ins shared by every push test: a Directory with devices, messages,
metrics readings.

The push tests live here by feature: unit/ drives the pieces with no network (the retry
policy, payloads, the dispatcher with fake providers, the chat server's grace, signatures);
the files beside it run the providers against stand-in APNs/FCM/webhook servers
(_standins.py), the worker against Kafka, and the whole path from a send to a push."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tidings.core.model import Message
from tidings.storage.sql.directory import SqlDirectory

USER = 42
SENDER = 7


@pytest.fixture
async def directory(tmp_path: Path) -> AsyncIterator[SqlDirectory]:
    opened = await SqlDirectory.open(f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}")
    await opened.create_user(USER, "bea", "x", "Bea", 0)
    await opened.create_user(SENDER, "al", "x", "Al", 0)
    try:
        yield opened
    finally:
        await opened.close()


async def add_device(directory: SqlDirectory, device_id: int, provider: str, token: str) -> None:
    await directory.create_device(device_id, USER, f"phone {device_id}", "ios", 0)
    await directory.set_push_token(device_id, provider, token)


async def token_of(directory: SqlDirectory, device_id: int) -> str | None:
    device = await directory.get_device(device_id)
    assert device is not None
    return device.push_token


def message(
    message_id: int = 1001, channel_id: str = f"dm:{SENDER}:{USER}", body: str = ""
) -> Message:
    return Message(
        message_id=message_id,
        channel_id=channel_id,
        sender_id=SENDER,
        sender_device_id=1,
        client_msg_id=f"c{message_id}",
        body=body or f"secret words {message_id}",
        ts=1_732_830_000_000,
    )


def msg(message_id: int, channel_id: str = "dm:1:2") -> Message:
    """A short message ("hi") from user 1's device 10, for the tests that only route it."""
    return Message(message_id, channel_id, 1, 10, f"c{message_id}", "hi", 0)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
