"""The message path's promises under stress: dedupe scoped to the target, a cursor past
the head, a crash between a batch's writes and its commit, admission control, the loop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import httpx
import pytest

from tidings.core import errors

from ._harness import (
    Clients,
    ServerProcess,
    another_device,
    assert_nothing_more_before_a_marker,
    at,
    dm_id,
    http_client,
    new_account,
    owned_server,
    start_server,
    stop_server,
)


async def test_a_client_msg_id_reused_for_another_target_delivers_nothing(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob, quinn = [await new_account(http, n) for n in ("alice", "bob", "quinn")]
    a1 = await clients.connect(alice)
    q1 = await clients.connect(quinn)
    b1 = await clients.connect(bob)

    first = await a1.send_and_ack("for bob only", to=bob)
    # The same client_msg_id to someone else, with another body: refused, not misrouted.
    await a1.send_msg("for quinn", to=quinn, client_msg_id=first["client_msg_id"])
    refused = await a1.recv_until("error", ref=first["client_msg_id"])
    assert refused["code"] == errors.DUPLICATE_CLIENT_MSG_ID
    # ... and to the same channel with another body: refused too.
    await a1.send_msg("edited", to=bob, client_msg_id=first["client_msg_id"])
    refused = await a1.recv_until("error", ref=first["client_msg_id"])
    assert refused["code"] == errors.DUPLICATE_CLIENT_MSG_ID
    # A true resend (same target, same body) is the same message, delivered once.
    again = await a1.send_and_ack("for bob only", to=bob)
    assert again["client_msg_id"] != first["client_msg_id"]  # (a fresh id: a new message)
    await a1.send_msg("for bob only", to=bob, client_msg_id=first["client_msg_id"])
    resent = await a1.recv_until("ack", client_msg_id=first["client_msg_id"])
    assert resent["message_id"] == first["message_id"]
    assert resent["channel_id"] == dm_id(alice, bob)

    got = [await b1.recv_until("msg") for _ in range(2)]
    assert [m["message_id"] for m in got] == [first["message_id"], again["message_id"]]
    # Quinn got nothing and Bob each message once: a marker sent after everything above is
    # the next thing each of them sees.
    await assert_nothing_more_before_a_marker(a1, q1, quinn)
    await assert_nothing_more_before_a_marker(a1, b1, bob)


async def test_a_cursor_past_the_head_is_taken_as_the_head_and_live_traffic_flows(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1 = await clients.connect(alice)
    bob_phone = await clients.connect(await another_device(http, bob))
    for n in range(3):
        await a1.send_and_ack(f"before {n}", to=bob)
    await bob_phone.take_msgs(3)  # (an ack is not yet an inbox entry on the cluster)

    b1 = await clients.open(bob.chat_url)
    await b1.hello(bob.token, cursor=str(10**12))
    assert b1.welcome["cursor"] == "3"
    assert b1.synced["cursor"] == "3"  # the server says where the device really is
    assert b1.backlog == []

    sent = await a1.send_and_ack("live", to=bob)
    live = await b1.recv_until("msg")
    assert live["message_id"] == sent["message_id"] and live["seq"] == "4"
    # A sync past the head answers with the head as well.
    await b1.send({"type": "sync", "cursor": str(10**15)})
    synced = await b1.recv_until("synced")
    assert synced["cursor"] == "4" and synced["more"] is False


# --- the embedded default's group commit ------------------------------------------------


@pytest.fixture
def doomed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that SIGKILLs itself before committing the batch holding its 10th message."""
    with owned_server(
        tmp_path_factory.mktemp("tidings-doomed"), TIDINGS_FAULT_KILL_BEFORE_COMMIT_AFTER="10"
    ) as proc:
        yield proc


