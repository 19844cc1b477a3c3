"""Access tokens: what verify accepts and refuses, on the fast path for our own tokens
and through PyJWT for any other encoding of the same claims; the device's token version
they carry; signing keys named by id and rotated without logging anyone out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from tidings import auth
from tidings.auth import Identity, Tokens, key_id
from tidings.core.errors import CLOSE_UNAUTHORIZED, ProtocolError
from tidings.settings import Settings

SECRET = "s" * 64
OLD = "o" * 40  # keys that signed before rotations
OLDER = "q" * 48
NOW = 1_800_000_000
# The header of every token issued before keys had ids.
LEGACY_HEADER = {"alg": "HS256", "typ": "JWT"}


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(SECRET, ttl_s=3600)


def refused(tokens: Tokens, token: str, now: float = NOW) -> str:
    with pytest.raises(ProtocolError) as raised:
        tokens.verify(token, now_s=now)
    assert raised.value.close_code == CLOSE_UNAUTHORIZED
    return raised.value.message


def reencoded(token: str) -> str:
    """The same claims, secret and kid under a header that is not byte for byte the one
    issue() writes (its keys in another order), so verify takes PyJWT's path."""
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    headers = {"typ": "JWT", "kid": key_id(SECRET)}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers=headers, sort_headers=False)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * 3))
    return header


def legacy(claims: dict[str, Any], secret: str) -> str:
    """A token as versions before key ids issued it: no kid (and no ver)."""
    token = jwt.encode(claims, secret, algorithm="HS256")
    assert header_of(token) == LEGACY_HEADER
    return token


def test_an_issued_token_carries_its_identity_until_it_expires(tokens: Tokens) -> None:
    token, expires_ms = tokens.issue(Identity(7, 8), now_s=NOW)
    assert expires_ms == (NOW + 3600) * 1000
    assert tokens.verify(token, now_s=NOW + 3599) == Identity(7, 8)
    assert refused(tokens, token, now=NOW + 3600) == "token expired"


def test_a_token_signed_with_another_secret_is_refused(tokens: Tokens) -> None:
    token, _ = Tokens("o" * 40, ttl_s=3600).issue(Identity(7, 8), now_s=NOW)
    assert refused(tokens, token) == "invalid token"


def test_altered_claims_or_signature_are_refused(tokens: Tokens) -> None:
    token, _ = tokens.issue(Identity(7, 8), now_s=NOW)
    header, payload, signature = token.split(".")
    forged = b64(b'{"sub":"1","did":"8","iat":%d,"exp":%d}' % (NOW, NOW + 3600))
    assert refused(tokens, f"{header}.{forged}.{signature}") == "invalid token"
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert refused(tokens, f"{header}.{payload}.{flipped}") == "invalid token"
    assert refused(tokens, f"{header}.{payload}.") == "invalid token"
    assert refused(tokens, f"{header}.{payload}") == "invalid token"
    assert refused(tokens, f"{header}.!!!.{signature}") == "invalid token"


@pytest.mark.parametrize(
    "claims",
    [
        {"did": "8", "exp": NOW + 60},  # no subject
        {"sub": "7", "exp": NOW + 60},  # no device
        {"sub": "7", "did": "8"},  # no expiry
        {"sub": "7", "did": "8", "exp": "soon"},
        {"sub": "seven", "did": "8", "exp": NOW + 60},
    ],
)
def test_a_well_signed_token_missing_or_mangling_a_claim_is_refused(
    tokens: Tokens, claims: dict[str, object]
) -> None:
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert refused(tokens, token) == "invalid token"


