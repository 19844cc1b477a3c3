"""Password hashes (argon2) and signed access tokens (JWT, HS256)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import jwt
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tidings.core.errors import CLOSE_UNAUTHORIZED, UNAUTHORIZED, ProtocolError

T = TypeVar("T")
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
# The header of every token issue() signs (PyJWT's compact JSON, base64url): tokens that
# start with it are checked by the fast path in Tokens.verify, any other by PyJWT.
_OUR_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."  # {"alg":"HS256","typ":"JWT"}


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int
    device_id: int


class PasswordsBusy(Exception):
    """Every argon2 worker is busy and the waiting room is full: try again later."""


class Passwords:
    """argon2id hashing in a bounded pool, off the event loop (it is deliberately slow).

    Each hash or verify takes ``memory_kib`` of memory while it runs, so at most
    ``workers`` run at once (memory stays at ``workers * memory_kib``, whatever the
    flood), at most ``waiting`` more wait for a worker, and the rest are refused at once
    with :class:`PasswordsBusy` (the API answers 503 with Retry-After).
    """

    def __init__(
        self,
        time_cost: int = 3,
        memory_kib: int = 65536,
        *,
        workers: int = 2,
        waiting: int = 64,
    ) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._limit = workers + waiting
        self.in_use = 0
        self._decoy: str | None = None  # a hash of nothing anyone knows, made on first use

    async def _run(self, fn: Callable[[], T]) -> T:
        if self.in_use >= self._limit:
            raise PasswordsBusy("too many password checks at once")
        self.in_use += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        finally:
            self.in_use -= 1

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self._hasher.hash(password))

    async def verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(check)

    async def verify_unknown(self, password: str) -> bool:
        """For a login naming no account: the same argon2 work as a wrong password
        (False), so the answer's timing does not tell which usernames exist."""
        if self._decoy is None:
            self._decoy = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._decoy, password)
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Tokens:
    def __init__(self, secret: str, ttl_s: int) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._key = secret.encode()
        self._ttl_s = ttl_s

    def issue(self, identity: Identity, now_s: float | None = None) -> tuple[str, int]:
        """A token and its expiry (ms since the epoch)."""
        now = int(now_s if now_s is not None else time.time())
        expires = now + self._ttl_s
        token = jwt.encode(
            {
                "sub": str(identity.user_id),
                "did": str(identity.device_id),
                "iat": now,
                "exp": expires,
            },
            self._secret,
            algorithm=ALGORITHM,
        )
        return token, expires * 1000

    def verify(self, token: str, now_s: float | None = None) -> Identity:
        """The identity a token of ours carries; :class:`ProtocolError` (unauthorized)
        when it is not ours, altered, incomplete or expired."""
        if token.startswith(_OUR_HEADER):
            return self._verify_ours(token, time.time() if now_s is None else now_s)
        return self._verify_any(token)

    def _verify_ours(self, token: str, now_s: float) -> Identity:
        """HS256 with the header issue() writes, checked directly: a ``hello`` storm
        checks thousands a second, and PyJWT's general decode costs ~100 µs each."""
        signing_input, _, signature = token.rpartition(".")
        payload = signing_input[len(_OUR_HEADER) :]
        try:
            expected = hmac.digest(self._key, signing_input.encode("ascii"), hashlib.sha256)
            if not hmac.compare_digest(expected, _b64url(signature)):
                raise ValueError("bad signature")
            claims = orjson.loads(_b64url(payload))
            exp = claims["exp"]
            if type(exp) is not int:
                raise ValueError("exp is not an integer")
            identity = Identity(int(claims["sub"]), int(claims["did"]))
        except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error) as exc:
            raise ProtocolError(
                UNAUTHORIZED, "invalid token", close_code=CLOSE_UNAUTHORIZED
            ) from exc
        if exp <= now_s:
            raise ProtocolError(UNAUTHORIZED, "token expired", close_code=CLOSE_UNAUTHORIZED)
        return identity

    def _verify_any(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
            )
            return Identity(int(claims["sub"]), int(claims["did"]))
        except jwt.ExpiredSignatureError as exc:
            raise ProtocolError(
                UNAUTHORIZED, "token expired", close_code=CLOSE_UNAUTHORIZED
            ) from exc
        except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
            raise ProtocolError(
                UNAUTHORIZED, "invalid token", close_code=CLOSE_UNAUTHORIZED
            ) from exc


def _b64url(text: str) -> bytes:
    """base64url without padding, as JWTs carry it."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
