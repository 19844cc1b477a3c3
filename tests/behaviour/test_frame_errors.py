"""WebSocket errors: which keep the connection open, which close it, and with what code."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ._harness import (
    HELLO_TIMEOUT_S,
    SWEEP_INTERVAL_S,
    Account,
    Clients,
    Deployment,
    ServerProcess,
    another_device,
    dm_id,
    http_client,
    make_token,
    new_account,
    start_server,
    stop_server,
)

# --- errors that keep the connection open ---------------------------------------------------

OPEN_ERRORS = [
    # (frame text, expected code, expected ref)
    ("{not json", "invalid_frame", None),
    ("[1, 2, 3]", "invalid_frame", None),
    ('{"no": "type"}', "invalid_frame", None),
    ('{"type": "teleport"}', "invalid_frame", None),
    ('{"type": "send", "client_msg_id": "c1", "to": "{peer}"}', "invalid_frame", "c1"),
    ('{"type": "send", "client_msg_id": "c2", "body": "x"}', "invalid_frame", "c2"),
    ('{"type": "send", "body": "x", "to": "{peer}"}', "invalid_frame", None),
    ('{"type": "send", "client_msg_id": "", "body": "x", "to": "{peer}"}', "invalid_frame", None),
    (
        '{"type": "send", "client_msg_id": "c3", "body": "x", "to": "{peer}", '
        '"channel_id": "{dm}"}',
        "invalid_frame",
        "c3",
    ),
    ('{"type": "send", "client_msg_id": "c4", "body": 5, "to": "{peer}"}', "invalid_frame", "c4"),
    (
        '{"type": "receipt", "channel_id": "{dm}", "message_id": "1", "status": "seen"}',
        "invalid_frame",
        None,
    ),
    ('{"type": "receipt", "channel_id": "{dm}", "status": "read"}', "invalid_frame", None),
    ('{"type": "sync"}', "invalid_frame", None),
    ('{"type": "typing"}', "invalid_frame", None),
    ('{"type": "hello", "token": "{token}", "cursor": "0"}', "invalid_frame", None),
    ('{"type": "send", "client_msg_id": "c5", "body": "x", "to": "1"}', "unknown_user", "c5"),
    (
        '{"type": "send", "client_msg_id": "c6", "body": "x", "channel_id": "nonsense"}',
        "unknown_channel",
        "c6",
    ),
    (
        '{"type": "send", "client_msg_id": "c7", "body": "x", "channel_id": "g:12345"}',
        "unknown_channel",
        "c7",
    ),
    (
        '{"type": "send", "client_msg_id": "c8", "body": "x", "channel_id": "dm:1:2"}',
        "not_a_member",
        "c8",
    ),
    ('{"type": "typing", "channel_id": "nonsense"}', "unknown_channel", None),
]
OPEN_IDS = [
    "not-json",
    "not-object",
    "no-type",
    "unknown-type",
    "send-no-body",
    "send-no-target",
    "send-no-client-msg-id",
    "send-empty-client-msg-id",
    "send-two-targets",
    "send-body-not-string",
    "receipt-bad-status",
    "receipt-no-message-id",
    "sync-no-cursor",
    "typing-no-channel",
    "second-hello",
    "send-to-unknown-user",
    "send-to-nonsense-channel",
    "send-to-unknown-group",
    "send-to-others-dm",
    "typing-nonsense-channel",
]


@pytest.mark.parametrize(("text", "code", "ref"), OPEN_ERRORS, ids=OPEN_IDS)
async def test_error_keeps_connection_open(
    http: httpx.AsyncClient, clients: Clients, text: str, code: str, ref: str | None
) -> None:
    me, peer = await new_account(http, "err"), await new_account(http, "peer")
    conn = await clients.connect(me, keepalive=False)
    text = (
        text.replace("{peer}", peer.user_id)
        .replace("{dm}", dm_id(me, peer))
        .replace("{token}", me.token)
    )
    await conn.send_raw(text)
    error = await conn.recv_until("error")
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    if ref is not None:
        assert error["ref"] == ref
    await conn.heartbeat()  # still open and serving
    assert conn.pending("ack") == []
    assert conn.close_code is None


async def test_body_too_long_is_refused_with_ref(http: httpx.AsyncClient, clients: Clients) -> None:
    me, peer = await new_account(http, "err"), await new_account(http, "peer")
    conn = await clients.connect(me, keepalive=False)
    client_msg_id = await conn.send_msg("x" * 100_001, to=peer)
    error = await conn.recv_until("error")
    assert error["code"] == "body_too_long"
    assert error["ref"] == client_msg_id
    await conn.heartbeat()
    # And the connection still sends.
    ack = await conn.send_and_ack("short enough", to=peer)
    assert ack["message_id"].isdigit()


async def test_refused_message_is_not_delivered(http: httpx.AsyncClient, clients: Clients) -> None:
    me, peer = await new_account(http, "err"), await new_account(http, "peer")
    conn = await clients.connect(me)
    peer_conn = await clients.connect(peer)
    await conn.send_msg("y" * 100_001, to=peer)
    await conn.recv_until("error")
    ack = await conn.send_and_ack("the real one", to=peer)
    got = await peer_conn.recv_until("msg")
    assert got["message_id"] == ack["message_id"]
    assert got["seq"] == "1"


async def test_heartbeat_is_answered_with_server_time(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    conn = await clients.connect(await new_account(http, "hb"), keepalive=False)
    before = time.time_ns() // 1_000_000
    ack = await conn.heartbeat()
    assert isinstance(ack["ts"], int)
    assert before - 5000 <= ack["ts"] <= time.time_ns() // 1_000_000 + 5000
    assert conn.welcome["heartbeat_s"] == 5


# --- errors that close the connection -----------------------------------------------------


async def test_no_hello_in_time_is_closed_4008(server: Deployment, clients: Clients) -> None:
    opened = time.monotonic()
    conn = await clients.open(server.ws_url)
    error = await conn.recv_until("error", within=HELLO_TIMEOUT_S + SWEEP_INTERVAL_S + 3)
    assert error["code"] == "hello_timeout"
    assert time.monotonic() - opened >= HELLO_TIMEOUT_S - SWEEP_INTERVAL_S, "closed too early"
    assert await conn.wait_closed() == 4008


async def test_hello_just_inside_the_timeout_is_welcome(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    account = await new_account(http, "slow")
    conn = await clients.open(account.chat_url)
    await asyncio.sleep(HELLO_TIMEOUT_S / 2)
    await conn.hello(account.token)
    assert conn.welcome["user_id"] == account.user_id
    await asyncio.sleep(HELLO_TIMEOUT_S)  # past the hello deadline: nothing happens now
    await conn.heartbeat()


def _bad_tokens(account: Account) -> dict[str, str]:
    now = int(time.time())
    mine = {"sub": account.user_id, "did": account.device_id, "iat": now, "exp": now + 600}
    return {
        "garbage": "not-a-token",
        "empty": "",
        "other-secret": make_token(mine, secret="another-secret-" * 4),
        "expired": make_token(dict(mine, iat=now - 7200, exp=now - 3600)),
        "unknown-device": make_token(dict(mine, did="12345")),
        "someone-elses-device": "",  # filled in by the test
    }


@pytest.mark.parametrize(
    "kind",
    ["garbage", "empty", "other-secret", "expired", "unknown-device", "someone-elses-device"],
)
async def test_bad_token_in_hello_is_closed_4001(
    http: httpx.AsyncClient, clients: Clients, kind: str
) -> None:
    account = await new_account(http, "tok")
    token = _bad_tokens(account)[kind]
    if kind == "someone-elses-device":
        other = await new_account(http, "other")
        now = int(time.time())
        token = make_token(
            {"sub": account.user_id, "did": other.device_id, "iat": now, "exp": now + 600}
        )
    conn = await clients.open(account.chat_url)
    await conn.send({"type": "hello", "token": token, "cursor": "0"})
    error = await conn.recv_until("error")
    assert error["code"] == "unauthorized"
    assert await conn.wait_closed() == 4001
    assert conn.pending("welcome") == []


@pytest.mark.parametrize(
    "first",
    [{"type": "heartbeat"}, {"type": "send", "client_msg_id": "x", "body": "x", "to": "1"}],
    ids=["heartbeat", "send"],
)
async def test_non_hello_first_frame_is_closed_4001(
    server: Deployment, clients: Clients, first: dict[str, str]
) -> None:
    conn = await clients.open(server.ws_url)
    await conn.send(first)
    error = await conn.recv_until("error")
    assert error["code"] == "unauthorized"
    assert await conn.wait_closed() == 4001
    assert conn.pending("heartbeat_ack") == [] and conn.pending("ack") == []


async def test_frame_over_one_mib_is_closed_1009(http: httpx.AsyncClient, clients: Clients) -> None:
    me, peer = await new_account(http, "big"), await new_account(http, "peer")
    conn = await clients.connect(me)
    frame = {"type": "send", "client_msg_id": "huge", "to": peer.user_id, "body": ""}
    padding = (1 << 20) + 1 - len(json.dumps(frame))
    frame["body"] = "z" * padding
    text = json.dumps(frame)
    assert len(text.encode()) == (1 << 20) + 1
    await conn.send_raw(text)
    assert await conn.wait_closed() == 1009
    assert conn.pending("ack") == []


async def test_a_text_frame_that_is_not_utf8_is_closed_1007(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    """RFC 6455: a text frame's payload must be UTF-8; the server closes 1007."""
    conn = await clients.connect(await new_account(http, "bytes"))
    await conn.send_raw(b'{"type":"heartbeat","x":"\xff\xfe"}', text=True)
    assert await conn.wait_closed() == 1007


