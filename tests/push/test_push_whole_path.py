"""The whole path: `tidings up` with the APNs stand-in; offline devices get one push.

`tidings up` runs as a subprocess on a free loopback port, configured with a test APNs
key and the stand-in's URL (TIDINGS_APNS_ENDPOINT). Clients speak its HTTP API and
WebSocket like an app. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ._process import free_port, tidings_command
from ._standins import ApnsStandin, p256_key_pem, wait_until

WAIT = 5.0
GRACE_S = 1.5
KEY_ID, TEAM_ID, TOPIC = "KEY1234567", "TEAM123456", "dev.tidings.app"
PASSWORD = "correct horse battery"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus text, on a port of its own (the public port does not serve it)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture
async def apns() -> AsyncIterator[tuple[ApnsStandin, str]]:
    pem, public_key = p256_key_pem()
    async with ApnsStandin(public_key, KEY_ID, TEAM_ID, TOPIC) as standin:
        yield standin, pem


@pytest.fixture
async def server(tmp_path: Path, apns: tuple[ApnsStandin, str]) -> AsyncIterator[Server]:
    standin, pem = apns
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        TIDINGS_JWT_SECRET=secrets.token_urlsafe(48),
        TIDINGS_ARGON2_TIME_COST="1",
        TIDINGS_ARGON2_MEMORY_KIB="1024",
        TIDINGS_RATE_LIMIT_PER_S="1000",
        TIDINGS_RATE_LIMIT_BURST="1000",
        TIDINGS_PUSH_GRACE_S=str(GRACE_S),
        TIDINGS_APNS_KEY=pem,
        TIDINGS_APNS_KEY_ID=KEY_ID,
        TIDINGS_APNS_TEAM_ID=TEAM_ID,
        TIDINGS_APNS_TOPIC=TOPIC,
        TIDINGS_APNS_ENDPOINT=standin.url,
        TIDINGS_DRAIN_BUDGET_S="1",
        TIDINGS_METRICS_PORT=str(metrics_port),
    )
    log = tmp_path / "server.log"
    command = [*tidings_command(), "up", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    server = Server(proc, port, metrics_port, log)
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=server.url, timeout=1, trust_env=False) as http:
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"tidings up exited:\n{server.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"tidings up not healthy in 30 s:\n{server.log_tail()}")
                await asyncio.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 15)
            except TimeoutError:
                proc.kill()
                raise AssertionError(f"tidings up ignored SIGTERM:\n{server.log_tail()}") from None


@dataclass
class Device:
    user_id: str
    device_id: str
    token: str
    chat_url: str


async def account(http: httpx.AsyncClient, devices: int) -> list[Device]:
    username = f"p_{uuid.uuid4().hex[:12]}"
    created = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
    assert created.status_code == 201, created.text
    out = []
    for _ in range(devices):
        session = await http.post(
            "/v1/sessions", json={"username": username, "password": PASSWORD, "platform": "ios"}
        )
        assert session.status_code == 201, session.text
        body = session.json()
        out.append(
            Device(body["user_id"], body["device_id"], body["access_token"], body["chat_url"])
        )
    return out


async def register_apns(http: httpx.AsyncClient, device: Device) -> str:
    token = secrets.token_hex(32)
    response = await http.put(
        f"/v1/devices/{device.device_id}/push",
        json={"provider": "apns", "token": token},
        headers={"Authorization": f"Bearer {device.token}"},
    )
    assert response.status_code == 204, response.text
    return token


class Socket:
    """A connected, hello'd device with a reader and a heartbeat, as an app has."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.cursor = "0"
        self._changed = asyncio.Event()
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._beat())]

    @classmethod
    async def open(cls, device: Device, cursor: str = "0") -> Socket:
        ws = await connect(device.chat_url, open_timeout=WAIT, proxy=None, ping_interval=None)
        sock = cls(ws)
        await ws.send(json.dumps({"type": "hello", "token": device.token, "cursor": cursor}))
        await sock.take("synced")
        return sock

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "msg":
                    self.cursor = frame["seq"]
                self.frames.append(frame)
                self._changed.set()

    async def _beat(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(0.5)
                await self.ws.send(json.dumps({"type": "heartbeat"}))

    async def take(self, frame_type: str, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            for i, frame in enumerate(self.frames):
                if frame.get("type") == frame_type and all(
                    frame.get(k) == v for k, v in fields.items()
                ):
                    return self.frames.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {frame_type} {fields} within {WAIT}s: {self.frames[-10:]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def send(self, to: str, body: str) -> dict[str, Any]:
        client_msg_id = uuid.uuid4().hex
        await self.ws.send(
            json.dumps({"type": "send", "client_msg_id": client_msg_id, "to": to, "body": body})
        )
        return await self.take("ack", client_msg_id=client_msg_id)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 3)
        await asyncio.gather(*self._tasks, return_exceptions=True)


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"no {name} in /metrics"
    return float(found.group(1))


async def test_offline_device_gets_exactly_one_push_online_device_none(
    server: Server, apns: tuple[ApnsStandin, str]
) -> None:
    standin, _ = apns
    async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as http:
        (alice,) = await account(http, 1)
        bob_phone, bob_tablet = await account(http, 2)
        online_token = await register_apns(http, bob_phone)
        offline_token = await register_apns(http, bob_tablet)  # never connects
        online = await Socket.open(bob_phone)
        sender = await Socket.open(alice)
        try:
            acks = [await sender.send(bob_phone.user_id, f"secret {i}") for i in range(4)]
            for ack in acks:  # the online device has them over its connection
                await online.take("msg", message_id=ack["message_id"])
            await wait_until(
                lambda: len(standin.accepted_for(offline_token)) >= 1,
                "a push to the offline device",
                within=GRACE_S + WAIT,
            )
            await asyncio.sleep(GRACE_S + 1.0)  # time for any extra push to show up
        finally:
            await online.close()
            await sender.close()
    assert standin.violations == [], server.log_tail()
    (push,) = standin.accepted_for(offline_token)
    assert standin.accepted_for(online_token) == []
    ids = sorted(int(a["message_id"]) for a in acks)
    channel = "dm:{}:{}".format(*sorted((int(alice.user_id), int(bob_phone.user_id)), key=int))
    assert push.json()["tidings"] == {"channel_id": channel, "message_id": str(ids[-1])}
    assert push.headers["apns-collapse-id"] == channel
    assert b"secret" not in push.body


async def test_a_device_back_within_the_grace_gets_no_push(
    server: Server, apns: tuple[ApnsStandin, str]
) -> None:
    standin, _ = apns
    async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as http:
        (alice,) = await account(http, 1)
        (bob,) = await account(http, 1)
        token = await register_apns(http, bob)
        first = await Socket.open(bob)
        sender = await Socket.open(alice)
        again: Socket | None = None
        try:
            await first.close()  # a drain, a failover, a network switch...
            await asyncio.sleep(0.2)
            before = metric(
                (await http.get(server.metrics_url)).text, "tidings_push_requests_total"
            )
            ack = await sender.send(bob.user_id, "while away")
            deadline = time.monotonic() + WAIT
            while (
                metric((await http.get(server.metrics_url)).text, "tidings_push_requests_total")
                == before
            ):
                assert time.monotonic() < deadline, "no push was asked for the offline device"
                await asyncio.sleep(0.02)
            again = await Socket.open(bob)  # ...and back well within the grace
            deadline = time.monotonic() + WAIT
            while not any(f.get("message_id") == ack["message_id"] for f in again.frames):
                assert time.monotonic() < deadline, "the message never reached the device"
                await asyncio.sleep(0.02)
            await asyncio.sleep(GRACE_S + 1.0)
            text = (await http.get(server.metrics_url)).text
        finally:
            for sock in (again, sender):
                if sock is not None:
                    await sock.close()
    assert standin.accepted_for(token) == []
    assert standin.requests == []
    assert metric(text, "tidings_push_suppressed_total") >= 1
