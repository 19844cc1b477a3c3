"""The process: health endpoints, durability across SIGKILL, graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ._harness import (
    PRESENCE_OFFLINE_AFTER_S,
    Account,
    Clients,
    Deployment,
    ServerProcess,
    another_device,
    assert_nothing_more_before_a_marker,
    at,
    befriend,
    dm_id,
    http_client,
    make_group,
    new_account,
    owned_server,
    stop_server,
)


async def test_healthz(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz(http: httpx.AsyncClient) -> None:
    response = await http.get("/readyz")
    assert response.status_code == 200


def chat_http_url(account: Account) -> str:
    """The HTTP address of the process behind the account's ``chat_url`` (embedded: the
    one server; in a cluster: the chat server, which counts the sends and connections)."""
    url = account.chat_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    return url.removesuffix("/v1/ws")


async def test_metrics_are_prometheus_text(
    server: Deployment, http: httpx.AsyncClient, clients: Clients
) -> None:
    """On the metrics port of the API process and of the chat server (each process serves
    its own); their public ports answer /metrics 404 like any unknown path."""
    alice, bob = await new_account(http, "m"), await new_account(http, "m")
    conn = await clients.connect(alice)
    await conn.send_and_ack("count me", to=bob)
    texts = []
    api_url = str(http.base_url).rstrip("/")
    for public, url in (
        (api_url, server.metrics_url_of(api_url)),
        (chat_http_url(alice), server.metrics_url_of(alice.chat_url)),
    ):
        assert (await http.get(f"{public}/metrics")).status_code == 404
        response = await http.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE tidings_" in response.text
        texts.append(response.text)
    text = texts[-1]  # the chat server's
    sent = re.search(r"^tidings_messages_sent_total (\S+)$", text, re.MULTILINE)
    assert sent is not None, "no tidings_messages_sent_total"
    assert float(sent.group(1)) >= 1
    connections = re.search(r"^tidings_connections (\S+)$", text, re.MULTILINE)
    assert connections is not None and float(connections.group(1)) >= 1


async def test_unknown_route_has_the_error_shape(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/no-such-thing")
    assert response.status_code == 404
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_the_api_description_is_not_served_by_default(
    http: httpx.AsyncClient, path: str
) -> None:
    """It lists every endpoint to anyone, and /docs loads scripts from a CDN: off unless
    TIDINGS_API_DOCS is set."""
    response = await http.get(path)
    assert response.status_code == 404


def test_the_api_description_is_served_when_asked_for(tmp_path: Path) -> None:
    with (
        owned_server(tmp_path, TIDINGS_API_DOCS="true") as server,
        httpx.Client(base_url=server.api_urls[0], trust_env=False, timeout=10) as http,
    ):
        described = http.get("/openapi.json")
    assert described.status_code == 200
    assert "/v1/sessions" in described.json()["paths"]


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server this test may kill, restart or drain."""
    with owned_server(tmp_path_factory.mktemp("tidings-own")) as proc:
        yield proc