async def test_deeply_nested_json_is_an_invalid_frame_and_the_connection_stays(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    conn = await clients.connect(await new_account(http, "nested"))
    await conn.send_raw('{"type":"heartbeat","x":' + "[" * 5000 + "]" * 5000 + "}")
    error = await conn.recv_until("error")
    assert error["code"] == "invalid_frame"
    await conn.heartbeat()


async def test_frame_of_exactly_one_mib_is_read(http: httpx.AsyncClient, clients: Clients) -> None:
    """At the limit the frame is read (and refused for its body, not for its size)."""
    me, peer = await new_account(http, "big"), await new_account(http, "peer")
    conn = await clients.connect(me)
    frame = {"type": "send", "client_msg_id": "limit", "to": peer.user_id, "body": ""}
    frame["body"] = "z" * ((1 << 20) - len(json.dumps(frame)))
    await conn.send_raw(json.dumps(frame))
    error = await conn.recv_until("error")
    assert error["code"] == "body_too_long"
    assert error["ref"] == "limit"
    await conn.heartbeat()


async def test_unknown_websocket_path_is_refused(server: Deployment, clients: Clients) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        await clients.open(f"ws://127.0.0.1:{server.port}/v1/not-ws")
    assert refused.value.response.status_code == 404


# --- rate limiting (its own server with a small bucket) -----------------------------------

RATE_PER_S = 2
BURST = 5


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(
        tmp_path_factory.mktemp("tidings-limited"),
        TIDINGS_RATE_LIMIT_PER_S=str(RATE_PER_S),
        TIDINGS_RATE_LIMIT_BURST=str(BURST),
    )
    try:
        yield proc
    finally:
        stop_server(proc)


async def test_burst_over_the_bucket_is_rate_limited(
    limited_server: ServerProcess, tmp_path: Path, clients: Clients
) -> None:
    async with http_client(limited_server) as http:
        me, peer = await new_account(http, "fast"), await new_account(http, "peer")
    conn = await clients.connect(me, keepalive=False)
    sent = [await conn.send_msg(f"burst {i}", to=peer) for i in range(BURST * 3)]

    acked: list[str] = []
    limited: list[str] = []
    while len(acked) + len(limited) < len(sent):
        ack_or_error = await conn.recv_until_any(("ack", "error"))
        if ack_or_error["type"] == "ack":
            acked.append(ack_or_error["client_msg_id"])
        else:
            assert ack_or_error["code"] == "rate_limited", ack_or_error
            limited.append(ack_or_error["ref"])
    assert limited, "a burst three times the bucket was never limited"
    assert len(acked) <= BURST + 2  # the bucket, plus what refilled during the burst
    assert sorted(acked + limited) == sorted(sent)
    await conn.heartbeat()  # heartbeats are never limited; the connection stays open
    assert conn.close_code is None
    await asyncio.sleep(2 / RATE_PER_S)  # the bucket refills...
    ack = await conn.send_and_ack("calm again", to=peer)  # ...and sending works again
    assert ack["message_id"].isdigit()


async def test_the_send_rate_is_per_user_across_all_its_sockets(
    limited_server: ServerProcess, clients: Clients
) -> None:
    """Opening more sockets (here: two devices, two sockets each) does not multiply a
    user's send rate: together they get one bucket."""
    async with http_client(limited_server) as http:
        me, peer = await new_account(http, "many"), await new_account(http, "peer")
        tablet = await another_device(http, me)
    conns = [await clients.connect(a, keepalive=False) for a in (me, me, tablet, tablet)]
    sent = {
        i: [await c.send_msg(f"s{i}-{n}", to=peer) for n in range(BURST)]
        for i, c in enumerate(conns)
    }
    acked = limited = 0
    for i, conn in enumerate(conns):
        for _ in sent[i]:
            answer = await conn.recv_until_any(("ack", "error"))
            if answer["type"] == "ack":
                acked += 1
            else:
                assert answer["code"] == "rate_limited", answer
                limited += 1
    assert acked + limited == 4 * BURST
    assert acked <= BURST + 2, f"{acked} acked: the sockets had a bucket each"


async def test_a_device_keeps_at_most_two_sockets_and_the_oldest_goes(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    """A phone that changed networks leaves sockets behind: a new hello of the same device
    closes its oldest beyond max_sockets_per_device (2) with 4011."""
    me = await new_account(http, "sockets")
    first, second, third = [await clients.connect(me) for _ in range(3)]
    assert await first.wait_closed() == 4011
    for live in (second, third):
        await live.heartbeat()
        assert live.close_code is None


async def test_a_send_right_behind_the_hello_is_answered(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    """A client that does not wait for welcome (hello and send in one write) gets the
    welcome, then the ack: frames behind a hello wait for it, the socket is not dropped."""
    ann, bob = await new_account(http, "pipe"), await new_account(http, "pipe")
    ws = await clients.open(ann.chat_url)
    await ws.send({"type": "hello", "token": ann.token, "cursor": "0"})
    await ws.send(
        {"type": "send", "client_msg_id": "right-behind", "to": bob.user_id, "body": "hi"}
    )
    assert (await ws.recv_until("welcome"))["user_id"] == ann.user_id
    assert (await ws.recv_send_answer("right-behind"))["type"] == "ack"
