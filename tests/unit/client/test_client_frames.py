"""Reading server frames and building client frames as the wire contract spells them."""

from __future__ import annotations

import json

import pytest

from tidings.client import (
    Ack,
    ErrorFrame,
    Msg,
    Presence,
    Reconnect,
    Redirect,
    Synced,
    TidingsProtocolError,
    Welcome,
    parse_server_frame,
)
from tidings.client._frames import encode, hello_frame, receipt_frame, send_frame, sync_frame

BIG_ID = "1848390265372672001"  # a Snowflake beyond 2**53: must survive as a string


def frame(**fields: object) -> str:
    return json.dumps(fields)


GOOD_MSG = {
    "type": "msg",
    "seq": "1",
    "message_id": "5",
    "channel_id": "dm:1:2",
    "sender_id": "1",
    "sender_device_id": "7",
    "client_msg_id": "c",
    "body": "hi",
    "ts": 1,
}


def test_msg_keeps_ids_as_strings_and_reads_seq_from_a_decimal_string() -> None:
    parsed = parse_server_frame(
        frame(
            type="msg",
            seq="18446744073709551615",
            message_id=BIG_ID,
            channel_id=f"dm:{BIG_ID}:{BIG_ID}9",
            sender_id=BIG_ID,
            sender_device_id="7",
            client_msg_id="c-1",
            body="hi",
            ts=1_700_000_000_000,
        )
    )
    assert isinstance(parsed, Msg)
    assert parsed.seq == 2**64 - 1
    assert parsed.message_id == BIG_ID
    assert parsed.sender_id == BIG_ID


def test_welcome_synced_ack_and_control_frames() -> None:
    assert parse_server_frame(
        frame(type="welcome", user_id="1", device_id="2", server_id="s", heartbeat_s=5, cursor="9")
    ) == Welcome("1", "2", "s", 5.0, 9)
    assert parse_server_frame(frame(type="synced", cursor="9", more=True)) == Synced(9, True)
    assert parse_server_frame(
        frame(type="ack", client_msg_id="c", message_id="5", channel_id="dm:1:2", ts=3)
    ) == Ack("c", "5", "dm:1:2", 3)
    assert parse_server_frame(frame(type="redirect", chat_url="ws://b/v1/ws")) == Redirect(
        "ws://b/v1/ws"
    )
    assert parse_server_frame(frame(type="reconnect", after_ms=250)) == Reconnect(250)
    assert parse_server_frame(frame(type="reconnect", after_ms=250, same_url=True)) == Reconnect(
        250, same_url=True
    )
    assert parse_server_frame(
        frame(type="error", code="not_a_member", message="no", ref="c")
    ) == ErrorFrame("not_a_member", "no", "c")
    assert parse_server_frame(
        frame(type="presence", user_id="1", status="offline", last_seen=5)
    ) == Presence("1", "offline", 5)


def test_the_good_msg_used_below_parses() -> None:
    assert isinstance(parse_server_frame(frame(**GOOD_MSG)), Msg)


def test_unknown_frame_types_are_ignored_not_errors() -> None:
    assert parse_server_frame(frame(type="something_new", x=1)) is None


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "[1, 2]",
        frame(no_type=1),
        frame(**(GOOD_MSG | {"seq": "-1"})),
        frame(**(GOOD_MSG | {"seq": True})),
        frame(**(GOOD_MSG | {"body": None})),
        frame(**{k: v for k, v in GOOD_MSG.items() if k != "message_id"}),
        frame(type="synced", cursor="abc"),
        frame(type="ack", client_msg_id="c"),
        frame(type="welcome", user_id="1", device_id="2", heartbeat_s=0, cursor="0"),
    ],
)
def test_malformed_frames_raise_a_protocol_error(data: str) -> None:
    with pytest.raises(TidingsProtocolError):
        parse_server_frame(data)


def test_client_frames_send_sequences_as_decimal_strings() -> None:
    assert json.loads(encode(hello_frame("tok", 12))) == {
        "type": "hello",
        "token": "tok",
        "cursor": "12",
    }
    assert json.loads(encode(sync_frame(3, 50))) == {"type": "sync", "cursor": "3", "limit": 50}


def test_send_frame_needs_exactly_one_destination() -> None:
    assert send_frame("c", "b", to="9") == {
        "type": "send",
        "client_msg_id": "c",
        "body": "b",
        "to": "9",
    }
    with pytest.raises(ValueError):
        send_frame("c", "b")
    with pytest.raises(ValueError):
        send_frame("c", "b", to="9", channel_id="dm:1:9")


def test_receipt_status_is_checked() -> None:
    with pytest.raises(ValueError):
        receipt_frame("ch", "1", "seen")
