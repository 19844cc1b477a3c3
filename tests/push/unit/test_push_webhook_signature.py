"""The webhook's signature, as a relay checks it."""

from __future__ import annotations

from tidings.push.webhook import signature, verify

SECRET = b"s3cret"
BODY = b'{"token":"t"}'


def test_a_fresh_signed_body_verifies() -> None:
    sig = signature(SECRET, 1000, BODY)
    assert sig.startswith("v1=")
    assert verify(SECRET, "1000", sig, BODY, now=1100)


def test_tampering_a_wrong_secret_or_a_replay_fail() -> None:
    sig = signature(SECRET, 1000, BODY)
    assert not verify(SECRET, "1000", sig, BODY + b" ", now=1000)
    assert not verify(b"other", "1000", sig, BODY, now=1000)
    assert not verify(SECRET, "1001", sig, BODY, now=1000)  # the timestamp is signed
    assert not verify(SECRET, "1000", sig, BODY, now=1000 + 301)
    assert not verify(SECRET, None, sig, BODY, now=1000)
    assert not verify(SECRET, "x", sig, BODY, now=1000)


def test_several_signatures_during_a_secret_rotation() -> None:
    sig = signature(SECRET, 1000, BODY)
    assert verify(SECRET, "1000", f"v1=deadbeef, {sig}", BODY, now=1000)
