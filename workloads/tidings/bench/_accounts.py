"""Many users, fast and through the front door: signups and logins over HTTP in
parallel before anything is measured, cached in the server's data directory so a second
run on the same data reuses them."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

PASSWORD = "bench-password-0123"
Account = dict[str, str]  # user_id, device_id, token, chat_url, username


async def _one(http: httpx.AsyncClient, username: str) -> Account:
    for attempt in range(50):
        try:
            r = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
            if r.status_code not in (201, 409):
                raise RuntimeError(f"signup {username}: {r.status_code} {r.text}")
            r = await http.post(
                "/v1/sessions",
                json={"username": username, "password": PASSWORD, "platform": "desktop"},
            )
            if r.status_code == 503:  # a cluster API without a chat server known yet
                await asyncio.sleep(0.5)
                continue
            if r.status_code != 201:
                raise RuntimeError(f"login {username}: {r.status_code} {r.text}")
            body = r.json()
            return {
                "username": username,
                "user_id": body["user_id"],
                "device_id": body["device_id"],
                "token": body["access_token"],
                "chat_url": body["chat_url"],
            }
        except (httpx.TransportError, httpx.TimeoutException):
            await asyncio.sleep(min(2.0, 0.1 * (attempt + 1)))
    raise RuntimeError(f"could not sign {username} up")


def create_accounts(
    base_url: str, n: int, *, cache: Path | None = None, concurrency: int = 64
) -> list[Account]:
    """``n`` users with one logged-in device each (from ``cache`` when it holds enough)."""
    accounts: list[Account] = []
    if cache is not None and cache.exists():
        accounts = json.loads(cache.read_text())
        if len(accounts) >= n:
            return accounts[:n]
    accounts += asyncio.run(_create(base_url, len(accounts), n, concurrency))
    if cache is not None:
        cache.write_text(json.dumps(accounts))
    return accounts


async def _create(base_url: str, have: int, n: int, concurrency: int) -> list[Account]:
    prefix = uuid.uuid4().hex[:8]
    names = [f"b{prefix}_{i}" for i in range(have, n)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for name in names:
        queue.put_nowait(name)
    made: list[Account] = []

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            made.append(await _one(http, queue.get_nowait()))
            if len(made) % 5000 == 0:
                log.info("accounts: %d of %d", len(made), len(names))

    async with httpx.AsyncClient(
        base_url=base_url, timeout=60.0, limits=limits, trust_env=False
    ) as http:
        await asyncio.gather(*(worker(http) for _ in range(min(concurrency, len(names) or 1))))
    return made


async def create_groups(base_url: str, members: list[list[Account]]) -> list[str]:
    """One group per member list, created by its first member; returns channel ids."""
    channels = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, trust_env=False) as http:
        for group in members:
            owner, rest = group[0], group[1:]
            r = await http.post(
                "/v1/groups",
                json={"name": "bench", "member_ids": [a["user_id"] for a in rest]},
                headers={"Authorization": f"Bearer {owner['token']}"},
            )
            if r.status_code != 201:
                raise RuntimeError(f"group: {r.status_code} {r.text}")
            channel_id = str(r.json()["channel_id"])
            for member in rest:  # strangers are invited, and join by accepting
                r = await http.post(
                    f"/v1/invites/{channel_id}/accept",
                    headers={"Authorization": f"Bearer {member['token']}"},
                )
                if r.status_code != 200:
                    raise RuntimeError(f"joining a group: {r.status_code} {r.text}")
            channels.append(channel_id)
    return channels


def centrifugo_accounts(n: int, secret: str, channel: str | None) -> list[Account]:
    """Centrifugo authenticates a JWT (HS256) minted by the app backend: no signup."""
    import jwt

    out = []
    for i in range(n):
        claims: dict[str, Any] = {"sub": f"c{i}"}
        if channel:
            claims["channels"] = [channel]
        token = jwt.encode(claims, secret, algorithm="HS256")
        out.append({"username": f"c{i}", "user_id": f"c{i}", "token": token, "chat_url": ""})
    return out


def plain_accounts(n: int) -> list[Account]:
    """The baseline relay has no accounts: a user id is whatever hello says."""
    return [
        {"username": f"u{i}", "user_id": f"u{i}", "token": "", "chat_url": ""} for i in range(n)
    ]
