"""Input a client may send by mistake or malice never turns into a server error.

Ids on the wire are decimal strings of 64-bit numbers; a longer number names nothing. A
JavaScript client that cuts a string in the middle of an emoji sends a lone surrogate
escape (valid JSON, not valid Unicode). Either way the answer is one of the contract's
errors (or a success), never a 5xx, an ``unavailable`` or a silently dropped frame.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ._harness import Account, Clients, dm_id, error_code, new_account

TOO_BIG = "99999999999999999999"  # 20 digits, far beyond 2**64


async def test_user_id_beyond_64_bits_is_unknown_user(http: httpx.AsyncClient) -> None:
    me = await new_account(http, "big")
    response = await http.get(f"/v1/users/{TOO_BIG}", headers=me.auth)
    assert response.status_code == 404, response.text
    assert error_code(response) == "unknown_user"


async def test_befriending_id_beyond_64_bits_is_unknown_user(http: httpx.AsyncClient) -> None:
    me = await new_account(http, "big")
    response = await http.put(f"/v1/friends/{TOO_BIG}", headers=me.auth)
    assert response.status_code == 404, response.text
    assert error_code(response) == "unknown_user"
    response = await http.delete(f"/v1/friends/{TOO_BIG}", headers=me.auth)
    assert response.status_code == 204, response.text


async def test_group_member_beyond_64_bits_is_unknown_user(http: httpx.AsyncClient) -> None:
    me = await new_account(http, "big")
    response = await http.post(
        "/v1/groups", json={"name": "x", "member_ids": [TOO_BIG]}, headers=me.auth
    )
    assert response.status_code == 404, response.text
    assert error_code(response) == "unknown_user"


async def test_device_id_beyond_64_bits_is_not_yours(http: httpx.AsyncClient) -> None:
    me = await new_account(http, "big")
    login = await http.post(
        "/v1/sessions",
        json={"username": me.username, "password": me.password, "device_id": TOO_BIG},
    )
    assert login.status_code == 403, login.text
    assert error_code(login) == "forbidden"
    push = await http.put(
        f"/v1/devices/{TOO_BIG}/push", json={"provider": "fcm", "token": "t"}, headers=me.auth
    )
    assert push.status_code == 403, push.text
    assert error_code(push) == "forbidden"


async def test_dm_with_id_beyond_64_bits_is_not_a_channel(http: httpx.AsyncClient) -> None:
    me = await new_account(http, "big")
    response = await http.get(f"/v1/channels/dm:{me.user_id}:{TOO_BIG}/messages", headers=me.auth)
    assert response.status_code in (403, 404), response.text
    assert error_code(response) in ("unknown_channel", "not_a_member")


async def test_history_before_beyond_64_bits_is_not_a_server_error(
    http: httpx.AsyncClient,
) -> None:
    me, peer = await new_account(http, "big"), await new_account(http, "peer")
    response = await http.get(
        f"/v1/channels/{dm_id(me, peer)}/messages", params={"before": TOO_BIG}, headers=me.auth
    )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert error_code(response) == "invalid_request"


def _frames(me: Account, peer: Account) -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    """Frames naming impossible ids, with the error codes that would be right."""
    return {
        "send-to": (
            {"type": "send", "client_msg_id": "b1", "body": "x", "to": TOO_BIG},
            ("unknown_user", "invalid_frame"),
        ),
        "send-dm-channel": (
            {
                "type": "send",
                "client_msg_id": "b2",
                "body": "x",
                "channel_id": f"dm:{me.user_id}:{TOO_BIG}",
            },
            ("unknown_channel", "invalid_frame"),
        ),
        "receipt-message-id": (
            {
                "type": "receipt",
                "channel_id": dm_id(me, peer),
                "message_id": TOO_BIG,
                "status": "read",
            },
            ("invalid_frame",),
        ),
        "sync-cursor": ({"type": "sync", "cursor": TOO_BIG}, ("invalid_frame",)),
    }


@pytest.mark.parametrize(
    "kind", ["send-to", "send-dm-channel", "receipt-message-id", "sync-cursor"]
)
async def test_frame_with_id_beyond_64_bits_gets_a_contract_error(
    http: httpx.AsyncClient, clients: Clients, kind: str
) -> None:
    me, peer = await new_account(http, "big"), await new_account(http, "peer")
    frame, codes = _frames(me, peer)[kind]
    conn = await clients.connect(me)
    await conn.send(frame)
    answer = await conn.recv_until_any(("error", "synced"))
    if kind == "sync-cursor" and answer["type"] == "synced":
        return  # nothing after an impossible cursor is a fine answer too
    assert answer["type"] == "error"
    assert answer["code"] in codes, answer
    if "client_msg_id" in frame:
        assert answer["ref"] == frame["client_msg_id"]
    await conn.heartbeat()


async def test_hello_with_cursor_beyond_64_bits_is_not_a_server_error(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    me = await new_account(http, "big")
    conn = await clients.open(me.chat_url)
    await conn.send({"type": "hello", "token": me.token, "cursor": TOO_BIG})
    answer = await conn.recv_until_any(("error", "synced"))
    if answer["type"] == "error":
        assert answer["code"] == "invalid_frame", answer
    assert conn.close_code != 1011, "the server failed on a client's cursor"
    assert conn.pending("error") == [], conn.pending("error")


LONE_SURROGATE = "\\ud83d"  # the first half of an emoji, as a JSON escape


@pytest.mark.parametrize("field", ["body", "client_msg_id"])
async def test_lone_surrogate_in_a_send_is_answered(
    http: httpx.AsyncClient, clients: Clients, field: str
) -> None:
    me, peer = await new_account(http, "sur"), await new_account(http, "peer")
    conn = await clients.connect(me)
    peer_conn = await clients.connect(peer)
    body = f"cut {LONE_SURROGATE}" if field == "body" else "fine"
    client_msg_id = f"id{LONE_SURROGATE}" if field == "client_msg_id" else "sur-1"
    await conn.send_raw(
        f'{{"type": "send", "client_msg_id": "{client_msg_id}", "body": "{body}", '
        f'"to": "{peer.user_id}"}}'
    )
    answer = await conn.recv_until_any(("ack", "error"))
    if answer["type"] == "error":
        assert answer["code"] == "invalid_frame", answer
    else:  # accepted: then it must also reach the peer
        got = await peer_conn.recv_until("msg", message_id=answer["message_id"])
        assert got["body"].startswith("cut")
    await conn.heartbeat()


async def test_lone_surrogate_in_a_hello_token_is_refused(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    me = await new_account(http, "sur")
    conn = await clients.open(me.chat_url)
    await conn.send_raw(f'{{"type": "hello", "token": "{LONE_SURROGATE}", "cursor": "0"}}')
    error = await conn.recv_until("error")
    assert error["code"] in ("unauthorized", "invalid_frame"), error
    if error["code"] == "unauthorized":
        assert await conn.wait_closed() == 4001
    assert conn.pending("welcome") == []


# --- HTTP edges --------------------------------------------------------------------------

MAX_BODY = 1 << 20  # max_body_bytes' default


async def test_a_body_over_the_limit_is_413_before_it_is_parsed(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/users",
        content=b"{" + b" " * (10 << 20) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


async def test_a_chunked_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(3):
            yield b" " * (MAX_BODY // 2)

    response = await http.post(
        "/v1/users", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


async def test_json_nested_too_deep_is_422_invalid_request(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/users",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"


async def test_a_request_with_both_transfer_encoding_and_content_length_is_refused(
    http: httpx.AsyncClient,
) -> None:
    """Request smuggling: two framings in one request. The server refuses it (400) and
    closes, rather than pick one."""
    url = httpx.URL(str(http.base_url))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
