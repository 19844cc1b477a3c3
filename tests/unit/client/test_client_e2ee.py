"""tidings.client's end-to-end cryptography (vodozemac), without a server: keys the key
directory accepts, pairwise envelopes both ways (pre-key, then normal, out of order),
sender keys for a group, state that survives a restart in a 0600 file, safety numbers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tidings.client._e2ee import DeviceCrypto, E2eeError, safety_number
from tidings.storage.sql.keys import DeviceKeys, PreKey, check_keys, check_prekeys


def bundle(device: DeviceCrypto, body: dict[str, object], one_time: int = 0) -> dict[str, object]:
    """What GET /v1/users/{id}/keys hands out for the device, from its upload body."""
    prekeys = body["one_time_prekeys"]
    assert isinstance(prekeys, list)
    return {
        "device_id": device.device_id,
        "identity_key": body["identity_key"],
        "signing_key": body["signing_key"],
        "signed_prekey": body["signed_prekey"],
        "one_time_prekey": prekeys[one_time] if prekeys else None,
    }


@pytest.fixture
def ann(tmp_path: Path) -> DeviceCrypto:
    return DeviceCrypto(tmp_path / "ann.json", "1001")


@pytest.fixture
def bob(tmp_path: Path) -> DeviceCrypto:
    return DeviceCrypto(tmp_path / "bob.json", "2001")


def test_the_upload_is_one_the_key_directory_accepts(ann: DeviceCrypto) -> None:
    body = ann.keys_body(one_time=5)
    spk = body["signed_prekey"]
    check_keys(
        DeviceKeys(
            1001,
            1,
            body["identity_key"],
            body["signing_key"],
            PreKey(spk["key_id"], spk["public_key"]),
            spk["signature"],
        )
    )
    check_prekeys([PreKey(p["key_id"], p["public_key"]) for p in body["one_time_prekeys"]])
    assert len(body["one_time_prekeys"]) == 5
    # The next upload adds new one-time keys and keeps the signed prekey.
    again = ann.keys_body(one_time=2)
    assert again["signed_prekey"] == spk
    assert not {p["key_id"] for p in again["one_time_prekeys"]} & {
        p["key_id"] for p in body["one_time_prekeys"]
    }


def test_pairwise_envelopes_both_ways_and_out_of_order(
    ann: DeviceCrypto, bob: DeviceCrypto
) -> None:
    ann.start_session(bundle(bob, bob.keys_body(one_time=3)))
    first = ann.envelope("2001", bob.identity_key, b"hello bob")
    assert first["type"] == 0  # a pre-key envelope opens bob's side
    assert bob.open("1001", ann.identity_key, first) == b"hello bob"
    reply = bob.envelope("1001", ann.identity_key, b"hi ann")
    assert ann.open("2001", bob.identity_key, reply) == b"hi ann"
    later = [ann.envelope("2001", bob.identity_key, f"m{i}".encode()) for i in range(3)]
    assert [bob.open("1001", ann.identity_key, e) for e in reversed(later)] == [
        b"m2",
        b"m1",
        b"m0",
    ]


def test_a_session_starts_from_the_signed_prekey_when_no_one_time_key_is_left(
    ann: DeviceCrypto, bob: DeviceCrypto
) -> None:
    ann.start_session(bundle(bob, bob.keys_body(one_time=0)))
    envelope = ann.envelope("2001", bob.identity_key, b"on the fallback key")
    assert bob.open("1001", ann.identity_key, envelope) == b"on the fallback key"


def test_a_bundle_whose_prekey_its_device_did_not_sign_is_refused(
    ann: DeviceCrypto, bob: DeviceCrypto, tmp_path: Path
) -> None:
    forged = bundle(bob, bob.keys_body(one_time=1))
    mallory = DeviceCrypto(tmp_path / "m.json", "2001").keys_body(one_time=0)
    forged["signed_prekey"] = mallory["signed_prekey"]
    with pytest.raises(E2eeError, match="does not verify"):
        ann.start_session(forged)


def test_a_group_sends_one_ciphertext_after_the_sender_key_went_pairwise(
    ann: DeviceCrypto, bob: DeviceCrypto
) -> None:
    ann.start_session(bundle(bob, bob.keys_body(one_time=1)))
    key = ann.group_key("g:1")
    carrier = ann.envelope("2001", bob.identity_key, key.encode())
    bob.accept_group_key("g:1", "1001", bob.open("1001", ann.identity_key, carrier).decode())
    ciphertext = ann.group_encrypt("g:1", b"to the group")
    assert bob.group_decrypt("g:1", "1001", ciphertext) == b"to the group"
    # After a membership change the sender starts a new key: the old one opens nothing new.
    ann.group_key("g:1", new=True)
    with pytest.raises(E2eeError):
        bob.group_decrypt("g:1", "1001", ann.group_encrypt("g:1", b"after removal"))


def test_state_survives_a_restart_in_a_file_only_the_user_reads(
    ann: DeviceCrypto, bob: DeviceCrypto, tmp_path: Path
) -> None:
    ann.start_session(bundle(bob, bob.keys_body(one_time=1)))
    bob.open("1001", ann.identity_key, ann.envelope("2001", bob.identity_key, b"one"))
    ann.save()
    bob.save()
    assert stat.S_IMODE((tmp_path / "ann.json").stat().st_mode) == 0o600
    ann2 = DeviceCrypto(tmp_path / "ann.json", "1001")
    bob2 = DeviceCrypto(tmp_path / "bob.json", "2001")
    assert ann2.identity_key == ann.identity_key
    envelope = ann2.envelope("2001", bob2.identity_key, b"two")
    assert bob2.open("1001", ann2.identity_key, envelope) == b"two"
    with pytest.raises(E2eeError, match="device 1001"):
        DeviceCrypto(tmp_path / "ann.json", "9999")


def test_safety_numbers_agree_and_change_with_a_key() -> None:
    number = safety_number("keyA", "keyB")
    assert number == safety_number("keyB", "keyA")
    assert len(number.replace(" ", "")) == 60 and number.replace(" ", "").isdigit()
    assert safety_number("keyA", "keyC") != number
