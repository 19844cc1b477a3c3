"""Password hashes (argon2) and signed access tokens (JWT, HS256)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import jwt
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tidings.core.errors import CLOSE_UNAUTHORIZED, UNAUTHORIZED, ProtocolError

T = TypeVar("T")
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
# The header of tokens issued before signing keys had ids (PyJWT's compact JSON,
# base64url): checked on the fast path against every key. Tokens issued now carry
# {"alg":"HS256","kid":...,"typ":"JWT"}; Tokens keeps those headers per key.
_LEGACY_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int
    device_id: int
    # The device's token version when the token was issued (claim "ver"; 0 in tokens
    # from before it existed): a token of an older version than the device's is void.
    token_version: int = 0


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
        """An argon2 hash of ``password``, made on the worker threads.

        Raises :class:`PasswordsBusy` when too many password checks are running or waiting."""
        return await self._run(lambda: self._hasher.hash(password))

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``password_hash`` (False for a malformed hash too).

        Raises :class:`PasswordsBusy` as :meth:`hash` does."""

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
        """Stop the worker threads, cancelling checks still waiting."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def key_id(secret: str) -> str:
    """The id of a signing key, in the header of the tokens it signs: 16 hex characters
    of a hash of the key under a label of its own (one-way: it names the key, and tells
    nothing more about it than a token's signature already does)."""
    return hashlib.sha256(b"tidings-kid\0" + secret.encode()).hexdigest()[:16]


class Tokens:
    """Access tokens: HS256 JWTs with claims ``sub`` (user), ``did`` (device), ``ver``
    (the device's token version), ``iat`` and ``exp``, and the signing key's id (``kid``)
    in the header.

    ``secret`` signs; it and every one of ``previous`` verify. Rotating the key is
    moving the current one into ``previous``: nobody is logged out, and tokens signed with
    a previous key stop working when they expire or when that key leaves the list.
    """

    def __init__(self, secret: str, ttl_s: int, previous: Sequence[str] = ()) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        for n, key in enumerate(previous, 1):
            if len(key.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"previous token secret #{n} must be at least {MIN_SECRET_BYTES} bytes"
                )
        self._secret = secret
        self._ttl_s = ttl_s
        self.kid = key_id(secret)
        # Every key by its id, the current one first (a previous equal to it is dropped).
        self._by_kid: dict[str, bytes] = {}
        for key in (secret, *previous):
            self._by_kid.setdefault(key_id(key), key.encode())
        self._keys = tuple(self._by_kid.values())
        # The fast path: the exact header segment issue() writes for each key, and the
        # legacy kid-less one (tried against every key), mapped to the keys to try.
        self._fast: dict[str, tuple[bytes, ...]] = {
            _header_segment(kid): (key,) for kid, key in self._by_kid.items()
        }
        self._fast[_LEGACY_HEADER] = self._keys

    def issue(self, identity: Identity, now_s: float | None = None) -> tuple[str, int]:
        """A token and its expiry (ms since the epoch)."""
        now = int(now_s if now_s is not None else time.time())
        expires = now + self._ttl_s
        token = jwt.encode(
            {
                "sub": str(identity.user_id),
                "did": str(identity.device_id),
                "ver": identity.token_version,
                "iat": now,
                "exp": expires,
            },
            self._secret,
            algorithm=ALGORITHM,
            headers={"kid": self.kid},
        )
        return token, expires * 1000

    def verify(self, token: str, now_s: float | None = None) -> Identity:
        """The identity a token of ours carries; :class:`ProtocolError` (unauthorized)
        when it is not ours, altered, incomplete, expired, or signed by a key that is
        neither the current nor a previous one."""
        keys = self._fast.get(token.partition(".")[0])
        if keys is not None:
            return self._verify_ours(token, keys, time.time() if now_s is None else now_s)
        return self._verify_any(token)

    def _verify_ours(self, token: str, keys: tuple[bytes, ...], now_s: float) -> Identity:
        """HS256 with a header issue() writes (or wrote before keys had ids), checked
        directly: a ``hello`` storm checks thousands a second, and PyJWT's general decode
        costs ~100 µs each."""
        signing_input, _, signature = token.rpartition(".")
        payload = signing_input.partition(".")[2]
        try:
            data = signing_input.encode("ascii")
            given = _b64url(signature)
            for key in keys:
                if hmac.compare_digest(hmac.digest(key, data, hashlib.sha256), given):
                    break
            else:
                raise ValueError("bad signature")
            claims = orjson.loads(_b64url(payload))
            exp = claims["exp"]
            version = claims.get("ver", 0)
            if type(exp) is not int or type(version) is not int:
                raise ValueError("exp or ver is not an integer")
            identity = Identity(int(claims["sub"]), int(claims["did"]), version)
        except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error) as exc:
            raise ProtocolError(
                UNAUTHORIZED, "invalid token", close_code=CLOSE_UNAUTHORIZED
            ) from exc
        if exp <= now_s:
            raise ProtocolError(UNAUTHORIZED, "token expired", close_code=CLOSE_UNAUTHORIZED)
        return identity

    def _verify_any(self, token: str) -> Identity:
        """Any other encoding of HS256, through PyJWT: the key its ``kid`` names, or
        every key when it names none."""
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if "kid" not in header:
                keys = self._keys
            elif isinstance(kid, str) and kid in self._by_kid:
                keys = (self._by_kid[kid],)
            else:
                raise ValueError("unknown signing key")
            claims = self._decode(token, keys)
            version = claims.get("ver", 0)
            if type(version) is not int:
                raise ValueError("ver is not an integer")
            return Identity(int(claims["sub"]), int(claims["did"]), version)
        except jwt.ExpiredSignatureError as exc:
            raise ProtocolError(
                UNAUTHORIZED, "token expired", close_code=CLOSE_UNAUTHORIZED
            ) from exc
        except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
            raise ProtocolError(
                UNAUTHORIZED, "invalid token", close_code=CLOSE_UNAUTHORIZED
            ) from exc

    @staticmethod
    def _decode(token: str, keys: tuple[bytes, ...]) -> dict[str, Any]:
        """The claims, checked with the first of ``keys`` whose signature matches (PyJWT
        checks the signature before the claims)."""
        for key in keys[:-1]:
            try:
                return Tokens._decode_with(token, key)
            except jwt.InvalidSignatureError:
                continue
        return Tokens._decode_with(token, keys[-1])

    @staticmethod
    def _decode_with(token: str, key: bytes) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
        return claims


def _header_segment(kid: str) -> str:
    """The base64url header segment issue() writes for key ``kid``: PyJWT's own encoding
    of it (the key signing this empty token does not matter)."""
    return jwt.encode({}, "k" * MIN_SECRET_BYTES, ALGORITHM, {"kid": kid}).partition(".")[0]


def _b64url(text: str) -> bytes:
    """base64url without padding, as JWTs carry it."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
