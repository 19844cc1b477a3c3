import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.core.frames import (
    MAX_BODY_CHARS,
    Heartbeat,
    Hello,
    Receipt,
    Send,
    Sync,
    Typing,
    parse_client_frame,
)

ids = st.integers(min_value=0, max_value=2**63 - 1)


def parse(frame: object) -> object:
    return parse_client_frame(json.dumps(frame))


def error_code(raw: str | bytes) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(raw)
    return caught.value.code


def test_each_frame_type_parses_into_its_value() -> None:
    assert parse({"type": "hello", "token": "t", "cursor": "7"}) == Hello("t", 7)
    assert parse({"type": "send", "client_msg_id": "c", "to": "5", "body": "hi"}) == Send(
        "c", "hi", to=5
    )
    assert parse(
        {"type": "receipt", "channel_id": "dm:1:2", "message_id": "9", "status": "read"}
    ) == Receipt("dm:1:2", 9, "read")
    assert parse({"type": "sync", "cursor": "3", "limit": "10"}) == Sync(3, 10)
    assert parse({"type": "heartbeat"}) == Heartbeat()
    assert parse({"type": "typing", "channel_id": "g:4"}) == Typing("g:4")


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "shout"}',
        '{"type": "hello"}',
        '{"type": "send", "client_msg_id": "c", "body": "x"}',
        '{"type": "send", "client_msg_id": "c", "body": "x", "to": "1", "channel_id": "g:1"}',
        '{"type": "send", "client_msg_id": "", "body": "x", "to": "1"}',
        '{"type": "receipt", "channel_id": "g:1", "message_id": "1", "status": "seen"}',
        '{"type": "sync", "cursor": "-1"}',
        '{"type": "sync", "cursor": "1", "limit": "0"}',
        b"\xff\xfe",
    ],
)
def test_malformed_frames_are_invalid_frame(raw: str | bytes) -> None:
    assert error_code(raw) == errors.INVALID_FRAME


def test_a_body_over_the_limit_is_body_too_long_with_ref() -> None:
    frame = {"type": "send", "client_msg_id": "c9", "to": "1", "body": "x" * (MAX_BODY_CHARS + 1)}
    with pytest.raises(ProtocolError) as caught:
        parse(frame)
    assert (caught.value.code, caught.value.ref) == (errors.BODY_TOO_LONG, "c9")
    assert isinstance(parse({**frame, "body": "x" * MAX_BODY_CHARS}), Send)


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_input_parses_or_raises_a_protocol_error(raw: str | bytes) -> None:
    try:
        parse_client_frame(raw)
    except ProtocolError as exc:
        assert exc.code in (errors.INVALID_FRAME, errors.BODY_TOO_LONG)


@given(st.dictionaries(st.text(max_size=12), st.none() | st.integers() | st.text(max_size=8)))
def test_any_json_object_parses_or_raises_a_protocol_error(frame: dict[str, object]) -> None:
    try:
        parse(frame)
    except ProtocolError as exc:
        assert exc.code == errors.INVALID_FRAME


@given(cursor=ids, message_id=ids)
def test_ids_round_trip_as_decimal_strings(cursor: int, message_id: int) -> None:
    assert parse({"type": "hello", "token": "t", "cursor": str(cursor)}) == Hello("t", cursor)
    receipt = parse(
        {"type": "receipt", "channel_id": "g:1", "message_id": str(message_id), "status": "read"}
    )
    assert isinstance(receipt, Receipt) and receipt.message_id == message_id
