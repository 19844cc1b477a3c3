"""Users seeded straight into the embedded server's directory (tidings.bench._seed) are
the users signup and login make: a real `tidings up` lets them log in with the bench
password, accepts their tokens on the API and their hello on the WebSocket, and their
rows and change-log entries look like those of a user made through the front door."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from tidings.bench._accounts import PASSWORD, create_accounts
from tidings.bench._seed import embedded_accounts, seed_accounts, seed_mode
from tidings.bench.targets import JWT_SECRET, Baseline, Cluster, Embedded
from tidings.bench.targets.base import _child_env


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def _hello(url: str, token: str) -> dict[str, Any]:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "cursor": "0"}))
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return frame


def test_seeded_accounts_are_what_signup_and_login_make(tmp_path: Path) -> None:
    target = Embedded(tmp_path / "work", tmp_path / "data")
    target.start()
    try:
        (front,) = create_accounts(target.api_url, 1)  # through the front door
        seeded = embedded_accounts(target, 3)  # stops the server, seeds, starts it again
        assert target.server_pids, "the server runs again after seeding"
        assert len(seeded) == 3
        assert {a["user_id"] for a in seeded}.isdisjoint({front["user_id"]})
        for account in seeded:
            assert list(account) == list(front)
            assert account["chat_url"] == front["chat_url"] == target.ws_url
        with httpx.Client(base_url=target.api_url, timeout=30, trust_env=False) as http:
            for account in [front, *seeded]:
                auth = {"Authorization": f"Bearer {account['token']}"}
                me = http.get("/v1/me", headers=auth)
                assert me.status_code == 200, me.text
                body = me.json()
                assert body["user_id"] == account["user_id"]
                assert body["username"] == body["display_name"] == account["username"]
                assert body["device_id"] == account["device_id"]
                assert [(d["name"], d["platform"], d["push"]) for d in body["devices"]] == [
                    ("desktop", "desktop", None)
                ]
            # The one hash made for all of them checks the bench password (a login on the
            # seeded device, so it makes no new one).
            login = http.post(
                "/v1/sessions",
                json={
                    "username": seeded[-1]["username"],
                    "password": PASSWORD,
                    "device_id": seeded[-1]["device_id"],
                },
            )
            assert login.status_code == 201, login.text
            # Logging the device in again supersedes its seeded token.
            stale = {"Authorization": f"Bearer {seeded[-1]['token']}"}
            assert http.get("/v1/me", headers=stale).status_code == 401
            seeded[-1]["token"] = login.json()["access_token"]
            wrong = http.post(
                "/v1/sessions", json={"username": seeded[0]["username"], "password": "nope"}
            )
            assert wrong.status_code == 401
        for account in [front, *seeded]:  # (each device then has a last_seen too)
            welcome = asyncio.run(_hello(target.ws_url, account["token"]))
            assert welcome["type"] == "welcome", welcome
            assert welcome["user_id"] == account["user_id"]
            assert welcome["device_id"] == account["device_id"]
    finally:
        target.stop()

    db = target.data_dir / "directory.db"
    hashes = dict(_rows(db, "SELECT user_id, password_hash FROM users"))
    front_hash = hashes.pop(int(front["user_id"]))
    assert len(set(hashes.values())) == 1, "one hash, made once, for every seeded user"
    # Made with the server's argon2 settings: the same parameters as signup's hash.
    params = next(iter(hashes.values())).rsplit("$", 2)[0]
    assert params == front_hash.rsplit("$", 2)[0]

    def changes(account: dict[str, str]) -> list[str]:
        return [
            kind
            for (kind,) in _rows(
                db,
                "SELECT kind FROM directory_changes WHERE key IN (?, ?) ORDER BY seq",
                account["user_id"],
                account["device_id"],
            )
        ]

    # Signup logs the user; login the device and the user's device list.
    assert changes(front) == ["user", "device", "user_devices"]
    for account in seeded[:-1]:
        assert changes(account) == changes(front)
    # The last one's device was logged in again: its token version moved.
    assert changes(seeded[-1]) == [*changes(front), "device", "user_devices"]

    def shape(table: str, key: str, account: dict[str, str]) -> list[Any]:
        (row,) = _rows(db, f"SELECT * FROM {table} WHERE {key} = ?", account[key])
        return [type(v).__name__ for v in row]

    for account in seeded:
        assert shape("users", "user_id", account) == shape("users", "user_id", front)
        assert shape("devices", "device_id", account) == shape("devices", "device_id", front)


def test_cache_is_reused_and_grown(tmp_path: Path) -> None:
    target = Embedded(tmp_path / "work", tmp_path / "data")  # never started
    cache = target.data_dir / "bench-accounts.json"
    first = embedded_accounts(target, 4, cache)
    assert len(json.loads(cache.read_text())) == 4
    again = embedded_accounts(target, 3, cache)
    assert [a["user_id"] for a in again] == [a["user_id"] for a in first[:3]]
    more = embedded_accounts(target, 6, cache)
    assert [a["user_id"] for a in more[:4]] == [a["user_id"] for a in first]
    assert len({a["username"] for a in more}) == 6
    db = target.data_dir / "directory.db"
    assert _rows(db, "SELECT count(*) FROM users") == [(6,)]
    assert _rows(db, "SELECT count(*) FROM devices") == [(6,)]
    for account in more:
        claims = jwt.decode(account["token"], JWT_SECRET, algorithms=["HS256"])
        assert (claims["sub"], claims["did"]) == (account["user_id"], account["device_id"])
        assert account["chat_url"] == target.ws_url


def test_seeding_signs_with_the_data_dirs_development_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in _child_env({}).items() if k != "TIDINGS_JWT_SECRET"}
    (account,) = seed_accounts(tmp_path / "data", 1, env=env, chat_url="ws://x/v1/ws")
    secret = (tmp_path / "data" / "dev-jwt-secret").read_text().strip()
    claims = jwt.decode(account["token"], secret, algorithms=["HS256"])
    assert claims["did"] == account["device_id"]


def test_seed_mode(tmp_path: Path) -> None:
    embedded = Embedded(tmp_path / "a")
    baseline = Baseline(tmp_path / "b")
    assert seed_mode(embedded, "auto") == "direct"
    assert seed_mode(embedded, "api") == "api"
    assert seed_mode(baseline, "auto") == "api"
    assert seed_mode(Cluster(tmp_path / "c", {}), "auto") == "direct"  # into its PostgreSQL
    with pytest.raises(ValueError, match="embedded and cluster targets only"):
        seed_mode(baseline, "direct")
