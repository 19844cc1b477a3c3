"""Access tokens: what verify accepts and refuses, on the fast path for our own tokens
and through PyJWT for any other encoding of the same claims."""

from __future__ import annotations

import base64
import time

import jwt
import pytest

from tidings.auth import Identity, Tokens
from tidings.core.errors import CLOSE_UNAUTHORIZED, ProtocolError

SECRET = "s" * 64
NOW = 1_800_000_000


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(SECRET, ttl_s=3600)


def refused(tokens: Tokens, token: str, now: float = NOW) -> str:
    with pytest.raises(ProtocolError) as raised:
        tokens.verify(token, now_s=now)
    assert raised.value.close_code == CLOSE_UNAUTHORIZED
    return raised.value.message


def jwt_with_kid(token: str) -> str:
    """The same claims and secret, signed under a header that is not ours."""
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k1"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
    claims = {"sub": "7", "did": "8", "exp": int(time.time()) + 60}  # PyJWT reads the clock
    with_kid = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k1"})
    assert with_kid.split(".")[0] != tokens.issue(Identity(1, 1))[0].split(".")[0]
    assert tokens.verify(with_kid) == Identity(7, 8)
    expired = jwt.encode({**claims, "exp": int(time.time()) - 1}, SECRET, algorithm="HS256")
    assert refused(tokens, jwt_with_kid(expired)) == "token expired"
    unsigned = b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(b'{"sub":"7","did":"8"}') + "."
    assert refused(tokens, unsigned) == "invalid token"
    other_alg = jwt.encode(claims, SECRET, algorithm="HS512")
    assert refused(tokens, other_alg) == "invalid token"
