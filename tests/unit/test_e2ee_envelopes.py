"""core/e2ee.py: envelopes checked against the devices that need one, stored as one
body, and each device shown only its own."""

from __future__ import annotations

import pytest

from tidings.core.e2ee import (
    MARK,
    Envelope,
    check_devices,
    encode_body,
    is_envelopes,
    parse_envelopes,
    view_for,
)
from tidings.core.errors import ProtocolError
from tidings.core.frames import Send, parse_client_frame

DEVICES = {11: (1, "k11"), 12: (1, "k12"), 21: (2, "k21")}


def env(device: int, key: str) -> Envelope:
    return Envelope(device, key, 0, f"c{device}")


def test_the_exact_devices_with_their_keys_pass() -> None:
    assert check_devices([env(11, "k11"), env(12, "k12"), env(21, "k21")], DEVICES) is None


def test_missing_extra_and_stale_are_all_named() -> None:
    mismatch = check_devices([env(11, "old"), env(21, "k21"), env(99, "x")], DEVICES)
    assert mismatch is not None
    assert (mismatch.missing, mismatch.extra, mismatch.stale) == ([(1, 12)], [99], [(1, 11)])
    error = mismatch.error("m1")
    assert (error.code, error.ref) == ("devices_mismatch", "m1")
    assert error.details == {
        "missing": [{"user_id": "1", "device_id": "12"}],
        "extra": [{"device_id": "99"}],
        "stale": [{"user_id": "1", "device_id": "11"}],
    }


def test_one_stored_body_each_device_sees_its_own() -> None:
    stored = encode_body("shared", [env(11, "k11"), env(21, "k21")], "sender-key")
    assert is_envelopes(stored) and stored.startswith(MARK)
    assert view_for(stored, 21) == {
        "body": "shared",
        "e2e": True,
        "sender_key": "sender-key",
        "envelope": {"type": 0, "body": "c21"},
    }
    assert view_for(stored, 12)["envelope"] is None
    assert not is_envelopes("a plain body")


def test_a_send_frame_with_envelopes_parses_and_a_plain_body_cannot_pose_as_one() -> None:
    frame = parse_client_frame(
        '{"type":"send","client_msg_id":"m","to":"5","body":"",'
        '"envelopes":[{"device_id":"7","key":"k","type":1,"body":"abc"}]}'
    )
    assert isinstance(frame, Send) and frame.envelopes == (Envelope(7, "k", 1, "abc"),)
    with pytest.raises(ProtocolError, match="NUL"):
        parse_client_frame('{"type":"send","client_msg_id":"m","to":"5","body":"\\u0000e2e1:{}"}')


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ([], "non-empty list"),
        ([{"device_id": 7, "key": "k", "type": 0, "body": "b"}], "decimal string"),
        ([{"device_id": "7", "key": "", "type": 0, "body": "b"}], "identity key"),
        ([{"device_id": "7", "key": "k", "type": True, "body": "b"}], "small integer"),
        ([{"device_id": "7", "key": "k", "type": 0, "body": ""}], "envelope body"),
        ([{"device_id": "7", "key": "k", "type": 0, "body": "b"}] * 2, "two envelopes"),
    ],
)
def test_malformed_envelopes_are_invalid_frames(raw: object, says: str) -> None:
    with pytest.raises(ProtocolError, match=says) as refused:
        parse_envelopes(raw, "m")
    assert refused.value.code == "invalid_frame" and refused.value.ref == "m"