async def test_a_batch_killed_before_its_commit_is_not_acked_and_resends_arrive_once(
    doomed_server: ServerProcess, clients: Clients
) -> None:
    async with http_client(doomed_server) as http:
        alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
    a1 = await clients.connect(alice)
    bodies = {}
    for n in range(30):  # pipelined: batches form while one commits
        client_msg_id = await a1.send_msg(f"m{n}", to=bob)
        bodies[client_msg_id] = f"m{n}"
    assert doomed_server.proc is not None
    assert doomed_server.proc.wait(20) == -signal.SIGKILL
    await a1.closed.wait()
    acked = {f["client_msg_id"]: f for f in a1.buffer if f["type"] == "ack"}
    assert len(acked) < 10, "the batch holding the 10th message never committed"
    await clients.close_all()

    doomed_server.env.pop("TIDINGS_FAULT_KILL_BEFORE_COMMIT_AFTER")
    doomed_server.start()
    alice, bob = at(doomed_server, alice), at(doomed_server, bob)
    # Every ack named a committed message, and the batch that died committed nothing: bob
    # holds the acked messages (and perhaps the last committed batch, whose acks were
    # still on their way), never the 10th message's batch.
    b1 = await clients.connect(bob)
    stored = {m["client_msg_id"] for m in b1.backlog}
    assert set(acked) <= stored
    assert len(stored) < 10

    # The app resends everything it holds unacked (and, harmlessly, the acked ones too).
    a1 = await clients.connect(alice, cursor=str(len(stored)))
    for client_msg_id, body in bodies.items():
        await a1.send_msg(body, to=bob, client_msg_id=client_msg_id)
    for client_msg_id in bodies:
        ack = await a1.recv_until("ack", client_msg_id=client_msg_id)
        if client_msg_id in acked:
            assert ack["message_id"] == acked[client_msg_id]["message_id"]
    live = [await b1.recv_until("msg") for _ in range(30 - len(stored))]
    received = [m["client_msg_id"] for m in [*b1.backlog, *live]]
    assert sorted(received) == sorted(bodies), "every message exactly once"
    assert [int(m["seq"]) for m in [*b1.backlog, *live]] == list(range(1, 31))
    await assert_nothing_more_before_a_marker(a1, b1, bob)
    stop_server(doomed_server)


# --- admission control and the event loop -----------------------------------------------


async def test_a_saturated_server_turns_hello_and_discover_away_with_a_delay(
    tmp_path_factory: pytest.TempPathFactory, clients: Clients
) -> None:
    # Admitting no new client at all: the server is always "saturated" for newcomers.
    server = start_server(tmp_path_factory.mktemp("tidings-busy"), TIDINGS_ADMISSION_MAX_HELLOS="0")
    try:
        async with http_client(server) as http:
            alice = await new_account(http, "alice")
            await asyncio.sleep(0.2)  # a lag sample or two
            discover = await http.get("/v1/discover", headers=alice.auth)
            assert discover.status_code == 503
            assert discover.json()["error"]["code"] == errors.UNAVAILABLE
            assert 500 <= discover.json()["after_ms"] <= 10_500
            assert int(discover.headers["retry-after"]) >= 1
        ws = await clients.open(alice.chat_url)
        answer = await ws.try_hello(alice.token)
        assert answer["type"] == "reconnect"
        assert 500 <= answer["after_ms"] <= 10_500
        assert await ws.wait_closed() == errors.CLOSE_TRY_AGAIN_LATER
    finally:
        stop_server(server)


async def test_the_asyncio_loop_serves_the_same_path_without_uvloop(
    tmp_path_factory: pytest.TempPathFactory, clients: Clients
) -> None:
    server = start_server(tmp_path_factory.mktemp("tidings-asyncio"), TIDINGS_EVENT_LOOP="asyncio")
    try:
        async with http_client(server) as http:
            alice, bob = await new_account(http, "alice"), await new_account(http, "bob")
        a1, b1 = await clients.connect(alice), await clients.connect(bob)
        ack = await a1.send_and_ack("plain asyncio", to=bob)
        got = await b1.recv_until("msg")
        assert got["message_id"] == ack["message_id"]
        assert "event loop: asyncio" in server.log_tail(200)
    finally:
        stop_server(server)
