"""`tidings push` as a cluster runs it: Kafka in, PostgreSQL devices, the APNs stand-in out.

A chat server's KafkaPushSink produces the requests; the `tidings push` subprocess
consumes them, collapses, sends through the stand-in and removes the token the stand-in
reports dead from PostgreSQL. Each test owns a database, a topic prefix and cleans up.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tidings.core.model import Message
from tidings.push.kafka import KafkaPushSink
from tidings.settings import Settings
from tidings.storage.sql.directory import SqlDirectory

from ._process import free_port, tidings_command
from ._standins import ApnsStandin, apns_error, p256_key_pem, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(120)]

WAIT = 30.0  # joining a consumer group takes a few seconds
KEY_ID, TEAM_ID, TOPIC = "KEY7654321", "TEAM654321", "dev.tidings.app"
USER, SENDER = 1001, 1002


@pytest.fixture
async def database(testenv: Any) -> AsyncIterator[str]:
    """A fresh database with the Directory's schema; its URL."""
    base = make_url(testenv["TIDINGS_TEST_POSTGRES_URL"])
    name = f"push_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name}"))
        url = base.set(database=name).render_as_string(hide_password=False)
        directory = await SqlDirectory.open(url)  # migrates, as `tidings migrate` would
        await directory.close()
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()


def message(message_id: int) -> Message:
    return Message(message_id, f"dm:{USER}:{SENDER}", SENDER, 1, f"c{message_id}", "hi", 0)


async def test_push_worker_sends_collapses_and_prunes(
    tmp_path: Path, database: str, kafka_settings: Settings
) -> None:
    pem, public_key = p256_key_pem()
    good, dead = secrets.token_hex(32), secrets.token_hex(32)
    directory = await SqlDirectory.open(database, migrate=False)
    await directory.create_user(USER, "bea", "x", "Bea", 0)
    for device_id, token in ((11, good), (12, dead)):
        await directory.create_device(device_id, USER, "phone", "ios", 0)
        await directory.set_push_token(device_id, "apns", token)

    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    async with ApnsStandin(public_key, KEY_ID, TEAM_ID, TOPIC) as standin:
        standin.scripts.add(dead, apns_error(410, "Unregistered"))
        env.update(
            TIDINGS_POSTGRES_URL=database,
            TIDINGS_KAFKA_BOOTSTRAP=kafka_settings.kafka_bootstrap,
            TIDINGS_KAFKA_TOPIC_PREFIX=kafka_settings.kafka_topic_prefix,
            TIDINGS_APNS_KEY=pem,
            TIDINGS_APNS_KEY_ID=KEY_ID,
            TIDINGS_APNS_TEAM_ID=TEAM_ID,
            TIDINGS_APNS_TOPIC=TOPIC,
            TIDINGS_APNS_ENDPOINT=standin.url,
        )
        log = tmp_path / "push.log"
        metrics_port = free_port()
        command = [
            *tidings_command(),
            "push",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics_port),
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220

        def tail() -> str:
            return "\n".join(log.read_text(errors="replace").splitlines()[-30:])

        sink = KafkaPushSink(kafka_settings)
        await asyncio.wait_for(sink.start(), WAIT)
        try:
            # One request per message, as a chat server produces them after its grace.
            for message_id in (5001, 5002, 5003):
                await sink.request(USER, [11, 12], message(message_id))
            await wait_until(
                lambda: len(standin.accepted_for(good)) >= 1 or proc.poll() is not None,
                "a push through the stand-in",
                within=WAIT,
            )
            assert proc.poll() is None, f"tidings push exited:\n{tail()}"
            deadline = time.monotonic() + WAIT
            while (device := await directory.get_device(12)) and device.push_token is not None:
                assert time.monotonic() < deadline, f"dead token not removed:\n{tail()}"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # any extra push would show up now
            # Its metrics: on the metrics port (its only HTTP server).
            async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
                scraped = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            assert re.search(r'^tidings_push_sent_total\{provider="apns"\} [1-9]', scraped, re.M)
            assert re.search(r'^tidings_push_pruned_total\{provider="apns"\} 1', scraped, re.M)
        finally:
            await sink.close()
            await directory.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(asyncio.to_thread(proc.wait), 20)
            except TimeoutError:
                proc.kill()
                raise AssertionError(f"tidings push ignored SIGTERM:\n{tail()}") from None
    assert code == 0, tail()
    assert standin.violations == []
    pushes = standin.accepted_for(good)
    # All three requests arrived in one batch or a few; each batch collapses to one push
    # about its latest message, and the last push is about the latest message of all.
    assert 1 <= len(pushes) <= 3
    assert pushes[-1].json()["tidings"]["message_id"] == "5003"
    dead_attempts = [s for s in standin.requests if s.path.endswith(dead)]
    assert len(dead_attempts) == 1, "a dead token is not tried again"