async def test_every_acked_message_survives_sigkill(
    own_server: ServerProcess, clients: Clients
) -> None:
    async with http_client(own_server) as http:
        alice, bob, carol = [await new_account(http, n) for n in ("alice", "bob", "carol")]
        alice_phone = await another_device(http, alice)
        group = (await make_group(http, alice, [bob, carol], name="d"))["channel_id"]
    a1 = await clients.connect(alice)

    # Pipeline the sends, wait for every ack, then kill the server at once.
    sent = []
    for i in range(40):
        target = {"to": bob} if i % 2 == 0 else {"channel_id": group}
        sent.append(await a1.send_msg(f"durable {i}", **target))
    acks = {}
    for client_msg_id in sent:
        acks[client_msg_id] = await a1.recv_until("ack", client_msg_id=client_msg_id)
    own_server.kill()
    assert own_server.proc is not None and own_server.proc.returncode == -signal.SIGKILL
    await clients.close_all()

    own_server.start()  # same data dir, new port
    acked_ids = {a["message_id"] for a in acks.values()}
    group_ids = {a["message_id"] for a in acks.values() if a["channel_id"] == group}
    assert len(acked_ids) == 40 and len(group_ids) == 20

    async def everything(account: Account, count: int) -> list[dict[str, object]]:
        """Every message in the inbox, the group's membership events left out."""
        conn = await clients.connect(at(own_server, account), cursor="0")
        msgs = [m for m in conn.backlog if "event" not in m]
        seen = {m["message_id"] for m in msgs}
        while len(seen) < count:  # at-least-once: drop repeats by message_id
            frame = await conn.recv_until("msg", within=10)
            if frame["message_id"] not in seen and "event" not in frame:
                seen.add(frame["message_id"])
                msgs.append(frame)
        return msgs

    for account, expected in (
        (bob, acked_ids),
        (alice_phone, acked_ids),
        (alice, acked_ids),
        (carol, group_ids),
    ):
        got = await everything(account, len(expected))
        assert {m["message_id"] for m in got} == expected, account.username
        seqs = [int(str(m["seq"])) for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    async with http_client(own_server) as http:
        response = await http.get(
            f"/v1/channels/{dm_id(alice, bob)}/messages",
            params={"limit": 200},
            headers=bob.auth,
        )
        assert {m["message_id"] for m in response.json()["messages"]} == acked_ids - group_ids
    stop_server(own_server)


async def test_sigterm_drains_clients_and_exits_zero(
    own_server: ServerProcess, clients: Clients
) -> None:
    async with http_client(own_server) as http:
        alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1 = await clients.connect(alice)
    b1 = await clients.connect(bob)
    ack = await a1.send_and_ack("before the drain", to=bob)
    await b1.recv_until("msg", message_id=ack["message_id"])

    assert own_server.proc is not None
    own_server.proc.send_signal(signal.SIGTERM)
    for conn in (a1, b1):
        reconnect = await conn.recv_until("reconnect", within=5)
        assert isinstance(reconnect["after_ms"], int)
        # `tidings up` is the only server: its drain is a restart, and the clients are
        # told to come back within the restart window (1-4 s by default).
        assert 1000 <= reconnect["after_ms"] <= 4000
        assert await conn.wait_closed(within=5) == 1012
    try:
        code = await asyncio.to_thread(own_server.proc.wait, 15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit within 15 s of SIGTERM:\n{own_server.log_tail()}")
    assert code == 0, f"drained server exited with {code}, not 0:\n{own_server.log_tail(8)}"

    # Nothing acked before the drain is lost, and devices come back with their cursors.
    own_server.start()
    b2 = await clients.connect(at(own_server, bob), cursor="1")
    assert b2.backlog == []
    a2 = await clients.connect(at(own_server, alice), cursor="0")
    assert [m["message_id"] for m in a2.backlog] == [ack["message_id"]]
    stop_server(own_server)


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
async def test_presence_does_not_stay_online_across_a_restart(
    own_server: ServerProcess, clients: Clients, how: str
) -> None:
    """A user connected when the server went away is offline once it is back."""
    async with http_client(own_server) as http:
        user, viewer = await new_account(http, "user"), await new_account(http, "viewer")
        await befriend(http, viewer, user)
    conn = await clients.connect(user)
    async with http_client(own_server) as http:
        for _ in range(40):  # the status is stored just after the fan-out
            shown = (await http.get(f"/v1/users/{user.user_id}", headers=viewer.auth)).json()
            if shown["presence"]["status"] == "online":
                break
            await asyncio.sleep(0.05)
        assert shown["presence"]["status"] == "online"
    went_at = time.time_ns() // 1_000_000
    if how == "sigkill":
        own_server.kill()
    else:
        stop_server(own_server)
    await conn.close()

    own_server.start()
    deadline = time.monotonic() + PRESENCE_OFFLINE_AFTER_S + 2
    async with http_client(own_server) as http:
        while True:
            presence = (await http.get(f"/v1/users/{user.user_id}", headers=viewer.auth)).json()[
                "presence"
            ]
            if presence["status"] == "offline" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert presence["status"] == "offline", (
        f"still {presence} {PRESENCE_OFFLINE_AFTER_S + 2:.0f}s after a {how} and restart"
    )
    assert presence["last_seen"] <= went_at + 1000
    stop_server(own_server)


async def test_restart_in_place_tells_every_client_at_once_and_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, clients: Clients
) -> None:
    """`tidings up` is the only server, so SIGTERM is a restart: no paced drain (it would
    take a quarter of the 20 s budget here), every client told at once to come back to the
    same URL within the restart window, a quick exit, and every send — acked before the
    drain or caught in flight by it — stored once when the devices come back."""
    env = {
        "TIDINGS_DRAIN_BUDGET_S": "20",
        "TIDINGS_RESTART_RECONNECT_MIN_S": "0.5",
        "TIDINGS_RESTART_RECONNECT_MAX_S": "1.5",
    }
    with owned_server(tmp_path_factory.mktemp("tidings-restart"), **env) as server:
        server.keep_port = True  # the restarted process listens where the old one did
        async with http_client(server) as http:
            alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
            others = [await new_account(http, "other") for _ in range(10)]
        a1 = await clients.connect(alice)
        b1 = await clients.connect(bob)
        rest = [await clients.connect(account) for account in others]
        # Pipelined sends: some are acked before the drain, the rest are in flight.
        sends = [(f"restart {i}", await a1.send_msg(f"restart {i}", to=bob)) for i in range(40)]
        first_ack = await a1.recv_until("ack", client_msg_id=sends[0][1])

        assert server.proc is not None
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        told_after = []
        for conn in (a1, b1, *rest):
            reconnect = await conn.recv_until("reconnect", within=5)
            told_after.append(time.monotonic() - signalled)
            assert 500 <= reconnect["after_ms"] <= 1500, reconnect
            assert reconnect.get("same_url") is True, reconnect
            assert await conn.wait_closed(within=5) == 1012
        assert max(told_after) < 2.0, f"clients told {told_after} s after SIGTERM: paced?"
        code = server.wait_exit(10)
        exited_after = time.monotonic() - signalled
        assert code == 0, f"restarted server exited with {code}:\n{server.log_tail(8)}"
        assert exited_after < 5.0, f"exit {exited_after:.1f} s after SIGTERM"
        # What the device holds an ack for (the rest it will send again).
        acked = {f["client_msg_id"]: f["message_id"] for f in [first_ack, *a1.pending("ack")]}

        server.start()  # same data dir, same port: the URL the clients were told to reuse
        a2 = await clients.connect(alice)
        # The device resends every send it has no ack for, with the same client_msg_id;
        # sends it does have an ack for are answered with the same message_id again.
        for body, client_msg_id in sends:
            await a2.send_msg(body, to=bob, client_msg_id=client_msg_id)
        resent = {
            client_msg_id: (await a2.recv_until("ack", client_msg_id=client_msg_id))["message_id"]
            for _, client_msg_id in sends
        }
        for client_msg_id, message_id in acked.items():
            assert resent[client_msg_id] == message_id, "an acked send changed identity"
        b2 = await clients.connect(bob, cursor="0")
        got = await b2.take_msgs(40, within=10)
        assert [m["client_msg_id"] for m in got] == [c for _, c in sends]
        assert {m["message_id"] for m in got} == set(resent.values())
        await assert_nothing_more_before_a_marker(a2, b2, bob)  # none delivered twice
        stop_server(server)


def test_the_data_directory_and_its_files_are_private(tmp_path: Path) -> None:
    """The data directory holds password hashes, every message and the signing secret:
    0700, its files 0600 — also files an older version left readable."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    leftover = data / "left-by-an-older-version.txt"
    leftover.write_text("x")
    leftover.chmod(0o644)
    with owned_server(tmp_path):
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in [data, *data.rglob("*")]
            if not path.is_symlink()
        }
    assert modes[data.name] == 0o700
    assert "directory.db" in modes and "messages.db" in modes
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert not loose, f"readable by others: {loose}"


def test_a_request_head_that_never_completes_is_closed(tmp_path: Path) -> None:
    """Slowloris: a head sent a header at a time, and a socket that sends nothing, are
    closed once TIDINGS_HTTP_HEAD_TIMEOUT_S has passed; a normal request still works."""
    with owned_server(tmp_path, TIDINGS_HTTP_HEAD_TIMEOUT_S="1") as server:
        host, port = httpx.URL(server.api_urls[0]).host, httpx.URL(server.api_urls[0]).port
        assert port is not None
        silent = socket.create_connection((host, port), timeout=5)
        slow = socket.create_connection((host, port), timeout=5)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for sock in (silent, slow):
            assert sock.recv(1024) == b""  # closed by the server
            sock.close()
        assert time.monotonic() - started < 4
        with httpx.Client(base_url=server.api_urls[0], trust_env=False, timeout=5) as http:
            assert http.get("/healthz").status_code == 200