def test_other_encodings_of_hs256_go_through_pyjwt(tokens: Tokens) -> None:
    claims = {"sub": "7", "did": "8", "ver": 2, "exp": int(time.time()) + 60}  # PyJWT: clock
    issued = tokens.issue(Identity(1, 1))[0]
    other = reencoded(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert other.split(".")[0] != issued.split(".")[0]
    assert header_of(other) == header_of(issued)
    assert tokens.verify(other) == Identity(7, 8, 2)
    expired = jwt.encode({**claims, "exp": int(time.time()) - 1}, SECRET, algorithm="HS256")
    assert refused(tokens, reencoded(expired)) == "token expired"
    unsigned = b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(b'{"sub":"7","did":"8"}') + "."
    assert refused(tokens, unsigned) == "invalid token"
    other_alg = jwt.encode(claims, SECRET, algorithm="HS512")
    assert refused(tokens, other_alg) == "invalid token"


def test_a_token_carries_the_device_token_version(tokens: Tokens) -> None:
    token, _ = tokens.issue(Identity(7, 8, token_version=5), now_s=NOW)
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert claims["ver"] == 5
    assert tokens.verify(token, now_s=NOW) == Identity(7, 8, 5)
    assert tokens.verify(tokens.issue(Identity(7, 8), now_s=NOW)[0], now_s=NOW).token_version == 0


@pytest.mark.parametrize("ver", ["5", 5.0, None, [5], True])
def test_a_token_version_that_is_not_an_integer_is_refused(tokens: Tokens, ver: object) -> None:
    claims = {"sub": "7", "did": "8", "ver": ver, "exp": NOW + 60}
    fast = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": tokens.kid})
    assert header_of(fast) == header_of(tokens.issue(Identity(1, 1))[0])
    assert refused(tokens, fast) == "invalid token"
    assert refused(tokens, legacy(claims, SECRET)) == "invalid token"


def test_the_header_names_the_signing_key_without_revealing_it(tokens: Tokens) -> None:
    token, _ = tokens.issue(Identity(7, 8), now_s=NOW)
    assert header_of(token) == {"alg": "HS256", "kid": tokens.kid, "typ": "JWT"}
    assert tokens.kid == key_id(SECRET)
    assert len(tokens.kid) == 16 and set(tokens.kid) <= set("0123456789abcdef")
    assert tokens.kid not in SECRET.encode().hex()
    assert key_id(OLD) != key_id(SECRET)
    assert Tokens(SECRET, 60, previous=[OLD]).kid == tokens.kid  # the current key signs


def test_our_tokens_take_the_fast_path_whichever_key_signed_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tokens this version issues, with the current or a previous key, and kid-less
    tokens from before, are checked without PyJWT (a hello storm checks thousands)."""
    old_token = Tokens(OLD, ttl_s=3600).issue(Identity(1, 2, 3), now_s=NOW)[0]
    kidless = legacy({"sub": "4", "did": "5", "exp": NOW + 60}, OLD)
    tokens = Tokens(SECRET, ttl_s=3600, previous=[OLD])
    current = tokens.issue(Identity(7, 8, 9), now_s=NOW)[0]

    def no_pyjwt(*args: object, **kwargs: object) -> None:
        raise AssertionError("PyJWT was asked")

    monkeypatch.setattr(auth.jwt, "decode", no_pyjwt)
    monkeypatch.setattr(auth.jwt, "get_unverified_header", no_pyjwt)
    assert tokens.verify(current, now_s=NOW) == Identity(7, 8, 9)
    assert tokens.verify(old_token, now_s=NOW) == Identity(1, 2, 3)
    assert tokens.verify(kidless, now_s=NOW) == Identity(4, 5, 0)


def test_rotation_keeps_tokens_of_the_previous_key_until_it_is_dropped() -> None:
    before = Tokens(OLD, ttl_s=3600)
    old_token, _ = before.issue(Identity(7, 8, 1), now_s=NOW)
    rotated = Tokens(SECRET, ttl_s=3600, previous=[OLD, OLDER])
    assert rotated.verify(old_token, now_s=NOW) == Identity(7, 8, 1)
    new_token, _ = rotated.issue(Identity(7, 8, 1), now_s=NOW)
    assert header_of(new_token)["kid"] == key_id(SECRET) != header_of(old_token)["kid"]
    assert rotated.verify(new_token, now_s=NOW) == Identity(7, 8, 1)
    # Until it expires, and not after.
    assert refused(rotated, old_token, now=NOW + 3600) == "token expired"
    # Once its key leaves the list it stops at once; the new key's tokens keep working.
    dropped = Tokens(SECRET, ttl_s=3600, previous=[OLDER])
    assert refused(dropped, old_token) == "invalid token"
    assert dropped.verify(new_token, now_s=NOW) == Identity(7, 8, 1)
    # A process that has not rotated yet does not know the new key.
    assert refused(before, new_token) == "invalid token"


def test_kidless_tokens_from_before_key_ids_are_tried_against_every_key() -> None:
    claims = {"sub": "7", "did": "8", "iat": NOW, "exp": NOW + 60}
    tokens = Tokens(SECRET, ttl_s=3600, previous=[OLD, OLDER])
    for secret in (SECRET, OLD, OLDER):
        assert tokens.verify(legacy(claims, secret), now_s=NOW) == Identity(7, 8, 0)
    assert refused(tokens, legacy(claims, "x" * 40)) == "invalid token"
    assert refused(tokens, legacy({**claims, "exp": NOW}, OLD)) == "token expired"
    # The same through PyJWT: a kid-less header in another encoding (PyJWT reads the clock).
    fresh = {"sub": "7", "did": "8", "exp": int(time.time()) + 60}
    other = jwt.encode(fresh, OLDER, algorithm="HS256", headers={"typ": "JWT"}, sort_headers=False)
    assert header_of(other) == LEGACY_HEADER
    assert other.split(".")[0] != legacy(fresh, OLDER).split(".")[0]
    assert tokens.verify(other) == Identity(7, 8, 0)
    stranger = jwt.encode(
        fresh, "x" * 40, algorithm="HS256", headers={"typ": "JWT"}, sort_headers=False
    )
    assert refused(tokens, stranger) == "invalid token"


def test_an_unknown_kid_is_refused_even_when_the_signature_is_right(tokens: Tokens) -> None:
    claims = {"sub": "7", "did": "8", "exp": int(time.time()) + 60}
    for kid in ("0123456789abcdef", "k1", ""):
        token = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": kid})
        assert refused(tokens, token, now=time.time()) == "invalid token"
    for odd in (7, ["x"], None):  # not even a string (PyJWT writes none of these)
        header = b64(json.dumps({"alg": "HS256", "kid": odd, "typ": "JWT"}).encode())
        signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
        signature = hmac.digest(SECRET.encode(), signing_input.encode(), hashlib.sha256)
        token = f"{signing_input}.{b64(signature)}"
        assert refused(tokens, token, now=time.time()) == "invalid token"
    # The key is picked by its id: a token naming a previous key but signed by the
    # current one (or the other way round) is refused.
    both = Tokens(SECRET, ttl_s=3600, previous=[OLD])
    for kid, secret in ((key_id(OLD), SECRET), (key_id(SECRET), OLD)):
        token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
        assert refused(both, token, now=time.time()) == "invalid token"


def test_tampering_is_refused_whichever_key_signed() -> None:
    tokens = Tokens(SECRET, ttl_s=3600, previous=[OLD])
    for token in (
        Tokens(OLD, ttl_s=3600).issue(Identity(7, 8, 1), now_s=NOW)[0],
        tokens.issue(Identity(7, 8, 1), now_s=NOW)[0],
        legacy({"sub": "7", "did": "8", "ver": 1, "exp": NOW + 60}, OLD),
    ):
        assert tokens.verify(token, now_s=NOW) == Identity(7, 8, 1)
        header, payload, signature = token.split(".")
        raised = b64(b'{"sub":"7","did":"8","ver":2,"iat":%d,"exp":%d}' % (NOW, NOW + 60))
        assert refused(tokens, f"{header}.{raised}.{signature}") == "invalid token"
        for kid in (key_id(SECRET), key_id(OLD)):  # another key's id on the same signature
            swapped = b64(b'{"alg":"HS256","kid":"%s","typ":"JWT"}' % kid.encode())
            if swapped != header:
                assert refused(tokens, f"{swapped}.{payload}.{signature}") == "invalid token"
        flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
        assert refused(tokens, f"{header}.{payload}.{flipped}") == "invalid token"


def test_every_previous_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="previous token secret #2 must be at least 32 bytes"):
        Tokens(SECRET, ttl_s=60, previous=[OLD, "short"])
    with pytest.raises(ValueError, match="the token secret must be at least 32 bytes"):
        Tokens("short", ttl_s=60, previous=[OLD])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        (OLD, [OLD]),
        (f"{OLD},{OLDER}", [OLD, OLDER]),
        (f" {OLD} , {OLDER} ,", [OLD, OLDER]),
        (json.dumps([OLD, OLDER]), [OLD, OLDER]),
    ],
)
def test_previous_secrets_come_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("TIDINGS_JWT_PREVIOUS_SECRETS", value)
    assert Settings().jwt_previous_secrets == expected
