"""Signing keys of `tidings up` rotate without logging anyone out.

`tidings rotate-jwt-key` generates a new key into the data directory and keeps the old one
as a previous key; after a restart the server signs new tokens with the new key (its id,
``kid``, in the token's header) and still accepts the tokens it signed before, over HTTP
and on the WebSocket, until the old key has been rotated out (3 previous keys are kept).
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

from ._harness import (
    Account,
    Clients,
    ServerProcess,
    _tidings_command,
    another_device,
    at,
    child_env,
    http_client,
    new_account,
    owned_server,
)

# The server generates its key: no TIDINGS_JWT_SECRET (the harness sets one by default).
GENERATED = {"TIDINGS_JWT_SECRET": ""}


def kid_of(token: str) -> str:
    segment = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * 3))
    kid: str = header["kid"]
    return kid


def rotate_jwt_key(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_tidings_command(), "rotate-jwt-key", "--data-dir", str(data_dir)],
        env=child_env({**GENERATED, **env}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rotate(data_dir: Path) -> dict[str, Any]:
    """Rotate; the new key's id and the previous keys' ids, newest first."""
    done = rotate_jwt_key(data_dir)
    assert done.returncode == 0, done.stderr
    rotated: dict[str, Any] = json.loads(done.stdout)
    return rotated


def restart(server: ServerProcess) -> None:
    assert server.terminate() == 0
    server.start()  # same data directory, a new port


async def me_status(server: ServerProcess, account: Account) -> int:
    async with http_client(server) as http:
        response = await http.get("/v1/me", headers=account.auth)
    if response.status_code == 200:
        assert response.json()["user_id"] == account.user_id
    return response.status_code


async def test_rotating_the_key_logs_nobody_out_until_the_key_is_rotated_out(
    tmp_path: Path, clients: Clients
) -> None:
    with owned_server(tmp_path, **GENERATED) as server:
        async with http_client(server) as http:
            before = await new_account(http)
        first_kid = kid_of(before.token)
        assert await me_status(server, before) == 200

        rotated = rotate(server.data_dir)
        assert rotated["previous_kids"] == [first_kid]
        assert rotated["kid"] != first_kid
        # The key files are as private as the rest of the data directory.
        for name in ("dev-jwt-secret", "dev-jwt-previous-secrets"):
            assert (server.data_dir / name).stat().st_mode & 0o777 == 0o600
        assert list(server.data_dir.glob(".*.tmp")) == []
        # The running server keeps its keys until it restarts.
        async with http_client(server) as http:
            assert kid_of((await another_device(http, before)).token) == first_kid

        restart(server)
        assert await me_status(server, before) == 200
        connection = await clients.connect(at(server, before))
        assert connection.welcome["user_id"] == before.user_id
        async with http_client(server) as http:
            after = await another_device(http, before)
        assert kid_of(after.token) == rotated["kid"]
        assert await me_status(server, after) == 200

        # Three more rotations: the first key is the fourth previous one, and is dropped.
        kids = [rotated["kid"]]
        for _ in range(3):
            rotated = rotate(server.data_dir)
            assert rotated["previous_kids"] == [*reversed(kids), first_kid][:3]
            kids.append(rotated["kid"])
        assert first_kid not in rotated["previous_kids"]
        restart(server)
        assert await me_status(server, before) == 401
        refused = await clients.open(server.ws_url)
        answer = await refused.try_hello(before.token)
        assert answer["type"] == "error" and answer["code"] == "unauthorized", answer
        # The second key's tokens are still good: it is among the three kept.
        assert await me_status(server, after) == 200
        async with http_client(server) as http:
            assert kid_of((await another_device(http, before)).token) == kids[-1]


async def test_rotate_jwt_key_refuses_when_the_server_signs_with_a_configured_secret(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    done = rotate_jwt_key(tmp_path / "data", TIDINGS_JWT_SECRET="x" * 48)
    assert done.returncode == 2
    assert "TIDINGS_JWT_PREVIOUS_SECRETS" in done.stderr
    assert not (tmp_path / "data" / "dev-jwt-secret").exists()
    missing = rotate_jwt_key(tmp_path / "nowhere")
    assert missing.returncode == 2 and "no data directory" in missing.stderr
