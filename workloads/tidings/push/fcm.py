"""Firebase Cloud Messaging HTTP v1, authorised by a service account.

The service account signs an RS256 JWT-bearer assertion (RFC 7523) for the
``firebase.messaging`` scope, which its ``token_uri`` exchanges for an OAuth2 access
token; that token is cached and renewed a few minutes before it expires (or at once
after a 401).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tidings.push._http import (
    by_status,
    http2_client,
    json_body,
    retry_after,
    transport_failure,
)
from tidings.push.base import SENT, Outcome, Verdict
from tidings.push.exceptions import CredentialsError, ProviderUnavailable
from tidings.push.payload import Notification, fcm_message

log = logging.getLogger(__name__)

ENDPOINT = "https://fcm.googleapis.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600
# After the token endpoint refused the credentials, fail fast for this long.
REFUSED_COOLDOWN_S = 60.0
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key: rsa.RSAPrivateKey
    private_key_id: str | None
    project_id: str | None
    token_uri: str

    @classmethod
    def from_json(cls, text: str) -> ServiceAccount:
        """The service account in a Google service-account JSON key file's ``text``.

        Raises :class:`CredentialsError` when it is not JSON, lacks ``client_email`` or
        ``private_key``, or the key is not a usable RSA private key."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CredentialsError(f"the FCM service account is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CredentialsError("the FCM service account is not a JSON object")
        missing = [k for k in ("client_email", "private_key") if not data.get(k)]
        if missing:
            raise CredentialsError(f"the FCM service account has no {', '.join(missing)}")
        try:
            key = load_pem_private_key(str(data["private_key"]).encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise CredentialsError(f"the service account's private_key is unusable: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialsError("the service account's private_key is not an RSA key")
        return cls(
            client_email=str(data["client_email"]),
            private_key=key,
            private_key_id=str(data["private_key_id"]) if data.get("private_key_id") else None,
            project_id=str(data["project_id"]) if data.get("project_id") else None,
            token_uri=str(data.get("token_uri") or GOOGLE_TOKEN_URI),
        )


class OAuthTokenSource:
    """An access token for the service account, fetched once and shared by all sends."""

    def __init__(
        self,
        account: ServiceAccount,
        client: httpx.AsyncClient,
        *,
        token_uri: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._account = account
        self._client = client
        self._token_uri = token_uri or account.token_uri
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._refused: tuple[float, str] | None = None
        self._lock = asyncio.Lock()
        self.exchanges = 0  # how many times a token was fetched (for tests and logs)

    async def token(self) -> str:
        """An access token: the cached one while valid, else a new one from the token endpoint
        (one exchange at a time).

        Raises :class:`ProviderUnavailable` when the endpoint cannot be reached or answers 429
        or 5xx, and :class:`CredentialsError` when it refused the account (for
        ``REFUSED_COOLDOWN_S`` after a refusal, without asking again)."""
        token = self._valid()
        if token is not None:
            return token
        async with self._lock:  # one exchange at a time; the others reuse its token
            token = self._valid()
            if token is not None:
                return token
            return await self._exchange()

    def invalidate(self, token: str) -> None:
        """FCM refused ``token``: the next call fetches a new one (unless another already did)."""
        if self._token == token:
            self._token = None

    def _valid(self) -> str | None:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        return None

    def assertion(self, now: float) -> str:
        """The JWT (RS256) signed at ``now`` that the token endpoint exchanges for an
        access token."""
        headers: dict[str, Any] = (
            {"kid": self._account.private_key_id} if self._account.private_key_id else {}
        )
        return jwt.encode(
            {
                "iss": self._account.client_email,
                "scope": SCOPE,
                "aud": self._token_uri,
                "iat": int(now),
                "exp": int(now) + ASSERTION_LIFETIME_S,
            },
            self._account.private_key,
            algorithm="RS256",
            headers=headers,
        )

    async def _exchange(self) -> str:
        now = self._clock()
        if self._refused is not None and now - self._refused[0] < REFUSED_COOLDOWN_S:
            raise CredentialsError(self._refused[1])
        try:
            response = await self._client.post(
                self._token_uri,
                data={"grant_type": GRANT_TYPE, "assertion": self.assertion(now)},
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"token endpoint: {type(exc).__name__}") from exc
        body = json_body(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise ProviderUnavailable(
                f"token endpoint answered {response.status_code}", retry_after(response)
            )
        if response.status_code != 200 or not body.get("access_token"):
            message = (
                f"the token endpoint refused the service account ({response.status_code} "
                f"{body.get('error', '')}: {body.get('error_description', '')})"
            )
            self._refused = (now, message)
            log.error(message)
            raise CredentialsError(message)
        self._refused = None
        expires_in = float(body.get("expires_in", 3600))
        self._token = str(body["access_token"])
        self._refresh_at = now + expires_in - min(300.0, expires_in / 2)
        self.exchanges += 1
        return self._token


def error_code(body: dict[str, Any]) -> str | None:
    """The FcmError code (UNREGISTERED, QUOTA_EXCEEDED, ...) of an error body."""
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == FCM_ERROR_TYPE:
            code = detail.get("errorCode")
            return str(code) if code else None
    return None


def classify(response: httpx.Response) -> Outcome:
    """The outcome of an FCM response: UNREGISTERED is ``DEAD_TOKEN``, 401 is ``RETRY`` at
    once (with a new access token), others by status."""
    status = response.status_code
    if status == 200:
        return SENT
    body = json_body(response)
    code = error_code(body)
    error = body.get("error")
    status_text = str(error.get("status", "")) if isinstance(error, dict) else ""
    reason = code or status_text or f"HTTP {status}"
    if code == "UNREGISTERED":
        return Outcome(Verdict.DEAD_TOKEN, reason, status)
    if status == 401:  # the access token expired or was revoked: fetch a new one
        return Outcome(Verdict.RETRY, reason or "UNAUTHENTICATED", status, retry_after=0.0)
    return by_status(response, reason)


class FcmProvider:
    name = "fcm"

    def __init__(
        self,
        account: ServiceAccount,
        *,
        project_id: str | None = None,
        token_uri: str | None = None,
        endpoint: str = ENDPOINT,
        timeout_s: float = 10.0,
        max_connections: int = 4,
    ) -> None:
        project = project_id or account.project_id
        if not project:
            raise CredentialsError(
                "no FCM project id: the service account has none and TIDINGS_FCM_PROJECT_ID "
                "is not set"
            )
        self._url = f"{endpoint.rstrip('/')}/v1/projects/{project}/messages:send"
        self._client = http2_client(timeout_s, max_connections)
        self._token_client = http2_client(timeout_s, 2)
        self.tokens = OAuthTokenSource(account, self._token_client, token_uri=token_uri)

    async def send(self, token: str, notification: Notification) -> Outcome:
        """Send ``notification`` to the registration ``token`` (``REJECTED`` when the credentials
        are refused, ``RETRY`` when no access token can be had now)."""
        try:
            access_token = await self.tokens.token()
        except CredentialsError as exc:
            return Outcome(Verdict.REJECTED, f"credentials: {exc}")
        except ProviderUnavailable as exc:
            return Outcome(Verdict.RETRY, f"oauth: {exc}", retry_after=exc.retry_after)
        try:
            response = await self._client.post(
                self._url,
                json={"message": fcm_message(token, notification)},
                headers={"authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        outcome = classify(response)
        if outcome.status == 401:
            self.tokens.invalidate(access_token)
        return outcome

    async def close(self) -> None:
        """Close the HTTP/2 clients (FCM's and the token endpoint's)."""
        await self._client.aclose()
        await self._token_client.aclose()
